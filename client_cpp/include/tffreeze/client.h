// tffreeze::Client: freeze TensorFlow checkpoints with a tffreeze server over gRPC (HTTP/2).
//
//   tffreeze::Client client("127.0.0.1:50051");
//   tffreeze::FreezeOptions options;
//   options.target = "tensorflowsharp";
//   tffreeze::FreezeOutcome out = client.Freeze("runs/mnist", "mnist.pb", options);
//   tffreeze::WriteAtomically("mnist.json", out.manifest);   // the manifest, as the server rendered it
//
// The server chooses which files of SOURCE make up the checkpoint (PlanFreeze, from
// SOURCE's listing) and parses the options as typed; only the chosen files the server
// lacks are uploaded (by sha256; unchanged files are not read again: a stat-keyed digest
// cache under $TFFREEZE_CACHE_DIR, default ~/.cache/tffreeze); the graph is assembled from
// the local files where the server offers a recipe, else downloaded, to OUT via a temporary
// file, checked against its sha256, and not written at all when OUT already holds it. Every
// failure is a tffreeze::Error.
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
#include "tffreeze/v1/service.pb.h"

namespace tffreeze {

struct LocalFile {
  std::string path;   // as sent: relative to the uploaded folder, '/'-separated
  std::string local;  // the file on this machine
  std::string sha256;
  int64_t size = 0;
};

// SOURCE's listing for PlanFreeze; `root` is the folder its paths are relative to.
struct Listing {
  std::string root;
  tffreeze::v1::PlanFreezeRequest request;
};

// Lists SOURCE (a folder: its files up to 6 folders down, hidden folders skipped; a
// checkpoint prefix: its folder's files) and reads its `checkpoint` state files.
Listing ListSource(const std::string& source, const std::string& graph_file = "");

// The file of SOURCE's listing (as ListSource lists it) that a checkpoint or SavedModel is made
// of (`checkpoint`, *.index, *.meta, *.data-DDDDD-of-DDDDD, saved_model.pb/.pbtxt, fingerprint.pb,
// anything under a variables/ or assets/ folder), or the --graph file, that path is: by device
// and inode when path exists, else by absolute path; its path relative to SOURCE's folder, as
// listed (the graph file as given); "" when path is none of them or SOURCE cannot be listed (the
// freeze then says why). Any other listed file (an earlier frozen graph) may be written over.
std::string ListedFileAt(const std::string& source, const std::string& path, const std::string& graph_file = "");

// A file's sha256 (and size), from the digest cache when its stat is unchanged.
std::string FileDigest(const std::string& path, int64_t* size);
// Record the digest of a file this process just wrote and checked (the frozen graph).
void RememberDigest(const std::string& path, const std::string& sha256);
// Write the digest cache (the client does so after each call).
void SaveDigests();

// The options as a user types them, spelled as every client's command line; the server
// parses and checks them (INVALID_ARGUMENT naming the option).
struct FreezeOptions {
  std::string outputs, inputs;          // comma-separated tensor or op names; "": resolved by the server
  std::string step;                     // a global step ("": the latest)
  std::string signature;                // SavedModel / meta-graph signature
  std::vector<std::string> tags;        // SavedModel MetaGraph tags
  std::vector<std::string> bind;        // "NAME=VALUE" (true/false/number; "NAME=" leaves it unbound)
  bool ema = false;                     // moving-average shadow values
  std::vector<std::string> var_map;     // "GRAPH_VAR=CKPT_KEY"
  std::string include_variables, exclude_variables;  // comma-separated
  bool optimize = false, verify = false;
  std::string target;                   // "" or "tensorflowsharp" (loads in libtensorflow 1.15)
  std::string format;                   // "", "graphdef", "onnx" or "tflite" (converted, run and compared)
  std::vector<std::string> input_shapes;  // "NAME=D1,D2,..." (-1: unknown)
  std::string graph;                    // graph file for a checkpoint saved without .meta
};

struct ClientOptions {
  bool tls = false;
  std::string ca_file;                     // PEM roots to check the server against (implies tls)
  std::string client_cert, client_key;     // PEM files for mutual TLS
  std::string token;                       // sent as "authorization: Bearer TOKEN"
  std::chrono::milliseconds timeout{600000};  // per call
};

struct FreezeOutcome {
  tffreeze::v1::FreezeResult result;
  std::string manifest;  // the manifest file's bytes, as the server rendered them
  int files = 0, uploaded_files = 0;
  int64_t uploaded_bytes = 0;
  bool downloaded = true;  // false when OUT already held exactly this graph, or it was assembled
  bool assembled = false;  // built from the local checkpoint files by the server's recipe
};

// progress(kind, done, total, message): kind "upload" (bytes) or "freeze" (fraction of 1).
using ProgressFn = std::function<void(const std::string&, double, double, const std::string&)>;

// This user's local server (Unix socket and token), found through its server.info or started
// with `tffreeze local-server start` ($TFFREEZE_COMMAND names another command).
struct LocalServer {
  std::string target, token;
  std::string pid;  // the server's process, as server.info names it
};
LocalServer FindLocalServer();
// The pid of the local server this process used when it is no longer the one running (stopped
// by `tffreeze local-server stop` or its idle exit, or killed): a command it failed may run
// again on a new one. Empty otherwise.
std::string LocalServerWentAway();

class Client {
 public:
  // target: "host:port" (default $TFFREEZE_SERVER, else this user's local server, started on
  // demand: FindLocalServer; a named server never starts anything); several replicas as
  // "h1:p1,h2:p2" or a gRPC target URI ("dns:///name:port"): calls are balanced round-robin,
  // idempotent ones retried on UNAVAILABLE, and a freeze redone on another replica when its
  // replica goes away.
  explicit Client(std::string target = "", ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& target() const { return target_; }
  ProgressFn progress;

  // What the server supports (asked once).
  const tffreeze::v1::GetCapabilitiesResponse& Capabilities();

  // The server's choice of SOURCE's files, and the options to freeze them with; the
  // files come back with their digests.
  tffreeze::v1::PlanFreezeResponse Plan(const std::string& source, const FreezeOptions& options,
                                        std::vector<LocalFile>* files);

  // Upload what the server lacks, freeze, write the graph to output_path atomically.
  FreezeOutcome Freeze(const std::string& source, const std::string& output_path, const FreezeOptions& options);

  // What a freeze with these options would use: the checkpoint, variables, inputs and
  // outputs with reasons, candidates, switches (rendered.text / rendered.json: the report).
  tffreeze::v1::InspectResponse Inspect(const std::string& source, const FreezeOptions& options);

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
  std::unique_ptr<tffreeze::v1::GetCapabilitiesResponse> capabilities_;
  // Build the graph from the local files and the graph ranges a recipe names; false (and
  // nothing left behind) when a piece cannot be had or the result does not check out
  // (download: a failed call or write is thrown instead).
  bool Assemble(const tffreeze::v1::AssemblyRecipe& recipe, const std::vector<LocalFile>& files,
                const tffreeze::v1::FreezeResult& result, const std::string& path, bool download = false);
};

// Before anything is hashed or sent: path is not a folder (INVALID_ARGUMENT), its folder
// exists and takes new files (tried with a temporary file); else WriteError's error.
// "-" or something that is neither a file nor a folder (/dev/stdout, a pipe): refused, as
// outputs are written whole or not at all, through a temporary file that takes the name.
void CheckAFile(const std::string& path, const std::string& flag = "", const std::string& what = "the graph");
void CheckOutputFolder(const std::string& path, const std::string& flag = "", const std::string& what = "the graph");

// The file a write of path lands in: path itself, or, where it is a symbolic link (a chain of them),
// the link's final target (a relative target read from the link's folder), so that the output is
// written through the link and the link stays a link.
std::string ThroughLink(const std::string& path);

// An OS error (errno) met writing path, as an Error naming the path (after flag, the command
// line's option that named it, e.g. "-o"; "" for none), the cause in words and the fix, with
// metadata {"path", "errno"} (as the Python client's write_error words it).
Error WriteError(int err, const std::string& path, const std::string& flag = "",
                 const std::string& what = "the graph");

// Remove the temporary files (.NAME.XXXXXX.part) this process is writing; async-signal-safe,
// for a handler of SIGINT/SIGTERM/SIGHUP that then exits.
void RemovePendingTempFiles() noexcept;

// Mark a file this process is about to make (a hard link kept while the output is replaced)
// as one RemovePendingTempFiles removes; the slot to pass to ForgetPending once it is gone or
// renamed into place (-1: not marked).
int MarkPending(const std::string& path);
void ForgetPending(int slot);

// Remove stale temporary files beside path: of this client's naming (.NAME.XXXXXX.part) this
// user's, not locked by a running writer and last written at least min_age_seconds ago; of
// the Python and C# clients' (.NAME.[cs]PID-xxxxxxxx.part) this user's whose writer's process
// is gone (or a day old). Returns how many.
int RemoveStaleTempFiles(const std::string& path, int min_age_seconds = 60);

// Write data to path via a temporary file in the same folder (an existing file is
// replaced only by a complete one), with the mode a plain open() gives (0666 less umask).
void WriteAtomically(const std::string& path, const std::string& data);

}  // namespace tffreeze
