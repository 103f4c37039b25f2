// tffreeze-cs: freeze over gRPC-Web and run frozen graphs on the TF C API, from C#.
// Exit codes as the Python CLI: 0 ok, 1 freeze/server/runtime error (one line on
// stderr naming the problem and the fix), 2 usage error.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using TfFreeze.V1;

namespace TfFreeze
{
    public class UsageException : Exception { public UsageException(string m) : base(m) { } }

    /// <summary>The reader of stdout or stderr went away (`tffreeze-cs --help | head -1`): the
    /// process ends quietly, as a C program killed by SIGPIPE does (exit 141).</summary>
    public sealed class PipeClosedException : Exception { public PipeClosedException() : base("broken pipe") { } }

    /// <summary>The console's writer, its write faults (a closed pipe) a PipeClosedException once,
    /// and any later write (the error path's, the exit's flush) silently dropped.</summary>
    public sealed class QuietConsoleWriter : TextWriter
    {
        readonly TextWriter inner;
        bool closed;
        public QuietConsoleWriter(TextWriter inner) : base(inner.FormatProvider) { this.inner = inner; CoreNewLine = inner.NewLine.ToCharArray(); }
        public override System.Text.Encoding Encoding { get { return inner.Encoding; } }

        void Guard(Action write)
        {
            if (closed) return;
            try { write(); }
            catch (IOException) { closed = true; throw new PipeClosedException(); }
        }

        public override void Write(char value) { Guard(() => inner.Write(value)); }
        public override void Write(string value) { Guard(() => inner.Write(value)); }
        public override void Write(char[] buffer, int index, int count) { Guard(() => inner.Write(buffer, index, count)); }
        public override void WriteLine(string value) { Guard(() => inner.WriteLine(value)); }
        public override void WriteLine() { Guard(() => inner.WriteLine()); }
        public override void Flush() { Guard(inner.Flush); }
    }

    /// <summary>One line of progress on a terminal, as tffreeze-cpp draws it: the upload's percent,
    /// bytes, rate and time left, then the freeze's percent and stage by name; redrawn at most ten
    /// times a second.</summary>
    public sealed class ProgressLine
    {
        string kind;
        DateTime started, drawn;

        public void Show(string what, double done, double total, string message)
        {
            var now = DateTime.UtcNow;
            if (what != kind) { kind = what; started = now; drawn = DateTime.MinValue; }
            else if ((now - drawn).TotalSeconds < 0.1 && done < total) return;
            drawn = now;
            double frac = total > 0 ? Math.Min(1.0, done / total) : 1.0;
            string text;
            if (what == "upload")
            {
                double seconds = Math.Max((now - started).TotalSeconds, 1e-3), rate = done / seconds;
                double left = rate > 0 ? (total - done) / rate : 0;
                text = string.Format(System.Globalization.CultureInfo.InvariantCulture,
                    "upload {0,3:0}% {1:0.0}/{2:0.0} MiB", frac * 100, done / 1048576.0, total / 1048576.0);
                if (done > 0 && (seconds >= 1.0 || done >= total))  // (a rate from the first chunk alone says nothing)
                    text += string.Format(System.Globalization.CultureInfo.InvariantCulture, ", {0:0.0} MiB/s, {1} left",
                        rate / 1048576.0, left < 90 ? ((int)left) + " s" : ((int)Math.Round(left / 60)) + " min");
            }
            else
            {
                int colon = message.IndexOf(": ");
                string stage = (colon < 0 ? message : message.Substring(0, colon)).Replace('_', ' ');
                string detail = colon < 0 ? "" : message.Substring(colon + 2);
                text = string.Format("freeze {0,3:0}% {1}{2}", frac * 100, stage, detail == "" ? "" : " (" + detail + ")");
            }
            Console.Error.Write("\r" + (text.Length > 79 ? text.Substring(0, 79) : text.PadRight(79)));
        }

        public void Clear() { Console.Error.Write("\r" + new string(' ', 79) + "\r"); }
    }

