// SHA-256 at native speed (OpenSSL's libcrypto through P/Invoke; Mono's managed SHA-256
// runs at ~70 MB/s) and a stat-keyed digest cache, so an unchanged file is never read again.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using TfFreeze.V1;

namespace TfFreeze
{
    /// <summary>Incremental SHA-256: libcrypto's EVP interface where it loads, else .NET's.</summary>
    public sealed class Sha256 : IDisposable
    {
        const string Lib = "libcrypto.so.3";
        [DllImport(Lib)] static extern IntPtr EVP_MD_CTX_new();
        [DllImport(Lib)] static extern void EVP_MD_CTX_free(IntPtr ctx);
        [DllImport(Lib)] static extern IntPtr EVP_sha256();
        [DllImport(Lib)] static extern int EVP_DigestInit_ex(IntPtr ctx, IntPtr type, IntPtr engine);
        [DllImport(Lib)] static extern int EVP_DigestUpdate(IntPtr ctx, byte[] data, UIntPtr count);
        [DllImport(Lib)] static extern int EVP_DigestFinal_ex(IntPtr ctx, byte[] digest, ref uint size);

        static bool? native;
        IntPtr ctx;
        System.Security.Cryptography.SHA256 managed;

        /// <summary>True when libcrypto is in use.</summary>
        public static bool Native
        {
            get
            {
                if (native == null)
                {
                    try { EVP_MD_CTX_free(EVP_MD_CTX_new()); native = true; }
                    catch (DllNotFoundException) { native = false; }
                    catch (EntryPointNotFoundException) { native = false; }
                }
                return native.Value;
            }
        }

        public Sha256()
        {
            if (Native)
            {
                ctx = EVP_MD_CTX_new();
                if (ctx == IntPtr.Zero || EVP_DigestInit_ex(ctx, EVP_sha256(), IntPtr.Zero) != 1)
                    throw new InvalidOperationException("libcrypto could not start a SHA-256");
            }
            else managed = System.Security.Cryptography.SHA256.Create();
        }

        public void Update(byte[] data, int count)
        {
            if (managed != null) managed.TransformBlock(data, 0, count, null, 0);
            else EVP_DigestUpdate(ctx, data, (UIntPtr)(uint)count);
        }

        public string HexDigest()
        {
            byte[] hash;
            if (managed != null)
            {
                managed.TransformFinalBlock(new byte[0], 0, 0);
                hash = managed.Hash;
            }
            else
            {
                hash = new byte[32];
                uint size = 32;
                EVP_DigestFinal_ex(ctx, hash, ref size);
            }
            var sb = new StringBuilder(64);
            foreach (var b in hash) sb.Append(b.ToString("x2"));
            return sb.ToString();
        }

        public void Dispose()
        {
            if (ctx != IntPtr.Zero) { EVP_MD_CTX_free(ctx); ctx = IntPtr.Zero; }
            if (managed != null) { managed.Dispose(); managed = null; }
        }

        public static string Hex(byte[] data)
        {
            using (var h = new Sha256()) { h.Update(data, data.Length); return h.HexDigest(); }
        }

        public static string OfFile(string path)
        {
            using (var h = new Sha256())
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
            {
                var buffer = new byte[1 << 20];
                int n;
                while ((n = f.Read(buffer, 0, buffer.Length)) > 0) h.Update(buffer, n);
                return h.HexDigest();
            }
        }
    }

    /// <summary>Digests of local files keyed by (full path, size, modification time), kept in
    /// $TFFREEZE_CACHE_DIR (default $XDG_CACHE_HOME/tffreeze, i.e. ~/.cache/tffreeze; "off"
    /// disables it) as digests-cs.tsv. A file modified in the last 2 s is hashed, not remembered.
    /// The cache is read only once its folder and file pass the local server folder's rules
    /// (LocalFolderTrust, TrustRules.Cache): otherwise it is not used (files are hashed) and one
    /// warning says why. It is written 0600 (its folder made 0700), renamed into place, never
    /// through a symbolic link.</summary>
    public static class Digests
    {
        const int MaxEntries = 20000;
        const string FileName = "digests-cs.tsv";
        static Dictionary<string, string[]> entries;  // path -> [size, mtime ticks, sha256]
        static bool dirty, distrusted;

        static string CacheFile()
        {
            if (distrusted) return null;
            var dir = Environment.GetEnvironmentVariable("TFFREEZE_CACHE_DIR");
            if (dir != null)
            {
                var v = dir.Trim().ToLowerInvariant();
                if (v == "" || v == "off" || v == "0" || v == "none") return null;
            }
            else
            {
                var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
                var home = Environment.GetEnvironmentVariable("HOME");
                if (!string.IsNullOrEmpty(xdg)) dir = Path.Combine(xdg, "tffreeze");
                else if (!string.IsNullOrEmpty(home)) dir = Path.Combine(home, ".cache", "tffreeze");
                else return null;
            }
            return Path.Combine(Path.GetFullPath(dir), FileName);
        }

        /// <summary>The cache folder failed a check: not used by this process; one warning.</summary>
        static void Distrust(RpcException e)
        {
            if (!distrusted) Console.Error.WriteLine("tffreeze-cs: warning: the cache is not used: " + e.Message);
            distrusted = true;
            entries = new Dictionary<string, string[]>(StringComparer.Ordinal);
            dirty = false;
        }

