// tffreeze errors: one exception type keyed by the gRPC status name and, where the
// server gave one, the ErrorReason name (protos/tffreeze/v1/errors.proto).
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace grpc {
class Status;
}

namespace tffreeze {

class Error : public std::runtime_error {
 public:
  // code: a gRPC status name ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE", ...);
  // reason: an ErrorReason name ("ERROR_REASON_CHECKPOINT_NOT_FOUND") or "".
  Error(std::string code, const std::string& message, std::string reason = "",
        std::map<std::string, std::string> metadata = {})
      : std::runtime_error(message), code_(std::move(code)), reason_(std::move(reason)),
        metadata_(std::move(metadata)) {}

  const std::string& code() const { return code_; }
  const std::string& reason() const { return reason_; }
  // ErrorInfo metadata, e.g. {"field": "options.outputs"}.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string code_, reason_;
  std::map<std::string, std::string> metadata_;
};

// The status name of a gRPC status code ("NOT_FOUND").
std::string StatusName(int code);

// Why the server at target cannot be reached (TLS trust, TLS mismatch, or no server), naming the flag.
std::string Unreachable(const std::string& target, const std::string& details);

// An Error from a failed call: its code, message and the ErrorInfo of its rich status
// (grpc-status-details-bin). UNAVAILABLE names the server and how to start one.
Error FromStatus(const grpc::Status& status, const std::string& target);

}  // namespace tffreeze
