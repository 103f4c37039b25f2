// No leftovers: the temporary files tffreeze-cs writes beside an output are named
// ".NAME.cs<pid>-<8 hex>.part"; a SIGINT, SIGTERM or SIGHUP removes the live ones and ends
// the process as the signal would (exit 130, 143, 129); the next freeze of NAME removes the
// stale ones a killed writer left (its process gone, or untouched for a minute), and those of
// the Python and C++ clients' naming (".NAME.XXXXXX.part") untouched for a minute.
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
            var name = "." + Path.GetFileName(path) + ".cs" + pid + "-" + Guid.NewGuid().ToString("N").Substring(0, 8) + ".part";
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
                        Console.Error.WriteLine((Console.IsErrorRedirected ? "" : "\n") + "tffreeze-cs " + command + ": stopped by " +
                                                signum + (live.Count > 0 ? "; its temporary files are removed" : ""));
                        Console.Error.Flush();
                    }
                    catch (Exception) { }
                    Exit(128 + (int)signum);
                }
            }) { IsBackground = true, Name = "signals" };
            watcher.Start();
        }

        static readonly Regex ours = new Regex(@"^cs(\d+)-[0-9a-f]{8}$");
        static readonly Regex others = new Regex(@"^[A-Za-z0-9_]{6,8}$");  // mkstemp's XXXXXX (C++), Python's 8

        /// <summary>Remove the temporary files a killed writer of <paramref name="path"/> left beside it
        /// (never a live one: another freeze of the same output may be writing). Returns their names.</summary>
        public static List<string> RemoveStale(string path)
        {
            var removed = new List<string>();
            var folder = Path.GetDirectoryName(path);
            if (string.IsNullOrEmpty(folder)) folder = ".";
            string prefix = "." + Path.GetFileName(path) + ".", suffix = ".part";
            string[] names;
            try { names = Directory.GetFiles(folder, prefix + "*" + suffix); }
            catch (Exception) { return removed; }
            foreach (var full in names)
            {
                var name = Path.GetFileName(full);
                if (!name.StartsWith(prefix, StringComparison.Ordinal) || !name.EndsWith(suffix, StringComparison.Ordinal) ||
                    name.Length <= prefix.Length + suffix.Length) continue;
                var middle = name.Substring(prefix.Length, name.Length - prefix.Length - suffix.Length);
                try
                {
                    var entry = UnixFileSystemInfo.GetFileSystemEntry(full);  // lstat: regular files only
                    if (!entry.IsRegularFile) continue;
                    bool old = DateTime.UtcNow - File.GetLastWriteTimeUtc(full) > Stale;
                    var m = ours.Match(middle);
                    bool stale;
                    if (m.Success)
                    {
                        int writer;
                        if (!int.TryParse(m.Groups[1].Value, out writer) || writer == pid) continue;
                        stale = old || !Directory.Exists("/proc/" + writer);
                    }
                    else stale = others.IsMatch(middle) && old;
                    if (!stale) continue;
                    File.Delete(full);
                    removed.Add(full);
                }
                catch (Exception) { }  // gone meanwhile, or not ours to remove: left as it is
            }
            return removed;
        }
    }
}
