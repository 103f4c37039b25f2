// A test-only runner compiled against the real TensorFlowSharp (the library its
// NuGet users have): import a frozen graph, feed raw little-endian inputs, fetch
// outputs as raw bytes. Uses only TensorFlowSharp's own API.
//
//   mono RunFrozen.exe MODEL.pb 'in|NAME:0|float32|2,3|x.bin' ... 'out|NAME:0|y.bin' ...
//
// Prints one line per output: NAME|DTYPE|DIMS. Exit 1 with TensorFlow's message on failure.
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using TensorFlow;

static class RunFrozen
{
    static TFOutput Output(TFGraph graph, string name)
    {
        var parts = name.Split(':');
        var op = graph[parts[0]];
        if (op == null)
            throw new ArgumentException("no node " + parts[0] + " in the graph");
        return op[parts.Length > 1 ? int.Parse(parts[1]) : 0];
    }

    static TFTensor Tensor(string dtype, long[] dims, byte[] bytes)
    {
        var shape = new TFShape(dims);
        switch (dtype) {
        case "float32": { var v = new float[bytes.Length / 4]; Buffer.BlockCopy(bytes, 0, v, 0, bytes.Length); return TFTensor.FromBuffer(shape, v, 0, v.Length); }
        case "int32": { var v = new int[bytes.Length / 4]; Buffer.BlockCopy(bytes, 0, v, 0, bytes.Length); return TFTensor.FromBuffer(shape, v, 0, v.Length); }
        case "int64": { var v = new long[bytes.Length / 8]; Buffer.BlockCopy(bytes, 0, v, 0, bytes.Length); return TFTensor.FromBuffer(shape, v, 0, v.Length); }
        default: throw new ArgumentException("dtype " + dtype + " is not handled by this runner");
        }
    }

    static int Main(string[] args)
    {
        try {
            var graph = new TFGraph();
            graph.Import(File.ReadAllBytes(args[0]));
            using (var session = new TFSession(graph)) {
                var runner = session.GetRunner();
                var outputs = new List<string[]>();
                for (int i = 1; i < args.Length; i++) {
                    var f = args[i].Split('|');
                    if (f[0] == "in") {
                        var dims = f[3].Length == 0 ? new long[0] : Array.ConvertAll(f[3].Split(','), long.Parse);
                        runner.AddInput(Output(graph, f[1]), Tensor(f[2], dims, File.ReadAllBytes(f[4])));
                    } else {
                        outputs.Add(f);
                        runner.Fetch(Output(graph, f[1]));
                    }
                }
                var results = runner.Run();
                for (int i = 0; i < results.Length; i++) {
                    var r = results[i];
                    var bytes = new byte[(long)(ulong)r.TensorByteSize];
                    Marshal.Copy(r.Data, bytes, 0, bytes.Length);
                    File.WriteAllBytes(outputs[i][2], bytes);
                    Console.WriteLine(outputs[i][1] + "|" + r.TensorType + "|" + string.Join(",", r.Shape));
                }
            }
            Console.WriteLine("TensorFlow " + TFCore.Version);
            return 0;
        } catch (Exception e) {
            Console.Error.WriteLine(e.GetType().Name + ": " + e.Message);
            return 1;
        }
    }
}
