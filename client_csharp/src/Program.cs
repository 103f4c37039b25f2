// tffreeze-cs: freeze over gRPC-Web and run frozen graphs on the TF C API, from C#.
// Exit codes as the Python CLI: 0 ok, 1 freeze/server/runtime error (one line on
// stderr naming the problem and the fix), 2 usage error.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using TfFreeze.TensorFlow;
using TfFreeze.V1;

namespace TfFreeze
{
    public class UsageException : Exception { public UsageException(string m) : base(m) { } }

    public static class Program
    {
        const string Usage = @"usage: tffreeze-cs COMMAND ...

Freeze TensorFlow checkpoints with a tffreeze server (over gRPC-Web) and run frozen
graphs on the TensorFlow C API.

commands:
  freeze SOURCE --server http://HOST:WEB_PORT -o OUT.pb [--manifest M.json]
         [--outputs a,b] [--inputs a,b] [--step N] [--target tensorflowsharp] [--timeout SECONDS]
         [--tls] [--ca CA.pem] [--token TOKEN]
      Upload the checkpoint (only files the server lacks, in 1 MiB chunks), freeze it and
      write OUT.pb (and the manifest). SOURCE: a Saver directory, a checkpoint prefix or a
      SavedModel directory; a folder holding none, with exactly one such folder up to 3
      levels below it, uses that one. --server defaults to $TFFREEZE_WEB_SERVER. --target
      tensorflowsharp makes a graph that loads in libtensorflow 1.15 (TensorFlowSharp's).
      --tls (or an https:// server, or $TFFREEZE_TLS=1) speaks TLS; --ca (default $TFFREEZE_CA)
      checks the server against that CA and implies --tls. --token (default $TFFREEZE_TOKEN)
      is sent as Authorization: Bearer TOKEN to a server started with --auth-token-file.
  run MODEL.pb [--manifest M.json] --input NAME=FILE.npy ... --output NAME=FILE.npy ...
      [--runtime tf115] [--libtensorflow PATH]
      Run a frozen graph. NAME is a tensor ('x' or 'x:0') or, with --manifest, a signature
      alias; the manifest's dtypes are checked. --runtime tf115 uses TF 1.15's C API (make
      tf115). The library: --libtensorflow, else $TFFREEZE_LIBTENSORFLOW, else the
      TensorFlow in the project's .venv.

examples:
  tffreeze serve --web-port 8080 &
  tffreeze-cs freeze runs/mnist --server http://127.0.0.1:8080 -o mnist.pb --manifest mnist.json --target tensorflowsharp
  tffreeze-cs run mnist.pb --manifest mnist.json --input x=batch.npy --output probs=probs.npy --runtime tf115

exit codes: 0 ok, 1 error (message on stderr), 2 usage error";

        public static int Main(string[] args)
        {
            if (args.Length == 0 || args[0] == "-h" || args[0] == "--help") { Console.WriteLine(Usage); return args.Length == 0 ? 2 : 0; }
            var command = args[0];
            try
            {
                var opts = Parse(args.Skip(1).ToArray());
                switch (command)
                {
                    case "freeze": return Freeze(opts);
                    case "run": return Run(opts);
                    case "wire-roundtrip": return WireRoundTrip(opts, false);
                    case "to-json": return WireRoundTrip(opts, true);
                    default: throw new UsageException("unknown command '" + command + "' (freeze, run)");
                }
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine("tffreeze-cs " + command + ": " + e.Message + "\n(see tffreeze-cs --help)");
                return 2;
            }
            catch (RpcException e) { return Fail(command, Message(e), e.Status.ToString()); }
            catch (TFException e) { return Fail(command, e.Message, e.Code.ToString()); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is InvalidDataException || e is FormatException)
            {
                return Fail(command, e.Message, null);
            }
        }

        // Request fields named in server errors -> this CLI's spelling of them.
        static readonly Dictionary<string, string> flags = new Dictionary<string, string> {
            { "options.outputs", "--outputs" }, { "options.inputs", "--inputs" }, { "options.step", "--step" },
            { "options.target", "--target" }, { "options.checkpoint_prefix", "SOURCE" } };

        /// <summary>The server's message, naming the request field as this CLI spells it.</summary>
        static string Message(RpcException e)
        {
            string field, flag;
            if (!e.Metadata.TryGetValue("field", out field) || !flags.TryGetValue(field, out flag)) return e.Message;
            var msg = e.Message;
            foreach (var prefix in new[] { field + ": ", field.Substring("options.".Length) + ": " })
                if (msg.StartsWith(prefix)) msg = msg.Substring(prefix.Length);
            return flag + ": " + msg;
        }

        static int Fail(string command, string message, string code)
        {
            var line = string.Join(" ", message.Split(new[] { '\n', '\r' }, StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim()));
            Console.Error.WriteLine("tffreeze-cs " + command + ": " + line + (code != null ? " [" + code + "]" : ""));
            return 1;
        }

        class Options
        {
            public List<string> Positional = new List<string>();
            public Dictionary<string, List<string>> Values = new Dictionary<string, List<string>>();
            public string One(string key, string fallback = null) { List<string> v; return Values.TryGetValue(key, out v) ? v.Last() : fallback; }
            public List<string> All(string key) { List<string> v; return Values.TryGetValue(key, out v) ? v : new List<string>(); }
        }

        static readonly HashSet<string> valued = new HashSet<string> { "--server", "-o", "--output", "--manifest", "--outputs", "--inputs",
            "--step", "--target", "--timeout", "--input", "--runtime", "--libtensorflow", "--ca", "--token" };
        static readonly HashSet<string> switches = new HashSet<string> { "--tls" };

        static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                var a = args[i];
                if (a.StartsWith("-") && a.Length > 1)
                {
                    string key = a, value = null;
                    int eq = a.IndexOf('=');
                    if (a.StartsWith("--") && eq > 0) { key = a.Substring(0, eq); value = a.Substring(eq + 1); }
                    if (switches.Contains(key) && value == null) value = "true";
                    else if (!valued.Contains(key)) throw new UsageException("unknown option " + key);
                    if (value == null)
                    {
                        if (i + 1 >= args.Length) throw new UsageException(key + " needs a value");
                        value = args[++i];
                    }
                    if (!o.Values.ContainsKey(key)) o.Values[key] = new List<string>();
                    o.Values[key].Add(value);
                }
                else o.Positional.Add(a);
            }
            return o;
        }

