// Example: run a frozen graph from C#, binding inputs and outputs by the names the
// tffreeze manifest resolved (signature aliases when there are any), the way a .NET
// team receives a model: model.pb + model.json.
//
//   mono BindByManifest.exe model.pb model.json
//
// It feeds each input with ones of the manifest's shape (unknown dimensions = 1) and
// prints every output's shape and first values. Written against TensorFlowSharp's API
// shape: swap `using TfFreeze.TensorFlow;` for `using TensorFlow;` to build it against the
// TensorFlowSharp NuGet package.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TfFreeze;
using TfFreeze.TensorFlow;

public static class BindByManifest
{
    static Array Ones(string dtype, long[] shape)
    {
        int count = (int)shape.Aggregate(1L, (a, b) => a * b);
        switch (dtype)
        {
            case "float32": return Enumerable.Repeat(1f, count).ToArray();
            case "float64": return Enumerable.Repeat(1.0, count).ToArray();
            case "int32": return Enumerable.Repeat(1, count).ToArray();
            case "int64": return Enumerable.Repeat(1L, count).ToArray();
            case "bool": return Enumerable.Repeat(false, count).ToArray();
            default: throw new NotSupportedException("dtype " + dtype);
        }
    }

    public static int Main(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: BindByManifest MODEL.pb MANIFEST.json"); return 2; }
        var manifest = (Dictionary<string, object>)Json.Parse(File.ReadAllText(args[1]));
        using (var graph = new TFGraph())
        {
            graph.Import(File.ReadAllBytes(args[0]));
            using (var session = new TFSession(graph))
            {
                var runner = session.GetRunner();
                foreach (Dictionary<string, object> input in (List<object>)manifest["inputs"])
                {
                    var name = (string)input["name"];
                    var dims = input["shape"] == null ? new long[0]
                        : ((List<object>)input["shape"]).Select(d => (long)(double)d == -1 ? 1L : (long)(double)d).ToArray();
                    runner.AddInput(graph.Output(name), new TFTensor(dims, Ones((string)input["dtype"], dims)));
                }
                var names = ((List<object>)manifest["outputs"]).Select(o => (string)((Dictionary<string, object>)o)["name"]).ToList();
                foreach (var name in names) runner.Fetch(graph.Output(name));
                var results = runner.Run();
                for (int i = 0; i < names.Count; i++)
                {
                    var flat = results[i].GetFlatValue();
                    var first = string.Join(", ", flat.Cast<object>().Take(4));
                    Console.WriteLine("{0}: shape [{1}] first [{2}]", names[i], string.Join(", ", results[i].Shape), first);
                    results[i].Dispose();
                }
            }
        }
        return 0;
    }
}
