// This user's local server (tffreeze_api/localserver.py describes its folder): used when no
// --server and no $TFFREEZE_WEB_SERVER are given. A running one is found through server.info;
// otherwise `tffreeze local-server start` (the Python client owns starting it, under a lock
// shared with every client) is run, and server.info read again.
//
// Nothing in the folder is read before the folder is checked, by the rules (and with the
// messages) of tffreeze_api/localserver.py (LocalFolderTrust below): the folders above it
// cannot be changed by another user, the folder is not a symbolic link, is this user's (the
// effective uid: root too) and mode 0700, every entry in it is this user's and not writable by
// others (the token not readable either), server.info and the token are opened with
// O_NOFOLLOW and checked again with fstat, the server's process is this user's. Otherwise:
// FAILED_PRECONDITION.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using TfFreeze.V1;

namespace TfFreeze
{
    public static class LocalServer
    {
        static string Folder()
        {
            var value = (Environment.GetEnvironmentVariable("TFFREEZE_CACHE_DIR") ?? "").Trim();
            var low = value.ToLowerInvariant();
            string folder;
            if (value != "" && low != "off" && low != "0" && low != "none")
                folder = Path.Combine(Path.GetFullPath(value), "local");
            else
            {
                var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
                var home = Environment.GetEnvironmentVariable("HOME") ?? "/";
                var b = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(home, ".cache");
                folder = Path.Combine(Path.GetFullPath(b), "tffreeze", "local");
            }
            return Path.GetFullPath(folder).TrimEnd('/');
        }

        /// <summary>server.info of a live server of this user's with a gRPC-Web port, or null;
        /// FAILED_PRECONDITION before anything is read from a folder that could be another user's.</summary>
        static Dictionary<string, string> Running(string folder)
        {
            var info = new Dictionary<string, string>();
            var text = LocalFolderTrust.Read(folder, "server.info", false);
            if (text == null) return null;
            foreach (var line in text.Split('\n'))
            {
                var space = line.IndexOf(' ');
                if (space > 0) info[line.Substring(0, space)] = line.Substring(space + 1);
            }
            if (!info.ContainsKey("pid") || !info.ContainsKey("web") || !info.ContainsKey("token-file")) return null;
            return LocalFolderTrust.Alive(info["pid"]) ? info : null;
        }

        static string usedPid;  // the local server this process's calls went to last

        /// <summary>The pid of the local server this process used when it is no longer the one
        /// running (stopped by `tffreeze local-server stop` or its idle exit, or killed): a command it
        /// failed may run again on a new one. Null otherwise.</summary>
        public static string WentAway()
        {
            if (usedPid == null) return null;
            Dictionary<string, string> info;
            try { info = Running(Folder()); }
            catch (RpcException) { return null; }
            return info == null || info["pid"] != usedPid ? usedPid : null;
        }

        /// <summary>(gRPC-Web URL, token) of the running local server, started if need be.</summary>
        public static Tuple<string, string> Find()
        {
            var folder = Folder();
            var info = Running(folder);
            if (info != null) NoteOther(info);
            if (info == null)
            {
                Start();
                info = Running(folder);
                if (info == null)
                    throw new RpcException(StatusCode.UNAVAILABLE, "the local server started but " +
                        Path.Combine(folder, "server.info") + " does not name a running one");
            }
            var token = LocalFolderTrust.Read(folder, "token", true);
            if (token == null || token.Trim() == "")
                throw new RpcException(StatusCode.UNAVAILABLE, "cannot read the local server's token " + folder + "/token");
            usedPid = info["pid"];
            return Tuple.Create(info["web"], token.Trim());
        }

