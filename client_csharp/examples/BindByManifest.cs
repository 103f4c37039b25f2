// Example: run a frozen graph from C#, binding inputs and outputs by the names the
// tffreeze manifest resolved (signature aliases where there are any), the way a .NET
// team receives a model: model.pb + model.json.
//
//   mono BindByManifest.exe model.pb model.json
//
// It feeds each input with ones of the manifest's shape (unknown dimensions = 1),
// checked against the manifest by TfFreeze.Manifest, and prints every output's shape and
// first values. The same source builds against the TensorFlowSharp package
// (-define:TENSORFLOWSHARP -r:TensorFlowSharp.dll -r:TfFreeze.TensorFlowSharp.dll) and
// against tffreeze's built-in binding (-r:TfFreeze.TensorFlow.dll -r:TfFreeze.dll).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TfFreeze;
#if TENSORFLOWSHARP
using TensorFlow;
#else
using TfFreeze.TensorFlow;
#endif

public static class BindByManifest
{
    static Array Ones(Type type, long count)
    {
        var ones = Array.CreateInstance(type, count);
        var one = type == typeof(bool) ? (object)true : Convert.ChangeType(1, type);
        for (long i = 0; i < count; i++) ones.SetValue(one, i);
        return ones;
    }

    public static int Main(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: BindByManifest MODEL.pb MANIFEST.json"); return 2; }
        try { return Run(args[0], args[1]); }
        catch (TFException e) { Console.Error.WriteLine("BindByManifest: " + e.Message); return 1; }
    }

    static int Run(string model, string manifestPath)
    {
        var manifest = Manifest.Load(manifestPath);
        using (var graph = new TFGraph())
        {
            graph.Import(File.ReadAllBytes(model));
            using (var session = new TFSession(graph))
            {
                var feeds = new Dictionary<string, TFTensor>();
                foreach (var input in manifest.Inputs.Where(i => !i.HasDefault))
                {
                    var dtype = input.DataType ?? TFDataType.Unknown;
                    var shape = (input.Shape ?? new long[0]).Select(d => d == -1 ? 1L : d).ToArray();
                    feeds[input.Alias ?? input.Name] = Tensors.Create(dtype, shape, Ones(Tensors.ElementType(dtype), Tensors.Count(shape)));
                }
                var results = manifest.Run(session, feeds);
                foreach (var output in manifest.Outputs)
                {
                    var value = results[output.Name];
                    var first = string.Join(", ", Tensors.Flat(value).Cast<object>().Take(4));
                    Console.WriteLine("{0}: shape [{1}] first [{2}]", output.Name, string.Join(", ", value.Shape), first);
                    value.Dispose();
                }
                foreach (var t in feeds.Values) t.Dispose();
            }
        }
        return 0;
    }
}