        static Dictionary<string, string[]> Load()
        {
            if (entries != null) return entries;
            entries = new Dictionary<string, string[]>(StringComparer.Ordinal);
            var file = CacheFile();
            if (file == null) return entries;
            byte[] data = null;
            var folder = Path.GetDirectoryName(file);
            try
            {
                int dir = LocalFolderTrust.OpenOwnFolder(folder, TrustRules.Cache, false);
                if (dir < 0) return entries;
                try
                {
                    int fd = LocalFolderTrust.OpenIn(dir, folder, FileName, TrustRules.Cache);
                    if (fd >= 0) data = LocalFolderTrust.ReadAll(fd);
                }
                finally { LocalFolderTrust.Close(dir); }
            }
            catch (RpcException e)
            {
                Distrust(e);
                return entries;
            }
            if (data == null) return entries;
            try
            {
                foreach (var line in Encoding.UTF8.GetString(data).Split('\n'))
                {
                    var parts = line.Split(new[] { '\t' }, 4);
                    if (parts.Length == 4 && parts[0].Length == 64) entries[parts[3]] = new[] { parts[1], parts[2], parts[0] };
                }
            }
            catch (ArgumentException) { }
            return entries;
        }

        /// <summary>The words every client says for a checkpoint file the user may not read.</summary>
        public static string Unreadable(string path, bool folder = false)
        {
            string verb = folder ? "list" : "read", mode = folder ? "u+rx" : "u+r";
            Mono.Unix.Native.Stat st;
            if (Mono.Unix.Native.Syscall.stat(path, out st) == 0 && st.st_uid != Mono.Unix.Native.Syscall.geteuid())
            {  // (chmod is not this user's to run)
                var pw = Mono.Unix.Native.Syscall.getpwuid(st.st_uid);
                var who = pw == null ? "uid " + st.st_uid : pw.pw_name + " (uid " + st.st_uid + ")";
                return "cannot " + verb + " " + path + ": permission denied; it belongs to another user, " + who +
                       ": ask them to make it readable, or freeze a copy you can read";
            }
            return "cannot " + verb + " " + path + ": permission denied; make it readable (chmod " + mode + " " + path +
                   "), or freeze a copy you can read";
        }

        /// <summary>The file's digest, from the cache when its size and stamp (StampOf) are unchanged.</summary>
        public static Digest Of(string path)
        {
            var full = RealPath(Path.GetFullPath(path));  // a symbolic link's target: its size, its bytes
            var info = new FileInfo(full);
            if (!info.Exists) throw new FileNotFoundException("cannot read " + path, path);
            try { using (File.OpenRead(full)) { } }
            catch (UnauthorizedAccessException)
            {
                throw new RpcException(StatusCode.PERMISSION_DENIED, Unreadable(path));
            }
            string size = info.Length.ToString(), mtime = StampOf(full, info);
            string[] e;
            if (Load().TryGetValue(full, out e) && e[0] == size && e[1] == mtime)
                return new Digest { Sha256 = e[2], SizeBytes = info.Length };
            var sha = Sha256.OfFile(full);
            info.Refresh();
            if (info.Length.ToString() == size && StampOf(full, info) == mtime &&
                (DateTime.UtcNow - info.LastWriteTimeUtc).TotalSeconds > 2 && CacheFile() != null)
            {
                entries[full] = new[] { size, mtime, sha };
                dirty = true;
            }
            return new Digest { Sha256 = sha, SizeBytes = info.Length };
        }

        /// <summary>Record a file this process just wrote and checked against sha256 (the frozen
        /// graph), at its current size and mtime however recent.</summary>
        public static void Remember(string path, string sha256)
        {
            var full = RealPath(Path.GetFullPath(path));
            var info = new FileInfo(full);
            if (!info.Exists || CacheFile() == null) return;
            Load()[full] = new[] { info.Length.ToString(), StampOf(full, info), sha256 };
            dirty = true;
        }

        /// <summary>What says a file is unchanged: its mtime, and its inode, device and ctime, which a
        /// file written in place with its mtime set back (tar --mtime, touch -d), or replaced by rename
        /// (rsync), does not keep.</summary>
        static string StampOf(string full, FileInfo info)
        {
            Mono.Unix.Native.Stat st;
            var mtime = info.LastWriteTimeUtc.Ticks.ToString();
            if (Mono.Unix.Native.Syscall.stat(full, out st) != 0) return mtime;
            return mtime + ":" + st.st_ino + ":" + st.st_dev + ":" + st.st_ctime + "." + st.st_ctime_nsec;
        }

        /// <summary>The path with every symbolic link in it resolved (as it is when that fails).</summary>
        static string RealPath(string full)
        {
            try { return Mono.Unix.UnixPath.GetCompleteRealPath(full); }
            catch (Exception) { return full; }
        }

        /// <summary>Write the cache (after each call); a failure costs a re-hash next time, nothing else.</summary>
        public static void Save()
        {
            var file = CacheFile();
            if (!dirty || file == null) return;
            var lines = entries.Skip(Math.Max(0, entries.Count - MaxEntries))
                               .Select(kv => kv.Value[2] + "\t" + kv.Value[0] + "\t" + kv.Value[1] + "\t" + kv.Key + "\n");
            var data = Encoding.UTF8.GetBytes(string.Concat(lines));
            int dir;
            try { dir = LocalFolderTrust.OpenOwnFolder(Path.GetDirectoryName(file), TrustRules.Cache, true); }
            catch (RpcException e) { Distrust(e); return; }
            if (dir < 0) return;
            try { if (LocalFolderTrust.WriteIn(dir, FileName, data)) dirty = false; }
            finally { LocalFolderTrust.Close(dir); }
        }
    }
}