        /// <summary>The `tffreeze` command that starts the local server, found as `run` finds the
        /// TensorFlow library: $TFFREEZE_COMMAND, else this checkout's .venv/bin/tffreeze (the
        /// checkout holding client_csharp/bin/tffreeze-cs.exe), else `tffreeze` on PATH; null for none.</summary>
        static string Command(List<string> tried)
        {
            var given = Environment.GetEnvironmentVariable("TFFREEZE_COMMAND");
            if (!string.IsNullOrEmpty(given)) return given;
            tried.Add("$TFFREEZE_COMMAND (unset)");
            var exe = typeof(LocalServer).Assembly.Location;
            if (!string.IsNullOrEmpty(exe))
            {
                var checkout = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(exe), "..", ".."));
                var venv = Path.Combine(checkout, ".venv", "bin", "tffreeze");
                if (File.Exists(venv)) return venv;
                tried.Add(venv);
            }
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
            {
                if (dir == "") continue;
                var candidate = Path.Combine(dir, "tffreeze");
                if (File.Exists(candidate)) return candidate;
            }
            tried.Add("tffreeze on PATH (" + (Environment.GetEnvironmentVariable("PATH") ?? "") + ")");
            return null;
        }

        /// <summary>A running server of another installation (another checkout or environment of the
        /// same version) serves the call, and stderr says so, as the Python client says it.</summary>
        static void NoteOther(Dictionary<string, string> info)
        {
            string theirs;
            if (!info.TryGetValue("installation", out theirs) || theirs == "") return;
            var mine = OwnInstallation();
            if (mine == null) return;
            string python;
            bool named = info.TryGetValue("python", out python);
            if (theirs == mine.Item1 && (named ? python : mine.Item2) == mine.Item2) return;
            Console.Error.WriteLine("tffreeze-cs: note: the local server running (pid " + info["pid"] + ") is another " +
                "installation's: " + theirs + " (python " + (named ? python : "?") + "); this one is " + mine.Item1 +
                " (python " + mine.Item2 + "). It serves this call. To run this installation's code instead: `tffreeze " +
                "local-server stop` (it is the one local server of your user), then call again");
        }

        /// <summary>(installation, python) of the `tffreeze` command that starts the local server, as the
        /// Python client names its own (the folder holding the tffreeze_server package its Python would
        /// import, and that Python): asked of the Python its script's first line names; null when it
        /// cannot tell.</summary>
        static Tuple<string, string> OwnInstallation()
        {
            try
            {
                var script = Command(new List<string>());
                if (script == null) return null;
                if (!script.Contains("/"))
                    foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
                        if (dir != "" && File.Exists(Path.Combine(dir, script))) { script = Path.Combine(dir, script); break; }
                string first;
                using (var reader = new StreamReader(script)) first = reader.ReadLine() ?? "";
                if (!first.StartsWith("#!")) return null;
                var words = first.Substring(2).Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
                if (words.Length == 0 || !(words[0].Contains("python") || (words.Length > 1 && words[1].Contains("python"))))
                    return null;  // a wrapper of another kind: cannot tell
                const string code = "import importlib.util, os, sys; sys.path[:] = [p for p in sys.path if p]; " +
                    "spec = importlib.util.find_spec('tffreeze_server'); " +
                    "print(os.path.dirname(os.path.dirname(os.path.realpath(spec.origin))) if spec and spec.origin else ''); " +
                    "print(sys.executable)";
                var args = string.Join(" ", words.Skip(1).Select(w => "\"" + w + "\"")) + " -c \"" + code + "\"";
                var start = new ProcessStartInfo(words[0], args.Trim())
                {
                    UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true,
                };
                using (var p = Process.Start(start))
                {
                    var lines = p.StandardOutput.ReadToEnd().Split('\n');
                    p.StandardError.ReadToEnd();
                    p.WaitForExit();
                    if (p.ExitCode != 0 || lines.Length < 2 || lines[0].Trim() == "") return null;
                    return Tuple.Create(lines[0].Trim(), lines[1].Trim());
                }
            }
            catch (Exception) { return null; }
        }

        static void Start()
        {
            var tried = new List<string>();
            var program = Command(tried);
            if (program == null)
                throw new RpcException(StatusCode.UNAVAILABLE, "no --server given and no local server running; starting one " +
                    "needs the `tffreeze` command, and there is none (looked at " + string.Join(", ", tried) + "). Run " +
                    "`make setup` in this checkout (it makes .venv/bin/tffreeze), or `pip install -e client_py server` and put " +
                    "its tffreeze on PATH, or set $TFFREEZE_COMMAND; or pass --server http://HOST:WEB_PORT / set $TFFREEZE_WEB_SERVER");
            var start = new ProcessStartInfo(program, "local-server start")
            {
                UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = false,
            };
            Process p;
            try { p = Process.Start(start); }
            catch (System.ComponentModel.Win32Exception)
            {
                throw new RpcException(StatusCode.UNAVAILABLE, "no --server given and no local server running; starting one " +
                    "needs the `" + program + "` command (the Python client: `pip install -e client_py server`; or set " +
                    "$TFFREEZE_COMMAND). Or pass --server http://HOST:WEB_PORT / set $TFFREEZE_WEB_SERVER");
            }
            p.StandardOutput.ReadToEnd();  // its report is for people; errors go to stderr
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new RpcException(StatusCode.UNAVAILABLE, "the local server did not start (`" + program +
                    " local-server start` failed; its message is above)");
        }
    }

    /// <summary>What the trust checks say and how strict they are about a folder's mode: the local
    /// server's folder (Local) and the digest cache's folder (Cache) share the rules, not the words
    /// (tffreeze_api/localserver.py's Rules).</summary>
    sealed class TrustRules
    {
        public string Label, Fix, Risk, Remake;  // Fix: the sentence ending each message
        public int Mask;  // mode bits the folder may not have

        public static readonly TrustRules Local = new TrustRules
        {
            Label = "the local server's folder",
            Fix = "Unset TFFREEZE_CACHE_DIR or point it at a folder of your own (the local server's folder must be yours " +
                "alone, mode 0700, inside folders only you or root can change), or pass --server to use a server you trust",
            Mask = 0x3f,  // 077
            Risk = "Another user's server may be listening there, and it would receive your checkpoints; nothing in it was read.",
            Remake = "the local server makes what it needs anew",
        };

        public static readonly TrustRules Cache = new TrustRules
        {
            Label = "the cache folder",
            Fix = "Point TFFREEZE_CACHE_DIR at a folder of your own (yours, not writable by group or others, inside " +
                "folders only you or root can change), or set it to off",
            Mask = 0x12,  // 022
            Risk = "Another user could have put digests or graphs of their choosing in it; nothing in it was used.",
            Remake = "the cache is made anew",
        };

        public string FixLower { get { return char.ToLowerInvariant(Fix[0]) + Fix.Substring(1); } }
    }

    /// <summary>The local folder's trust rules (tffreeze_api/localserver.py), on Linux system
    /// calls: statx has one layout on every architecture. Also used for the digest cache's folder
    /// (OpenOwnFolder, OpenIn, ReadAll, WriteIn).</summary>
    static class LocalFolderTrust
    {
        const string FolderLabel = "the local server's folder";
        const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
        const uint STATX_BASIC_STATS = 0x7ff;
        const int S_IFMT = 0xf000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFLNK = 0xa000, S_ISVTX = 0x200;
        const int ENOENT = 2, ELOOP = 40, EINTR = 4;
        const int O_CLOEXEC = 0x80000;  // 02000000 on x86, arm, arm64, powerpc, riscv, s390

        [DllImport("libc", SetLastError = true)] static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buf);
        [DllImport("libc", SetLastError = true)] static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] static extern int openat(int dirfd, string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] static extern IntPtr read(int fd, byte[] buf, IntPtr count);
        [DllImport("libc", SetLastError = true)] static extern IntPtr readlink(string path, byte[] buf, IntPtr size);
        [DllImport("libc")] static extern uint geteuid();
        [DllImport("libc")] static extern IntPtr getpwuid(uint uid);
        [DllImport("libc", SetLastError = true)] static extern int uname(byte[] buf);
        [DllImport("libc", SetLastError = true)] static extern IntPtr write(int fd, byte[] buf, IntPtr count);
        [DllImport("libc", SetLastError = true)] static extern int mkdir(string path, int mode);
        [DllImport("libc", SetLastError = true)] static extern int renameat(int olddirfd, string oldpath, int newdirfd, string newpath);
        [DllImport("libc", SetLastError = true)] static extern int unlinkat(int dirfd, string path, int flags);

        struct St { public uint Uid; public int Mode; public ulong Ino; public ulong Dev; }

        static string Upper { get { return TrustRules.Local.Fix; } }
        static string Lower { get { return TrustRules.Local.FixLower; } }

        static Exception Refuse(string message) { return new RpcException(StatusCode.FAILED_PRECONDITION, message); }

        static int[] openFlags;  // O_DIRECTORY, O_NOFOLLOW: they differ between architectures

        static int[] OpenFlags()
        {
            if (openFlags != null) return openFlags;
            var buf = new byte[6 * 65 + 64];
            var machine = "";
            if (uname(buf) == 0)
            {
                int end = 4 * 65;
                while (end < 5 * 65 && buf[end] != 0) end++;
                machine = Encoding.ASCII.GetString(buf, 4 * 65, end - 4 * 65);
            }
            bool armish = machine.StartsWith("aarch64") || machine.StartsWith("arm") || machine.StartsWith("ppc") ||
                          machine.StartsWith("powerpc") || machine.StartsWith("m68k");
            openFlags = armish ? new[] { 0x4000, 0x8000 } : new[] { 0x10000, 0x20000 };
            return openFlags;
        }

        static bool Stat(int dirfd, string path, int flags, out St st)
        {
            var buf = new byte[256];
            st = new St();
            if (statx(dirfd, path, flags, STATX_BASIC_STATS, buf) != 0) return false;
            st.Uid = BitConverter.ToUInt32(buf, 20);
            st.Mode = BitConverter.ToUInt16(buf, 28);
            st.Ino = BitConverter.ToUInt64(buf, 32);
            st.Dev = ((ulong)BitConverter.ToUInt32(buf, 136) << 32) | BitConverter.ToUInt32(buf, 140);
            return true;
        }

        static bool Lstat(string path, out St st) { return Stat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, out st); }

        static bool Is(St st, int type) { return (st.Mode & S_IFMT) == type; }

        static string Who(uint uid)
        {
            var pw = getpwuid(uid);
            if (pw == IntPtr.Zero) return "uid " + uid;
            return Marshal.PtrToStringAnsi(Marshal.ReadIntPtr(pw)) + " (uid " + uid + ")";
        }

        static string Mode(St st) { return Convert.ToString(st.Mode & 0xfff, 8).PadLeft(4, '0'); }

        static string ReadLink(string path)
        {
            var buf = new byte[4096];
            long n = (long)readlink(path, buf, (IntPtr)(buf.Length - 1));
            return n < 0 ? null : Encoding.UTF8.GetString(buf, 0, (int)n);
        }

        static string Join(string dir, string name) { return dir == "/" ? "/" + name : dir + "/" + name; }

        static string Parent(string path)
        {
            int slash = path.LastIndexOf('/');
            return slash <= 0 ? "/" : path.Substring(0, slash);
        }

        static bool AboveOk(St st)
        {
            if (st.Uid != geteuid() && st.Uid != 0) return false;
            return (st.Mode & 0x12) == 0 || (st.Mode & S_ISVTX) != 0;  // 022
        }

        static Exception RefuseAbove(string folder, string label, string path, St st, bool link = false, string fix = null)
        {
            var why = st.Uid != geteuid() && st.Uid != 0
                ? (link ? "it is a symbolic link owned by " : "it is owned by ") + Who(st.Uid)
                : "group or others may write to it and it is not sticky";
            fix = fix ?? Upper;
            if (st.Uid == geteuid() && !link && why.StartsWith("group"))  // the user's own folder: they can close it
                fix = "It is yours: chmod go-w " + path + " closes it. Or: " + char.ToLowerInvariant(fix[0]) + fix.Substring(1);
            return Refuse(label + " " + folder + " lies in " + path + " (owner " + Who(st.Uid) + ", mode " + Mode(st) +
                "), which another user could change: " + why + ", so they could swap the folder for one of their own. " +
                fix + ".");
        }

        /// <summary>Rule 1 up to the folder's parent; false when part of the way does not exist yet.</summary>
        static bool CheckParents(string folder, string label, string fix = null)
        {
            var pending = new List<string>(folder.Split(new[] { '/' }, StringSplitOptions.RemoveEmptyEntries));
            if (pending.Count > 0) pending.RemoveAt(pending.Count - 1);
            fix = fix ?? Upper;
            St st;
            if (!Lstat("/", out st)) return false;
            if (!AboveOk(st)) throw RefuseAbove(folder, label, "/", st, false, fix);
            var current = "/";
            int links = 0;
            while (pending.Count > 0)
            {
                var name = pending[0];
                pending.RemoveAt(0);
                if (name == "" || name == ".") continue;
                if (name == "..") { current = Parent(current); continue; }
                var path = Join(current, name);
                if (!Lstat(path, out st))
                {
                    if (Marshal.GetLastWin32Error() == ENOENT) return false;
                    throw Refuse(label + " " + folder + ": cannot check " + path + ". " + fix + ".");
                }
                if (Is(st, S_IFLNK))
                {
                    if (++links > 40) throw Refuse(label + " " + folder + ": too many symbolic links on the way. " + fix + ".");
                    if (st.Uid != geteuid() && st.Uid != 0) throw RefuseAbove(folder, label, path, st, true, fix);
                    var target = ReadLink(path);
                    if (target == null) throw Refuse(label + " " + folder + ": cannot read the link " + path + ". " + fix + ".");
                    if (target.StartsWith("/")) current = "/";
                    pending.InsertRange(0, target.Split('/'));
                    continue;
                }
                if (!Is(st, S_IFDIR)) throw Refuse(label + " " + folder + ": " + path + " on the way is not a folder. " + fix + ".");
                if (!AboveOk(st)) throw RefuseAbove(folder, label, path, st, false, fix);
                current = path;
            }
            return true;
        }

        /// <summary>Rule 2, on an lstat (or fstat) of the folder.</summary>
        static void CheckFolderStat(string folder, St st, string label, TrustRules rules = null)
        {
            rules = rules ?? TrustRules.Local;
            uint me = geteuid();
            if (Is(st, S_IFLNK))
                throw Refuse(label + " " + folder + " is a symbolic link (to " + (ReadLink(folder) ?? "?") + ", owner " +
                    Who(st.Uid) + "): it must be a real folder, which nobody else can point elsewhere. " + rules.Fix + ".");
            if (!Is(st, S_IFDIR))
                throw Refuse(label + " " + folder + " is not a folder (owner " + Who(st.Uid) + ", mode " + Mode(st) + "). " +
                    rules.Fix + ".");
            if (st.Uid != me)
                throw Refuse(label + " " + folder + " is not yours: it is owned by " + Who(st.Uid) + ", mode " + Mode(st) +
                    ", and you are " + Who(me) + ". " + rules.Risk + " " + rules.Fix + ".");
            if ((st.Mode & rules.Mask) != 0 && rules.Mask == 0x3f)  // 077
                throw Refuse(label + " " + folder + " is open to other users (mode " + Mode(st) + ", owner " + Who(st.Uid) +
                    "): it must be yours alone (mode 0700). `chmod 700 " + folder + "`, or " + rules.FixLower + ".");
            if ((st.Mode & rules.Mask) != 0)
                throw Refuse(label + " " + folder + " is writable by other users (mode " + Mode(st) + ", owner " + Who(st.Uid) +
                    "). " + rules.Risk + " `chmod go-w " + folder + "`, or " + rules.FixLower + ".");
        }

        /// <summary>Rule 3 for one entry of the folder.</summary>
        static void CheckEntry(string folder, string name, St st, bool secret, TrustRules rules = null)
        {
            rules = rules ?? TrustRules.Local;
            var path = folder + "/" + name;
            var where = ", in " + rules.Label + ", ";
            var fix = "Remove it (" + rules.Remake + "), or " + rules.FixLower + ".";
            uint me = geteuid();
            if (Is(st, S_IFLNK))
                throw Refuse(path + where + "is a symbolic link (owner " + Who(st.Uid) + "): nothing there may point elsewhere. " + fix);
            if (st.Uid != me)
                throw Refuse(path + where + "is owned by " + Who(st.Uid) + ", mode " + Mode(st) + ", not by you (" + Who(me) +
                    "): another user could have written it. " + fix);
            if ((st.Mode & (secret ? 0x3f : 0x12)) != 0)
                throw Refuse(path + where + "is " + (secret ? "readable or writable" : "writable") + " by other users (mode " +
                    Mode(st) + ", owner " + Who(st.Uid) + "). " + fix);
        }

        /// <summary>FOLDER checked by RULES (the folders above it, then it) and opened with O_NOFOLLOW;
        /// made first (mode 0700, missing folders above it too) when MAKE. -1 when it is missing (or
        /// cannot be made); FAILED_PRECONDITION when it could be another user's.</summary>
        public static int OpenOwnFolder(string folder, TrustRules rules, bool make)
        {
            folder = Path.GetFullPath(folder).TrimEnd('/');
            if (folder == "") folder = "/";
            bool above = CheckParents(folder, rules.Label, rules.Fix);
            if (make)
            {
                if (!above)  // what is missing is made by this user, 0755 whatever the umask (002 would
                {            // make it group-writable, which the rules then refuse)
                    var missing = new List<string>();
                    for (var up = Parent(folder); up != "" && up != "/" && !Directory.Exists(up); up = Parent(up))
                        missing.Add(up);
                    for (int i = missing.Count - 1; i >= 0; i--) mkdir(missing[i], 0x1ed /* 0755 */);
                }
                if (mkdir(folder, 0x1c0 /* 0700 */) != 0 && Marshal.GetLastWin32Error() != 17 /* EEXIST */) return -1;
                if (!above) above = CheckParents(folder, rules.Label, rules.Fix);
            }
            if (!above) return -1;
            St st, opened;
            if (!Lstat(folder, out st)) return -1;
            CheckFolderStat(folder, st, rules.Label, rules);
            var flags = OpenFlags();
            int fd = open(folder, flags[0] | flags[1] | O_CLOEXEC, 0);
            if (fd < 0)
            {
                if (Marshal.GetLastWin32Error() == ENOENT) return -1;
                throw Refuse(rules.Label + " " + folder + " cannot be opened. " + rules.Fix + ".");
            }
            try
            {
                if (!Stat(fd, "", AT_EMPTY_PATH, out opened) || opened.Dev != st.Dev || opened.Ino != st.Ino)
                    throw Refuse(rules.Label + " " + folder + " changed while it was checked. " + rules.Fix + ".");
                CheckFolderStat(folder, opened, rules.Label, rules);
            }
            catch
            {
                close(fd);
                throw;
            }
            return fd;
        }

        /// <summary>The regular file NAME in a folder opened by OpenOwnFolder: O_NOFOLLOW relative to
        /// it, then fstat: this user's, not writable by others. -1 when there is none.</summary>
        public static int OpenIn(int dir, string folder, string name, TrustRules rules)
        {
            int fd = openat(dir, name, OpenFlags()[1] | O_CLOEXEC | 0x800 /* O_NONBLOCK */, 0);
            if (fd < 0)
            {
                if (Marshal.GetLastWin32Error() == ELOOP)
                    throw Refuse(folder + "/" + name + ", in " + rules.Label + ", is a symbolic link. Remove it, or " +
                        rules.FixLower + ".");
                return -1;
            }
            try
            {
                St st;
                if (!Stat(fd, "", AT_EMPTY_PATH, out st)) { close(fd); return -1; }
                if (!Is(st, S_IFREG))
                    throw Refuse(folder + "/" + name + ", in " + rules.Label + ", is not a regular file (mode " + Mode(st) +
                        "). Remove it, or " + rules.FixLower + ".");
                CheckEntry(folder, name, st, false, rules);
            }
            catch
            {
                close(fd);
                throw;
            }
            return fd;
        }

        /// <summary>Everything in the opened file FD (then closed); null when a read fails.</summary>
        public static byte[] ReadAll(int fd)
        {
            try
            {
                var text = new MemoryStream();
                var buf = new byte[65536];
                while (true)
                {
                    long n = (long)read(fd, buf, (IntPtr)buf.Length);
                    if (n < 0 && Marshal.GetLastWin32Error() == EINTR) continue;
                    if (n < 0) return null;
                    if (n == 0) break;
                    text.Write(buf, 0, (int)n);
                }
                return text.ToArray();
            }
            finally { close(fd); }
        }

        /// <summary>Write NAME in a folder opened by OpenOwnFolder: a new 0600 file (O_EXCL,
        /// O_NOFOLLOW) renamed into place. False when that fails.</summary>
        public static bool WriteIn(int dir, string name, byte[] data)
        {
            var tmp = "." + name + "." + Process.GetCurrentProcess().Id + ".part";
            unlinkat(dir, tmp, 0);
            int fd = openat(dir, tmp, 0x1 /* O_WRONLY */ | 0x40 /* O_CREAT */ | 0x80 /* O_EXCL */ | OpenFlags()[1] | O_CLOEXEC,
                            0x180 /* 0600 */);
            if (fd < 0) return false;
            bool ok = true;
            try
            {
                int done = 0;
                while (done < data.Length)
                {
                    var chunk = new byte[Math.Min(1 << 20, data.Length - done)];
                    Buffer.BlockCopy(data, done, chunk, 0, chunk.Length);
                    long n = (long)write(fd, chunk, (IntPtr)chunk.Length);
                    if (n < 0 && Marshal.GetLastWin32Error() == EINTR) continue;
                    if (n <= 0) { ok = false; break; }
                    done += (int)n;
                }
            }
            finally { if (close(fd) != 0) ok = false; }
            if (ok && renameat(dir, tmp, dir, name) == 0) return true;
            unlinkat(dir, tmp, 0);
            return false;
        }

        public static void Close(int fd) { if (fd >= 0) close(fd); }

        /// <summary>The folder checked (rules 1-3) and opened; -1 when it does not exist.</summary>
        static int OpenFolder(string folder)
        {
            if (!CheckParents(folder, FolderLabel)) return -1;
            St st, opened;
            if (!Lstat(folder, out st)) return -1;
            CheckFolderStat(folder, st, FolderLabel);
            var flags = OpenFlags();
            int fd = open(folder, flags[0] | flags[1] | O_CLOEXEC, 0);
            if (fd < 0)
            {
                if (Marshal.GetLastWin32Error() == ENOENT) return -1;
                throw Refuse(FolderLabel + " " + folder + " cannot be opened. " + Upper + ".");
            }
            try
            {
                if (!Stat(fd, "", AT_EMPTY_PATH, out opened) || opened.Dev != st.Dev || opened.Ino != st.Ino)
                    throw Refuse(FolderLabel + " " + folder + " changed while it was checked. " + Upper + ".");
                CheckFolderStat(folder, opened, FolderLabel);
                foreach (var entry in Directory.GetFileSystemEntries(folder))
                {
                    var name = Path.GetFileName(entry);
                    St est;
                    if (!Stat(fd, name, AT_SYMLINK_NOFOLLOW, out est)) continue;  // gone since
                    CheckEntry(folder, name, est, name == "token");
                }
            }
            catch
            {
                close(fd);
                throw;
            }
            return fd;
        }

        /// <summary>The text of NAME in the local folder (null when there is none, or no folder):
        /// opened with O_NOFOLLOW relative to the checked folder, then fstat: a regular file of this
        /// user's that others cannot write (nor read, when secret).</summary>
        public static string Read(string folder, string name, bool secret)
        {
            int dir = OpenFolder(folder);
            if (dir < 0) return null;
            try
            {
                int fd = openat(dir, name, OpenFlags()[1] | O_CLOEXEC | 0x800 /* O_NONBLOCK */, 0);
                if (fd < 0)
                {
                    int err = Marshal.GetLastWin32Error();
                    if (err == ENOENT) return null;
                    if (err == ELOOP)
                        throw Refuse(folder + "/" + name + ", in the local server's folder, is a symbolic link. Remove it, or " +
                            Lower + ".");
                    throw new RpcException(StatusCode.UNAVAILABLE, "cannot read " + folder + "/" + name + " (errno " + err + ")");
                }
                try
                {
                    St st;
                    if (!Stat(fd, "", AT_EMPTY_PATH, out st))
                        throw new RpcException(StatusCode.UNAVAILABLE, "cannot read " + folder + "/" + name);
                    if (!Is(st, S_IFREG))
                        throw Refuse(folder + "/" + name + ", in the local server's folder, is not a regular file (mode " +
                            Mode(st) + "). Remove it, or " + Lower + ".");
                    CheckEntry(folder, name, st, secret);
                    var text = new MemoryStream();
                    var buf = new byte[4096];
                    while (text.Length < (1 << 20))
                    {
                        long n = (long)read(fd, buf, (IntPtr)buf.Length);
                        if (n < 0 && Marshal.GetLastWin32Error() == EINTR) continue;
                        if (n < 0) throw new RpcException(StatusCode.UNAVAILABLE, "cannot read " + folder + "/" + name);
                        if (n == 0) break;
                        text.Write(buf, 0, (int)n);
                    }
                    return Encoding.UTF8.GetString(text.ToArray());
                }
                finally { close(fd); }
            }
            finally { close(dir); }
        }

        /// <summary>Whether PID runs, is this user's and is a tffreeze server.</summary>
        public static bool Alive(string pid)
        {
            if (pid == "" || pid.Trim('0', '1', '2', '3', '4', '5', '6', '7', '8', '9') != "") return false;
            St st;
            if (!Stat(AT_FDCWD, "/proc/" + pid, 0, out st) || st.Uid != geteuid()) return false;
            try { return File.ReadAllText("/proc/" + pid + "/cmdline").Contains("tffreeze"); }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }
}
