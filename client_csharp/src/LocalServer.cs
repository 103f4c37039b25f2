// This user's local server (tffreeze_api/localserver.py describes its folder): used when no
// --server and no $TFFREEZE_WEB_SERVER are given. A running one is found through server.info;
// otherwise `tffreeze local-server start` (the Python client owns starting it, under a lock
// shared with every client) is run, and server.info read again.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using TfFreeze.V1;

namespace TfFreeze
{
    public static class LocalServer
    {
        static string Folder()
        {
            var value = (Environment.GetEnvironmentVariable("TFFREEZE_CACHE_DIR") ?? "").Trim();
            if (value != "" && value != "off" && value != "0" && value != "none")
                return Path.Combine(Path.GetFullPath(value), "local");
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var home = Environment.GetEnvironmentVariable("HOME") ?? "/";
            var b = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(home, ".cache");
            return Path.Combine(Path.GetFullPath(b), "tffreeze", "local");
        }

        /// <summary>server.info of a live server with a gRPC-Web port, or null.</summary>
        static Dictionary<string, string> Running(string folder)
        {
            var info = new Dictionary<string, string>();
            try
            {
                foreach (var line in File.ReadAllLines(Path.Combine(folder, "server.info")))
                {
                    var space = line.IndexOf(' ');
                    if (space > 0) info[line.Substring(0, space)] = line.Substring(space + 1);
                }
                if (!info.ContainsKey("pid") || !info.ContainsKey("web") || !info.ContainsKey("token-file")) return null;
                var cmd = File.ReadAllText("/proc/" + info["pid"] + "/cmdline");
                return cmd.Contains("tffreeze") ? info : null;
            }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }

        /// <summary>(gRPC-Web URL, token) of the running local server, started if need be.</summary>
        public static Tuple<string, string> Find()
        {
            var folder = Folder();
            var info = Running(folder);
            if (info == null)
            {
                Start();
                info = Running(folder);
                if (info == null)
                    throw new RpcException(StatusCode.UNAVAILABLE, "the local server started but " +
                        Path.Combine(folder, "server.info") + " does not name a running one");
            }
            string token;
            try { token = File.ReadAllText(info["token-file"]).Trim(); }
            catch (IOException e)
            {
                throw new RpcException(StatusCode.UNAVAILABLE, "cannot read the local server's token " + info["token-file"] + ": " + e.Message);
            }
            return Tuple.Create(info["web"], token);
        }

        static void Start()
        {
            var program = Environment.GetEnvironmentVariable("TFFREEZE_COMMAND");
            if (string.IsNullOrEmpty(program)) program = "tffreeze";
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
}
