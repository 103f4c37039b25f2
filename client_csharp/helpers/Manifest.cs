// A tffreeze manifest (model.json beside model.pb) bound to a loaded graph: resolve the
// names it lists ("x", "x:0") or its signature's aliases to TFOutputs, check what the
// caller feeds against its dtypes and shapes (errors name the input), feed inputs and
// fetch outputs in the manifest's order. Written only against the API TensorFlowSharp
// and tffreeze's binding share: the same source builds against either library
// (-define:TENSORFLOWSHARP for TensorFlowSharp).
//
//   var manifest = Manifest.Load("model.json");
//   using (var graph = new TFGraph()) {
//       graph.Import(File.ReadAllBytes("model.pb"));
//       using (var session = new TFSession(graph)) {
//           var outputs = manifest.Run(session, new Dictionary<string, TFTensor> { { "x", input } });
//           var probs = (float[,])outputs["probs:0"].GetValue();
//       }
//   }
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
    /// <summary>One input or output the manifest lists.</summary>
    public sealed class ManifestTensor
    {
        /// <summary>The tensor in the frozen graph, always with its index: "x:0".</summary>
        public string Name { get; private set; }
        /// <summary>The signature's alias for it ("images"), or null.</summary>
        public string Alias { get; private set; }
        /// <summary>NumPy's spelling: "float32", "int64", "bool"...</summary>
        public string DType { get; private set; }
        /// <summary>Dimensions, -1 where unknown; null when even the rank is unknown.</summary>
        public long[] Shape { get; private set; }
        /// <summary>True for an input with a default value (it may be left unfed).</summary>
        public bool HasDefault { get; private set; }

        public string OperationName { get { return Name.Substring(0, Name.LastIndexOf(':')); } }
        public int Index { get { return int.Parse(Name.Substring(Name.LastIndexOf(':') + 1)); } }

        /// <summary>The TFDataType of DType; null for a dtype the helpers do not handle (e.g. "string").</summary>
        public TFDataType? DataType { get { return Tensors.FromNumpyName(DType); } }

        /// <summary>"x:0 (alias images) float32 [-1, 4]"</summary>
        public override string ToString()
        {
            return Name + (Alias != null ? " (alias " + Alias + ")" : "") + " " + DType + " " + ShapeText(Shape);
        }

        internal static string ShapeText(long[] shape) { return shape == null ? "[unknown rank]" : "[" + string.Join(", ", shape) + "]"; }

        internal static ManifestTensor From(Dictionary<string, object> t, string alias)
        {
            var name = (string)t["name"];
            if (name.IndexOf(':') < 0) name += ":0";
            var shape = t.ContainsKey("shape") && t["shape"] != null
                ? ((List<object>)t["shape"]).Select(d => (long)(double)d).ToArray() : null;
            object hasDefault;
            return new ManifestTensor {
                Name = name, Alias = alias, DType = (string)t["dtype"], Shape = shape,
                HasDefault = t.TryGetValue("has_default", out hasDefault) && hasDefault is bool && (bool)hasDefault };
        }
    }

    public sealed class Manifest
    {
        /// <summary>The inputs and outputs, in the manifest's order, with their signature aliases.</summary>
        public IList<ManifestTensor> Inputs { get; private set; }
        public IList<ManifestTensor> Outputs { get; private set; }
        /// <summary>The serialized ConfigProto to create the session with (session_config: the setting
        /// verify found keeps the checkpoint's numbers); empty when the default session does.</summary>
        public byte[] SessionConfig { get; private set; }

        /// <summary>Read a manifest file (tffreeze freeze --manifest M.json).</summary>
        public static Manifest Load(string path)
        {
            try { return Parse(File.ReadAllText(path)); }
            catch (FormatException e) { throw new FormatException(path + ": " + e.Message, e); }
        }

        public static Manifest Parse(string json)
        {
            var root = Json.Parse(json) as Dictionary<string, object>;
            if (root == null || !(root.ContainsKey("inputs") && root["inputs"] is List<object>)
                || !(root.ContainsKey("outputs") && root["outputs"] is List<object>))
                throw new FormatException("not a tffreeze manifest (no \"inputs\" and \"outputs\" lists)");
            var aliases = new Dictionary<string, string>[] { new Dictionary<string, string>(), new Dictionary<string, string>() };
            var sig = root.ContainsKey("signature") ? root["signature"] as Dictionary<string, object> : null;
            var kinds = new[] { "inputs", "outputs" };
            for (int k = 0; k < 2; k++)
            {
                var part = sig != null && sig.ContainsKey(kinds[k]) ? sig[kinds[k]] as Dictionary<string, object> : null;
                if (part == null) continue;
                foreach (var kv in part)
                {
                    var name = (string)((Dictionary<string, object>)kv.Value)["name"];
                    aliases[k][name.IndexOf(':') < 0 ? name + ":0" : name] = kv.Key;
                }
            }
            Func<int, IList<ManifestTensor>> read = k => ((List<object>)root[kinds[k]]).Cast<Dictionary<string, object>>()
                .Select(t => { string a; var m = ManifestTensor.From(t, null); aliases[k].TryGetValue(m.Name, out a);
                               return ManifestTensor.From(t, a); }).ToList().AsReadOnly();
            var config = root.ContainsKey("session_config") ? root["session_config"] as string : null;
            byte[] configBytes;
            try { configBytes = string.IsNullOrEmpty(config) ? new byte[0] : Convert.FromBase64String(config); }
            catch (FormatException) { throw new FormatException("session_config is not base64"); }
            return new Manifest { Inputs = read(0), Outputs = read(1), SessionConfig = configBytes };
        }

        /// <summary>The input called <paramref name="name"/>: a signature alias, "x" or "x:0".</summary>
        public ManifestTensor Input(string name) { return Find(Inputs, name, "inputs"); }
        public ManifestTensor Output(string name) { return Find(Outputs, name, "outputs"); }

        static ManifestTensor Find(IList<ManifestTensor> tensors, string name, string kind)
        {
            if (name == null) throw new ArgumentNullException("name");
            var full = name.IndexOf(':') < 0 ? name + ":0" : name;
            var hit = tensors.FirstOrDefault(t => t.Alias == name) ?? tensors.FirstOrDefault(t => t.Name == full);
            if (hit == null)
                throw new KeyNotFoundException("'" + name + "' is not among the manifest's " + kind + " (" +
                    string.Join(", ", tensors.Select(t => t.Alias != null ? t.Alias + "=" + t.Name : t.Name)) + ")");
            return hit;
        }

        /// <summary>The graph's output for <paramref name="tensor"/>; an ArgumentException when the graph
        /// lacks it (the manifest belongs to another graph).</summary>
        public static TFOutput Resolve(TFGraph graph, ManifestTensor tensor)
        {
            var op = graph[tensor.OperationName];
            if (op == null || tensor.Index >= op.NumOutputs)
                throw new ArgumentException("the graph has no tensor " + tensor.Name + ", which the manifest lists: " +
                                            "is the manifest the one written with this .pb?");
            return op[tensor.Index];
        }

        /// <summary>Refuse a value whose dtype or shape the manifest's input does not accept
        /// (an ArgumentException naming the input, what it expects and what was given).</summary>
        public static void Check(ManifestTensor input, TFTensor value, string label = null)
        {
            if (value == null) throw new ArgumentNullException("value", "no value for input " + input.Name);
            var given = Tensors.NumpyName(value.TensorType);
            var shape = value.Shape;
            label = label ?? input.Alias ?? input.Name;
            if (given != input.DType) throw ModelRunner.DTypeError(label, input.DType, given);
            bool shapeOk = input.Shape == null || (input.Shape.Length == shape.Length &&
                input.Shape.Zip(shape, (want, got) => want == -1 || want == got).All(ok => ok));
            if (!shapeOk) throw ModelRunner.ShapeError(label, input.Shape, shape);
        }

        /// <summary>Check <paramref name="value"/> against the input called <paramref name="name"/> and add it to the runner.</summary>
        public TFSession.Runner AddInput(TFSession.Runner runner, TFGraph graph, string name, TFTensor value)
        {
            var input = Input(name);
            Check(input, value, name);
            return runner.AddInput(Resolve(graph, input), value);
        }

        /// <summary>Fetch the outputs called <paramref name="names"/> (all of them, in the manifest's
        /// order, when none are given); the runner's results come back in that order.</summary>
        public TFSession.Runner Fetch(TFSession.Runner runner, TFGraph graph, params string[] names)
        {
            var chosen = names == null || names.Length == 0 ? Outputs : names.Select(Output).ToList();
            foreach (var output in chosen) runner.Fetch(Resolve(graph, output));
            return runner;
        }

        /// <summary>Run <paramref name="session"/>: feed <paramref name="inputs"/> (by alias or name; every
        /// input without a default must be given), fetch <paramref name="outputs"/> (all when none are
        /// given) and return them by tensor name ("y:0") and by alias where the signature has one.
        /// The caller disposes the returned tensors.</summary>
        public IDictionary<string, TFTensor> Run(TFSession session, IDictionary<string, TFTensor> inputs, params string[] outputs)
        {
            var runner = session.GetRunner();
            var fed = new HashSet<string>();
            foreach (var kv in inputs)
            {
                AddInput(runner, session.Graph, kv.Key, kv.Value);
                if (!fed.Add(Input(kv.Key).Name)) throw new ArgumentException("input " + kv.Key + " is given twice");
            }
            var missing = Inputs.Where(t => !t.HasDefault && !fed.Contains(t.Name)).ToList();
            if (missing.Count > 0)
                throw new ArgumentException("no value for input(s) " + string.Join(", ", missing.Select(t => t.ToString())));
            var chosen = outputs == null || outputs.Length == 0 ? Outputs : outputs.Select(Output).ToList();
            Fetch(runner, session.Graph, chosen.Select(t => t.Name).ToArray());
            var results = runner.Run();
            var byName = new Dictionary<string, TFTensor>();
            for (int i = 0; i < results.Length; i++)
            {
                byName[chosen[i].Name] = results[i];
                if (chosen[i].Alias != null) byName[chosen[i].Alias] = results[i];
            }
            return byName;
        }
    }
}
