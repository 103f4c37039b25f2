#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

#include "sha256.h"
#include "tffreeze/client.h"
#include "tffreeze/v1/service.grpc.pb.h"

namespace fs = std::filesystem;
namespace v1 = tffreeze::v1;

namespace tffreeze {
namespace {

const size_t kChunk = 1 << 20;

std::string ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("NOT_FOUND", what + " " + path + " cannot be read");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string Trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// A temporary file beside path; removed unless Commit() renamed it into place.
class TempBeside {
 public:
  explicit TempBeside(const std::string& path) : path_(path) {
    fs::path p = fs::absolute(path);
    std::string pattern = (p.parent_path() / ("." + p.filename().string() + ".XXXXXX.part")).string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    int fd = mkstemps(buf.data(), 5);
    if (fd < 0) throw Error("UNKNOWN", "cannot create a file beside " + path + ": " + std::strerror(errno));
    tmp_ = buf.data();
    file_ = fdopen(fd, "wb");
  }
  ~TempBeside() {
    if (file_) std::fclose(file_);
    if (!tmp_.empty()) std::remove(tmp_.c_str());
  }
  void Write(const void* data, size_t size) {
    if (std::fwrite(data, 1, size, file_) != size)
      throw Error("RESOURCE_EXHAUSTED", "cannot write " + path_ + ": " + std::strerror(errno));
  }
  void Commit() {
    if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0 || std::fclose(file_) != 0) {
      file_ = nullptr;
      throw Error("RESOURCE_EXHAUSTED", "cannot write " + path_ + ": " + std::strerror(errno));
    }
    file_ = nullptr;
    fs::rename(tmp_, path_);
    tmp_.clear();
  }

 private:
  std::string path_, tmp_;
  FILE* file_ = nullptr;
};

}  // namespace

void WriteAtomically(const std::string& path, const std::string& data) {
  TempBeside tmp(path);
  tmp.Write(data.data(), data.size());
  tmp.Commit();
}

struct Client::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::FreezeService::Stub> stub;
};

Client::Client(std::string target, ClientOptions options) : target_(std::move(target)), options_(std::move(options)) {
  if (target_.empty()) target_ = std::getenv("TFFREEZE_SERVER") ? std::getenv("TFFREEZE_SERVER") : "127.0.0.1:50051";
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.tls || !options_.ca_file.empty() || !options_.client_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options_.ca_file.empty()) ssl.pem_root_certs = ReadFile(options_.ca_file, "--ca");
    if (options_.client_cert.empty() != options_.client_key.empty())
      throw Error("INVALID_ARGUMENT", "--client-cert and --client-key go together");
    if (!options_.client_cert.empty()) {
      ssl.pem_cert_chain = ReadFile(options_.client_cert, "--client-cert");
      ssl.pem_private_key = ReadFile(options_.client_key, "--client-key");
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  impl_.reset(new Impl);
  impl_->channel = grpc::CreateCustomChannel(target_, creds, args);
  impl_->stub = v1::FreezeService::NewStub(impl_->channel);
}

Client::~Client() = default;

namespace {
void Prepare(grpc::ClientContext* ctx, const ClientOptions& options) {
  ctx->set_deadline(std::chrono::system_clock::now() + options.timeout);
  if (!options.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.token);
}
}  // namespace

std::string Client::Health() {
  grpc::ClientContext ctx;
  Prepare(&ctx, options_);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::FindMissingBlobsRequest req;
  v1::FindMissingBlobsResponse resp;
  grpc::Status st = impl_->stub->FindMissingBlobs(&ctx, req, &resp);
  if (!st.ok()) throw FromStatus(st, target_);
  return "SERVING";
}

void Client::Upload(const std::vector<LocalFile>& files, FreezeOutcome* stats) {
  v1::FindMissingBlobsRequest req;
  for (const auto& f : files) {
    auto* d = req.add_blobs();
    d->set_sha256(f.sha256);
    d->set_size_bytes(f.size);
  }
  v1::FindMissingBlobsResponse missing;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_);
    grpc::Status st = impl_->stub->FindMissingBlobs(&ctx, req, &missing);
    if (!st.ok()) throw FromStatus(st, target_);
  }
  std::set<std::pair<std::string, int64_t>> wanted, seen;
  for (const auto& d : missing.missing()) wanted.insert({d.sha256(), d.size_bytes()});
  std::vector<const LocalFile*> todo;
  int64_t total = 0, done = 0;
  for (const auto& f : files) {
    auto key = std::make_pair(f.sha256, f.size);
    if (wanted.count(key) && seen.insert(key).second) {
      todo.push_back(&f);
      total += f.size;
    }
  }
  stats->files = static_cast<int>(files.size());
  std::vector<char> buf(kChunk);
  for (const LocalFile* f : todo) {
    std::unique_ptr<FILE, int (*)(FILE*)> in(std::fopen(f->local.c_str(), "rb"), std::fclose);
    if (!in) throw Error("NOT_FOUND", "cannot read " + f->local);
    grpc::ClientContext ctx;
    Prepare(&ctx, options_);
    v1::UploadBlobResponse resp;
    auto writer = impl_->stub->UploadBlob(&ctx, &resp);
    int64_t offset = 0;
    bool first = true;
    while (true) {
      size_t n = std::fread(buf.data(), 1, buf.size(), in.get());
      if (n == 0 && !first) break;
      v1::UploadBlobRequest msg;
      if (first) {
        msg.mutable_digest()->set_sha256(f->sha256);
        msg.mutable_digest()->set_size_bytes(f->size);
        first = false;
      }
      msg.set_offset(offset);
      msg.set_data(buf.data(), n);
      if (!writer->Write(msg)) break;  // the server ended the call: its status says why
      offset += static_cast<int64_t>(n);
      done += static_cast<int64_t>(n);
      if (progress) progress("upload", static_cast<double>(done), static_cast<double>(total), f->path);
      if (n == 0) break;
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    if (!st.ok()) throw FromStatus(st, target_);
    stats->uploaded_files += 1;
    stats->uploaded_bytes += f->size;
  }
}

