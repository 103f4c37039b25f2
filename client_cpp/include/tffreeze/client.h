// tffreeze::Client: freeze TensorFlow checkpoints with a tffreeze server over gRPC (HTTP/2).
//
//   tffreeze::Client client("127.0.0.1:50051");
//   tffreeze::FreezeOptions options;
//   options.target = "tensorflowsharp";
//   tffreeze::FreezeOutcome out = client.Freeze("runs/mnist", "mnist.pb", options);
//   std::string manifest = tffreeze::ManifestJson(out.result);   // the manifest file's text
//
// The checkpoint is chosen on this machine by the Python client's rules (the state file
// matched by basename, --step, an explicit prefix, a SavedModel folder, the only folder
// below SOURCE holding one); only its files the server lacks are uploaded (by sha256);
// the graph is downloaded to OUT via a temporary file, checked against its sha256, and
// not downloaded at all when OUT already holds it. Every failure is a tffreeze::Error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tffreeze/errors.h"
#include "tffreeze/v1/freeze.pb.h"

namespace tffreeze {

struct LocalFile {
  std::string path;   // relative to the checkpoint folder, '/'-separated (as sent)
  std::string local;  // the file on this machine
  std::string sha256;
  int64_t size = 0;
};

struct LocalCheckpoint {
  std::string directory;
  std::string prefix;  // the chosen checkpoint prefix ("" for a SavedModel)
  std::vector<LocalFile> files;
  std::vector<std::string> warnings;
};

// What SOURCE (a Saver folder, a checkpoint prefix or a SavedModel folder) names here,
// and the files to upload. Throws Error (NOT_FOUND ...) naming the problem.
LocalCheckpoint Collect(const std::string& source, std::optional<int64_t> step = std::nullopt);

struct FreezeOptions {
  std::vector<std::string> outputs, inputs;  // tensor or op names; empty: the server resolves them
  std::optional<int64_t> step;               // the checkpoint at this global step
  std::string target;                        // "" or "tensorflowsharp" (loads in libtensorflow 1.15)
  bool optimize = false, verify = false;
};

struct ClientOptions {
  bool tls = false;
  std::string ca_file;                     // PEM roots to check the server against (implies tls)
  std::string client_cert, client_key;     // PEM files for mutual TLS
  std::string token;                       // sent as "authorization: Bearer TOKEN"
  std::chrono::seconds timeout{600};       // per call
};

struct FreezeOutcome {
  tffreeze::v1::FreezeResult result;  // with this client's selection warnings first
  int files = 0, uploaded_files = 0;
  int64_t uploaded_bytes = 0;
  bool downloaded = true;  // false when OUT already held exactly this graph
};

// progress(kind, done, total, message): kind "upload" (bytes) or "freeze" (fraction of 1).
using ProgressFn = std::function<void(const std::string&, double, double, const std::string&)>;

class Client {
 public:
  // target: "host:port" (default $TFFREEZE_SERVER, else 127.0.0.1:50051); several replicas as
  // "h1:p1,h2:p2" or a gRPC target URI ("dns:///name:port"): calls are balanced round-robin,
  // idempotent ones retried on UNAVAILABLE, and a freeze redone on another replica when its
  // replica goes away.
  explicit Client(std::string target = "", ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& target() const { return target_; }
  ProgressFn progress;

  // Upload what the server lacks, freeze, write the graph to output_path atomically.
  FreezeOutcome Freeze(const std::string& source, const std::string& output_path, const FreezeOptions& options);

  // The files the server lacks (FindMissingBlobs), uploaded in 1 MiB chunks.
  void Upload(const std::vector<LocalFile>& files, FreezeOutcome* stats);

  // Stream a blob into path via a temporary file beside it, checking size and sha256.
  void Download(const std::string& sha256, int64_t size, const std::string& path);

 private:
  struct Impl;
  std::string target_;
  ClientOptions options_;
  bool replicated_ = false;
  std::unique_ptr<Impl> impl_;
};

// The manifest text of a result: the bytes the Python and C# clients write (the proto3
// JSON mapping with tffreeze's fixed printing choices, see tffreeze_api/manifest.py).
std::string ManifestJson(const google::protobuf::Message& message);

// Write data to path via a temporary file in the same folder (an existing file is
// replaced only by a complete one).
void WriteAtomically(const std::string& path, const std::string& data);

}  // namespace tffreeze
