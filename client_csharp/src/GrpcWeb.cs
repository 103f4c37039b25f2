// gRPC-Web over HTTP/1.1 (Mono has no HTTP/2 client): POST /tffreeze.v1.FreezeService/METHOD,
// content-type application/grpc-web+proto, body = frames (1 flag byte, 4-byte big-endian
// length, message). The response holds data frames and one trailer frame (flag 0x80) with
// grpc-status, grpc-message and grpc-status-details-bin (the ErrorInfo reason), which become
// an RpcException. gRPC-Web has no client
// streaming, so uploads use the unary WriteBlobChunk.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using TfFreeze.Protobuf;

namespace TfFreeze.V1
{
    public enum StatusCode { OK = 0, CANCELLED = 1, UNKNOWN = 2, INVALID_ARGUMENT = 3, DEADLINE_EXCEEDED = 4, NOT_FOUND = 5,
        ALREADY_EXISTS = 6, PERMISSION_DENIED = 7, RESOURCE_EXHAUSTED = 8, FAILED_PRECONDITION = 9, ABORTED = 10,
        OUT_OF_RANGE = 11, UNIMPLEMENTED = 12, INTERNAL = 13, UNAVAILABLE = 14, DATA_LOSS = 15, UNAUTHENTICATED = 16 }

    /// <summary>A call ended with a non-OK status; Message is the server's (names the problem and the fix).</summary>
    public class RpcException : Exception
    {
        public StatusCode Status { get; private set; }
        /// <summary>The server's ErrorInfo reason ("ERROR_REASON_BLOBS_MISSING", see errors.proto);
        /// branch on it, never on the message. "ERROR_REASON_UNSPECIFIED" when the server sent none.</summary>
        public string Reason { get; private set; }
        public IDictionary<string, string> Metadata { get; private set; }
        public RpcException(StatusCode status, string message, string reason = "ERROR_REASON_UNSPECIFIED",
                            IDictionary<string, string> metadata = null) : base(message)
        {
            Status = status; Reason = reason; Metadata = metadata ?? new Dictionary<string, string>();
        }
    }

    public sealed class GrpcWebChannel
    {
        public string BaseUrl { get; private set; }
        public int TimeoutMs { get; set; }
        const string Service = "tffreeze.v1.FreezeService";

        /// <summary>Bearer token sent as "Authorization: Bearer TOKEN" with every call (a server
        /// started with --auth-token-file refuses calls without it: UNAUTHENTICATED).</summary>
        public string Token { get; set; }
        /// <summary>The server is this user's local server, started on demand.</summary>
        public bool Local { get; set; }

        /// <summary>A call of this command was answered: a later failure to connect is the server
        /// going away, not a wrong address or TLS setting.</summary>
        bool reached;
        X509Certificate2 ca;

        // Several replicas ("http://h1:w1,http://h2:w2"): calls go round-robin, and a call no
        // replica has answered yet moves on to the next one when its replica is unreachable.
        List<string> urls = new List<string>();
        int next;

        public GrpcWebChannel(string baseUrl)
        {
            foreach (var part in baseUrl.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries))
            {
                var url = part.Trim();
                if (!url.StartsWith("http://") && !url.StartsWith("https://")) url = "http://" + url;
                urls.Add(url.TrimEnd('/'));
            }
            if (urls.Count == 0) throw new RpcException(StatusCode.INVALID_ARGUMENT, "--server is empty");
            BaseUrl = string.Join(",", urls);
            TimeoutMs = 600000;
        }

        /// <summary>More than one replica: a freeze may be redone on another when its replica goes away.</summary>
        public bool Replicated { get { return urls.Count > 1; } }

