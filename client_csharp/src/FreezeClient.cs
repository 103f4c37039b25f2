// The tffreeze service from C#: the server chooses SOURCE's files (PlanFreeze, from this
// machine's listing) and parses the options as typed; only the chosen files it lacks are
// uploaded (FindMissingBlobs, then WriteBlobChunk in 1 MiB chunks); Freeze with progress;
// the graph inline or by DownloadBlob; the manifest as the server rendered it.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Mono.Unix.Native;
using TfFreeze.V1;

namespace TfFreeze
{
    public class LocalFile
    {
        public string Path;   // as sent: relative to the uploaded folder, '/'-separated
        public string Local;
        public Digest Digest;
    }

    public class FreezeOutcome
    {
        public FreezeResult Result;
        /// <summary>The manifest file's bytes, as the server rendered them (write them as they are).</summary>
        public byte[] Manifest;
        public long UploadedBytes;
        public int UploadedFiles;
        public int Files;
        /// <summary>False when the output already held exactly this graph, or it was assembled.</summary>
        public bool Downloaded = true;
        /// <summary>Built from the local checkpoint files by the server's recipe.</summary>
        public bool Assembled;
    }

    public class FreezeClient
    {
        public const int Chunk = 1 << 20;
        const int ListDepth = 6, ListFiles = 10000, StateBytes = 64 << 10, InlineGraph = 1 << 20;
        readonly GrpcWebChannel channel;
        GetCapabilitiesResponse capabilities;
        /// <summary>Progress(kind, done, total, message), as the Python and C++ clients report it:
        /// kind "upload" (bytes of the files the server lacks, message the file) or "freeze"
        /// (fraction of 1, message "stage: detail").</summary>
        public Action<string, double, double, string> Progress = null;

        public FreezeClient(string server) { channel = new GrpcWebChannel(server); }
        public string Server { get { return channel.BaseUrl; } }
        public int TimeoutMs { get { return channel.TimeoutMs; } set { channel.TimeoutMs = value; } }
        /// <summary>Bearer token for a server started with --auth-token-file.</summary>
        public string Token { get { return channel.Token; } set { channel.Token = value; } }
        /// <summary>The server is this user's local server (an unreachable one is worded as such).</summary>
        public bool Local { get { return channel.Local; } set { channel.Local = value; } }
        /// <summary>Use TLS (https), checking the server against caFile when given (else the system's CAs).</summary>
        public void UseTls(string caFile = null) { channel.UseTls(caFile); }

        /// <summary>What the server supports (asked once).</summary>
        public GetCapabilitiesResponse Capabilities
        {
            get
            {
                if (capabilities == null)
                    capabilities = channel.Unary<GetCapabilitiesResponse>("GetCapabilities", new GetCapabilitiesRequest());
                return capabilities;
            }
        }

        static readonly System.Text.RegularExpressions.Regex CheckpointFile =
            new System.Text.RegularExpressions.Regex(@"\.(index|meta|data-\d+-of-\d+)$");

        /// <summary>Why SOURCE (neither a file, a folder nor a checkpoint prefix) is refused: it does not
        /// exist, and the name beside it that it most likely meant (a file, a folder, or a checkpoint
        /// prefix of the files there), as the Python and C++ clients say it.</summary>
        public static string MissingSource(string source)
        {
            var bare = source.TrimEnd('/');
            if (bare == "") bare = source;
            int slash = bare.LastIndexOf('/');
            string folder = slash < 0 ? "" : (slash == 0 ? "/" : bare.Substring(0, slash)), name = bare.Substring(slash + 1);
            var names = new SortedSet<string>(StringComparer.Ordinal);
            try
            {
                foreach (var entry in Directory.EnumerateFileSystemEntries(folder == "" ? "." : folder))
                {
                    var e = System.IO.Path.GetFileName(entry);
                    if (e.StartsWith(".")) continue;
                    names.Add(e);
                    names.Add(CheckpointFile.Replace(e, ""));
                }
            }
            catch (Exception) { }
            var close = name == "" ? new List<string>() : ModelRunner.CloseNames(name, names, 1);
            if (close.Count == 0) return source + " does not exist";
            var meant = LatestOfFamily(close[0], names);
            return source + " does not exist; did you mean " + (folder == "" ? meant :
                   folder.EndsWith("/") ? folder + meant : folder + "/" + meant) + "?";
        }

