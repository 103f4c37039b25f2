#include "tffreeze/errors.h"

#include <grpcpp/grpcpp.h>

#include "rpc_status.pb.h"

namespace tffreeze {

std::string StatusName(int code) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

// Why a server cannot be reached, naming the cause and the flag (as the Python and C#
// clients say it): a certificate not trusted, a TLS handshake with a plaintext server, a
// plaintext call to a TLS server, no server.
std::string Unreachable(const std::string& target, const std::string& details) {
  std::string low = details;
  for (auto& c : low) c = static_cast<char>(std::tolower(c));
  auto has = [&](const char* s) { return low.find(s) != std::string::npos; };
  if (target.rfind("unix:", 0) == 0)
    return "the local tffreeze server at " + target + " does not answer (" + details +
           "). Its log is server.log beside the socket; `tffreeze local-server stop` and try again, or pass --server";
  if (has("hostname verification") || has("is not in peer certificate")) {
    auto colon = target.rfind(':');
    std::string host = colon == std::string::npos ? target : target.substr(0, colon);
    if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return "the TLS handshake with the tffreeze server at " + target + " failed: its certificate does not name " + host +
           " (it was issued for another name; " + details + "). Reach the server by a name or address its certificate "
           "holds, or have its operator add " + host + " to the certificate's subjectAltName (server.ext in the "
           "README's recipe)";
  }
  if (has("certificate has expired") || has("certificate is not yet valid"))
    return "the TLS handshake with the tffreeze server at " + target + " failed: its certificate " +
           (has("expired") ? "has expired" : "is not yet valid") + " (" + details +
           "). Its operator must issue a new one (the README's openssl recipe, with -days)";
  if (has("certificate_verify_failed") || has("certificate verify failed") || has("trustfailure"))
    return "the TLS handshake with the tffreeze server at " + target + " failed: its certificate is not trusted (" +
           details + "). Pass --ca CA.pem (the CA that signed the server's certificate; or $TFFREEZE_CA); with that "
           "CA given, the certificate has expired or another CA signed it.";
  if (has("security handshaker"))  // this side's TLS setup: the client certificate and key
    return "the TLS setup for the tffreeze server at " + target + " failed before connecting (" + details +
           "): check that --client-cert is a PEM certificate and --client-key its PEM private key (in that order), "
           "and --ca a CA certificate";
  if (has("missing selected alpn"))  // TLS without HTTP/2: the gRPC-Web port of a TLS server
    return target + " speaks TLS but not gRPC's HTTP/2 (" + details +
           "): it looks like the gRPC-Web port; give the 'listening on' port (--server HOST:PORT)";
  if (has("handshake"))
    return "the TLS handshake with the tffreeze server at " + target + " failed (" + details +
           "). If the server does not speak TLS, drop --tls / --ca ($TFFREEZE_TLS, $TFFREEZE_CA).";
  if (has("failed parsing http/2"))  // an HTTP/1 server: the gRPC-Web port (the Python client says the same)
    return target + " answered with HTTP/1: it looks like the gRPC-Web port; give the 'listening on' port "
                    "(--server HOST:PORT)";
  if (has("socket closed") || has("has been shut down") || has("connection reset") || has("receivefailure"))
    return "the tffreeze server at " + target + " closed the connection (" + details +
           "). If it speaks TLS (started with --tls-cert), add --tls and --ca CA.pem; if it also requires client "
           "certificates (--tls-client-ca), add --client-cert and --client-key.";
  return "cannot reach the tffreeze server at " + target + " (" + details +
         "). Start one with `tffreeze serve`, or point --server / $TFFREEZE_SERVER at a running one.";
}

Error FromStatus(const grpc::Status& status, const std::string& target) {
  std::string reason;
  std::map<std::string, std::string> metadata;
  tffreeze::rpc::Status rich;
  if (!status.error_details().empty() && rich.ParseFromString(status.error_details())) {
    for (const auto& detail : rich.details()) {
      if (detail.type_url() != "type.googleapis.com/google.rpc.ErrorInfo") continue;
      tffreeze::rpc::ErrorInfo info;
      if (!info.ParseFromString(detail.value())) continue;
      reason = info.reason();
      metadata.insert(info.metadata().begin(), info.metadata().end());
    }
  }
  std::string message = status.error_message();
  // the connection's own failure gets the hint; an answer the server sent (a reason) is shown as it is
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && reason.empty()) message = Unreachable(target, message);
  return Error(StatusName(status.error_code()), message, reason, metadata);
}

}  // namespace tffreeze