        /// <summary>Speak TLS (https). With caFile (PEM or DER), the server's certificate must chain
        /// to that CA and match the host name; without, the system's CAs decide.</summary>
        public void UseTls(string caFile)
        {
            urls = urls.Select(u => u.StartsWith("http://") ? "https://" + u.Substring("http://".Length) : u).ToList();
            BaseUrl = string.Join(",", urls);
            ServicePointManager.SecurityProtocol |= SecurityProtocolType.Tls12;
            if (!string.IsNullOrEmpty(caFile))
            {
                try { ca = new X509Certificate2(caFile); }
                catch (Exception e) { throw new RpcException(StatusCode.INVALID_ARGUMENT, "cannot read the CA certificate " + caFile + ": " + e.Message); }
            }
        }

        bool CheckServer(object sender, X509Certificate certificate, X509Chain chain, SslPolicyErrors errors)
        {
            if (errors == SslPolicyErrors.None) return true;
            if (ca == null || certificate == null) return false;
            if ((errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;  // name mismatch, no certificate
            // Mono reports no name mismatch once the chain has failed (our CA is not its store's): the
            // certificate must name the host we called, as gRPC checks it for tffreeze and tffreeze-cpp
            var host = (sender as HttpWebRequest)?.RequestUri.Host ?? "";
            if (!Names(new X509Certificate2(certificate), host))
            {
                nameMismatch = host;
                return false;
            }
            using (var own = new X509Chain())
            {
                own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                own.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
                own.ChainPolicy.ExtraStore.Add(ca);
                if (!own.Build(new X509Certificate2(certificate))) return false;
                var root = own.ChainElements[own.ChainElements.Count - 1].Certificate;
                return root.Thumbprint == ca.Thumbprint;
            }
        }

        static volatile string nameMismatch;  // the host a server's certificate did not name (the last refusal)

        /// <summary>Whether the certificate names <paramref name="host"/>: a DNS name (one leading
        /// wildcard label) or an IP address of its subjectAltName; without one, its common name.</summary>
        internal static bool Names(X509Certificate2 cert, string host)
        {
            host = host.Trim('[', ']').TrimEnd('.').ToLowerInvariant();
            IPAddress ip;
            bool isIp = IPAddress.TryParse(host, out ip);
            foreach (X509Extension ext in cert.Extensions)
            {
                if (ext.Oid.Value != "2.5.29.17") continue;
                var d = ext.RawData;
                int i = 0, end = d.Length;
                if (i < end && d[i] == 0x30) { i++; Length(d, ref i); }  // the GeneralNames SEQUENCE
                while (i < end)
                {
                    byte tag = d[i++];
                    int n = Length(d, ref i);
                    if (n < 0 || i + n > end) return false;
                    if (tag == 0x82 && !isIp)  // dNSName
                    {
                        var name = Encoding.ASCII.GetString(d, i, n).TrimEnd('.').ToLowerInvariant();
                        if (name == host) return true;
                        if (name.StartsWith("*.") && host.IndexOf('.') > 0 && host.Substring(host.IndexOf('.')) == name.Substring(1))
                            return true;
                    }
                    else if (tag == 0x87 && isIp)  // iPAddress
                    {
                        var bytes = new byte[n];
                        Array.Copy(d, i, bytes, 0, n);
                        if (ip.GetAddressBytes().SequenceEqual(bytes)) return true;
                    }
                    i += n;
                }
                return false;  // a subjectAltName that does not name it
            }
            return string.Equals(cert.GetNameInfo(X509NameType.SimpleName, false), host, StringComparison.OrdinalIgnoreCase);
        }

        static int Length(byte[] d, ref int i)
        {
            if (i >= d.Length) return -1;
            int first = d[i++];
            if (first < 0x80) return first;
            int count = first & 0x7f, n = 0;
            if (count > 3 || i + count > d.Length) return -1;
            for (int k = 0; k < count; k++) n = (n << 8) | d[i++];
            return n;
        }

        public TResp Unary<TResp>(string method, ProtoMessage request) where TResp : ProtoMessage, new()
        {
            TResp result = default(TResp);
            bool got = false;
            foreach (var m in ServerStream<TResp>(method, request)) { result = m; got = true; }
            if (!got) throw new RpcException(StatusCode.INTERNAL, method + ": the server sent no response message");
            return result;
        }

        /// <summary>Messages of a (server-streaming or unary) call, as they arrive.</summary>
        public IEnumerable<TResp> ServerStream<TResp>(string method, ProtoMessage request) where TResp : ProtoMessage, new()
        {
            var payload = request.ToByteArray();
            var start = System.Threading.Interlocked.Increment(ref next);
            HttpWebResponse response = null;
            for (int attempt = 0; response == null; attempt++)
            {
                var url = urls[(int)((uint)(start + attempt) % (uint)urls.Count)];
                try { response = Open(url, method, payload); }
                catch (RpcException e)
                {
                    // Unreachable (or its store is): the next replica, while there is one left to try.
                    if (e.Status != StatusCode.UNAVAILABLE || attempt + 1 >= urls.Count) throw;
                }
            }
            return Read<TResp>(response, method);
        }

        HttpWebResponse Open(string baseUrl, string method, byte[] payload)
        {
            var http = (HttpWebRequest)WebRequest.Create(baseUrl + "/" + Service + "/" + method);
            http.Method = "POST";
            http.ContentType = "application/grpc-web+proto";
            http.Accept = "application/grpc-web+proto";
            http.Headers["x-grpc-web"] = "1";
            if (!string.IsNullOrEmpty(Token)) http.Headers["Authorization"] = "Bearer " + Token;
            if (ca != null) http.ServerCertificateValidationCallback = CheckServer;
            http.Headers["grpc-timeout"] = Math.Max(1, TimeoutMs / 1000) + "S";
            http.Timeout = TimeoutMs;
            http.ReadWriteTimeout = TimeoutMs;
            http.AllowWriteStreamBuffering = true;
            try
            {
                using (var body = http.GetRequestStream())
                {
                    var header = new byte[5];
                    header[1] = (byte)(payload.Length >> 24); header[2] = (byte)(payload.Length >> 16);
                    header[3] = (byte)(payload.Length >> 8); header[4] = (byte)payload.Length;
                    body.Write(header, 0, 5);
                    body.Write(payload, 0, payload.Length);
                }
                var answered = (HttpWebResponse)http.GetResponse();
                reached = true;
                return answered;
            }
            catch (WebException e)
            {
                var r = e.Response as HttpWebResponse;
                if (r != null && r.Headers["grpc-status"] != null)
                    throw StatusFrom(r.Headers["grpc-status"], r.Headers["grpc-message"], r.Headers["grpc-status-details-bin"]);
                if (e.Status == WebExceptionStatus.Timeout)  // the call's deadline (--timeout), as gRPC words it
                    throw new RpcException(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded");
                if (reached && !Local)  // it answered this command before: its address and TLS settings are right
                    throw new RpcException(StatusCode.UNAVAILABLE, "the tffreeze server at " + baseUrl + " stopped " +
                        "answering in the middle of this command (" + e.Message + "): it was stopped or restarted, or " +
                        "the network dropped. Nothing was written. Run the command again once the server is back");
                throw new RpcException(StatusCode.UNAVAILABLE, Local ? LocalUnreachable(baseUrl, e.Message) : Unreachable(baseUrl, e.Message));
            }
        }

        IEnumerable<TResp> Read<TResp>(HttpWebResponse response, string method) where TResp : ProtoMessage, new()
        {
            using (response)
            using (var stream = response.GetResponseStream())
            {
                var headerStatus = response.Headers["grpc-status"];
                bool trailers = false;
                var head = new byte[5];
                while (ReadFully(stream, head, 5))
                {
                    int length = (head[1] << 24) | (head[2] << 16) | (head[3] << 8) | head[4];
                    var data = new byte[length];
                    if (!ReadFully(stream, data, length)) throw new RpcException(StatusCode.INTERNAL, method + ": truncated response frame");
                    if ((head[0] & 0x80) != 0)
                    {
                        trailers = true;
                        string status = null, message = "", details = null;
                        foreach (var line in Encoding.UTF8.GetString(data).Split(new[] { "\r\n" }, StringSplitOptions.RemoveEmptyEntries))
                        {
                            int colon = line.IndexOf(':');
                            if (colon < 0) continue;
                            var key = line.Substring(0, colon).Trim().ToLowerInvariant();
                            var value = line.Substring(colon + 1).Trim();
                            if (key == "grpc-status") status = value;
                            else if (key == "grpc-message") message = value;
                            else if (key == "grpc-status-details-bin") details = value;
                        }
                        if (status != null && status != "0") throw StatusFrom(status, message, details);
                    }
                    else
                    {
                        yield return ProtoMessage.Parse<TResp>(data);
                    }
                }
                if (!trailers && headerStatus != null && headerStatus != "0")
                    throw StatusFrom(headerStatus, response.Headers["grpc-message"], response.Headers["grpc-status-details-bin"]);
            }
        }

        /// <summary>The local server does not answer (as the Python and C++ clients say it).</summary>
        static string LocalUnreachable(string url, string details)
        {
            return "the local tffreeze server at " + url + " does not answer (" + details + "). Its log is server.log in " +
                   "the local server's folder; `tffreeze local-server stop` and try again, or pass --server";
        }

        /// <summary>Why the endpoint cannot be reached, naming the cause and the flag (as the Python
        /// and C++ clients say it): a certificate not trusted, a TLS mismatch, no server.</summary>
        static string Unreachable(string url, string details)
        {
            var low = details.ToLowerInvariant();
            if (nameMismatch != null && (low.Contains("trustfailure") || low.Contains("certificate") || low.Contains("ssl")))
            {
                var host = nameMismatch;
                nameMismatch = null;
                return "the TLS handshake with the tffreeze server at " + url + " failed: its certificate does not name " +
                       host + " (it was issued for another name; " + details + "). Reach the server by a name or address its certificate " +
                       "holds, or have its operator add " + host + " to the certificate's subjectAltName (server.ext in " +
                       "the README's recipe)";
            }
            if (low.Contains("trustfailure") || low.Contains("certificate verify failed") || low.Contains("certificate_verify_failed"))
                return "the TLS handshake with the tffreeze server at " + url + " failed: its certificate is not trusted (" +
                       details + "). Pass --ca CA.pem (the CA that signed the server's certificate; or $TFFREEZE_CA); " +
                       "with that CA given, the certificate has expired or another CA signed it.";
            if (low.Contains("handshake") || low.Contains("securechannelfailure"))
                return "the TLS handshake with the tffreeze server at " + url + " failed (" + details +
                       "). If the server does not speak TLS, drop --tls / --ca ($TFFREEZE_TLS, $TFFREEZE_CA). If it " +
                       "requires client certificates (started with --tls-client-ca), tffreeze-cs cannot send one: use " +
                       "tffreeze or tffreeze-cpp with --client-cert and --client-key.";
            if (url.StartsWith("https://") && TlsWithoutHttp1(url))  // TLS, then no HTTP/1.1: gRPC's HTTP/2 port
                return url + " accepted TLS but closed the HTTP/1.1 request (" + details + "): it looks like the gRPC " +
                       "port (the 'listening on' address tffreeze and tffreeze-cpp use); tffreeze-cs needs the " +
                       "gRPC-Web address: give --server https://HOST:WEB_PORT (the 'gRPC-Web on' address)";
            if (url.StartsWith("http://") && SpeaksHttp2Only(url))  // the server's gRPC port, not its gRPC-Web one
                return url + " answered with HTTP/2 only: it looks like the gRPC port (the 'listening on' address " +
                       "tffreeze and tffreeze-cpp use); tffreeze-cs needs the gRPC-Web address: give --server " +
                       "http://HOST:WEB_PORT (the 'gRPC-Web on' address of a server started with --web-port)";
            // A plain call to a TLS port fails with whatever words Mono's transport has for the closed
            // connection ("Operation aborted", "Error writing headers", ...): the port is asked directly.
            var scheme = url.StartsWith("https://") ? "https" : "http";  // the advice keeps the user's TLS choice
            if (low.Contains("socket closed") || low.Contains("has been shut down") || low.Contains("connection reset") ||
                low.Contains("receivefailure") || (url.StartsWith("http://") && SpeaksTls(url)))
            {
                return "the tffreeze server at " + url + " closed the connection (" + details + "). " +
                       (scheme == "http" ? "If it speaks TLS (started with --tls-cert), add --tls and --ca CA.pem. " : "") +
                       "If it is the gRPC port (the 'listening on' address), tffreeze-cs needs the gRPC-Web address: " +
                       "--server " + scheme + "://HOST:WEB_PORT (--web-port).";
            }
            return "cannot reach the tffreeze gRPC-Web endpoint at " + url + " (" + details +
                   "). Start the server with `tffreeze serve --web-port W` and pass --server " + scheme + "://HOST:W.";
        }

        /// <summary>Whether the server at <paramref name="url"/> answers an HTTP/2 connection preface with
        /// HTTP/2's SETTINGS frame (a gRPC server's port, which closes a gRPC-Web call over HTTP/1.1).</summary>
        static bool SpeaksHttp2Only(string url)
        {
            var preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            var settings = new byte[] { 0, 0, 0, 4, 0, 0, 0, 0, 0 };  // an empty SETTINGS frame
            var head = Probe(url, new[] { preface, settings }, 9);
            return head != null && head[3] == 4;
        }

        /// <summary>Whether the server at <paramref name="url"/> completes a TLS handshake and then closes an
        /// HTTP/1.1 request without an HTTP/1.1 answer: a TLS server that speaks HTTP/2 only, the gRPC port
        /// (its certificate is not checked: this only names the port in an error message).</summary>
        static bool TlsWithoutHttp1(string url)
        {
            try
            {
                var uri = new Uri(url);
                using (var tcp = new System.Net.Sockets.TcpClient())
                {
                    var connect = tcp.BeginConnect(uri.Host, uri.Port, null, null);
                    if (!connect.AsyncWaitHandle.WaitOne(5000)) return false;
                    tcp.EndConnect(connect);
                    tcp.ReceiveTimeout = 5000;
                    tcp.SendTimeout = 5000;
                    using (var ssl = new SslStream(tcp.GetStream(), false, (s, c, ch, e) => true))
                    {
                        ssl.AuthenticateAsClient(uri.Host);
                        var request = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: " + uri.Host + "\r\nConnection: close\r\n\r\n");
                        ssl.Write(request);
                        ssl.Flush();
                        var head = new byte[5];
                        int got = 0;
                        while (got < head.Length)
                        {
                            int r = ssl.Read(head, got, head.Length - got);
                            if (r <= 0) break;
                            got += r;
                        }
                        return Encoding.ASCII.GetString(head, 0, got) != "HTTP/";
                    }
                }
            }
            catch (Exception) { return false; }
        }

        /// <summary>Whether the server at <paramref name="url"/> answers a TLS ClientHello with a TLS record
        /// (a handshake, or an alert refusing this hello's offer): a port that speaks TLS.</summary>
        static bool SpeaksTls(string url)
        {
            var head = Probe(url, new[] { ClientHello() }, 2);
            return head != null && (head[0] == 0x16 || head[0] == 0x15) && head[1] == 0x03;
        }

        /// <summary>Connects to <paramref name="url"/>'s host and port, writes <paramref name="sends"/> and
        /// reads the first <paramref name="count"/> bytes of the answer (5 s each way); null when it cannot.</summary>
        static byte[] Probe(string url, byte[][] sends, int count)
        {
            try
            {
                var uri = new Uri(url);
                using (var tcp = new System.Net.Sockets.TcpClient())
                {
                    var connect = tcp.BeginConnect(uri.Host, uri.Port, null, null);
                    if (!connect.AsyncWaitHandle.WaitOne(5000)) return null;
                    tcp.EndConnect(connect);
                    tcp.ReceiveTimeout = 5000;
                    tcp.SendTimeout = 5000;
                    var stream = tcp.GetStream();
                    foreach (var bytes in sends) stream.Write(bytes, 0, bytes.Length);
                    var head = new byte[count];
                    int got = 0;
                    while (got < count)
                    {
                        int r = stream.Read(head, got, count - got);
                        if (r <= 0) break;
                        got += r;
                    }
                    return got == count ? head : null;
                }
            }
            catch (Exception) { return null; }
        }

        /// <summary>A TLS 1.2 ClientHello (TLS 1.3 and 1.2 AEAD suites, X25519 and P-256).</summary>
        static byte[] ClientHello()
        {
            var body = new List<byte> { 0x03, 0x03 };
            var random = new byte[32];
            new Random().NextBytes(random);
            body.AddRange(random);
            body.Add(0);  // no session id
            byte[] suites = { 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9,
                              0xcc, 0xa8, 0x00, 0x9c, 0x00, 0x9d };
            body.Add(0); body.Add((byte)suites.Length); body.AddRange(suites);
            body.Add(1); body.Add(0);  // no compression
            byte[] extensions = {
                0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17,  // supported groups
                0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,  // point formats
                0x00, 0x0d, 0x00, 0x0a, 0x00, 0x08, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x01,  // signature algorithms
            };
            body.Add(0); body.Add((byte)extensions.Length); body.AddRange(extensions);
            var handshake = new List<byte> { 0x01, 0, (byte)(body.Count >> 8), (byte)body.Count };
            handshake.AddRange(body);
            var record = new List<byte> { 0x16, 0x03, 0x01, (byte)(handshake.Count >> 8), (byte)handshake.Count };
            record.AddRange(handshake);
            return record.ToArray();
        }

        /// <summary>The status, with the reason and metadata of the google.rpc.ErrorInfo carried in
        /// the grpc-status-details-bin trailer (base64 of a google.rpc.Status).</summary>
        static RpcException StatusFrom(string status, string message, string details)
        {
            int code;
            int.TryParse(status, out code);
            string reason = "ERROR_REASON_UNSPECIFIED";
            var metadata = new Dictionary<string, string>();
            if (!string.IsNullOrEmpty(details))
            {
                try
                {
                    var b64 = details.Trim();
                    b64 = b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '=');
                    var st = ProtoMessage.Parse<Google.Rpc.Status>(Convert.FromBase64String(b64));
                    foreach (var any in st.Details)
                    {
                        if (!any.TypeUrl.EndsWith("/google.rpc.ErrorInfo")) continue;
                        var info = ProtoMessage.Parse<Google.Rpc.ErrorInfo>(any.Value);
                        reason = info.Reason;
                        foreach (var kv in info.Metadata) metadata[kv.Key] = kv.Value;
                    }
                }
                catch (FormatException) { }
                catch (InvalidDataException) { }
            }
            return new RpcException((StatusCode)code, Uri.UnescapeDataString(message ?? ""), reason, metadata);
        }

        static bool ReadFully(Stream s, byte[] buf, int n)
        {
            int got = 0;
            while (got < n)
            {
                int r = s.Read(buf, got, n - got);
                if (r <= 0)
                {
                    if (got == 0) return false;
                    throw new RpcException(StatusCode.INTERNAL, "connection closed inside a gRPC-Web frame");
                }
                got += r;
            }
            return true;
        }
    }
}