    public static class Program
    {
        const string Usage = @"usage: tffreeze-cs COMMAND ...

Freeze TensorFlow checkpoints with a tffreeze server (over gRPC-Web) and run frozen
graphs on the TensorFlow C API.

commands:
  freeze SOURCE -o OUT.pb [--manifest M.json] [SOURCE OPTIONS] [--optimize] [--verify]
         [--target tensorflowsharp|mlnet] [--format graphdef|onnx|tflite] [--input-shape NAME=D1,D2,...]
         [--quiet] [CONNECTION OPTIONS]
      Upload the checkpoint's files the server lacks (1 MiB chunks), freeze, write OUT.pb
      (-o or --output-file, once; --output NAME is run's flag) and the manifest, as the server
      rendered it; OUT.pb already holding the result is
      not downloaded again. --target tensorflowsharp makes a graph that loads in
      libtensorflow 1.15 (TensorFlowSharp's).
      --format onnx|tflite writes the model converted from the frozen graph, run in
      onnxruntime / the TFLite interpreter and compared with it first; --input-shape pins
      an input's shape (e.g. a static batch for TFLite). A .pb, .onnx or .tflite name must
      match --format (.pb: graphdef, the default), else a usage error before any upload.
      OUT.pb and M.json are checked (a file name, in a folder that exists and can be
      written) before anything is uploaded or written. SIGINT, SIGTERM and SIGHUP remove the
      temporary file (exit 130, 143, 129); a freeze removes the stale .OUT.pb.*.part files a
      killed freeze left beside OUT.pb (its process gone, or untouched for a minute).
  inspect SOURCE [--json] [SOURCE OPTIONS] [CONNECTION OPTIONS]
      Show the checkpoint a freeze would use, its variables, and the inputs and outputs it
      would resolve, each with its reason (--json: as JSON).
  run MODEL.pb [--manifest M.json] --input NAME=FILE.npy ... --output NAME[=FILE.npy] ...
      [--runtime tf115] [--libtensorflow PATH] [--tensorflowsharp PATH/TensorFlowSharp.dll] [--verbose]
      Run a frozen GraphDef (TensorFlow's own log lines only with --verbose or
      $TFFREEZE_VERBOSE=1); what MODEL holds decides (the manifest's format, else its bytes,
      else its name; a GraphDef under another name runs, with a warning): an ONNX or TFLite
      model runs with the Python client's `tffreeze run` (refused here, exit 1). --output NAME=FILE.npy saves an output, --output NAME
      prints its dtype, shape and first values; with --manifest and no --output, every
      output it names is printed. NAME is a tensor ('x' or 'x:0') or, with --manifest, one of its
      names or signature aliases; the manifest's dtypes and shapes are then checked (and
      errors name the input). --runtime tf115 uses TF 1.15's C API (make tf115). The
      library: --libtensorflow, else $TFFREEZE_LIBTENSORFLOW, else the TensorFlow in the
      project's .venv. --tensorflowsharp runs the model through that TensorFlowSharp
      assembly instead of the built-in binding (same outputs, same exit codes); its
      'libtensorflow' is mapped to --libtensorflow FILE or, with --runtime tf115, to
      TF 1.15's library, else TensorFlowSharp finds it as in your app.

SOURCE: a Saver directory, one checkpoint prefix, or a SavedModel directory; the server
chooses the checkpoint (the state file's latest, matched by basename, or --step N; a
folder holding none but exactly one folder below it that does uses that one).

source options (the same in every tffreeze client; the server checks them):
  --outputs a,b  --inputs a,b  --step N  --graph FILE  --signature NAME  --tag TAG (repeatable)
  --bind NAME=VALUE (repeatable)  --ema  --var-map GRAPH_VAR=CKPT_KEY (repeatable)
  --include-variables a,b  --exclude-variables a,b  --timeout SECONDS
connection options:
  --server http://HOST:WEB_PORT (the server's 'gRPC-Web on' address, not its 'listening on'
  gRPC port; default $TFFREEZE_WEB_SERVER, else this user's local
  server, started on demand by `tffreeze local-server start`, the tffreeze command being
  $TFFREEZE_COMMAND, else this checkout's .venv/bin/tffreeze, else PATH's; a server started with
  --web-port; several replicas as http://H1:W1,http://H2:W2)  --tls (or an https:// server,
  or $TFFREEZE_TLS=1)  --ca CA.pem (default $TFFREEZE_CA; implies --tls)
  --token TOKEN (default $TFFREEZE_TOKEN)
See README.md, ""CLI reference"", for what each option does.

examples (no server to start: the first command starts your local server, found as
$TFFREEZE_COMMAND, else the checkout's .venv/bin/tffreeze, else `tffreeze` on PATH):
  tffreeze-cs freeze runs/mnist -o mnist.pb --manifest mnist.json --target tensorflowsharp
  tffreeze-cs inspect runs/mnist
  tffreeze-cs run mnist.pb --manifest mnist.json --input x=batch.npy   # prints every output
  tffreeze-cs run mnist.pb --manifest mnist.json --input x=batch.npy --output probs=probs.npy --runtime tf115
  tffreeze-cs run mnist.pb --manifest mnist.json --input x=batch.npy --tensorflowsharp path/to/TensorFlowSharp.dll
  tffreeze-cs freeze runs/mnist -o mnist.pb --server http://build-host:8080   # a shared server (--web-port)

Flags are typed whole (never abbreviated); a flag of another command is refused (exit 2).
tffreeze-cs --version prints its version (tffreeze --version's).
exit codes: 0 ok, 1 error (message on stderr), 2 usage error, 130 / 143 / 129 stopped by
Ctrl-C / SIGTERM / SIGHUP (nothing left half-written)";

        public static int Main(string[] args)
        {
            // A closed stdout or stderr (piped into `head`) ends the process quietly, never a stack trace.
            // UTF-8 whatever the locale says (LANG unset is ASCII to Mono: a path's é would print as ?),
            // as the Python and C++ clients write the bytes they were given.
            Console.SetOut(new QuietConsoleWriter(Utf8Writer(Console.OpenStandardOutput())));
            Console.SetError(new QuietConsoleWriter(Utf8Writer(Console.OpenStandardError())));
            try { return Command(args); }
            catch (PipeClosedException) { return 141; }
        }

        /// <summary>Whether the file starts as every .npy file does (NumPy's magic string); an
        /// unreadable one is left to the reader, which says why.</summary>
        static bool IsNpy(string path)
        {
            try
            {
                using (var f = File.OpenRead(path))
                {
                    var head = new byte[6];
                    int n = 0, got;
                    while (n < 6 && (got = f.Read(head, n, 6 - n)) > 0) n += got;
                    return n == 6 && head[0] == 0x93 && System.Text.Encoding.ASCII.GetString(head, 1, 5) == "NUMPY";
                }
            }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
        }

        static TextWriter Utf8Writer(Stream stream)
        {
            return new StreamWriter(stream, new System.Text.UTF8Encoding(false)) { AutoFlush = true };
        }

        /// <summary>`tffreeze-cs COMMAND --help`: that command's part of the usage (its synopsis and
        /// text, the SOURCE, source and connection options it takes, its examples) and the exit
        /// codes, as `tffreeze COMMAND --help` gives only that command's flags.</summary>
        static string CommandHelp(string command)
        {
            var lines = Usage.Replace("\r", "").Split('\n');
            var commands = new HashSet<string> { "freeze", "inspect", "run" };
            Func<string, string> namesCommand = line =>
            {
                if (!line.StartsWith("  ") || line.StartsWith("   ")) return "";
                var word = line.Substring(2).Split(' ')[0];
                return commands.Contains(word) ? word : "";
            };
            int i = Array.FindIndex(lines, l => namesCommand(l) == command);
            if (i < 0) return Usage;
            var text = new System.Text.StringBuilder("usage: tffreeze-cs " + lines[i].Substring(2) + "\n");
            for (i++; i < lines.Length && lines[i].Length > 0 && namesCommand(lines[i]) == ""; i++)
                text.Append(lines[i]).Append('\n');
            if (command != "run")
            {
                bool inOptions = false;
                foreach (var line in lines)
                {
                    if (line.StartsWith("SOURCE:") || line.StartsWith("source options")) inOptions = true;
                    if (line.StartsWith("See README")) inOptions = false;
                    if (inOptions) text.Append(line.StartsWith("SOURCE:") ? "\n" : "").Append(line).Append('\n');
                }
            }
            text.Append("\nexamples:\n");
            foreach (var line in lines.Where(l => l.StartsWith("  tffreeze-cs " + command + " ")))
                text.Append(line).Append('\n');
            text.Append('\n');
            bool tail = false;
            foreach (var line in lines)
            {
                if (line.StartsWith("exit codes:")) tail = true;
                if (tail) text.Append(line).Append('\n');
            }
            return text.Append("(tffreeze-cs --help: every command)").ToString();
        }

        static int Command(string[] args)
        {
            if (args.Length == 0) { Console.WriteLine(Usage); return 2; }
            int help = Array.FindIndex(args, a => a == "-h" || a == "--help");
            if (help >= 0) { Console.WriteLine(help > 0 ? CommandHelp(args[0]) : Usage); return 0; }  // COMMAND --help: its own
            if (args[0] == "--version") { Console.WriteLine("tffreeze-cs " + BuildInfo.Version); return 0; }  // as `tffreeze --version`
            var command = args[0];
            try
            {
                if (command == "flags") return Flags(args.Skip(1).ToArray());
                var opts = Parse(command, args.Skip(1).ToArray());
                if ((command == "freeze" || command == "inspect") && opts.Positional.Count > 0) typedSource = opts.Positional[0];
                switch (command)
                {
                    case "freeze": return AgainOnANewLocalServer(command, () => Freeze(opts));
                    case "inspect": return AgainOnANewLocalServer(command, () => Inspect(opts));
                    case "run": return Run(opts);
                    case "wire-roundtrip": return WireRoundTrip(opts);
                    default: throw new UsageException("unknown command '" + command + "' (freeze, inspect, run)");
                }
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine("tffreeze-cs " + command + ": " + e.Message + "\n(see tffreeze-cs --help)");
                return 2;
            }
            catch (RpcException e)
            {
                Fail(command, Message(e, command), e.Status.ToString(), e.Reason);
                var noted = OutputsNoted(e);
                if (noted != null)
                    Console.Error.WriteLine("the outputs it chose (nothing was frozen): " + noted + "; " + OtherOutputs(e));
                string candidates, field;
                if (e.Metadata.TryGetValue("candidates", out candidates) && candidates != "" &&
                    e.Metadata.TryGetValue("field", out field) && field == "options.outputs")
                {
                    Console.Error.WriteLine("to freeze the best candidate, add:  --outputs " + candidates.Split(',')[0]);
                    Console.Error.WriteLine("all candidates (keep those the model deploys):  --outputs " + candidates);
                }
                return 1;
            }
            catch (Exception e) when (Kind(TensorFlowSharpHost.Unwrap(e)) != null)
            {
                var cause = TensorFlowSharpHost.Unwrap(e);
                return Fail(command, cause.Message, Kind(cause));
            }
        }

        // Request fields (the server's words) -> this command line's flags: the same table as
        // tffreeze_api.options.FLAGS (api_py/tffreeze_api/options.py), in its order.
        static readonly string[,] FieldFlags = {
            { "options.outputs", "--outputs" }, { "options.inputs", "--inputs" }, { "options.step", "--step" },
            { "options.checkpoint_prefix", "SOURCE" }, { "options.graph_path", "--graph" }, { "options.signature", "--signature" },
            { "options.tags", "--tag" }, { "options.bind", "--bind" }, { "options.ema", "--ema" }, { "options.var_map", "--var-map" },
            { "options.include_variables", "--include-variables" }, { "options.exclude_variables", "--exclude-variables" },
            { "options.optimize", "--optimize" }, { "options.verify", "--verify" }, { "options.target", "--target" },
            { "options.format", "--format" }, { "options.input_shapes", "--input-shape" },
        };

        // Request fields that are not "options.X" above, as this command line spells them. The
        // reference is _WORDS in client_py/tffreeze/cli.py: the same patterns, in the same order.
        static readonly string[,] Words = {
            { @"\bname it in graph_path\b", "name it with --graph FILE" },
            { @"\bthe graph option \(--graph\)", "--graph" },
            { @"\bthe graph option\b", "--graph" },
            { @"\bgraph_path\b", "--graph" },
            { @"\be\.g\. outputs=", "e.g. --outputs " },  // the server's examples, never a value the user gave
            { @"\be\.g\. inputs=", "e.g. --inputs " },
            { @"\bvar_map\b", "--var-map" },
            { @"\binput_shapes\b", "--input-shape" },
            { @"\binclude_variables\b", "--include-variables" },
            { @"\bexclude_variables\b", "--exclude-variables" },
        };
        // The server's trailing note of the outputs a freeze chose (cli.py's _OUTPUTS_NOTE).
        static readonly Regex OutputsNote = new Regex(@"\s*\[outputs: (.*)\]\s*$");
        // What the library names an output path by, as this command line's flag (cli.py's _PATH_FLAGS).
        static readonly Dictionary<string, string> PathFlags = new Dictionary<string, string> { { "output_path", "-o" } };

        /// <summary>The source as typed (freeze, inspect), for messages that name it; "" for run.</summary>
        static string typedSource = "";
        static string typedTimeout = "600";  // --timeout as typed (seconds), for a deadline's message

        /// <summary>How to freeze other outputs than the ones a failed freeze chose: --outputs, or for a
        /// source whose signature decides them (a TF2 SavedModel), another signature (cli.py's _other_outputs).</summary>
        static string OtherOutputs(RpcException e)
        {
            string chosenWith, listed;
            if (!e.Metadata.TryGetValue("chosen_with", out chosenWith) || chosenWith != "options.signature")
                return "to freeze others, name them: --outputs a,b";
            e.Metadata.TryGetValue("signatures", out listed);
            var others = (listed ?? "").Split(',').Where(s => s != "").ToArray();
            if (others.Length == 0) return "its signature defines a TF2 SavedModel's outputs, and it has no other";
            return "to freeze others, choose another signature with --signature (its others: " + string.Join(", ", others) + ")";
        }

        static string FlagOf(string field)
        {
            for (int i = 0; i < FieldFlags.GetLength(0); i++) if (FieldFlags[i, 0] == field) return FieldFlags[i, 1];
            return null;
        }

        static string Literal(string text) { return text.Replace("$", "$$"); }

        /// <summary>A message worded in request terms (the server's), in this command line's: request
        /// fields as flags, SOURCE as the source the user gave (cli.py's _in_cli_words).</summary>
        static string InCliWords(string msg, string source, string command)
        {
            var fields = Enumerable.Range(0, FieldFlags.GetLength(0)).OrderBy(i => -FieldFlags[i, 0].Length);  // stable
            foreach (var i in fields)
                if (FieldFlags[i, 1] != "SOURCE")
                    msg = Regex.Replace(msg, @"\b" + Regex.Escape(FieldFlags[i, 0]) + @"\b", Literal(FieldFlags[i, 1]));
            for (int i = 0; i < Words.GetLength(0); i++) msg = Regex.Replace(msg, Words[i, 0], Literal(Words[i, 1]));
            source = source ?? "";
            var shown = source != "" ? source : "the source";
            var first = Regex.Match(msg, @"folders below it do: (\S+?)/?[,.]");
            var example = first.Success && source != "" ? JoinPath(source, first.Groups[1].Value) : "FOLDER";
            msg = Regex.Replace(msg, @"Pass one of them as SOURCE\.?",
                                Literal("Give one of them instead, e.g. `tffreeze-cs " + command + " " + example + "`."));
            msg = Regex.Replace(msg, "pass its folder as SOURCE", Literal("give `tffreeze-cs " + command + "` its folder"));
            msg = Regex.Replace(msg, @"\binside SOURCE\b", Literal("inside " + shown));
            msg = Regex.Replace(msg, @"\bSOURCE\b", Literal(shown));
            msg = Regex.Replace(msg, @"\boptions\.checkpoint_prefix\b", Literal(shown));
            return msg;
        }

        /// <summary>os.path.join of two parts, as the Python client joins them.</summary>
        static string JoinPath(string a, string b)
        {
            if (b.StartsWith("/")) return b;
            return a == "" || a.EndsWith("/") ? a + b : a + "/" + b;
        }

        /// <summary>The error's message on one line, naming the option at fault as the command line
        /// spells it (the server's "flag" metadata, the field table otherwise), in the command line's
        /// words (cli.py's _message).</summary>
        static string Message(RpcException e, string command)
        {
            var msg = string.Join(" ", e.Message.Split(new[] { ' ', '\n', '\r', '\t', '\f', '\v' }, StringSplitOptions.RemoveEmptyEntries));
            if (e.Status == StatusCode.DEADLINE_EXCEEDED && msg == "Deadline Exceeded")
                return "no answer within --timeout " + typedTimeout + " seconds: give a larger --timeout (the default is 600)";
            string field, path, flag;
            if (!e.Metadata.TryGetValue("field", out field)) field = "";
            if (!e.Metadata.TryGetValue("path", out path)) path = "";
            if (PathFlags.ContainsKey(field) && path != "" && msg.StartsWith(path, StringComparison.Ordinal))
                return PathFlags[field] + " " + msg;  // an output this client failed to write
            msg = OutputsNote.Replace(msg, "");
            if (!e.Metadata.TryGetValue("flag", out flag) || flag == "") flag = FlagOf(field);
            if (!string.IsNullOrEmpty(flag))
                foreach (var prefix in new[] { field + ": ", (field.Length > 8 ? field.Substring(8) : "") + ": " })
                    if (field != "" && msg.StartsWith(prefix, StringComparison.Ordinal)) msg = msg.Substring(prefix.Length);
            msg = InCliWords(msg, typedSource, command);
            if (flag == "SOURCE") flag = typedSource;
            if (!string.IsNullOrEmpty(flag) && !msg.StartsWith(flag, StringComparison.Ordinal)) msg = flag + ": " + msg;
            return msg;
        }

        /// <summary>The outputs a freeze chose, when the server's message notes them; null otherwise.</summary>
        static string OutputsNoted(RpcException e)
        {
            var collapsed = string.Join(" ", e.Message.Split(new[] { ' ', '\n', '\r', '\t', '\f', '\v' }, StringSplitOptions.RemoveEmptyEntries));
            var m = OutputsNote.Match(collapsed);
            return m.Success ? m.Groups[1].Value : null;
        }

        /// <summary>The bracketed kind of an error a user's input can cause (files, names, dtypes, the
        /// graph itself: TensorFlow's TFException, of either library); null for anything else (a bug).</summary>
        static string Kind(Exception e)
        {
            if (e is KeyNotFoundException || e is FileNotFoundException || e is DirectoryNotFoundException) return "NOT_FOUND";
            if (e is ArgumentException || e is InvalidDataException || e is FormatException || e is NotSupportedException) return "INVALID_ARGUMENT";
            if (e is IOException || e is UnauthorizedAccessException) return "IO_ERROR";
            if (e.GetType().Name == "TFException")  // (a library that did not load: the kind tffreeze-cpp gives it)
                return (e.GetType().GetProperty("Kind", System.Reflection.BindingFlags.Instance |
                        System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic)?.GetValue(e) as string)
                       ?? "TENSORFLOW";
            return null;
        }

        static int Fail(string command, string message, string code, string reason = null)
        {
            var line = string.Join(" ", message.Split(new[] { ' ', '\n', '\r', '\t' }, StringSplitOptions.RemoveEmptyEntries));
            if (reason != null && reason.StartsWith("ERROR_REASON_")) reason = reason.Substring("ERROR_REASON_".Length);
            if (reason == "UNSPECIFIED" || reason == "") reason = null;
            Console.Error.WriteLine("tffreeze-cs " + command + ": " + line + (reason != null ? " (" + reason + ")" : "") +
                                    (code != null ? " [" + code + "]" : ""));
            return 1;
        }

        class Options
        {
            public List<string> Positional = new List<string>();
            public Dictionary<string, List<string>> Values = new Dictionary<string, List<string>>();
            public string One(string key, string fallback = null) { List<string> v; return Values.TryGetValue(key, out v) ? v.Last() : fallback; }
            public List<string> All(string key) { List<string> v; return Values.TryGetValue(key, out v) ? v : new List<string>(); }
        }

        /// <summary>A flag as a command takes it: its name, its value's placeholder (null: a switch).</summary>
        sealed class Flag
        {
            public readonly string Name, Value;
            public Flag(string name, string value = null) { Name = name; Value = value; }
            public override string ToString() { return Value == null ? Name : Name + " " + Value; }
        }

        // Each command's flags, exactly as typed (no abbreviations): the parser's only tables.
        static readonly Flag[] sourceFlags = {
            new Flag("--outputs", "a,b"), new Flag("--inputs", "a,b"), new Flag("--step", "N"), new Flag("--graph", "FILE"),
            new Flag("--signature", "NAME"), new Flag("--tag", "TAG"), new Flag("--bind", "NAME=VALUE"), new Flag("--ema"),
            new Flag("--var-map", "GRAPH_VAR=CKPT_KEY"), new Flag("--include-variables", "a,b"),
            new Flag("--exclude-variables", "a,b"), new Flag("--timeout", "SECONDS"),
            new Flag("--server", "http://HOST:WEB_PORT"), new Flag("--tls"), new Flag("--ca", "CA.pem"), new Flag("--token", "TOKEN") };
        static readonly Dictionary<string, Flag[]> commandFlags = new Dictionary<string, Flag[]>
        {
            { "freeze", sourceFlags.Concat(new[] {
                new Flag("-o", "OUT.pb"), new Flag("--output-file", "OUT.pb"), new Flag("--manifest", "M.json"), new Flag("--optimize"),
                new Flag("--verify"), new Flag("--target", "tensorflowsharp|mlnet"), new Flag("--format", "graphdef|onnx|tflite"),
                new Flag("--input-shape", "NAME=D1,D2,..."), new Flag("--quiet") }).ToArray() },
            { "inspect", sourceFlags.Concat(new[] { new Flag("--json") }).ToArray() },
            { "run", new[] {
                new Flag("--manifest", "M.json"), new Flag("--input", "NAME=FILE.npy"), new Flag("--output", "NAME[=FILE.npy]"),
                new Flag("--runtime", "tf115|default"), new Flag("--libtensorflow", "PATH"),
                new Flag("--tensorflowsharp", "PATH/TensorFlowSharp.dll"), new Flag("--verbose") } },
            { "wire-roundtrip", new Flag[0] },
        };

        // What to type instead, when a flag of another command is given (the other clients say the same).
        static readonly Dictionary<string, string> instead = new Dictionary<string, string>
        {
            { "freeze --output", "freeze writes its graph with -o/--output-file" },
            { "freeze --input", "freeze names the graph's inputs with --inputs a,b" },
            { "freeze --verbose", "freeze shows its progress on a terminal (--quiet hides it)" },
            { "freeze --json", "freeze writes its manifest (JSON) with --manifest OUT.json" },
            { "inspect --output", "inspect writes no file; it takes the outputs to resolve as --outputs a,b" },
            { "inspect --input", "inspect takes the inputs to resolve as --inputs a,b" },
            { "inspect -o", "inspect writes no file; `tffreeze-cs freeze` writes the graph" },
            { "inspect --output-file", "inspect writes no file; `tffreeze-cs freeze` writes the graph" },
            { "inspect --manifest", "inspect writes no file; `tffreeze-cs freeze --manifest OUT.json` writes the manifest" },
            { "run -o", "run writes each output with --output NAME=FILE.npy" },
            { "run --output-file", "run writes each output with --output NAME=FILE.npy" },
            { "run --outputs", "run fetches each tensor with --output NAME[=FILE.npy]" },
            { "run --inputs", "run feeds each tensor with --input NAME=FILE.npy" },
        };

        /// <summary>What a command says of a flag it does not take: another command's (naming that
        /// command and what to type instead), the start of one of its own (never abbreviated), or unknown.</summary>
        static string NotOurs(string command, string key)
        {
            var owners = new[] { "freeze", "inspect", "run" }.Where(c => c != command && commandFlags[c].Any(f => f.Name == key)).ToList();
            if (owners.Count == 0)
            {
                var longer = commandFlags[command].Select(f => f.Name).Where(n => key.StartsWith("--") && n.StartsWith(key))
                                                  .OrderBy(n => n, StringComparer.Ordinal).Take(4).ToList();
                if (longer.Count > 0)
                    return key + " is not a flag of `tffreeze-cs " + command + "`: flags are written in full (" +
                           string.Join(" or ", longer) + ")";
                return "unknown option " + key;
            }
            var flag = commandFlags[owners[0]].First(f => f.Name == key);
            var text = flag + " is a flag of " + string.Join(" and ", owners.Select(c => "`tffreeze-cs " + c + "`"));
            string hint;
            return instead.TryGetValue(command + " " + key, out hint) ? text + "; " + hint : text + ", not of `tffreeze-cs " + command + "`";
        }

        // The flags given once per value (the others take one value: a second is a usage error).
        static readonly HashSet<string> Repeatable = new HashSet<string> {
            "--tag", "--bind", "--var-map", "--input-shape", "--input", "--output" };

        static Options Parse(string command, string[] args)
        {
            Flag[] flags;
            if (!commandFlags.TryGetValue(command, out flags))
                throw new UsageException("unknown command '" + command + "' (freeze, inspect, run)");
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                var a = args[i];
                if (a.StartsWith("-") && a.Length > 1)
                {
                    string key = a, value = null;
                    int eq = a.IndexOf('=');
                    if (a.StartsWith("--") && eq > 0) { key = a.Substring(0, eq); value = a.Substring(eq + 1); }
                    var flag = flags.FirstOrDefault(f => f.Name == key);  // the whole name: no abbreviations
                    if (flag == null)
                        throw new UsageException(NotOurs(command, key));
                    if (flag.Value == null)
                    {
                        if (value != null) throw new UsageException(key + " takes no value");
                        value = "true";
                    }
                    else if (value == null)
                    {
                        if (i + 1 >= args.Length || (args[i + 1].StartsWith("--") && commandFlags.Values.Any(
                                fs => fs.Any(f => f.Name == args[i + 1].Split('=')[0]))))
                            throw new UsageException(key + " needs a value: " + flag);  // never another flag taken as one
                        value = args[++i];
                    }
                    if (!o.Values.ContainsKey(key)) o.Values[key] = new List<string>();
                    else if (flag.Value != null && !Repeatable.Contains(key) && key != "-o" && key != "--output-file")
                        throw new UsageException(key + " is given more than once: give it once");
                    if (key == "--bind" && o.Values[key].Any(b => b.Split('=')[0].Trim() == value.Split('=')[0].Trim()))
                        throw new UsageException("--bind " + value.Split('=')[0].Trim() + " is given more than once: give it once");
                    if (new[] { "--outputs", "--inputs", "--include-variables", "--exclude-variables" }.Contains(key) &&
                        value.Split(new[] { ',', ' ', '\t', '\n' }, StringSplitOptions.RemoveEmptyEntries).Length == 0)
                        throw new UsageException(key + " names nothing: give names (" + key + " a,b), or leave it out");
                    o.Values[key].Add(value);
                }
                else o.Positional.Add(a);
            }
            return o;
        }

        /// <summary>Test hook: the flags COMMAND takes, one a line ("NAME" or "NAME VALUE"), from the parser's table.</summary>
        static int Flags(string[] args)
        {
            Flag[] flags;
            if (args.Length != 1 || !commandFlags.TryGetValue(args[0], out flags)) throw new UsageException("flags COMMAND");
            foreach (var f in flags) Console.WriteLine(f);
            return 0;
        }

        /// <summary>The source options as typed: the server parses and checks them.</summary>
        static OptionText SourceOptions(Options o)
        {
            var text = new OptionText {
                Outputs = o.One("--outputs", ""), Inputs = o.One("--inputs", ""), Signature = o.One("--signature", ""),
                Ema = o.One("--ema") != null, IncludeVariables = o.One("--include-variables", ""),
                ExcludeVariables = o.One("--exclude-variables", "") };
            if (o.One("--step") != null)
            {
                var step = o.One("--step");  // an integer as typed; the server checks its range
                var digits = step.TrimStart('+', '-');
                if (digits.Length == 0 || step.Length - digits.Length > 1 || !digits.All(c => c >= '0' && c <= '9'))
                    throw new UsageException("--step takes a global step (an integer), got '" + step + "'");
                text.Step = step;
            }
            text.Tags.AddRange(o.All("--tag"));
            text.Bind.AddRange(o.All("--bind"));
            text.VarMap.AddRange(o.All("--var-map"));
            return text;
        }

        /// <summary>Run the command; when the local server it used stops while it runs (`tffreeze
        /// local-server stop` lets the calls in flight finish, then the command's next call finds no
        /// server), run it again with a new local server, saying so. Freeze and inspect write their
        /// results at the end.</summary>
        static int AgainOnANewLocalServer(string command, Func<int> run)
        {
            const int restarts = 2;
            for (int attempt = 0; ; attempt++)
            {
                string gone = null;
                try { return run(); }
                catch (RpcException e) when (e.Status == StatusCode.UNAVAILABLE && attempt < restarts &&
                                             (gone = LocalServer.WentAway()) != null)
                {
                    Console.Error.WriteLine("tffreeze-cs " + command + ": note: the local server (pid " + gone +
                                            ") stopped during this command; it goes on with a new local server");
                }
            }
        }

        static FreezeClient Connect(Options o)
        {
            var server = o.One("--server", Environment.GetEnvironmentVariable("TFFREEZE_WEB_SERVER"));
            if (string.IsNullOrEmpty(server))  // this user's local server: loopback gRPC-Web and its own token
            {
                var grpc = Environment.GetEnvironmentVariable("TFFREEZE_SERVER");
                var forIt = new[] { "--ca", "--tls", "--token" }.Where(f => o.One(f) != null).ToList();
                if (!string.IsNullOrEmpty(grpc) && forIt.Count > 0)  // given for the team's server: never the local one
                    throw new UsageException("$TFFREEZE_SERVER (" + grpc + ") is the gRPC address tffreeze and " +
                        "tffreeze-cpp use, and " + string.Join(" and ", forIt) + (forIt.Count == 1 ? " was" : " were") +
                        " given for that server; tffreeze-cs " +
                        "speaks gRPC-Web: pass --server https://HOST:WEB_PORT (that server's --web-port) or set " +
                        "$TFFREEZE_WEB_SERVER");
                if (!string.IsNullOrEmpty(grpc))  // never a silent switch to another server than the team's
                    Console.Error.WriteLine("tffreeze-cs: note: $TFFREEZE_SERVER (" + grpc + ") is the gRPC address " +
                        "tffreeze and tffreeze-cpp use; tffreeze-cs speaks gRPC-Web: set $TFFREEZE_WEB_SERVER=" +
                        "http://HOST:WEB_PORT (that server's --web-port) to use it. Using your local server.");
                var local = LocalServer.Find();
                var own = new FreezeClient(local.Item1) { Token = local.Item2, Local = true };
                SetTimeout(own, o);
                return own;
            }
            var client = new FreezeClient(server);
            var ca = o.One("--ca", Environment.GetEnvironmentVariable("TFFREEZE_CA"));
            var tlsEnv = Environment.GetEnvironmentVariable("TFFREEZE_TLS");
            if (o.One("--tls") != null || !string.IsNullOrEmpty(ca) || (!string.IsNullOrEmpty(tlsEnv) && tlsEnv != "0"))
                client.UseTls(ca);
            client.Token = o.One("--token", Environment.GetEnvironmentVariable("TFFREEZE_TOKEN"));
            SetTimeout(client, o);
            return client;
        }

        static void SetTimeout(FreezeClient client, Options o)
        {
            double timeout;
            if (o.One("--timeout") != null)
            {
                if (!double.TryParse(o.One("--timeout"), System.Globalization.NumberStyles.Float,
                                     System.Globalization.CultureInfo.InvariantCulture, out timeout) || !(timeout > 0))
                    throw new UsageException("--timeout takes seconds, e.g. --timeout 300 (got '" + o.One("--timeout") + "')");
                client.TimeoutMs = (int)Math.Max(1, Math.Min(timeout * 1000, int.MaxValue));
                typedTimeout = o.One("--timeout");
            }
        }

        static string ShapeText(TensorInfo t)
        {
            if (t.Shape == null) return "?";
            return "[" + string.Join(", ", t.Shape.Values.Select(v => ((long)v.NumberValue).ToString())) + "]";
        }

        static int Freeze(Options o)
        {
            // (as the Python client: no SOURCE, then no -o, then SOURCE and a second path, the -o left out)
            if (o.Positional.Count == 0) throw new UsageException("freeze takes one SOURCE");
            if (o.One("-o") == null && o.One("--output-file") == null) throw new UsageException("freeze needs -o OUT.pb");
            if (o.Positional.Count != 1) throw new UsageException("freeze takes one SOURCE");
            if (o.All("-o").Count + o.All("--output-file").Count > 1)
                throw new UsageException("freeze writes one graph: give -o/--output-file once");
            var output = o.One("-o") ?? o.One("--output-file");
            if (string.IsNullOrWhiteSpace(output)) throw new UsageException("freeze needs -o OUT.pb");
            var manifestPath = o.One("--manifest");
            if (manifestPath != null && manifestPath.Trim() == "") throw new UsageException("--manifest needs a path: --manifest OUT.json");
            var clash = FormatClash(output, o.One("--format", ""));
            if (clash != "") throw new UsageException(clash);  // before anything is uploaded
            FreezeClient.CheckAFile(output, o.One("-o") != null ? "-o" : "--output-file");  // (before the links: /dev/stdout is one)
            if (manifestPath != null) FreezeClient.CheckAFile(manifestPath, "--manifest", "the manifest");
            // Written through a symbolic link: to its final target, and the link stays a link.
            output = FreezeClient.ThroughLink(output);
            if (manifestPath != null) manifestPath = FreezeClient.ThroughLink(manifestPath);
            TempFiles.HandleSignals("freeze");  // before the first temporary file (the checks' probes)
            // Both checked before anything is hashed, uploaded or written: neither may be a file the
            // checkpoint being frozen is made of, nor the --graph file (writing it would destroy the
            // user's own checkpoint); an earlier graph written into SOURCE's folder may be replaced.
            var outputFlag = o.One("-o") != null ? "-o" : "--output-file";
            foreach (var given in new[] { Tuple.Create(outputFlag, output, "the graph"), Tuple.Create("--manifest", manifestPath, "the manifest") })
            {
                if (given.Item2 == null) continue;
                var listed = FreezeClient.ListedFileAt(o.Positional[0], given.Item2, o.One("--graph"));
                if (listed != null)
                    throw new UsageException(given.Item1 + " " + given.Item2 + " is a file of the checkpoint being frozen (" + listed +
                                             "): give " + given.Item3 + " another path");
            }
            FreezeClient.CheckOutput(output, outputFlag);
            if (manifestPath != null)
            {
                if (Path.GetFullPath(manifestPath) == Path.GetFullPath(output))
                    throw new UsageException("--manifest " + manifestPath + " is the graph's own path: give the manifest another name");
                FreezeClient.CheckOutput(manifestPath, "--manifest", "the manifest");
                TempFiles.RemoveStale(manifestPath);
            }
            var options = SourceOptions(o);
            options.Target = o.One("--target", "");
            options.Format = o.One("--format", "");
            options.InputShapes.AddRange(o.All("--input-shape"));
            options.Optimize = o.One("--optimize") != null;
            options.Verify = o.One("--verify") != null;
            var client = Connect(o);
            client.OutputFlag = outputFlag;
            bool quiet = o.One("--quiet") != null;
            var bar = new ProgressLine();
            if (!Console.IsErrorRedirected && !quiet) client.Progress = bar.Show;
            // The graph and its manifest are written both or neither: the old graph is kept (a hard link)
            // until the manifest is in place, and put back when the manifest cannot be written.
            bool existed = File.Exists(output);
            string old = null;
            if (manifestPath != null && existed)
            {
                old = TempFiles.Beside(output);
                if (Mono.Unix.Native.Syscall.link(output, old) != 0) { TempFiles.Done(old); old = null; }
            }
            FreezeOutcome outcome;
            try
            {
                outcome = client.Freeze(o.Positional[0], output, options, o.One("--graph"));
                if (client.Progress != null) bar.Clear();
                if (manifestPath != null)
                {
                    try { FreezeClient.WriteAtomically(manifestPath, outcome.Manifest, "--manifest", "the manifest"); }
                    catch (RpcException e)
                    {
                        string what;
                        if (old != null && Mono.Unix.Native.Syscall.rename(old, output) == 0)
                            what = " (-o " + output + " is as it was: nothing was written)";
                        else if (!existed && Mono.Unix.Native.Syscall.unlink(output) == 0)
                            what = " (nothing was written)";
                        else
                            what = " (-o " + output + " holds the new graph; its manifest was not written)";
                        throw new RpcException(e.Status, e.Message + what, e.Reason, e.Metadata);
                    }
                }
            }
            finally
            {
                if (old != null) TempFiles.Done(old);
            }
            var r = outcome.Result;
            foreach (var w in r.Warnings) Console.Error.WriteLine("tffreeze-cs: warning: " + InCliWords(w, typedSource, "freeze"));
            // This client's users run graphs in TensorFlowSharp: say when its libtensorflow 1.15 cannot load this one
            // (the manifest records it; the Python and C++ clients leave it there).
            if ((r.Format == Format.FORMAT_GRAPHDEF || r.Format == Format.FORMAT_UNSPECIFIED) && !r.LoadsInTensorflowsharp)
                Console.Error.WriteLine("tffreeze-cs: warning: TensorFlowSharp (libtensorflow 1.15) cannot load this graph"
                                        + (r.TensorflowsharpIssues.Count > 0 ? " (" + r.TensorflowsharpIssues[0]
                                           + (r.TensorflowsharpIssues.Count > 1 ? ", and " + (r.TensorflowsharpIssues.Count - 1) + " more" : "") + ")" : "")
                                        + ": freeze with --target tensorflowsharp, which rewrites what has a 1.15 equivalent or says why not; "
                                        + "TensorFlow 2.x runtimes load it as it is");
            if (quiet) return 0;
            Console.WriteLine("wrote {0} ({1} bytes, sha256 {2}) from {3}{4}", output, r.SizeBytes, r.Sha256.Substring(0, 12),
                              r.Checkpoint == null ? "" : r.Checkpoint.Prefix,
                              r.Checkpoint != null && r.Checkpoint.Step.HasValue ? " (step " + r.Checkpoint.Step.Value + ")" : "");
            Console.WriteLine("  uploaded {0} of {1} file(s), {2} bytes{3}", outcome.UploadedFiles, outcome.Files, outcome.UploadedBytes,
                              outcome.Assembled ? "; assembled from the local files"
                              : outcome.Downloaded ? "" : "; " + output + " already held this graph (not downloaded)");
            foreach (var t in r.Inputs) Console.WriteLine("  {0,-7} {1} {2} {3}", "input", t.Name, t.Dtype, ShapeText(t));
            foreach (var t in r.Outputs) Console.WriteLine("  {0,-7} {1} {2} {3}", "output", t.Name, t.Dtype, ShapeText(t));
            Summary(outcome.Manifest);
            return 0;
        }

        /// <summary>The summary's lines after the outputs, as the Python client prints them from the
        /// manifest: each binding ("bound", its value as the manifest spells it), each verified output
        /// ("verify") and the conversion ("format").</summary>
        static void Summary(byte[] manifestBytes)
        {
            var text = System.Text.Encoding.UTF8.GetString(manifestBytes);
            var top = RawMembers(text, 0);
            string raw;
            if (top.TryGetValue("bindings", out raw))
                foreach (var b in RawElements(raw))
                {
                    var m = RawMembers(b, 0);
                    Console.WriteLine("  bound   {0} = {1} ({2})", Json.Parse(m["name"]), Compact(m["value"]), Json.Parse(m["reason"]));
                }
            if (top.TryGetValue("verification", out raw))
                foreach (var v in RawElements(raw))
                {
                    var m = RawMembers(v, 0);
                    Console.WriteLine("  verify  {0} max |frozen - original| = {1}", Json.Parse(m["name"]), G(Json.Parse(m["max_abs_diff"]), 3));
                }
            if (top.TryGetValue("session_config_passes_off", out raw))
            {
                var passes = ((List<object>)Json.Parse(raw)).Cast<string>().ToList();
                if (passes.Count > 0)
                    Console.WriteLine("  session grappler {0} off: the manifest's session_config, which run applies", string.Join(", ", passes));
            }
            if (top.TryGetValue("conversion", out raw) && raw != "null")
            {
                var c = (Dictionary<string, object>)Json.Parse(raw);
                var format = ((string)Json.Parse(top["format"])).Substring("FORMAT_".Length).ToLowerInvariant();
                Console.WriteLine("  format  {0} ({1}), ran in {2}: max |{0} - frozen| = {3}", format, c["converter"], c["runtime"],
                                  G(c["max_abs_diff"], 3));
            }
        }

        /// <summary>Python's "%.Ng" of a number.</summary>
        static string G(object value, int digits)
        {
            var d = Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
            if (double.IsNaN(d)) return "nan";
            if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
            return d.ToString("G" + digits, System.Globalization.CultureInfo.InvariantCulture).Replace("E", "e");
        }

        /// <summary>A JSON value's text as json.dumps spells it (", " and ": " between items).</summary>
        static string Compact(string raw)
        {
            var sb = new System.Text.StringBuilder();
            bool inString = false;
            for (int i = 0; i < raw.Length; i++)
            {
                char c = raw[i];
                if (inString)
                {
                    sb.Append(c);
                    if (c == '\\') sb.Append(raw[++i]);
                    else if (c == '"') inString = false;
                }
                else if (c == '"') { inString = true; sb.Append(c); }
                else if (c == ',' || c == ':') sb.Append(c).Append(' ');
                else if (!char.IsWhiteSpace(c)) sb.Append(c);
            }
            return sb.ToString();
        }

        static void SkipWs(string s, ref int p) { while (p < s.Length && char.IsWhiteSpace(s[p])) p++; }

        /// <summary>Past one JSON value starting at p (after white space).</summary>
        static void SkipValue(string s, ref int p)
        {
            SkipWs(s, ref p);
            int depth = 0;
            bool inString = false;
            for (; p < s.Length; p++)
            {
                char c = s[p];
                if (inString) { if (c == '\\') p++; else if (c == '"') { inString = false; if (depth == 0) { p++; return; } } continue; }
                if (c == '"') inString = true;
                else if (c == '{' || c == '[') depth++;
                else if (c == '}' || c == ']') { if (depth == 0) return; if (--depth == 0) { p++; return; } }
                else if (c == ',' && depth == 0) return;
                else if (depth == 0 && char.IsWhiteSpace(c)) return;
            }
        }

        /// <summary>An object's members (at p) as raw JSON text.</summary>
        static Dictionary<string, string> RawMembers(string s, int p)
        {
            var members = new Dictionary<string, string>();
            SkipWs(s, ref p);
            if (p >= s.Length || s[p] != '{') return members;
            p++;
            while (true)
            {
                SkipWs(s, ref p);
                if (p >= s.Length || s[p] == '}') return members;
                int start = p;
                SkipValue(s, ref p);
                var key = (string)Json.Parse(s.Substring(start, p - start));
                SkipWs(s, ref p);
                p++;  // ':'
                SkipWs(s, ref p);
                start = p;
                SkipValue(s, ref p);
                members[key] = s.Substring(start, p - start);
                SkipWs(s, ref p);
                if (p < s.Length && s[p] == ',') p++;
            }
        }

        /// <summary>An array's elements as raw JSON text (none for null).</summary>
        static List<string> RawElements(string raw)
        {
            var items = new List<string>();
            int p = 0;
            SkipWs(raw, ref p);
            if (p >= raw.Length || raw[p] != '[') return items;
            p++;
            while (true)
            {
                SkipWs(raw, ref p);
                if (p >= raw.Length || raw[p] == ']') return items;
                int start = p;
                SkipValue(raw, ref p);
                items.Add(raw.Substring(start, p - start));
                SkipWs(raw, ref p);
                if (p < raw.Length && raw[p] == ',') p++;
            }
        }

        static int Inspect(Options o)
        {
            if (o.Positional.Count != 1) throw new UsageException("inspect takes one SOURCE");
            var response = Connect(o).Inspect(o.Positional[0], SourceOptions(o), o.One("--graph"));
            Console.Write(o.One("--json") != null ? response.Rendered.Json : response.Rendered.Text);
            return 0;
        }

        static int Run(Options o)
        {
            if (o.Positional.Count != 1) throw new UsageException("run takes one MODEL.pb");
            var inputs = o.All("--input").Select(p => SplitPair(p, "--input")).ToList();
            // --output NAME=FILE.npy writes FILE.npy; --output NAME prints it; none with --manifest: every output it names.
            var outputs = o.All("--output").Select(p =>
            {
                int eq = p.IndexOf('=');
                var pair = eq < 0 ? Tuple.Create(p, "") : Tuple.Create(p.Substring(0, eq), p.Substring(eq + 1));
                if (pair.Item1 == "" || (eq >= 0 && pair.Item2 == ""))
                    throw new UsageException("--output '" + p + "': write NAME to print it or NAME=FILE.npy to save it");
                return pair;
            }).ToList();
            if (o.One("--manifest") != null && o.One("--manifest").Trim() == "") throw new UsageException("--manifest needs a path: --manifest M.json");
            if (outputs.Count == 0 && o.One("--manifest") == null)
                throw new UsageException("name the outputs: --output NAME[=FILE.npy] (or give --manifest to print every output)");
            var model = o.Positional[0];
            if (Directory.Exists(model)) throw new ArgumentException("MODEL " + model + " is a folder: give the frozen .pb file");
            if (!File.Exists(model)) throw new FileNotFoundException("MODEL " + model + " does not exist");
            string manifestFormat = null;
            if (o.One("--manifest") != null)
            {
                var loaded = Manifest.Load(o.One("--manifest"));
                var top = Json.Parse(File.ReadAllText(o.One("--manifest"))) as Dictionary<string, object>;
                object format;
                manifestFormat = top != null && top.TryGetValue("format", out format) && format is string ? (string)format : "";
                if (outputs.Count == 0) outputs = loaded.Outputs.Select(t => Tuple.Create(t.Name, "")).ToList();
            }
            var decided = ModelKind(model, manifestFormat, o.One("--manifest") ?? "");
            CheckRunnable(model, decided.Item1, decided.Item2);
            if (decided.Item2 != "") Console.Error.WriteLine("tffreeze-cs: warning: " + decided.Item2);
            if (o.One("--manifest") != null)
            {
                var other = OtherGraph(o.One("--manifest"), model);
                if (other != "") Console.Error.WriteLine("tffreeze-cs: warning: " + other);
            }
            if (outputs.Count == 0)
                throw new UsageException("name the outputs: --output NAME[=FILE.npy] (or give --manifest to print every output)");
            foreach (var pair in outputs.Where(p => p.Item2 != ""))
                FreezeClient.CheckOutput(pair.Item2, "--output " + pair.Item1 + "=", "the output");
            foreach (var pair in inputs)  // named as typed, before TensorFlow loads (as the other clients say it)
            {
                if (Directory.Exists(pair.Item2))
                    throw new ArgumentException("--input " + pair.Item1 + "=" + pair.Item2 + " is a folder: give an .npy file");
                if (!File.Exists(pair.Item2))
                    throw new FileNotFoundException("--input " + pair.Item1 + "=" + pair.Item2 + " does not exist");
                if (!IsNpy(pair.Item2))
                    throw new ArgumentException("--input " + pair.Item1 + "=" + pair.Item2 + " is not a .npy file (it " +
                                                "lacks NumPy's header): save the array with numpy.save");
            }
            var runtime = o.One("--runtime", "");
            if (runtime != "" && runtime != "tf115" && runtime != "default") throw new UsageException("--runtime must be tf115 or default");
            var lib = o.One("--libtensorflow") ?? Environment.GetEnvironmentVariable("TFFREEZE_LIBTENSORFLOW")
                      ?? Environment.GetEnvironmentVariable(runtime == "tf115" ? "TFFREEZE_TF115_LIB" : "TFFREEZE_DEFAULT_LIB");
            var args = new object[] { o.Positional[0], o.One("--manifest"), inputs.Select(p => p.Item1).ToArray(),
                inputs.Select(p => p.Item2).ToArray(), outputs.Select(p => p.Item1).ToArray(), outputs.Select(p => p.Item2).ToArray() };
            var tfsharp = o.One("--tensorflowsharp");
            var verbose = o.One("--verbose") != null || (Environment.GetEnvironmentVariable("TFFREEZE_VERBOSE") ?? "0") != "0";
            if (!verbose && Environment.GetEnvironmentVariable("TF_CPP_MIN_LOG_LEVEL") == null)
                Environment.SetEnvironmentVariable("TF_CPP_MIN_LOG_LEVEL", "3");
            string[] lines;
            using (new StderrSilenced(!verbose))  // absl's start-up warning and CUDA probing go to fd 2 at load
            if (tfsharp != null)
            {
                // A --libtensorflow, or --runtime tf115, is mapped to TensorFlowSharp's "libtensorflow";
                // otherwise TensorFlowSharp finds its native library as it does in the user's app.
                var native = o.One("--libtensorflow") ?? (runtime == "tf115" ? lib : null);
                lines = TensorFlowSharpHost.Run(tfsharp, native, args);
            }
            else
            {
                if (lib != null) Environment.SetEnvironmentVariable("TFFREEZE_LIBTENSORFLOW", lib);
                lines = ModelRunner.Run((string)args[0], (string)args[1], (string[])args[2], (string[])args[3],
                                        (string[])args[4], (string[])args[5]);
            }
            foreach (var line in lines.Take(lines.Length - 1)) Console.WriteLine(line);
            Console.Error.WriteLine("(" + lines.Last() + ")");
            return 0;
        }

        /// <summary>tffreeze-cs runs TensorFlow GraphDef files; an ONNX or TFLite model (by the manifest's
        /// format, its bytes or its name: ModelKind) is refused with where it does run.</summary>
        static void CheckRunnable(string model, string kind, string warning)
        {
            if (kind == "graphdef") return;
            var what = warning != "" ? warning.Substring(0, warning.IndexOf(": rename it to ")) : model + " is " + ModelKinds[kind];
            // as tffreeze-cpp says it: an error in what was given (exit 1), not in the command line
            throw new ArgumentException(what + ": tffreeze-cs runs frozen GraphDef .pb files only. Run .onnx " +
                "and .tflite models with the Python client (`tffreeze run " + model + " ...`, the same flags), or freeze " +
                "without --format to get a .pb for tffreeze-cs");
        }

        // The kind of model a file name says, --format writes and a manifest's format names, in words
        // (the table of client_py/tffreeze/cli.py and runner.py; tffreeze-cpp has the same).
        static readonly Dictionary<string, string> ModelKinds = new Dictionary<string, string> {
            { "graphdef", "a frozen GraphDef" }, { "onnx", "an ONNX model" }, { "tflite", "a TensorFlow Lite model" } };
        static readonly Dictionary<string, string> ExtensionKinds = new Dictionary<string, string> {
            { ".pb", "graphdef" }, { ".onnx", "onnx" }, { ".tflite", "tflite" } };

        static string ExtensionOf(string kind) { return ExtensionKinds.First(kv => kv.Value == kind).Key; }

        /// <summary>Why -o PATH does not fit --format FMT ("" when it does): a .pb, .onnx or .tflite name
        /// says which model the file holds (cli.py's format_clash); other names are the user's choice.</summary>
        static string FormatClash(string path, string fmt)
        {
            var ext = Path.GetExtension(path);
            string named;
            if (!ExtensionKinds.TryGetValue(ext.ToLowerInvariant(), out named)) return "";
            var want = fmt.Trim().ToLowerInvariant();
            if (want == "") want = "graphdef";
            if (!ModelKinds.ContainsKey(want) || named == want) return "";
            var stem = path.Substring(0, path.Length - ext.Length);
            return "-o " + path + " is named for " + ModelKinds[named] + " (" + ext + ") but " +
                   (fmt != "" ? "--format " + fmt : "freeze without --format") + " writes " + ModelKinds[want] + ": name it " +
                   stem + ExtensionOf(want) + ", or " + (named == "graphdef" ? "drop --format " + fmt : "give --format " + named);
        }

        /// <summary>What a model file holds, by its bytes (runner.py's sniff: the same rule): "tflite",
        /// "onnx", "savedmodel", "metagraph", "graphdef" or "unknown", from its top-level fields.</summary>
        static string Sniff(byte[] data)
        {
            if (data.Length >= 8 && data[4] == 'T' && data[5] == 'F' && data[6] == 'L' && data[7] == '3') return "tflite";
            var fields = new HashSet<long>();
            long i = 0, n = data.Length;
            Func<ulong?> varint = () =>
            {
                ulong value = 0;
                for (int shift = 0; i < n && shift < 64; shift += 7)
                {
                    byte b = data[i++];
                    value |= (ulong)(b & 0x7F) << shift;
                    if ((b & 0x80) == 0) return value;
                }
                return null;
            };
            while (i < n)
            {
                var tag = varint();
                if (tag == null || (tag.Value >> 3) == 0) return "unknown";
                long field = (long)(tag.Value >> 3), wire = (long)(tag.Value & 7);
                if (wire == 0) { if (varint() == null) return "unknown"; }
                else if (wire == 1) i += 8;
                else if (wire == 2)
                {
                    var length = varint();
                    if (length == null || length.Value > (ulong)n) return "unknown";
                    i += (long)length.Value;
                }
                else if (wire == 5) i += 4;
                else return "unknown";
                if (i > n) return "unknown";
                fields.Add(field * 8 + wire);
            }
            Func<long, long, bool> has = (f, w) => fields.Contains(f * 8 + w);
            if (fields.Count == 0) return "unknown";
            if (has(1, 0)) return has(7, 2) || has(8, 2) ? "onnx" : has(2, 2) ? "savedmodel" : "unknown";
            if (has(3, 2) || has(5, 2) || has(6, 2) || has(7, 2)) return "metagraph";
            return fields.All(f => f == 1 * 8 + 2 || f == 2 * 8 + 2 || f == 3 * 8 + 0 || f == 4 * 8 + 2) ? "graphdef" : "unknown";
        }

        /// <summary>What `run` runs MODEL as ("graphdef", "onnx", "tflite") and a warning ("" if none), as
        /// runner.py's model_kind decides: the manifest's format (null: no --manifest), else the bytes, else
        /// the name; a MetaGraphDef, a SavedModel's graph, and a manifest of another kind are refused.</summary>
        // Why the manifest was written with another graph than the model (its sha256 differs), or "".
        static string OtherGraph(string manifestPath, string model)
        {
            var top = Json.Parse(File.ReadAllText(manifestPath)) as Dictionary<string, object>;
            object written;
            if (top == null || !top.TryGetValue("sha256", out written) || !(written is string) || (string)written == "")
                return "";
            var actual = Sha256.OfFile(model);
            if (actual == (string)written) return "";
            return "--manifest " + manifestPath + " was written with another graph than " + model + " (sha256 " +
                   ((string)written).Substring(0, Math.Min(12, ((string)written).Length)) + ", the file's is " +
                   actual.Substring(0, 12) + "): its names, dtypes and shapes may not be this graph's; give the " +
                   "manifest written with it";
        }

        static Tuple<string, string> ModelKind(string path, string manifestFormat, string manifestPath)
        {
            var content = Sniff(File.ReadAllBytes(path));
            var ext = Path.GetExtension(path).ToLowerInvariant();
            var stem = path.Substring(0, path.Length - ext.Length);
            if (content == "metagraph" || (ext == ".meta" && (content == "graphdef" || content == "unknown")))
            {
                var dir = Path.GetDirectoryName(path);
                throw new ArgumentException(path + " is a checkpoint's MetaGraphDef (its graph without the variables' values), " +
                    "not a frozen graph: freeze the checkpoint first (`tffreeze-cs freeze " +
                    (ext == ".meta" ? stem : string.IsNullOrEmpty(dir) ? "." : dir) + " -o model.pb`) and run the .pb");
            }
            if (content == "savedmodel")
            {
                var dir = Path.GetDirectoryName(path);
                throw new ArgumentException(path + " is a SavedModel's graph, not a frozen graph: freeze the SavedModel first " +
                    "(`tffreeze-cs freeze " + (string.IsNullOrEmpty(dir) ? "." : dir) + " -o model.pb`) and run the .pb");
            }
            string named, kind;
            ExtensionKinds.TryGetValue(ext, out named);
            if (manifestFormat != null)
            {
                kind = manifestFormat == "FORMAT_ONNX" ? "onnx" : manifestFormat == "FORMAT_TFLITE" ? "tflite" : "graphdef";
                if (ModelKinds.ContainsKey(content) && content != kind)
                    throw new ArgumentException(path + " holds " + ModelKinds[content] + " but --manifest " + manifestPath +
                                                " describes " + ModelKinds[kind] + ": give the manifest written with it");
            }
            else kind = ModelKinds.ContainsKey(content) ? content : named ?? "graphdef";
            if (named != null && named != kind)
                return Tuple.Create(kind, path + " holds " + ModelKinds[kind] + ", not " + ModelKinds[named] +
                                          " as its name says: rename it to " + stem + ExtensionOf(kind));
            return Tuple.Create(kind, "");
        }

        /// <summary>fd 2 pointed at /dev/null while TensorFlow loads and runs (its C++ log lines
        /// ignore the log level at load time); restored on dispose, before our own errors print.</summary>
        sealed class StderrSilenced : IDisposable
        {
            [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int dup(int fd);
            [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int dup2(int fd, int fd2);
            [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int open(string path, int flags);
            [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern int close(int fd);
            int saved = -1;

            public StderrSilenced(bool on)
            {
                if (!on) return;
                Console.Error.Flush();
                saved = dup(2);
                int devnull = open("/dev/null", 1 /* O_WRONLY */);
                if (saved >= 0 && devnull >= 0) dup2(devnull, 2);
                if (devnull >= 0) close(devnull);
            }

            public void Dispose()
            {
                if (saved < 0) return;
                Console.Error.Flush();
                dup2(saved, 2);
                close(saved);
                saved = -1;
            }
        }

        static Tuple<string, string> SplitPair(string pair, string flag)
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0 || eq == pair.Length - 1)  // worded as runner.py's pair_error
                throw new UsageException(flag + " '" + pair + "': write NAME=FILE.npy (NAME: the tensor it feeds, e.g. " + flag +
                                         " x=" + (eq < 0 && pair != "" ? pair : "x.npy") + ")");
            return Tuple.Create(pair.Substring(0, eq), pair.Substring(eq + 1));
        }

        /// <summary>Test hook: decode a message of TYPE from IN and write it to OUT encoded again, so
        /// tests can compare this code with Python's protobuf.</summary>
        static int WireRoundTrip(Options o)
        {
            if (o.Positional.Count != 3) throw new UsageException("wire-roundtrip TYPE IN.bin OUT");
            var type = typeof(Digest).Assembly.GetType("TfFreeze.V1." + o.Positional[0]);
            if (type == null || !typeof(TfFreeze.Protobuf.ProtoMessage).IsAssignableFrom(type))
                throw new UsageException("unknown message type " + o.Positional[0]);
            var msg = (TfFreeze.Protobuf.ProtoMessage)Activator.CreateInstance(type);
            msg.MergeFrom(new TfFreeze.Protobuf.ProtoReader(File.ReadAllBytes(o.Positional[1])));
            File.WriteAllBytes(o.Positional[2], msg.ToByteArray());
            return 0;
        }
    }
}