void Client::Download(const std::string& sha256, int64_t size, const std::string& path) {
  v1::DownloadBlobRequest req;
  req.mutable_digest()->set_sha256(sha256);
  req.mutable_digest()->set_size_bytes(size);
  grpc::ClientContext ctx;
  Prepare(&ctx, options_);
  TempBeside tmp(path);
  Sha256 h;
  int64_t received = 0;
  auto reader = impl_->stub->DownloadBlob(&ctx, req);
  v1::DownloadBlobResponse chunk;
  while (reader->Read(&chunk)) {
    tmp.Write(chunk.data().data(), chunk.data().size());
    h.Update(chunk.data().data(), chunk.data().size());
    received += static_cast<int64_t>(chunk.data().size());
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) throw FromStatus(st, target_);
  if (received != size || h.HexDigest() != sha256)
    throw Error("DATA_LOSS", "downloaded " + std::to_string(received) + " bytes of " + sha256.substr(0, 12) +
                " that do not match the digest (" + std::to_string(size) + " bytes); retry");
  tmp.Commit();
}

FreezeOutcome Client::Freeze(const std::string& source, const std::string& output_path, const FreezeOptions& options) {
  v1::FreezeOptions request_options;
  for (const auto& n : options.outputs)
    if (!Trim(n).empty()) request_options.add_outputs(Trim(n));
  for (const auto& n : options.inputs)
    if (!Trim(n).empty()) request_options.add_inputs(Trim(n));
  std::string target = Trim(options.target);
  for (auto& c : target) c = static_cast<char>(std::tolower(c));
  if (target == "tensorflowsharp") request_options.set_target(v1::TARGET_TENSORFLOWSHARP);
  else if (!target.empty())
    throw Error("INVALID_ARGUMENT", "--target: '" + options.target + "' is not a target; targets: tensorflowsharp",
                "ERROR_REASON_INVALID_OPTION", {{"field", "options.target"}});
  if (options.step && *options.step < 0)
    throw Error("INVALID_ARGUMENT", "--step: a global step is a non-negative integer", "ERROR_REASON_INVALID_OPTION",
                {{"field", "options.step"}});
  request_options.set_optimize(options.optimize);
  request_options.set_verify(options.verify);

  LocalCheckpoint local = Collect(source, options.step);
  request_options.set_checkpoint_prefix(local.prefix);
  v1::FreezeRequest request;
  *request.mutable_options() = request_options;
  for (const auto& f : local.files) {
    auto* sf = request.add_files();
    sf->set_path(f.path);
    sf->mutable_digest()->set_sha256(f.sha256);
    sf->mutable_digest()->set_size_bytes(f.size);
  }
  FreezeOutcome outcome;
  for (int attempt = 1;; attempt++) {
    outcome = FreezeOutcome();
    Upload(local.files, &outcome);
    grpc::ClientContext ctx;
    Prepare(&ctx, options_);
    auto reader = impl_->stub->Freeze(&ctx, request);
    v1::FreezeResponse event;
    bool have = false;
    while (reader->Read(&event)) {
      if (event.has_progress() && progress) {
        std::string stage = v1::Stage_Name(event.progress().stage());
        if (stage.rfind("STAGE_", 0) == 0) stage = stage.substr(6);
        for (auto& c : stage) c = static_cast<char>(std::tolower(c));
        progress("freeze", event.progress().fraction(), 1.0, stage + ": " + event.progress().message());
      } else if (event.has_result()) {
        outcome.result = event.result();
        have = true;
      }
    }
    grpc::Status st = reader->Finish();
    if (st.ok()) {
      if (!have) throw Error("UNKNOWN", "the server ended the freeze without a result");
      break;
    }
    Error err = FromStatus(st, target_);
    // A blob evicted between upload and freeze: upload again, once.
    if (attempt == 2 || err.reason() != "ERROR_REASON_BLOBS_MISSING") throw err;
  }
  // This client's selection warnings come first, as the Python client writes them.
  auto server_warnings = outcome.result.warnings();
  outcome.result.clear_warnings();
  for (const auto& w : local.warnings) outcome.result.add_warnings(w);
  for (const auto& w : server_warnings) outcome.result.add_warnings(w);

  std::error_code ec;
  if (fs::is_regular_file(output_path, ec) &&
      static_cast<int64_t>(fs::file_size(output_path, ec)) == outcome.result.size_bytes()) {
    int64_t size = 0;
    if (Sha256File(output_path, &size) == outcome.result.sha256()) {
      outcome.downloaded = false;  // already there (an incremental build): not downloaded again
      fs::last_write_time(output_path, fs::file_time_type::clock::now(), ec);
      return outcome;
    }
  }
  Download(outcome.result.sha256(), outcome.result.size_bytes(), output_path);
  return outcome;
}

}  // namespace tffreeze
