// `tffreeze-cs run`: load a frozen graph, feed .npy files, write the fetched outputs as
// .npy. Written only against the API TensorFlowSharp and tffreeze's binding share, so
// the CLI runs it on either: its own build (TfFreeze.dll) on the built-in binding, and
// TfFreeze.TensorFlowSharp.dll (-define:TENSORFLOWSHARP) on the TensorFlowSharp.dll given
// with --tensorflowsharp.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
#if TENSORFLOWSHARP
using TensorFlow;
#else
using TfFreeze.TensorFlow;
#endif

namespace TfFreeze
{
    public static class ModelRunner
    {
        /// <summary>Run <paramref name="modelPath"/> feeding <paramref name="inputs"/> (NAME -> .npy path)
        /// and writing <paramref name="outputs"/> (NAME -> .npy path). NAMEs are tensors ("x", "x:0") or,
        /// with a manifest, its names and signature aliases, whose dtypes and shapes are then checked.
        /// Returns the lines to print: one per output, then "TensorFlow VERSION".</summary>
        public static string[] Run(string modelPath, string manifestPath, string[] inputNames, string[] inputFiles,
                                   string[] outputNames, string[] outputFiles)
        {
            var manifest = manifestPath != null ? Manifest.Load(manifestPath) : null;
            var model = File.ReadAllBytes(modelPath);
            var lines = new List<string>();
            var fed = new List<TFTensor>();
            using (var graph = new TFGraph())
            {
                try { graph.Import(model); }
                catch (TFException e) when (e.Message.Contains("GraphDef"))
                {
                    throw new InvalidDataException(modelPath + " is not a TensorFlow GraphDef (" + e.Message.Trim() + "): " +
                        "tffreeze-cs runs frozen .pb graphs only; an .onnx or .tflite model runs with the Python client " +
                        "(tffreeze run MODEL ...)");
                }
                using (var session = NewSession(graph, manifest))
                {
                    try
                    {
                        var runner = session.GetRunner();
                        for (int i = 0; i < inputNames.Length; i++)
                        {
                            var tensor = Npy.Read(inputFiles[i]);
                            fed.Add(tensor);
                            if (manifest != null) manifest.AddInput(runner, graph, inputNames[i], tensor);
                            else
                            {
                                var input = Output(graph, inputNames[i], true);
                                var takes = Tensors.NumpyName(input.OutputType);
                                if (Tensors.FromNumpyName(takes) != null && input.OutputType != tensor.TensorType)
                                    throw DTypeError(inputNames[i], takes, Tensors.NumpyName(tensor.TensorType));
                                var dims = graph.GetTensorShape(input).ToArray();
                                var got = tensor.Shape;
                                if (dims != null && (dims.Length != got.Length || dims.Where((d, k) => d != -1 && d != got[k]).Any()))
                                    throw ShapeError(inputNames[i], dims, got);
                                runner.AddInput(input, tensor);
                            }
                        }
                        foreach (var name in outputNames)
                            runner.Fetch(manifest != null ? Manifest.Resolve(graph, manifest.Output(name)) : Output(graph, name));
                        if (manifest != null)  // every input without a default is fed (as the other clients check)
                        {
                            var fedNames = new HashSet<string>(inputNames.Select(n => manifest.Input(n).Name));
                            var unfed = manifest.Inputs.FirstOrDefault(t => !t.HasDefault && !fedNames.Contains(t.Name));
                            if (unfed != null) throw NotFedError(unfed.Name);
                        }
                        TFTensor[] results;
                        try { results = runner.Run(); }
                        catch (TFException e)
                        {
                            var unfed = System.Text.RegularExpressions.Regex.Match(e.Message, "You must feed a value for placeholder tensor '([^']+)'");
                            if (!unfed.Success) throw;
                            throw NotFedError(unfed.Groups[1].Value);
                        }
                        for (int i = 0; i < results.Length; i++)
                        {
                            using (var result = results[i])
                            {
                                if (string.IsNullOrEmpty(outputFiles[i]))
                                {
                                    lines.Add(outputNames[i] + " " + Describe(result));
                                    continue;
                                }
                                Npy.Write(outputFiles[i], result);
                                lines.Add(string.Format("{0} -> {1} {2} [{3}]", outputNames[i], outputFiles[i],
                                                        Tensors.NumpyName(result.TensorType), string.Join(", ", result.Shape)));
                            }
                        }
                    }
                    finally
                    {
                        foreach (var t in fed) t.Dispose();
                    }
                }
            }
            lines.Add("TensorFlow " + TFCore.Version);
            return lines.ToArray();
        }

        /// <summary>A session on <paramref name="graph"/>, created with the manifest's session_config when it
        /// has one (the ConfigProto verify found keeps the checkpoint's numbers, e.g. a grappler pass off).</summary>
        public static TFSession NewSession(TFGraph graph, Manifest manifest)
        {
            if (manifest == null || manifest.SessionConfig.Length == 0) return new TFSession(graph);
            using (var options = new TFSessionOptions())
            {
                var pinned = System.Runtime.InteropServices.GCHandle.Alloc(manifest.SessionConfig,
                                                                           System.Runtime.InteropServices.GCHandleType.Pinned);
                try { options.SetConfig(pinned.AddrOfPinnedObject(), manifest.SessionConfig.Length); }
                finally { pinned.Free(); }
                return new TFSession(graph, options);
            }
        }

