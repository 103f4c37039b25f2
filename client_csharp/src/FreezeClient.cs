// The tffreeze service from C#: deduplicated, chunked uploads (FindMissingBlobs, then
// WriteBlobChunk in 1 MiB chunks), Freeze with progress, DownloadBlob, and the manifest
// (the generated FreezeResult's JSON mapping; see tffreeze_api.manifest).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using TfFreeze.V1;

namespace TfFreeze
{
    public class LocalFile
    {
        public string Path;   // relative, '/'-separated
        public string Local;
        public Digest Digest;
    }

    public class FreezeOutcome
    {
        public FreezeResult Result;
        /// <summary>The manifest file's text: the JSON mapping of Result, the same bytes the Python client writes.</summary>
        public string ManifestJson { get { return Result.ToJsonText(); } }
        public long UploadedBytes;
        public int UploadedFiles;
    }

    public class FreezeClient
    {
        public const int Chunk = 1 << 20;
        readonly GrpcWebChannel channel;
        public Action<string> Progress = delegate { };

        public FreezeClient(string server) { channel = new GrpcWebChannel(server); }
        public string Server { get { return channel.BaseUrl; } }
        public int TimeoutMs { get { return channel.TimeoutMs; } set { channel.TimeoutMs = value; } }
        /// <summary>Bearer token for a server started with --auth-token-file.</summary>
        public string Token { get { return channel.Token; } set { channel.Token = value; } }
        /// <summary>Use TLS (https), checking the server against caFile when given (else the system's CAs).</summary>
        public void UseTls(string caFile = null) { channel.UseTls(caFile); }

        public static Digest DigestOf(string path)
        {
            using (var sha = SHA256.Create())
            using (var f = File.OpenRead(path))
            {
                var hash = sha.ComputeHash(f);
                return new Digest { Sha256 = BitConverter.ToString(hash).Replace("-", "").ToLowerInvariant(), SizeBytes = f.Length };
            }
        }

        /// <summary>The checkpoint prefix a Saver directory's state file names (matched by
        /// basename: the file often holds paths from the training machine), or the one saved
        /// at <paramref name="step"/>; null when neither picks an existing checkpoint.</summary>
        public static string ChosenPrefix(string dir, long? step)
        {
            var indexes = Directory.GetFiles(dir, "*.index").Select(f => System.IO.Path.GetFileName(f)).ToList();
            var prefixes = indexes.Select(i => i.Substring(0, i.Length - ".index".Length)).ToList();
            if (step.HasValue) return prefixes.FirstOrDefault(p => p.EndsWith("-" + step.Value));
            var state = System.IO.Path.Combine(dir, "checkpoint");
            if (!File.Exists(state)) return null;
            foreach (var line in File.ReadAllLines(state))
            {
                var m = System.Text.RegularExpressions.Regex.Match(line, "^\\s*model_checkpoint_path\\s*:\\s*\"(.*)\"");
                if (!m.Success) continue;
                var name = m.Groups[1].Value.Replace("\\\\", "/").Replace('\\', '/');
                name = name.Substring(name.LastIndexOf('/') + 1);
                return prefixes.Contains(name) ? name : null;
            }
            return null;
        }

        const int NestedDepth = 3;

        static bool HoldsCheckpoint(string dir) =>
            Directory.GetFiles(dir, "*.index").Length > 0 || File.Exists(System.IO.Path.Combine(dir, "saved_model.pb")) ||
            File.Exists(System.IO.Path.Combine(dir, "saved_model.pbtxt"));