        // A checkpoint prefix PREFIX-N meant: the one of that prefix with the highest N (the latest).
        static string LatestOfFamily(string name, IEnumerable<string> names)
        {
            var m = System.Text.RegularExpressions.Regex.Match(name, @"^(.*)-(\d+)$");
            if (!m.Success) return name;
            var family = new System.Text.RegularExpressions.Regex(
                "^" + System.Text.RegularExpressions.Regex.Escape(m.Groups[1].Value) + @"-(\d+)$");
            string best = name;
            decimal top = -1;
            foreach (var n in names)
            {
                var f = family.Match(n);
                decimal step;
                if (f.Success && decimal.TryParse(f.Groups[1].Value, out step) && step > top) { top = step; best = n; }
            }
            return best;
        }

        /// <summary>SOURCE's listing (a folder: its files up to 6 folders down, hidden folders
        /// skipped; a checkpoint prefix: its folder's files) and state files, for PlanFreeze.</summary>
        public static PlanFreezeRequest ListSource(string source, string graphFile, out string root)
        {
            var request = new PlanFreezeRequest();
            var listed = Directory.Exists(source) ? source : (System.IO.Path.GetDirectoryName(source) is string d && d != "" ? d : ".");
            if (Directory.Exists(listed) && Mono.Unix.Native.Syscall.access(listed, Mono.Unix.Native.AccessModes.R_OK | Mono.Unix.Native.AccessModes.X_OK) != 0)
                throw new RpcException(StatusCode.PERMISSION_DENIED, Digests.Unreadable(listed, folder: true));
            if (Directory.Exists(source))
            {
                root = System.IO.Path.GetFullPath(source);
                Walk(root, root, 0, request);
            }
            else
            {
                if (!File.Exists(source) && !Directory.Exists(source) && !File.Exists(source + ".index"))
                    throw new RpcException(StatusCode.NOT_FOUND, MissingSource(source), "ERROR_REASON_CHECKPOINT_NOT_FOUND");
                root = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(source));
                request.Prefix = System.IO.Path.GetFileName(source);
                foreach (var f in Directory.GetFileSystemEntries(root).OrderBy(f => f, StringComparer.Ordinal))
                {
                    long size;
                    if (RegularFile(f, out size)) request.Files.Add(new ListedFile { Path = System.IO.Path.GetFileName(f), SizeBytes = size });
                }
            }
            foreach (var f in request.Files)
                if (f.Path.Split('/').Last() == "checkpoint" && f.SizeBytes <= StateBytes)
                {
                    var path = System.IO.Path.Combine(root, f.Path);
                    if (Syscall.access(path, AccessModes.R_OK) != 0 && Stdlib.GetLastError() == Errno.EACCES)
                    {
                        if (!string.IsNullOrEmpty(request.Prefix)) continue;  // (a checkpoint named: which is the latest does not matter)
                        throw new RpcException(StatusCode.PERMISSION_DENIED, Digests.Unreadable(path) + ". It is the state file that " +
                                               "names the latest checkpoint; a checkpoint named by its prefix (" +
                                               System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path), "PREFIX") + ") needs none", "",
                                               new Dictionary<string, string> { { "path", path } });
                    }
                    request.StateFiles[f.Path] = File.ReadAllText(path);
                }
            if (!string.IsNullOrEmpty(graphFile))
            {
                if (Directory.Exists(graphFile))
                    throw new RpcException(StatusCode.INVALID_ARGUMENT, graphFile + " is a folder: the graph option takes a file " +
                                           "(a GraphDef or MetaGraphDef)", "ERROR_REASON_GRAPH_INVALID",
                                           new Dictionary<string, string> { { "field", "options.graph_path" }, { "flag", "--graph" } });
                if (!File.Exists(graphFile))
                    throw new RpcException(StatusCode.NOT_FOUND, "the graph file " + graphFile + " does not exist",
                                           "ERROR_REASON_GRAPH_INVALID", new Dictionary<string, string> { { "field", "options.graph_path" }, { "flag", "--graph" } });
                request.GraphFile = System.IO.Path.GetFileName(graphFile);
            }
            return request;
        }

        /// <summary>Whether a listed file (its path relative to SOURCE's folder) is one a checkpoint or
        /// SavedModel is made of (the same rule in every client): an earlier graph written into SOURCE is not.</summary>
        public static bool CheckpointPart(string rel)
        {
            var parts = rel.Split('/');
            var name = parts[parts.Length - 1];
            if (name == "checkpoint" || name.EndsWith(".index", StringComparison.Ordinal) ||
                name.EndsWith(".meta", StringComparison.Ordinal) ||
                System.Text.RegularExpressions.Regex.IsMatch(name, @"\.data-[0-9]{5}-of-[0-9]{5}\z") ||
                name == "saved_model.pb" || name == "saved_model.pbtxt" || name == "fingerprint.pb")
                return true;
            for (int i = 0; i < parts.Length - 1; i++)
                if (parts[i] == "variables" || parts[i] == "assets") return true;
            return false;
        }

        /// <summary>The file of SOURCE's listing (as ListSource lists it) that a checkpoint or SavedModel
        /// is made of (`checkpoint`, *.index, *.meta, *.data-DDDDD-of-DDDDD, saved_model.pb/.pbtxt,
        /// fingerprint.pb, anything under a variables/ or assets/ folder), or the --graph file, that
        /// <paramref name="path"/> is: by device and inode when it exists, else by absolute path; its
        /// path relative to SOURCE's folder, as listed (the graph file as given); null when it is none
        /// of them or SOURCE cannot be listed (the freeze then says why). Any other listed file (an
        /// earlier frozen graph) may be written over.</summary>
        public static string ListedFileAt(string source, string path, string graphFile = null)
        {
            PlanFreezeRequest listing;
            string root;
            try { listing = ListSource(source, null, out root); }
            catch (Exception) { return null; }  // the freeze lists SOURCE again and says what is wrong with it
            var files = new List<KeyValuePair<string, string>>();  // (shown, local)
            foreach (var f in listing.Files)
                if (CheckpointPart(f.Path)) files.Add(new KeyValuePair<string, string>(f.Path, System.IO.Path.Combine(root, f.Path)));
            if (!string.IsNullOrEmpty(graphFile)) files.Add(new KeyValuePair<string, string>(graphFile, graphFile));
            Stat target;
            bool exists = Syscall.stat(path, out target) == 0;
            string absolute = null;
            try { absolute = System.IO.Path.GetFullPath(path); } catch (Exception) { }
            foreach (var f in files)
            {
                Stat st;
                if (exists && Syscall.stat(f.Value, out st) == 0)
                {
                    if (st.st_dev == target.st_dev && st.st_ino == target.st_ino) return f.Key;
                }
                else if (!exists && absolute != null)
                {
                    string local = null;
                    try { local = System.IO.Path.GetFullPath(f.Value); } catch (Exception) { }
                    if (local != null && RealPath(absolute) == RealPath(local)) return f.Key;
                }
            }
            return null;
        }

        /// <summary>An absolute path with its folder's symbolic links resolved (as far as it exists).</summary>
        static string RealPath(string absolute)
        {
            var folder = System.IO.Path.GetDirectoryName(absolute);
            if (string.IsNullOrEmpty(folder)) return absolute;
            try { folder = Mono.Unix.UnixPath.GetCompleteRealPath(folder); } catch (Exception) { }
            return System.IO.Path.Combine(folder, System.IO.Path.GetFileName(absolute));
        }

        // os.walk's order (symbolic links followed): a folder's files (sorted), then its subfolders
        // (sorted), depth first. A linked file is listed under the link's name with its target's size.
        static void Walk(string root, string dir, int level, PlanFreezeRequest request)
        {
            var entries = Directory.GetFileSystemEntries(dir).OrderBy(f => f, StringComparer.Ordinal).ToList();
            foreach (var f in entries)
            {
                if (request.Files.Count >= ListFiles) return;
                long size;
                if (RegularFile(f, out size))
                    request.Files.Add(new ListedFile { Path = f.Substring(root.TrimEnd('/').Length + 1), SizeBytes = size });
            }
            if (level >= ListDepth) return;
            foreach (var d in entries)
                if (!System.IO.Path.GetFileName(d).StartsWith(".") && Folder(d)) Walk(root, d, level + 1, request);
        }

        /// <summary>Whether path is a regular file, a symbolic link followed (its target's size).</summary>
        static bool RegularFile(string path, out long size)
        {
            Stat st;
            size = 0;
            if (Syscall.stat(path, out st) != 0 || (st.st_mode & FilePermissions.S_IFMT) != FilePermissions.S_IFREG) return false;
            size = st.st_size;
            return true;
        }

        static bool Folder(string path)
        {
            Stat st;
            return Syscall.stat(path, out st) == 0 && (st.st_mode & FilePermissions.S_IFMT) == FilePermissions.S_IFDIR;
        }

        /// <summary>The server's choice of SOURCE's files and the options to freeze them with
        /// (options as typed: the server parses them); the files come back with digests.</summary>
        public PlanFreezeResponse Plan(string source, OptionText options, string graphFile, out List<LocalFile> files)
        {
            string root;
            var request = ListSource(source, graphFile, out root);
            request.Options = options;
            var plan = channel.Unary<PlanFreezeResponse>("PlanFreeze", request);
            files = plan.Files.Select(p =>
            {
                var local = p.LocalPath == "" ? System.IO.Path.GetFullPath(graphFile) : System.IO.Path.Combine(root, p.LocalPath);
                return new LocalFile { Path = p.Path, Local = local, Digest = Digests.Of(local) };
            }).ToList();
            Digests.Save();
            return plan;
        }

        public void Upload(List<LocalFile> files, FreezeOutcome stats)
        {
            var req = new FindMissingBlobsRequest();
            req.Blobs.AddRange(files.Select(f => f.Digest));
            var missing = channel.Unary<FindMissingBlobsResponse>("FindMissingBlobs", req).Missing;
            var seen = new HashSet<string>();
            stats.Files = files.Count;
            long total = missing.GroupBy(d => d.Sha256).Sum(g => g.First().SizeBytes), done = 0;
            foreach (var d in missing)
            {
                if (!seen.Add(d.Sha256)) continue;
                var file = files.First(f => f.Digest.Sha256 == d.Sha256);
                var uploadId = Guid.NewGuid().ToString("N");  // this upload's own partial on the server
                // One deadline for the file's chunks, as the other clients' one upload call has: the
                // timeout is per call there, and a file's upload is one call.
                int perCall = channel.TimeoutMs;
                var deadline = DateTime.UtcNow.AddMilliseconds(perCall);
                try
                {
                using (var stream = File.OpenRead(file.Local))
                {
                    long offset = 0;
                    var buffer = new byte[Chunk];
                    while (true)
                    {
                        double left = (deadline - DateTime.UtcNow).TotalMilliseconds;
                        if (left <= 0) throw new RpcException(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded");
                        channel.TimeoutMs = (int)Math.Max(1, Math.Min(left, int.MaxValue));
                        stream.Position = offset;
                        int n = stream.Read(buffer, 0, Chunk);
                        var data = new byte[n];
                        Array.Copy(buffer, data, n);
                        bool last = offset + n >= d.SizeBytes;
                        var resp = channel.Unary<WriteBlobChunkResponse>("WriteBlobChunk",
                            new WriteBlobChunkRequest { Digest = d, Offset = offset, Data = data, FinishWrite = last, UploadId = uploadId });
                        if (Progress != null) Progress("upload", done + resp.CommittedSize, total, file.Path);
                        if (resp.Complete) break;
                        offset = resp.CommittedSize;  // resume where the server is
                    }
                }
                }
                catch (RpcException e) when (e.Status == StatusCode.INVALID_ARGUMENT && ChangedSinceHashed(file.Local, d))
                {
                    throw new RpcException(StatusCode.FAILED_PRECONDITION, file.Local + " changed while it was being " +
                        "uploaded (is training still writing it?): run the command again once it is written", e.Reason,
                        new Dictionary<string, string> { { "path", file.Local } });
                }
                finally
                {
                    channel.TimeoutMs = perCall;
                }
                stats.UploadedBytes += d.SizeBytes;
                stats.UploadedFiles++;
                done += d.SizeBytes;
            }
        }

        /// <summary>Whether the file's bytes are no longer those hashed (a file still being written).</summary>
        static bool ChangedSinceHashed(string path, Digest d)
        {
            try
            {
                if (new FileInfo(path).Length != d.SizeBytes) return true;
                using (var h = new Sha256())
                using (var stream = File.OpenRead(path))
                {
                    var buffer = new byte[1 << 20];
                    int n;
                    while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) h.Update(buffer, n);
                    return h.HexDigest() != d.Sha256;
                }
            }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
        }

        static List<SourceFile> SourceFiles(List<LocalFile> files)
        {
            return files.Select(f => new SourceFile { Path = f.Path, Digest = f.Digest }).ToList();
        }

        /// <summary>A user's name and uid ("uid N" where the name is unknown).</summary>
        static string OwnerName(uint uid)
        {
            var pw = Syscall.getpwuid(uid);
            return pw == null ? "uid " + uid : pw.pw_name + " (uid " + uid + ")";
        }

        /// <summary>This user may remove <paramref name="path"/> from <paramref name="folder"/>: the folder
        /// is writable and searchable, and, where it is sticky (like /tmp), the folder or the entry is this
        /// user's.</summary>
        static bool Removable(string path, string folder)
        {
            Stat dir, entry;
            if (Syscall.access(folder, AccessModes.W_OK | AccessModes.X_OK) != 0 || Syscall.stat(folder, out dir) != 0)
                return false;
            var me = Syscall.geteuid();
            if (((int)dir.st_mode & 0x200) == 0 || dir.st_uid == me) return true;  // 0x200: S_ISVTX
            return Syscall.lstat(path, out entry) == 0 && entry.st_uid == me;
        }

        /// <summary>Before anything is hashed, sent or written: <paramref name="path"/> (given with
        /// <paramref name="flag"/>) names a file (not a folder) in a folder that exists and takes new
        /// files (tried: a temporary file of tffreeze's naming made and removed, which also finds
        /// read-only filesystems). A refusal is WriteError's.</summary>
        /// <summary>"-" or something that is neither a file nor a folder (/dev/stdout, a pipe) is
        /// refused: outputs are written whole or not at all, through a temporary file that takes the
        /// name when it is complete, and nothing but a file can take it that way.</summary>
        public static void CheckAFile(string path, string flag = "-o", string what = "the graph")
        {
            Stat st;
            if (path != "-" && (Syscall.stat(path, out st) != 0 || (st.st_mode & FilePermissions.S_IFMT) == FilePermissions.S_IFREG ||
                                (st.st_mode & FilePermissions.S_IFMT) == FilePermissions.S_IFDIR))
                return;
            var where = flag.EndsWith("=") ? flag + path : flag + " " + path;
            var name = ExampleName(flag, what);
            var example = flag.EndsWith("=") ? flag + name : flag + " " + name;
            throw new RpcException(StatusCode.INVALID_ARGUMENT,
                                   where + " is " + (path == "-" ? "standard output" : "not a regular file") + ": tffreeze writes " +
                                   what + " to files only, whole or not at all (a finished temporary file takes its name), so it " +
                                   "cannot stream it: give a file (" + example + ") and read it from there (cat " + name + ")", "",
                                   new Dictionary<string, string> { { "path", path } });
        }

        public static void CheckOutput(string path, string flag = "-o", string what = "the graph")
        {
            if (path == "" || path.EndsWith("/") || Directory.Exists(path)) throw WriteError(Errno.EISDIR, path, flag, what);
            CheckAFile(path, flag, what);
            var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
            if (!Directory.Exists(folder))
                throw WriteError(File.Exists(folder) || AFileAbove(folder) ? Errno.ENOTDIR : Errno.ENOENT, path, flag, what);
            Stat st;
            if (File.Exists(path) && Syscall.stat(path, out st) == 0 &&
                (((int)st.st_mode & 0x92) == 0 || Syscall.access(path, AccessModes.W_OK) != 0))  // 0222: no write bit
            {
                var where = flag.EndsWith("=") ? flag + path : flag + " " + path;
                var other = "give " + flag.Split(' ')[0] + " another path";
                string text;
                if (st.st_uid == Syscall.geteuid() || Syscall.geteuid() == 0)
                    text = where + " is read-only: make it writable (chmod u+w " + path + "), or " + other;
                else  // chmod is the owner's alone; removing it is the folder's business (a sticky one: its owner's)
                {
                    text = where + " belongs to another user, " + OwnerName(st.st_uid) + ", and you may not write it: " +
                           other;
                    if (Removable(path, folder)) text += ", or remove it (rm " + path + ")";
                }
                throw new RpcException(StatusCode.PERMISSION_DENIED, text, "",
                                       new Dictionary<string, string> { { "path", path } });
            }
            Stat entry;
            if (Syscall.geteuid() != 0 && Syscall.lstat(path, out entry) == 0 &&
                Syscall.access(folder, AccessModes.W_OK | AccessModes.X_OK) == 0 && !Removable(path, folder))
            {
                // A sticky folder (like /tmp) where the entry is another user's: it is written by renaming
                // a complete temporary file over it, which only its owner (or the folder's) may do.
                var where = flag.EndsWith("=") ? flag + path : flag + " " + path;
                var text = where + " belongs to another user, " + OwnerName(entry.st_uid) + ", in the sticky folder " + folder +
                           ", where you may not replace it: give " + flag.Split(' ')[0] + " another path";
                throw new RpcException(StatusCode.PERMISSION_DENIED, text, "",
                                       new Dictionary<string, string> { { "path", path } });
            }
            var probe = TempFiles.Beside(path);
            try
            {
                int fd = Syscall.open(probe, OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_WRONLY | OpenFlags.O_CLOEXEC,
                                      FilePermissions.S_IRUSR | FilePermissions.S_IWUSR);
                if (fd < 0) throw WriteError(Stdlib.GetLastError(), path, flag, what);
                Syscall.close(fd);
            }
            finally { TempFiles.Done(probe); }
        }

        /// <summary>The file a write of <paramref name="path"/> lands in: the path itself, or, where it is a
        /// symbolic link (a chain of them), the link's final target (a relative target read from the link's
        /// folder), so that the output is written through the link and the link stays a link.</summary>
        public static string ThroughLink(string path)
        {
            for (int i = 0; i < 40; i++)  // as the kernel's limit of links followed
            {
                Stat st;
                if (Syscall.lstat(path, out st) != 0 || ((int)st.st_mode & 0xF000) != 0xA000) break;  // S_IFLNK
                var target = new Mono.Unix.UnixSymbolicLinkInfo(path).ContentsPath;
                path = target.StartsWith("/") ? target : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path) ?? "", target);
            }
            return path;
        }

        static bool AFileAbove(string folder)
        {
            for (var f = System.IO.Path.GetDirectoryName(folder); !string.IsNullOrEmpty(f); f = System.IO.Path.GetDirectoryName(f))
                if (File.Exists(f)) return true;
            return false;
        }

        /// <summary>An OS error met writing the output <paramref name="path"/>, as the other clients word
        /// it: the path after the flag that named it, the cause in words, and the fix.</summary>
        // A file name to suggest inside a folder given where a file was wanted: run's
        // --output NAME= writes NAME.npy, --manifest model.json, a graph model.pb.
        static string ExampleName(string flag, string what)
        {
            if (what == "the output" && flag.StartsWith("--output ") && flag.EndsWith("="))
                return flag.Substring(9, flag.Length - 10).Replace('/', '_').Replace(':', '_') + ".npy";
            return what == "the manifest" ? "model.json" : "model.pb";
        }

        public static RpcException WriteError(Errno e, string path, string flag, string what, string cause = null)
        {
            var where = flag.EndsWith("=") ? flag + path : flag + " " + path;
            var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
            var other = "give " + flag.Split(' ')[0] + " another path";
            StatusCode code = StatusCode.FAILED_PRECONDITION;
            string text;
            if (e == Errno.EISDIR || Directory.Exists(path))
            {
                var trimmed = path.TrimEnd('/');
                code = StatusCode.INVALID_ARGUMENT;
                var example = System.IO.Path.Combine(trimmed == "" ? "/" : trimmed, ExampleName(flag, what));
                text = where + " is a folder: give a file name (e.g. " + example + ")";
                if (!Directory.Exists(path))  // a name ending in "/" (a folder's), and there is no such folder
                    text = where + " ends in /, as a folder's name does, and there is no folder " + trimmed +
                           ": create it and give a file in it (e.g. " + example + "), or give a file name";
            }
            else if (e == Errno.ENOSPC || e == Errno.EDQUOT)
            {
                code = StatusCode.RESOURCE_EXHAUSTED;
                text = where + ": no space left for " + what + " in " + folder + " (" +
                       (e == Errno.EDQUOT ? "disk quota exceeded" : "the disk is full") + "): free some space there, or " + other;
            }
            else if (e == Errno.ENOENT)
            {
                code = StatusCode.NOT_FOUND;
                text = where + ": the folder " + folder + " does not exist: create it, or " + other;
            }
            else if (e == Errno.EACCES || e == Errno.EPERM)
            {
                code = StatusCode.PERMISSION_DENIED;
                text = where + ": you may not write in " + folder + ": " + other + " in a folder you can write";
            }
            else if (e == Errno.EROFS)
            {
                code = StatusCode.PERMISSION_DENIED;
                text = where + ": " + folder + " is on a read-only filesystem: " + other;
            }
            else if (e == Errno.ENOTDIR)
            {
                code = StatusCode.NOT_FOUND;
                text = where + ": a part of " + folder + " is a file, not a folder: " + other;
            }
            else text = where + ": cannot write " + what + " (" + (cause ?? Stdlib.strerror(e)) + "): " + other;
            return new RpcException(code, text, "", new Dictionary<string, string> { { "path", path }, { "errno", e.ToString() } });
        }

        /// <summary>WriteError of an exception Mono raised writing <paramref name="path"/> (its Win32 code as errno).</summary>
        public static RpcException WriteFailed(string path, string flag, string what, Exception ex)
        {
            if (ex is RpcException) return (RpcException)ex;
            Errno e = Errno.EIO;
            if (ex is UnauthorizedAccessException) e = Errno.EACCES;
            else if (ex is DirectoryNotFoundException || ex is FileNotFoundException) e = Errno.ENOENT;
            else
                switch (ex.HResult & 0xffff)
                {
                    case 39: case 112: e = Errno.ENOSPC; break;   // ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL
                    case 5: e = Errno.EACCES; break;              // ERROR_ACCESS_DENIED
                    case 19: e = Errno.EROFS; break;              // ERROR_WRITE_PROTECT
                    case 2: case 3: e = Errno.ENOENT; break;      // ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND
                    case 267: e = Errno.ENOTDIR; break;           // ERROR_DIRECTORY
                }
            return WriteError(e, path, flag, what, ex.Message.TrimEnd('.'));
        }

        /// <summary>The flag that named the output, for the messages of a failed write.</summary>
        public string OutputFlag = "-o";

        public FreezeOutcome Freeze(string source, string outputPath, OptionText options, string graphFile = null)
        {
            outputPath = ThroughLink(outputPath);  // written through a link: the link stays a link
            CheckOutput(outputPath, OutputFlag);
            TempFiles.RemoveStale(outputPath);
            List<LocalFile> files;
            var plan = Plan(source, options, graphFile, out files);
            var request = new FreezeRequest { Options = plan.Options, Plan = plan, Quiet = Progress == null };
            if (Capabilities.Features.Contains("inline_graph")) request.InlineGraphBytes = InlineGraph;
            request.AcceptRecipe = Capabilities.Features.Contains("assembly_recipe");
            request.AcceptEarlyRecipe = Capabilities.Features.Contains("early_recipe");
            AssemblyRecipe recipe = null;
            request.Files.AddRange(SourceFiles(files));
            FreezeOutcome outcome;
            byte[] graph;
            int unavailable = 0, evicted = 0;
            double backoff = 0.2;
            while (true)
            {
                outcome = new FreezeOutcome();
                graph = null;
                recipe = null;
                try
                {
                    Upload(files, outcome);
                    foreach (var ev in channel.ServerStream<FreezeResponse>("Freeze", request))
                    {
                        if (ev.Progress != null && Progress != null)
                            Progress("freeze", ev.Progress.Fraction, 1.0,
                                     ev.Progress.Stage.ToString().Substring("STAGE_".Length).ToLowerInvariant() + ": " +
                                     ev.Progress.Message);
                        if (ev.Graph != null) graph = ev.Graph;
                        if (ev.Recipe != null) recipe = ev.Recipe;
                        if (ev.Manifest != null) outcome.Manifest = ev.Manifest;
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
            if (outcome.Result == null || outcome.Manifest == null)
                throw new RpcException(StatusCode.UNKNOWN, "the server ended the freeze without a result");
            var digest = new Digest { Sha256 = outcome.Result.Sha256, SizeBytes = outcome.Result.SizeBytes };
            if (File.Exists(outputPath) && new FileInfo(outputPath).Length == digest.SizeBytes &&
                Digests.Of(outputPath).Sha256 == digest.Sha256)
            {
                outcome.Downloaded = false;  // already there (an incremental build): not downloaded again
                File.SetLastWriteTimeUtc(outputPath, DateTime.UtcNow);  // newer than its inputs
                Digests.Remember(outputPath, digest.Sha256);
                Digests.Save();
                return outcome;
            }
            if (graph != null && graph.LongLength == digest.SizeBytes && Sha256.Hex(graph) == digest.Sha256)
                WriteAtomically(outputPath, graph, OutputFlag);
            else if (recipe != null && Assemble(recipe, files, digest, outputPath))
            {
                outcome.Assembled = true;
                outcome.Downloaded = false;
            }
            else
                Download(digest, outputPath);
            Digests.Remember(outputPath, digest.Sha256);  // checked as it was written
            Digests.Save();
            return outcome;
        }

        /// <summary>Build the graph from the local files and the graph ranges the recipe names;
        /// false (nothing left behind) when a piece cannot be had or the result does not check out
        /// (with <paramref name="download"/>, a failed call is thrown instead).</summary>
        bool Assemble(AssemblyRecipe recipe, List<LocalFile> files, Digest digest, string path, bool download = false)
        {
            var local = files.ToDictionary(f => f.Path, f => f.Local);
            var tmp = TempFiles.Beside(path);
            try
            {
                long written = 0;
                using (var sha = new Sha256())
                using (var output = File.Create(tmp))
                {
                    var buffer = new byte[Chunk];
                    foreach (var piece in recipe.Pieces)
                    {
                        if (piece.Data != null)
                        {
                            if (piece.Data.LongLength != piece.Length) return false;
                            output.Write(piece.Data, 0, piece.Data.Length);
                            sha.Update(piece.Data, piece.Data.Length);
                        }
                        else if (piece.File != null)
                        {
                            string source;
                            if (!local.TryGetValue(piece.File.Path, out source)) return false;
                            using (var input = File.OpenRead(source))
                            {
                                input.Position = piece.File.Offset;
                                for (long left = piece.Length; left > 0;)
                                {
                                    int n = input.Read(buffer, 0, (int)Math.Min(left, buffer.Length));
                                    if (n <= 0) return false;
                                    output.Write(buffer, 0, n);
                                    sha.Update(buffer, n);
                                    left -= n;
                                }
                            }
                        }
                        else if (piece.GraphOffset.HasValue)
                        {
                            long got = 0;
                            foreach (var chunk in channel.ServerStream<DownloadBlobResponse>("DownloadBlob",
                                         new DownloadBlobRequest { Digest = digest, Offset = piece.GraphOffset.Value, Limit = piece.Length }))
                            {
                                output.Write(chunk.Data, 0, chunk.Data.Length);
                                sha.Update(chunk.Data, chunk.Data.Length);
                                got += chunk.Data.Length;
                            }
                            if (got != piece.Length) return false;
                        }
                        else return false;
                        written += piece.Length;
                    }
                    if (written != digest.SizeBytes || sha.HexDigest() != digest.Sha256) return false;
                }
                if (File.Exists(path)) File.Delete(path);
                File.Move(tmp, path);
                return true;
            }
            catch (RpcException) when (!download) { return false; }  // the caller downloads the graph instead
            catch (IOException) when (!download) { return false; }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw WriteFailed(path, OutputFlag, "the graph", e);
            }
            finally { TempFiles.Done(tmp); }
        }

        /// <summary>What a freeze with these options would use (Rendered: the report as text and JSON).</summary>
        public InspectResponse Inspect(string source, OptionText options, string graphFile = null)
        {
            List<LocalFile> files;
            var plan = Plan(source, options, graphFile, out files);
            Upload(files, new FreezeOutcome());
            var request = new InspectRequest { Options = plan.Options, Plan = plan };
            request.Files.AddRange(SourceFiles(files));
            return channel.Unary<InspectResponse>("Inspect", request);
        }

        /// <summary>Write data to path via a temporary file beside it (an OS error names the path and <paramref name="flag"/>).</summary>
        public static void WriteAtomically(string path, byte[] data, string flag = "-o", string what = "the graph")
        {
            var tmp = TempFiles.Beside(path);
            try
            {
                File.WriteAllBytes(tmp, data);
                if (File.Exists(path)) File.Delete(path);
                File.Move(tmp, path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw WriteFailed(path, flag, what, e);
            }
            finally { TempFiles.Done(tmp); }
        }

        /// <summary>Stream a blob to <paramref name="path"/> via a temporary file, verifying length and sha256.</summary>
        public void Download(Digest digest, string path)
        {
            var whole = new AssemblyRecipe();
            whole.Pieces.Add(new RecipePiece { Length = digest.SizeBytes, GraphOffset = 0 });
            if (!Assemble(whole, new List<LocalFile>(), digest, path, true))
                throw new RpcException(StatusCode.DATA_LOSS, "downloaded graph does not match its digest; retry");
        }
    }
}