        /// <summary>An output's dtype, shape and first values, as the Python client prints an output
        /// given without a file: "float32 [2, 3] [0.1, 0.2, ...]" (floats as %.6g, bools True/False).</summary>
        public static string Describe(TFTensor tensor, int limit = 6)
        {
            var flat = Tensors.Flat(tensor);
            var shown = new List<string>();
            for (int i = 0; i < Math.Min(limit, flat.Length); i++)
            {
                var v = flat.GetValue(i);
                if (v is float || v is double)
                {
                    var d = Convert.ToDouble(v);
                    shown.Add(double.IsNaN(d) ? "nan" : double.IsInfinity(d) ? (d > 0 ? "inf" : "-inf")
                              : d.ToString("G6", System.Globalization.CultureInfo.InvariantCulture).Replace("E", "e"));
                }
                else if (v is bool) shown.Add((bool)v ? "True" : "False");
                else shown.Add(Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture));
            }
            return string.Format("{0} [{1}] [{2}{3}]", Tensors.NumpyName(tensor.TensorType), string.Join(", ", tensor.Shape),
                                 string.Join(", ", shown), flat.Length > limit ? ", ..." : "");
        }

        /// <summary>"x" or "x:0" in <paramref name="graph"/>; a KeyNotFoundException naming it when absent.</summary>
        public static TFOutput Output(TFGraph graph, string name, bool fed = false)
        {
            int colon = name.LastIndexOf(':'), index = 0;
            var opName = colon > 0 && int.TryParse(name.Substring(colon + 1), out index) ? name.Substring(0, colon) : name;
            var op = graph[opName];
            if (op == null || index >= op.NumOutputs)
            {
                var ops = graph.GetEnumerator().ToList();
                var close = CloseNames(name, ops.Select(o => o.Name));
                var holders = ops.Where(o => o.OpType == "Placeholder").Select(o => o.Name).ToList();
                throw new KeyNotFoundException("tensor '" + name + "' is not in the graph" +
                    (close.Count > 0 ? "; did you mean " + string.Join(", ", close.Select(n => "'" + n + "'")) + "?"
                     : fed ? "; its placeholders: " + (holders.Count > 0 ? string.Join(", ", holders) : "none") : ""));
            }
            return op[index];
        }

        /// <summary>The error for an input the graph needs and no --input feeds (runner.py's not_fed).</summary>
        public static ArgumentException NotFedError(string name)
        {
            var tensor = name.IndexOf(':') < 0 ? name + ":0" : name;
            return new ArgumentException("input " + tensor + " is not fed: give --input " +
                                         tensor.Substring(0, tensor.LastIndexOf(':')) + "=FILE.npy");
        }

        /// <summary>The error for an .npy whose shape the input does not take (-1: any size).</summary>
        public static ArgumentException ShapeError(string label, long[] want, long[] got)
        {
            return new ArgumentException("input " + label + " takes shape " + ManifestTensor.ShapeText(want) +
                                         " (-1: any size) but the .npy holds " + ManifestTensor.ShapeText(got));
        }

        /// <summary>The error for an .npy whose dtype is not the input's (no runner casts: a cast can lose values).</summary>
        public static ArgumentException DTypeError(string label, string want, string got)
        {
            return new ArgumentException("input " + label + " takes " + want + " but the .npy holds " + got +
                                         ": save it as " + want + " (numpy: a.astype('" + want + "'))");
        }

        /// <summary>The names a misspelt tensor or node name most likely meant: within an edit distance of
        /// a third of its length (at least 1), or with the same last path component; nearest first (the
        /// Python and C++ runners use the same rule).</summary>
        public static List<string> CloseNames(string wanted, IEnumerable<string> names, int shown = 3)
        {
            int colon = wanted.LastIndexOf(':'), ignored;
            var want = colon > 0 && colon + 1 < wanted.Length && int.TryParse(wanted.Substring(colon + 1), out ignored) &&
                       wanted.Substring(colon + 1).All(char.IsDigit) ? wanted.Substring(0, colon) : wanted;
            Func<string, string> last = s => s.Substring(s.LastIndexOf('/') + 1);
            int limit = Math.Max(1, want.Length / 3);
            var scored = new List<Tuple<int, string>>();
            foreach (var n in names)
            {
                int d = Distance(want, n);
                if (d <= limit || last(n) == last(want)) scored.Add(Tuple.Create(d, n));
            }
            return scored.OrderBy(t => t.Item1).ThenBy(t => t.Item2, StringComparer.Ordinal).Take(shown)
                         .Select(t => t.Item2).ToList();
        }

        static int Distance(string a, string b)
        {
            var row = new int[b.Length + 1];
            for (int j = 0; j <= b.Length; j++) row[j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                int prev = row[0];
                row[0] = i;
                for (int j = 1; j <= b.Length; j++)
                {
                    int here = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), prev + (a[i - 1] != b[j - 1] ? 1 : 0));
                    prev = row[j];
                    row[j] = here;
                }
            }
            return row[b.Length];
        }
    }
}