        /// <summary>For a SOURCE folder holding no checkpoint itself (users who saved with
        /// saver.save(sess, "models/model_name") point at the project folder): the only folder
        /// up to three levels below it that holds one, said on stderr; several such folders
        /// are an error listing them. Null when SOURCE holds a checkpoint or none is below.</summary>
        static string NestedSource(string source)
        {
            if (HoldsCheckpoint(source)) return null;
            var found = new List<string>();
            var level = new List<string> { source };
            for (int depth = 0; depth < NestedDepth && level.Count > 0; depth++)
            {
                var next = new List<string>();
                foreach (var d in level)
                    foreach (var sub in Directory.GetDirectories(d).OrderBy(x => x, StringComparer.Ordinal))
                    {
                        // A SavedModel's own variables/ folder is part of it.
                        if (System.IO.Path.GetFileName(sub) == "variables" && HoldsCheckpoint(d)) continue;
                        if (HoldsCheckpoint(sub)) found.Add(sub);
                        next.Add(sub);
                    }
                level = next;
            }
            if (found.Count == 0) return null;
            var rel = found.Select(f => f.Substring(source.TrimEnd('/').Length + 1) + "/").ToList();
            if (found.Count > 1)
                throw new RpcException(StatusCode.NOT_FOUND, string.Format(
                    "{0} holds no checkpoint itself, but {1} folders below it do: {2}. Pass one of them as SOURCE.",
                    source, found.Count, string.Join(", ", rel.Take(10))));
            Console.Error.WriteLine("tffreeze-cs: {0} holds no checkpoint itself; using {1}, the only folder below it that does",
                                    source, rel[0]);
            return found[0];
        }

        /// <summary>The files to upload for SOURCE: a SavedModel directory (all files), a Saver
        /// directory (the checkpoint its state file or --step names, else every checkpoint for
        /// the server to choose from), or a checkpoint prefix (that checkpoint only). Returns
        /// the prefix to send, if any.</summary>
        public static List<LocalFile> Collect(string source, long? step, out string prefix)
        {
            prefix = "";
            var files = new List<LocalFile>();
            string dir;
            IEnumerable<string> names;
            if (Directory.Exists(source) && NestedSource(source) is string nested)
                return Collect(nested, step, out prefix);
            if (Directory.Exists(source))
            {
                dir = source;
                if (File.Exists(System.IO.Path.Combine(dir, "saved_model.pb")) || File.Exists(System.IO.Path.Combine(dir, "saved_model.pbtxt")))
                    names = Directory.GetFiles(dir, "*", SearchOption.AllDirectories)
                                     .Select(f => f.Substring(dir.TrimEnd('/').Length + 1));
                else
                {
                    var chosen = ChosenPrefix(dir, step);
                    var all = Directory.GetFiles(dir).Select(System.IO.Path.GetFileName).ToList();
                    var metas = all.Where(n => n.EndsWith(".meta")).ToList();
                    if (chosen != null)
                    {
                        prefix = chosen;
                        // Its .meta, or every .meta when it has none (a Saver with write_meta_graph=False).
                        names = all.Where(n => n == chosen + ".index" || n.StartsWith(chosen + ".data-") ||
                                               (metas.Contains(chosen + ".meta") ? n == chosen + ".meta" : n.EndsWith(".meta")));
                    }
                    else
                        names = all.Where(n => n == "checkpoint" || n.EndsWith(".index") || n.EndsWith(".meta") || n.Contains(".data-"));
                }
            }
            else
            {
                dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(source));
                prefix = System.IO.Path.GetFileName(source);
                if (!File.Exists(source + ".index"))
                    throw new RpcException(StatusCode.NOT_FOUND, source + " is neither a checkpoint directory nor a checkpoint prefix (no " + source + ".index)");
                var p = prefix;
                names = Directory.GetFiles(dir).Select(System.IO.Path.GetFileName)
                                 .Where(n => n == p + ".index" || n == p + ".meta" || n.StartsWith(p + ".data-"));
            }
            foreach (var n in names.OrderBy(n => n, StringComparer.Ordinal))
            {
                var local = System.IO.Path.Combine(dir, n);
                files.Add(new LocalFile { Path = n.Replace('\\', '/'), Local = local, Digest = DigestOf(local) });
            }
            if (files.Count == 0) throw new RpcException(StatusCode.NOT_FOUND, "no checkpoint files in " + source);
            return files;
        }

