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
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE)
    message = "cannot reach the tffreeze server at " + target + " (" + message +
              "). Start one with `tffreeze serve`, or point --server / $TFFREEZE_SERVER at a running one.";
  return Error(StatusName(status.error_code()), message, reason, metadata);
}

}  // namespace tffreeze