        static List<string> Names(string csv) { return (csv ?? "").Split(',').Select(s => s.Trim()).Where(s => s != "").ToList(); }

        static int Freeze(Options o)
        {
            if (o.Positional.Count != 1) throw new UsageException("freeze takes one SOURCE (a checkpoint directory or prefix)");
            var output = o.One("-o") ?? o.One("--output");
            if (output == null) throw new UsageException("freeze needs -o OUT.pb");
            var server = o.One("--server", Environment.GetEnvironmentVariable("TFFREEZE_WEB_SERVER"));
            if (string.IsNullOrEmpty(server)) throw new UsageException("pass --server http://HOST:WEB_PORT (a server started with --web-port)");
            var target = o.One("--target", "");
            if (target != "" && target != "tensorflowsharp") throw new UsageException("--target must be tensorflowsharp");
            var options = new FreezeOptions { Target = target == "" ? Target.TARGET_UNSPECIFIED : Target.TARGET_TENSORFLOWSHARP };
            options.Outputs.AddRange(Names(o.One("--outputs")));
            options.Inputs.AddRange(Names(o.One("--inputs")));
            if (o.One("--step") != null)
            {
                long step;
                if (!long.TryParse(o.One("--step"), out step)) throw new UsageException("--step needs an integer");
                options.Step = step;
            }
            var client = new FreezeClient(server);
            var ca = o.One("--ca", Environment.GetEnvironmentVariable("TFFREEZE_CA"));
            var tlsEnv = Environment.GetEnvironmentVariable("TFFREEZE_TLS");
            if (o.One("--tls") != null || !string.IsNullOrEmpty(ca) || (!string.IsNullOrEmpty(tlsEnv) && tlsEnv != "0"))
                client.UseTls(ca);
            client.Token = o.One("--token", Environment.GetEnvironmentVariable("TFFREEZE_TOKEN"));
            double timeout;
            if (o.One("--timeout") != null && double.TryParse(o.One("--timeout"), out timeout)) client.TimeoutMs = (int)(timeout * 1000);
            if (!Console.IsErrorRedirected) client.Progress = m => Console.Error.Write("\r" + m.PadRight(78).Substring(0, 78));
            var outcome = client.Freeze(o.Positional[0], output, options);
            if (!Console.IsErrorRedirected) Console.Error.Write("\r" + new string(' ', 78) + "\r");
            if (o.One("--manifest") != null)
            {
                var tmp = o.One("--manifest") + ".part";
                File.WriteAllBytes(tmp, System.Text.Encoding.ASCII.GetBytes(outcome.ManifestJson));
                if (File.Exists(o.One("--manifest"))) File.Delete(o.One("--manifest"));
                File.Move(tmp, o.One("--manifest"));
            }
            foreach (var w in outcome.Result.Warnings) Console.Error.WriteLine("tffreeze-cs: warning: " + w);
            Console.WriteLine("wrote {0} ({1} bytes, sha256 {2}); uploaded {3} file(s), {4} bytes", output,
                              outcome.Result.SizeBytes, outcome.Result.Sha256.Substring(0, 12), outcome.UploadedFiles, outcome.UploadedBytes);
            foreach (var t in outcome.Result.Inputs) Console.WriteLine("  input   {0} {1}", t.Name, t.Dtype);
            foreach (var t in outcome.Result.Outputs) Console.WriteLine("  output  {0} {1}", t.Name, t.Dtype);
            return 0;
        }

