// No leftovers: the temporary files tffreeze-cs writes beside an output are named
// ".NAME.<pid>-<8 hex>.part", as the Python client names them; a SIGINT, SIGTERM or SIGHUP removes the live ones and ends
// the process as the signal would (exit 130, 143, 129); the next freeze of NAME removes the
// stale ones a killed writer left (its process gone), and those without a pid (the C++
// client's ".NAME.XXXXXX.part") untouched for a minute.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Threading;
using Mono.Unix;
using Mono.Unix.Native;

namespace TfFreeze
{
    public static class TempFiles
    {
        static readonly HashSet<string> live = new HashSet<string>();
        static readonly object gate = new object();
        static Thread watcher;
        static readonly int pid = System.Diagnostics.Process.GetCurrentProcess().Id;
        /// <summary>A writer whose temporary file has not changed for this long is gone.</summary>
        public static readonly TimeSpan Stale = TimeSpan.FromMinutes(1);

        [DllImport("libc", EntryPoint = "_exit")] static extern void Exit(int status);

        /// <summary>A new temporary file name beside <paramref name="path"/>, removed if a signal ends the process.</summary>
        public static string Beside(string path)
        {
            var folder = Path.GetDirectoryName(path);
            var name = "." + Path.GetFileName(path) + "." + pid + "-" + Guid.NewGuid().ToString("N").Substring(0, 8) + ".part";
            var tmp = string.IsNullOrEmpty(folder) ? name : Path.Combine(folder, name);
            lock (gate) live.Add(tmp);
            return tmp;
        }

        /// <summary>Remove <paramref name="tmp"/> if it is still there (renamed into place: nothing to do).</summary>
        public static void Done(string tmp)
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            finally { lock (gate) live.Remove(tmp); }
        }

        /// <summary>From now on SIGINT, SIGTERM and SIGHUP remove the live temporary files first.</summary>
        public static void HandleSignals(string command)
        {
            if (watcher != null) return;
            var signals = new[] { new UnixSignal(Signum.SIGINT), new UnixSignal(Signum.SIGTERM), new UnixSignal(Signum.SIGHUP) };
            watcher = new Thread(() =>
            {
                int which = UnixSignal.WaitAny(signals, -1);
                if (which < 0 || which >= signals.Length) return;
                var signum = signals[which].Signum;
                lock (gate)  // held until the end: no new temporary file starts
                {
                    foreach (var tmp in live)
                        try { File.Delete(tmp); } catch (Exception) { }
                    try
                    {
                        // as the Python and C++ clients say it
                        Console.Error.WriteLine((Console.IsErrorRedirected ? "" : "\n") + "tffreeze-cs " + command + ": " +
                                                (signum == Signum.SIGINT ? "interrupted" : "stopped by " + signum + " (nothing left half-written)"));
                        Console.Error.Flush();
                    }
                    catch (Exception) { }
                    Exit(128 + (int)signum);
                }
            }) { IsBackground = true, Name = "signals" };
            watcher.Start();
        }

        static readonly Regex named = new Regex(@"^(?:(\d+)-)?[A-Za-z0-9_]{6,8}$");

        /// <summary>Remove the temporary files killed writers left beside <paramref name="path"/> (the
        /// paths removed), by the rules of the other clients: only tffreeze's naming for this output
        /// (".NAME.PID-XXXXXXXX.part", and ".NAME.XXXXXX.part" without a pid), only this user's
        /// regular files, and only when the writer is gone: its pid no longer runs, or (no pid) the
        /// file has not changed for a minute. One unchanged for a day is stale whatever its pid. A
        /// concurrent freeze of the same output keeps its file: its pid runs.</summary>
        public static List<string> RemoveStale(string path)
        {
            var removed = new List<string>();
            var folder = Path.GetDirectoryName(Path.GetFullPath(path));
            string prefix = "." + Path.GetFileName(path) + ".", suffix = ".part";
            string[] names;
            try { names = Directory.GetFiles(folder, prefix + "*" + suffix); }
            catch (Exception) { return removed; }
            var me = Syscall.geteuid();
            foreach (var full in names)
            {
                var name = Path.GetFileName(full);
                if (!name.StartsWith(prefix, StringComparison.Ordinal) || !name.EndsWith(suffix, StringComparison.Ordinal) ||
                    name.Length <= prefix.Length + suffix.Length) continue;
                var m = named.Match(name.Substring(prefix.Length, name.Length - prefix.Length - suffix.Length));
                if (!m.Success) continue;
                Stat st;
                if (Syscall.lstat(full, out st) != 0 || (st.st_mode & FilePermissions.S_IFMT) != FilePermissions.S_IFREG ||
                    st.st_uid != me) continue;
                double age = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - st.st_mtime;
                if (m.Groups[1].Success)
                {
                    int writer;
                    if (!int.TryParse(m.Groups[1].Value, out writer)) continue;
                    if (age < 86400 && (writer == pid || Directory.Exists("/proc/" + writer))) continue;
                }
                else if (age < Stale.TotalSeconds) continue;
                if (Syscall.unlink(full) == 0) removed.Add(full);
            }
            return removed;
        }
    }
}
