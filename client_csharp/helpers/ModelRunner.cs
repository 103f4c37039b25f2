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
                graph.Import(model);
                using (var session = new TFSession(graph))
                {
                    try
                    {
                        var runner = session.GetRunner();
                        for (int i = 0; i < inputNames.Length; i++)
                        {
                            var tensor = Npy.Read(inputFiles[i]);
                            fed.Add(tensor);
                            if (manifest != null) manifest.AddInput(runner, graph, inputNames[i], tensor);
                            else runner.AddInput(Output(graph, inputNames[i]), tensor);
                        }
                        foreach (var name in outputNames)
                            runner.Fetch(manifest != null ? Manifest.Resolve(graph, manifest.Output(name)) : Output(graph, name));
                        var results = runner.Run();
                        for (int i = 0; i < results.Length; i++)
                        {
                            using (var result = results[i])
                            {
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

        /// <summary>"x" or "x:0" in <paramref name="graph"/>; a KeyNotFoundException naming it when absent.</summary>
        public static TFOutput Output(TFGraph graph, string name)
        {
            int colon = name.LastIndexOf(':'), index = 0;
            var opName = colon > 0 && int.TryParse(name.Substring(colon + 1), out index) ? name.Substring(0, colon) : name;
            var op = graph[opName];
            if (op == null || index >= op.NumOutputs)
                throw new KeyNotFoundException("tensor '" + name + "' is not in the graph");
            return op[index];
        }
    }
}