        public void Upload(List<LocalFile> files, FreezeOutcome stats)
        {
            var req = new FindMissingBlobsRequest();
            req.Blobs.AddRange(files.Select(f => f.Digest));
            var missing = channel.Unary<FindMissingBlobsResponse>("FindMissingBlobs", req).Missing;
            var seen = new HashSet<string>();
            foreach (var d in missing)
            {
                if (!seen.Add(d.Sha256)) continue;
                var file = files.First(f => f.Digest.Sha256 == d.Sha256);
                var uploadId = Guid.NewGuid().ToString("N");  // this upload's own partial on the server
                using (var stream = File.OpenRead(file.Local))
                {
                    long offset = 0;
                    var buffer = new byte[Chunk];
                    while (true)
                    {
                        stream.Position = offset;
                        int n = stream.Read(buffer, 0, Chunk);
                        var data = new byte[n];
                        Array.Copy(buffer, data, n);
                        bool last = offset + n >= d.SizeBytes;
                        var resp = channel.Unary<WriteBlobChunkResponse>("WriteBlobChunk",
                            new WriteBlobChunkRequest { Digest = d, Offset = offset, Data = data, FinishWrite = last, UploadId = uploadId });
                        Progress(string.Format("uploading {0} {1}/{2} bytes", file.Path, resp.CommittedSize, d.SizeBytes));
                        if (resp.Complete) break;
                        offset = resp.CommittedSize;  // resume where the server is
                    }
                }
                stats.UploadedBytes += d.SizeBytes;
                stats.UploadedFiles++;
            }
        }

        public FreezeOutcome Freeze(string source, string outputPath, FreezeOptions options)
        {
            string prefix;
            var files = Collect(source, options.Step, out prefix);
            if (string.IsNullOrEmpty(options.CheckpointPrefix)) options.CheckpointPrefix = prefix;
            var outcome = new FreezeOutcome();
            var request = new FreezeRequest { Options = options };
            request.Files.AddRange(files.Select(f => new SourceFile { Path = f.Path, Digest = f.Digest }));
            int unavailable = 0, evicted = 0;
            double backoff = 0.2;
            while (true)
            {
                try
                {
                    Upload(files, outcome);
                    foreach (var ev in channel.ServerStream<FreezeResponse>("Freeze", request))
                    {
                        if (ev.Progress != null)
                            Progress(string.Format("{0,3:0}% {1}: {2}", ev.Progress.Fraction * 100,
                                                   ev.Progress.Stage.ToString().Substring("STAGE_".Length).ToLowerInvariant(),
                                                   ev.Progress.Message));
                        if (ev.Result != null) outcome.Result = ev.Result;
                    }
                    break;
                }
                catch (RpcException e)
                {
                    // A replica went away (several given): a freeze is a pure function of the uploaded
                    // bytes and options, so it is done again on another.
                    if (e.Status == StatusCode.UNAVAILABLE && channel.Replicated && ++unavailable < 3)
                    {
                        System.Threading.Thread.Sleep((int)(backoff * 1000));
                        backoff = Math.Min(backoff * 2, 2.0);
                        continue;
                    }
                    // A blob evicted between upload and freeze: upload again, once.
                    if (evicted++ > 0 || e.Reason != "ERROR_REASON_BLOBS_MISSING") throw;
                }
            }
            if (outcome.Result == null) throw new RpcException(StatusCode.INTERNAL, "the server ended the freeze without a result");
            Download(new Digest { Sha256 = outcome.Result.Sha256, SizeBytes = outcome.Result.SizeBytes }, outputPath);
            return outcome;
        }

        /// <summary>Stream a blob to <paramref name="path"/> via a temporary file, verifying length and sha256.</summary>
        public void Download(Digest digest, string path)
        {
            var tmp = path + ".part";
            try
            {
                using (var sha = SHA256.Create())
                using (var f = File.Create(tmp))
                {
                    foreach (var chunk in channel.ServerStream<DownloadBlobResponse>("DownloadBlob", new DownloadBlobRequest { Digest = digest }))
                    {
                        f.Write(chunk.Data, 0, chunk.Data.Length);
                        sha.TransformBlock(chunk.Data, 0, chunk.Data.Length, null, 0);
                    }
                    sha.TransformFinalBlock(new byte[0], 0, 0);
                    var hex = BitConverter.ToString(sha.Hash).Replace("-", "").ToLowerInvariant();
                    if (f.Length != digest.SizeBytes || hex != digest.Sha256)
                        throw new RpcException(StatusCode.DATA_LOSS, "downloaded graph does not match its digest; retry");
                }
                if (File.Exists(path)) File.Delete(path);
                File.Move(tmp, path);
            }
            finally { if (File.Exists(tmp)) File.Delete(tmp); }
        }
    }
}