        /// <summary>name or alias -> (tensor name, expected dtype or null), using the manifest when given.</summary>
        static Tuple<string, string> Resolve(string name, Dictionary<string, object> manifest, string kind)
        {
            if (manifest == null) return Tuple.Create(name, (string)null);
            var sig = manifest.ContainsKey("signature") ? manifest["signature"] as Dictionary<string, object> : null;
            if (sig != null)
            {
                var part = sig[kind] as Dictionary<string, object>;
                if (part != null && part.ContainsKey(name))
                {
                    var t = (Dictionary<string, object>)part[name];
                    return Tuple.Create((string)t["name"], (string)t["dtype"]);
                }
            }
            var full = name.Contains(":") ? name : name + ":0";
            foreach (Dictionary<string, object> t in (List<object>)manifest[kind])
                if ((string)t["name"] == full) return Tuple.Create(full, (string)t["dtype"]);
            var known = ((List<object>)manifest[kind]).Select(t => (string)((Dictionary<string, object>)t)["name"]);
            throw new TFException(TFCode.NotFound, "'" + name + "' is not among the manifest's " + kind + " (" + string.Join(", ", known) + ")");
        }

        static int Run(Options o)
        {
            if (o.Positional.Count != 1) throw new UsageException("run takes one MODEL.pb");
            var outputs = o.All("--output");
            if (outputs.Count == 0) throw new UsageException("run needs at least one --output NAME=FILE.npy");
            Dictionary<string, object> manifest = null;
            if (o.One("--manifest") != null) manifest = (Dictionary<string, object>)Json.Parse(File.ReadAllText(o.One("--manifest")));
            var runtime = o.One("--runtime", "");
            if (runtime != "" && runtime != "tf115" && runtime != "default") throw new UsageException("--runtime must be tf115 or default");
            var lib = o.One("--libtensorflow") ?? Environment.GetEnvironmentVariable("TFFREEZE_LIBTENSORFLOW")
                      ?? Environment.GetEnvironmentVariable(runtime == "tf115" ? "TFFREEZE_TF115_LIB" : "TFFREEZE_DEFAULT_LIB");
            TFNative.Load(lib);
            var model = File.ReadAllBytes(o.Positional[0]);
            using (var graph = new TFGraph())
            {
                graph.Import(model);
                using (var session = new TFSession(graph))
                {
                    var runner = session.GetRunner();
                    var inputs = new List<TFTensor>();
                    foreach (var pair in o.All("--input"))
                    {
                        var kv = SplitPair(pair, "--input");
                        var target = Resolve(kv.Item1, manifest, "inputs");
                        var tensor = Npy.Read(kv.Item2);
                        if (target.Item2 != null && Npy.NumpyName(tensor.TensorType) != target.Item2)
                            throw new TFException(TFCode.InvalidArgument, string.Format("input {0} is {1} in the manifest but {2} holds {3}",
                                target.Item1, target.Item2, kv.Item2, Npy.NumpyName(tensor.TensorType)));
                        runner.AddInput(graph.Output(target.Item1), tensor);
                        inputs.Add(tensor);
                    }
                    var files = new List<string>();
                    foreach (var pair in outputs)
                    {
                        var kv = SplitPair(pair, "--output");
                        runner.Fetch(graph.Output(Resolve(kv.Item1, manifest, "outputs").Item1));
                        files.Add(kv.Item2);
                    }
                    var results = runner.Run();
                    for (int i = 0; i < results.Length; i++)
                    {
                        Npy.Write(files[i], results[i]);
                        Console.WriteLine("{0} -> {1} {2} [{3}]", outputs[i].Split('=')[0], files[i], Npy.NumpyName(results[i].TensorType),
                                          string.Join(", ", results[i].Shape));
                        results[i].Dispose();
                    }
                    foreach (var t in inputs) t.Dispose();
                }
            }
            Console.Error.WriteLine("(TensorFlow " + TFNative.Version + ")");
            return 0;
        }

        static Tuple<string, string> SplitPair(string pair, string flag)
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0 || eq == pair.Length - 1) throw new UsageException(flag + " '" + pair + "': write NAME=FILE.npy");
            return Tuple.Create(pair.Substring(0, eq), pair.Substring(eq + 1));
        }

        /// <summary>Test hooks: decode a message of TYPE from IN and write it to OUT encoded again
        /// (wire-roundtrip) or as manifest JSON (to-json), so tests can compare this code with
        /// Python's protobuf and tffreeze_api.manifest.</summary>
        static int WireRoundTrip(Options o, bool json)
        {
            if (o.Positional.Count != 3) throw new UsageException("wire-roundtrip|to-json TYPE IN.bin OUT");
            var type = typeof(Digest).Assembly.GetType("TfFreeze.V1." + o.Positional[0]);
            if (type == null || !typeof(TfFreeze.Protobuf.ProtoMessage).IsAssignableFrom(type))
                throw new UsageException("unknown message type " + o.Positional[0]);
            var msg = (TfFreeze.Protobuf.ProtoMessage)Activator.CreateInstance(type);
            msg.MergeFrom(new TfFreeze.Protobuf.ProtoReader(File.ReadAllBytes(o.Positional[1])));
            File.WriteAllBytes(o.Positional[2], json ? System.Text.Encoding.ASCII.GetBytes(msg.ToJsonText()) : msg.ToByteArray());
            return 0;
        }
    }
}
