#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <ctime>
#include <atomic>
#include <random>
#include <cctype>
#include <sys/stat.h>
#include <netdb.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

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

// The temporary files being written, for a signal handler to remove (RemovePendingTempFiles
// must be async-signal-safe: fixed slots, atomics, unlink only).
constexpr int kSlots = 64;
struct PendingSlot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 holds a path
  char path[4096];
};
PendingSlot g_pending[kSlots];

int Register(const std::string& path) {
  if (path.size() >= sizeof g_pending[0].path) return -1;
  for (int i = 0; i < kSlots; i++) {
    int expected = 0;
    if (!g_pending[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_pending[i].path, path.c_str(), path.size() + 1);
    g_pending[i].state.store(2);
    return i;
  }
  return -1;
}

void Unregister(int slot) {
  if (slot >= 0) g_pending[slot].state.store(0);
}

std::atomic<bool> g_exiting{false};  // set by RemovePendingTempFiles: no file may be made after it

// A new file `prefix` + 6 random letters or digits + ".part", registered for
// RemovePendingTempFiles before it exists (so a signal on any thread, at any moment, finds
// it); -1 with errno on failure.
int CreateRegistered(const std::string& prefix, std::string* made, int* slot) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  static thread_local std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(getpid()) << 32));
  for (int attempt = 0; attempt < 100; attempt++) {
    std::string candidate = prefix;
    for (int i = 0; i < 6; i++) candidate += kChars[rng() % (sizeof kChars - 1)];
    candidate += ".part";
    int s = Register(candidate);
    int fd = open(candidate.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      int err = errno;
      Unregister(s);
      if (err == EEXIST) continue;
      errno = err;
      return -1;
    }
    if (g_exiting.load()) {  // a signal's handler ran its removal already: leave nothing
      unlink(candidate.c_str());
      for (;;) pause();  // its _exit follows
    }
    *made = candidate;
    *slot = s;
    return fd;
  }
  errno = EEXIST;
  return -1;
}

// A temporary file beside path, named .NAME.XXXXXX.part and locked (flock) while it is
// written, so another freeze can tell it from a stale one; removed unless Commit() renamed it
// into place, and by RemovePendingTempFiles() (a signal handler).
class TempBeside {
 public:
  explicit TempBeside(const std::string& path) : path_(path) {
    fs::path p = fs::absolute(path);
    std::string pattern = (p.parent_path() / ("." + p.filename().string() + ".")).string();
    int fd = CreateRegistered(pattern, &tmp_, &slot_);
    if (fd < 0) throw WriteError(errno, path);
    flock(fd, LOCK_EX | LOCK_NB);  // held until closed: the writer is alive
    mode_t mask = umask(0);  // the mode a plain open() would give: 0666 less the user's umask
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    file_ = fdopen(fd, "wb");
  }
  ~TempBeside() {
    if (file_) std::fclose(file_);
    if (!tmp_.empty()) std::remove(tmp_.c_str());
    Unregister(slot_);
  }
  void Write(const void* data, size_t size) {
    if (std::fwrite(data, 1, size, file_) != size) Fail(errno);
  }
  void Commit() {
    if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
      int err = errno;
      std::fclose(file_);
      file_ = nullptr;
      Fail(err);
    }
    if (std::fclose(file_) != 0) {
      file_ = nullptr;
      Fail(errno);
    }
    file_ = nullptr;
    if (rename(tmp_.c_str(), path_.c_str()) != 0) Fail(errno);
    tmp_.clear();
    Unregister(slot_);
    slot_ = -1;
  }

 private:
  [[noreturn]] void Fail(int err) { throw WriteError(err, path_); }
  std::string path_, tmp_;
  FILE* file_ = nullptr;
  int slot_ = -1;
};

// .NAME.XXXXXX.part: this client's temporary name for path NAME.
bool OwnPartName(const std::string& entry, const std::string& name) {
  const std::string prefix = "." + name + ".", suffix = ".part";
  if (entry.size() != prefix.size() + 6 + suffix.size()) return false;
  if (entry.compare(0, prefix.size(), prefix) != 0) return false;
  if (entry.compare(entry.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  for (size_t i = prefix.size(); i < prefix.size() + 6; i++)
    if (!std::isalnum(static_cast<unsigned char>(entry[i]))) return false;
  return true;
}

}  // namespace

// The writer's pid of the other clients' temporary names for path NAME: the Python client's
// .NAME.PID-xxxxxxxx.part, the C# client's .NAME.csPID-xxxxxxxx.part; 0 for any other name.
long OtherClientsPart(const std::string& entry, const std::string& name) {
  const std::string prefix = "." + name + ".", suffix = ".part";
  if (entry.size() <= prefix.size() + suffix.size() || entry.compare(0, prefix.size(), prefix) != 0 ||
      entry.compare(entry.size() - suffix.size(), suffix.size(), suffix) != 0)
    return 0;
  std::string middle = entry.substr(prefix.size(), entry.size() - prefix.size() - suffix.size());
  size_t at = middle.rfind("cs", 0) == 0 ? 2 : 0;
  size_t dash = middle.find('-', at);
  if (dash == std::string::npos || dash == at || dash - at > 9 || middle.size() - dash - 1 != 8) return 0;
  for (size_t i = at; i < dash; i++)
    if (!std::isdigit(static_cast<unsigned char>(middle[i]))) return 0;
  for (size_t i = dash + 1; i < middle.size(); i++) {
    char c = middle[i];
    if (!(std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'z') || c == '_')) return 0;
  }
  return std::atol(middle.substr(at, dash - at).c_str());
}

int MarkPending(const std::string& path) { return Register(path); }

void ForgetPending(int slot) { Unregister(slot); }

void RemovePendingTempFiles() noexcept {
  g_exiting.store(true);
  for (auto& slot : g_pending)
    if (slot.state.load() == 2) unlink(slot.path);
}

int RemoveStaleTempFiles(const std::string& path, int min_age_seconds) {
  fs::path p = fs::absolute(path);
  std::string folder = p.parent_path().string(), name = p.filename().string();
  if (name.empty()) return 0;
  DIR* dir = opendir(folder.c_str());
  if (!dir) return 0;
  int removed = 0;
  time_t now = time(nullptr);
  while (struct dirent* entry = readdir(dir)) {
    std::string e = entry->d_name;
    long writer = OtherClientsPart(e, name);
    if (!writer && !OwnPartName(e, name)) continue;
    std::string full = (fs::path(folder) / e).string();
    struct stat st;
    if (lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
    if (writer) {  // the Python or C# client's file: stale when its writer's process is gone (or a day old)
      bool gone = writer != getpid() && kill(static_cast<pid_t>(writer), 0) != 0 && errno == ESRCH;
      if ((gone || now - st.st_mtime > 86400) && unlink(full.c_str()) == 0) removed++;
      continue;
    }
    if (now - st.st_mtime < min_age_seconds) continue;  // maybe a freeze that is starting
    int fd = open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat opened;
    // Its writer holds a lock on it while it runs: only a file nobody holds is stale.
    if (fstat(fd, &opened) == 0 && opened.st_ino == st.st_ino && opened.st_dev == st.st_dev &&
        flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(full.c_str()) == 0)
      removed++;
    close(fd);
  }
  closedir(dir);
  return removed;
}

void WriteAtomically(const std::string& path, const std::string& data) {
  TempBeside tmp(path);
  tmp.Write(data.data(), data.size());
  tmp.Commit();
}

// Calls that may be repeated safely: gRPC retries them on UNAVAILABLE (another replica, or
// the same one a moment later) while no response has arrived; round-robin spreads calls
// over every address of the target.
const char* kServiceConfig = R"({
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "tffreeze.v1.FreezeService", "method": "FindMissingBlobs"},
             {"service": "tffreeze.v1.FreezeService", "method": "WriteBlobChunk"},
             {"service": "tffreeze.v1.FreezeService", "method": "DownloadBlob"},
             {"service": "tffreeze.v1.FreezeService", "method": "Freeze"},
             {"service": "tffreeze.v1.FreezeService", "method": "Inspect"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.2s", "maxBackoff": "2s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]}}]})";

// --server as a gRPC target: HOST:PORT, H1:P1,H2:P2 (resolved here into an ipv4:/ipv6:
// address list), or a target URI such as dns:///name:port. Sets tls_name to the first host.
std::string ChannelTarget(const std::string& target, std::string* tls_name) {
  std::stringstream items(target);
  for (std::string item; std::getline(items, item, ',');) {  // the gRPC-Web address, given to a gRPC client
    item = Trim(item);
    std::string scheme = item.substr(0, item.find("://"));
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (item.find("://") != std::string::npos && (scheme == "http" || scheme == "https"))
      throw Error("INVALID_ARGUMENT", "--server " + target + ": tffreeze-cpp speaks gRPC: give HOST:PORT (the server's "
                  "'listening on' address), not an " + scheme + ":// URL (that is the gRPC-Web address tffreeze-cs and the "
                  "page use)");
  }
  if (target.rfind("localhost:", 0) == 0 && target.find(',') == std::string::npos) {  // as the Python client: IPv4
    // loopback, where servers listen by default (a list of replicas is resolved below, each of its names)
    *tls_name = "localhost";
    return "ipv4:127.0.0.1:" + target.substr(std::string("localhost:").size());
  }
  if (target.find(',') == std::string::npos) return target;
  std::vector<std::string> addresses;
  bool v4 = false, v6 = false;
  std::stringstream in(target);
  std::string item;
  while (std::getline(in, item, ',')) {
    item = Trim(item);
    if (item.empty()) continue;
    auto colon = item.rfind(':');
    if (colon == std::string::npos || colon + 1 == item.size())
      throw Error("INVALID_ARGUMENT", "--server '" + target + "': write HOST:PORT[,HOST:PORT...]");
    std::string host = item.substr(0, colon), port = item.substr(colon + 1);
    if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (tls_name->empty()) *tls_name = host;
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0)
      throw Error("UNAVAILABLE", "--server: cannot resolve " + host);
    // gRPC's address lists are all IPv4 or all IPv6: IPv4 where a host has it.
    bool has_v4 = false;
    for (addrinfo* r = res; r; r = r->ai_next) has_v4 = has_v4 || r->ai_family == AF_INET;
    for (addrinfo* r = res; r; r = r->ai_next) {
      if (has_v4 && r->ai_family != AF_INET) continue;
      char ip[INET6_ADDRSTRLEN];
      void* addr = r->ai_family == AF_INET6 ? static_cast<void*>(&reinterpret_cast<sockaddr_in6*>(r->ai_addr)->sin6_addr)
                                            : static_cast<void*>(&reinterpret_cast<sockaddr_in*>(r->ai_addr)->sin_addr);
      inet_ntop(r->ai_family, addr, ip, sizeof ip);
      std::string a = r->ai_family == AF_INET6 ? "[" + std::string(ip) + "]:" + port : std::string(ip) + ":" + port;
      (r->ai_family == AF_INET6 ? v6 : v4) = true;
      if (std::find(addresses.begin(), addresses.end(), a) == addresses.end()) addresses.push_back(a);
    }
    freeaddrinfo(res);
  }
  if (v4 && v6) throw Error("INVALID_ARGUMENT", "--server '" + target + "' mixes IPv4-only and IPv6-only hosts");
  std::string out = v6 ? "ipv6:" : "ipv4:";
  for (size_t i = 0; i < addresses.size(); i++) out += (i ? "," : "") + addresses[i];
  return out;
}

struct Client::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::FreezeService::Stub> stub;
};

Client::Client(std::string target, ClientOptions options) : target_(std::move(target)), options_(std::move(options)) {
  if (target_.empty() && std::getenv("TFFREEZE_SERVER")) target_ = std::getenv("TFFREEZE_SERVER");
  bool local = target_.empty();
  if (local) {  // a private socket and its own token; never TLS
    LocalServer server = FindLocalServer();
    target_ = server.target;
    options_.token = server.token;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.client_cert.empty() != options_.client_key.empty())  // (a key alone too, with or without TLS)
    throw Error("INVALID_ARGUMENT", "--client-cert and --client-key go together: give both (the client certificate "
                "and its private key) or neither");
  if (!local && (options_.tls || !options_.ca_file.empty() || !options_.client_cert.empty())) {
    grpc::SslCredentialsOptions ssl;
    if (!options_.ca_file.empty()) {
      ssl.pem_root_certs = ReadFile(options_.ca_file, "--ca");
      if (ssl.pem_root_certs.find("-----BEGIN CERTIFICATE-----") == std::string::npos)  // (gRPC would say "empty address list")
        throw Error("INVALID_ARGUMENT", "--ca " + options_.ca_file + " is not a PEM certificate: it holds " +
                    (ssl.pem_root_certs.find("PRIVATE KEY-----") != std::string::npos ? "a private key" : "no PEM block") +
                    "; give the CA certificate that signed the server's (CA.pem)");
    }
    if (!options_.client_cert.empty()) {
      ssl.pem_cert_chain = ReadFile(options_.client_cert, "--client-cert");
      ssl.pem_private_key = ReadFile(options_.client_key, "--client-key");
      // (a certificate and a key given the other way round: gRPC's own words would be "empty address list")
      auto holds = [](const std::string& pem) {
        return pem.find("PRIVATE KEY-----") != std::string::npos ? "a private key"
               : pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos ? "a certificate" : "no PEM block";
      };
      if (std::string(holds(ssl.pem_cert_chain)) != "a certificate" ||
          std::string(holds(ssl.pem_private_key)) != "a private key")
        throw Error("INVALID_ARGUMENT", std::string("--client-cert ") + options_.client_cert + " holds " +
                    holds(ssl.pem_cert_chain) + " and --client-key " + options_.client_key + " holds " +
                    holds(ssl.pem_private_key) + ": give the PEM certificate to --client-cert and its PEM private "
                    "key to --client-key");
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetServiceConfigJSON(kServiceConfig);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  std::string tls_name;
  std::string channel_target = ChannelTarget(target_, &tls_name);
  if (!tls_name.empty() && (options_.tls || !options_.ca_file.empty())) args.SetSslTargetNameOverride(tls_name);
  replicated_ = target_.find(',') != std::string::npos || target_.find("://") != std::string::npos;
  impl_.reset(new Impl);
  impl_->channel = grpc::CreateCustomChannel(channel_target, creds, args);
  impl_->stub = v1::FreezeService::NewStub(impl_->channel);
}

Client::~Client() = default;

namespace {
void Prepare(grpc::ClientContext* ctx, const ClientOptions& options) {
  ctx->set_deadline(std::chrono::system_clock::now() + options.timeout);
  if (!options.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.token);
}
}  // namespace

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
    if (!st.ok()) {
      Error e = FromStatus(st, target_);
      if (e.code() == "INVALID_ARGUMENT") {  // other bytes than were hashed: a file still being written?
        int64_t now_size = -1;
        std::string now;
        try { now = Sha256File(f->local, &now_size); } catch (const std::exception&) {}
        if (now_size != f->size || now != f->sha256)
          throw Error("FAILED_PRECONDITION", f->local + " changed while it was being uploaded (is training still "
                      "writing it?): run the command again once it is written", e.reason(), {{"path", f->local}});
      }
      throw e;
    }
    stats->uploaded_files += 1;
    stats->uploaded_bytes += f->size;
  }
}

void Client::Download(const std::string& sha256, int64_t size, const std::string& path) {
  v1::AssemblyRecipe whole;
  auto* piece = whole.add_pieces();
  piece->set_length(size);
  piece->set_graph_offset(0);
  v1::FreezeResult digest;
  digest.set_sha256(sha256);
  digest.set_size_bytes(size);
  if (!Assemble(whole, {}, digest, path, true))
    throw Error("DATA_LOSS", "downloaded bytes of " + sha256.substr(0, 12) + " do not match the digest (" +
                std::to_string(size) + " bytes); retry");
}

const v1::GetCapabilitiesResponse& Client::Capabilities() {
  if (!capabilities_) {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_);
    auto caps = std::make_unique<v1::GetCapabilitiesResponse>();
    grpc::Status st = impl_->stub->GetCapabilities(&ctx, v1::GetCapabilitiesRequest(), caps.get());
    if (!st.ok()) throw FromStatus(st, target_);
    capabilities_ = std::move(caps);
  }
  return *capabilities_;
}

namespace {
bool HasFeature(const v1::GetCapabilitiesResponse& caps, const std::string& name) {
  return std::find(caps.features().begin(), caps.features().end(), name) != caps.features().end();
}
}  // namespace

v1::PlanFreezeResponse Client::Plan(const std::string& source, const FreezeOptions& options,
                                    std::vector<LocalFile>* files) {
  Listing listing = ListSource(source, options.graph);
  v1::OptionText* text = listing.request.mutable_options();
  text->set_outputs(options.outputs);
  text->set_inputs(options.inputs);
  text->set_step(options.step);
  text->set_signature(options.signature);
  for (const auto& t : options.tags) text->add_tags(t);
  for (const auto& b : options.bind) text->add_bind(b);
  text->set_ema(options.ema);
  for (const auto& m : options.var_map) text->add_var_map(m);
  text->set_include_variables(options.include_variables);
  text->set_exclude_variables(options.exclude_variables);
  text->set_optimize(options.optimize);
  text->set_verify(options.verify);
  text->set_target(options.target);
  text->set_format(options.format);
  for (const auto& shape : options.input_shapes) text->add_input_shapes(shape);
  v1::PlanFreezeResponse plan;
  {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_);
    grpc::Status st = impl_->stub->PlanFreeze(&ctx, listing.request, &plan);
    if (!st.ok()) throw FromStatus(st, target_);
  }
  files->clear();
  for (const auto& planned : plan.files()) {
    LocalFile f;
    f.path = planned.path();
    f.local = planned.local_path().empty() ? fs::absolute(options.graph).string()
                                           : (fs::path(listing.root) / planned.local_path()).string();
    f.sha256 = FileDigest(f.local, &f.size);
    files->push_back(f);
  }
  SaveDigests();
  return plan;
}

namespace {
void AddFiles(const std::vector<LocalFile>& files, google::protobuf::RepeatedPtrField<v1::SourceFile>* out) {
  for (const auto& f : files) {
    auto* sf = out->Add();
    sf->set_path(f.path);
    sf->mutable_digest()->set_sha256(f.sha256);
    sf->mutable_digest()->set_size_bytes(f.size);
  }
}
}  // namespace

// A file name to suggest inside a folder given where a file was wanted: run's
// --output NAME= writes NAME.npy, --manifest model.json, a graph model.pb.
static std::string ExampleName(const std::string& flag, const std::string& what) {
  const std::string lead = "--output ";
  if (what == "the output" && flag.size() > lead.size() + 1 && flag.compare(0, lead.size(), lead) == 0 &&
      flag.back() == '=') {
    std::string name = flag.substr(lead.size(), flag.size() - lead.size() - 1);
    for (char& c : name)
      if (c == '/' || c == ':') c = '_';
    return name + ".npy";
  }
  return what == "the manifest" ? "model.json" : "model.pb";
}

Error WriteError(int err, const std::string& path, const std::string& flag, const std::string& what) {
  std::string where = flag.empty() ? path : flag + (flag.back() == '=' ? "" : " ") + path;
  std::string folder = fs::absolute(path).parent_path().string();
  std::string other = flag.empty() ? "write " + what + " elsewhere" : "give " + flag.substr(0, flag.find(' ')) + " another path";
  std::error_code ec;
  std::string code = "FAILED_PRECONDITION", text;
  if (err == EISDIR || fs::is_directory(path, ec)) {
    std::string base = path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    code = "INVALID_ARGUMENT";
    std::string example = (fs::path(base) / ExampleName(flag, what)).string();
    text = where + " is a folder: give a file name (e.g. " + example + ")";
    if (!fs::is_directory(path, ec))  // a name ending in "/" (a folder's), and there is no such folder
      text = where + " ends in /, as a folder's name does, and there is no folder " + base +
             ": create it and give a file in it (e.g. " + example + "), or give a file name";
  } else if (err == ENOSPC || err == EDQUOT) {
    code = "RESOURCE_EXHAUSTED";
    text = where + ": no space left for " + what + " in " + folder + " (" +
           (err == EDQUOT ? "disk quota exceeded" : "the disk is full") + "): free some space there, or " + other;
  } else if (err == ENOENT) {
    code = "NOT_FOUND";
    text = where + ": the folder " + folder + " does not exist: create it, or " + other;
  } else if (err == EACCES || err == EPERM) {
    code = "PERMISSION_DENIED";
    text = where + ": you may not write in " + folder + ": " + other + " in a folder you can write";
  } else if (err == EROFS) {
    code = "PERMISSION_DENIED";
    text = where + ": " + folder + " is on a read-only filesystem: " + other;
  } else if (err == ENOTDIR) {
    code = "NOT_FOUND";
    text = where + ": a part of " + folder + " is a file, not a folder: " + other;
  } else {
    text = where + ": cannot write " + what + " (" + std::strerror(err) + "): " + other;
  }
  return Error(code, text, "", {{"path", path}, {"errno", std::to_string(err)}});
}

namespace {
// A user's name and uid ("uid N" where the name is unknown).
std::string OwnerName(uid_t uid) {
  struct passwd pw, *found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found)
    return std::string(found->pw_name) + " (uid " + std::to_string(uid) + ")";
  return "uid " + std::to_string(uid);
}

// This user may remove path from folder: the folder is writable and searchable, and, where it is
// sticky (like /tmp), the folder or the entry is this user's.
bool Removable(const std::string& path, const std::string& folder) {
  struct stat dir, entry;
  if (access(folder.c_str(), W_OK | X_OK) != 0 || stat(folder.c_str(), &dir) != 0) return false;
  if (!(dir.st_mode & S_ISVTX) || dir.st_uid == geteuid()) return true;
  return lstat(path.c_str(), &entry) == 0 && entry.st_uid == geteuid();
}
}  // namespace

void CheckAFile(const std::string& path, const std::string& flag, const std::string& what) {
  std::error_code ec;
  if (path != "-" && (!fs::exists(path, ec) || fs::is_regular_file(path, ec) || fs::is_directory(path, ec))) return;
  const std::string where = flag.empty() ? path : flag + (flag.back() == '=' ? "" : " ") + path;
  const std::string name = ExampleName(flag, what);
  const std::string example = flag.empty() ? name : flag + (flag.back() == '=' ? "" : " ") + name;
  throw Error("INVALID_ARGUMENT", where + " is " + (path == "-" ? "standard output" : "not a regular file") +
                                      ": tffreeze writes " + what + " to files only, whole or not at all (a finished "
                                      "temporary file takes its name), so it cannot stream it: give a file (" +
                                      example + ") and read it from there (cat " + name + ")",
              "", {{"path", path}});
}

void CheckOutputFolder(const std::string& path, const std::string& flag, const std::string& what) {
  std::error_code ec;
  if (path.empty() || path.back() == '/' || fs::is_directory(path, ec)) throw WriteError(EISDIR, path, flag, what);
  CheckAFile(path, flag, what);
  fs::path folder = fs::absolute(path).parent_path();
  if (!fs::is_directory(folder, ec)) throw WriteError(fs::exists(folder, ec) ? ENOTDIR : ENOENT, path, flag, what);
  struct stat st;
  if (fs::is_regular_file(path, ec) && stat(path.c_str(), &st) == 0 &&
      ((st.st_mode & 0222) == 0 || access(path.c_str(), W_OK) != 0)) {  // an existing file no one may write
    std::string where = flag.empty() ? path : flag + (flag.back() == '=' ? "" : " ") + path;
    std::string other = flag.empty() ? "write " + what + " elsewhere" : "give " + flag.substr(0, flag.find(' ')) + " another path";
    std::string text;
    if (st.st_uid == geteuid() || geteuid() == 0) {
      text = where + " is read-only: make it writable (chmod u+w " + path + "), or " + other;
    } else {  // chmod is the owner's alone; removing it is the folder's business (a sticky one: its owner's)
      text = where + " belongs to another user, " + OwnerName(st.st_uid) + ", and you may not write it: " + other;
      if (Removable(path, folder.string())) text += ", or remove it (rm " + path + ")";
    }
    throw Error("PERMISSION_DENIED", text, "", {{"path", path}});
  }
  struct stat entry;
  if (geteuid() != 0 && lstat(path.c_str(), &entry) == 0 && access(folder.c_str(), W_OK | X_OK) == 0 &&
      !Removable(path, folder.string())) {
    // A sticky folder (like /tmp) where the entry is another user's: it is written by renaming a
    // complete temporary file over it, which only its owner (or the folder's) may do.
    std::string where = flag.empty() ? path : flag + (flag.back() == '=' ? "" : " ") + path;
    std::string other = flag.empty() ? "write " + what + " elsewhere" : "give " + flag.substr(0, flag.find(' ')) + " another path";
    throw Error("PERMISSION_DENIED", where + " belongs to another user, " + OwnerName(entry.st_uid) + ", in the sticky folder " +
                folder.string() + ", where you may not replace it: " + other, "", {{"path", path}});
  }
  // Tried: a temporary file of this client's naming made and removed (finds read-only filesystems too).
  std::string made;
  int slot = -1;
  int fd = CreateRegistered((folder / ("." + fs::path(path).filename().string() + ".")).string(), &made, &slot);
  if (fd < 0) throw WriteError(errno, path, flag, what);
  close(fd);
  unlink(made.c_str());
  Unregister(slot);
}

std::string ThroughLink(const std::string& path) {
  fs::path p = path;
  std::error_code ec;
  for (int i = 0; i < 40 && fs::is_symlink(fs::symlink_status(p, ec)); i++) {  // as the kernel's limit of links followed
    fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return p.string();
}

FreezeOutcome Client::Freeze(const std::string& source, const std::string& output_path_given, const FreezeOptions& options) {
  const std::string output_path = ThroughLink(output_path_given);  // written through a link: the link stays a link
  CheckOutputFolder(output_path, "");
  RemoveStaleTempFiles(output_path);
  std::vector<LocalFile> files;
  v1::PlanFreezeResponse plan = Plan(source, options, &files);
  const auto& caps = Capabilities();
  v1::FreezeRequest request;
  *request.mutable_options() = plan.options();
  *request.mutable_plan() = plan;
  AddFiles(files, request.mutable_files());
  request.set_quiet(!progress);
  const int64_t kInline = 1 << 20;
  if (HasFeature(caps, "inline_graph")) request.set_inline_graph_bytes(kInline);
  request.set_accept_recipe(HasFeature(caps, "assembly_recipe"));
  request.set_accept_early_recipe(HasFeature(caps, "early_recipe"));
  v1::AssemblyRecipe recipe;
  FreezeOutcome outcome;
  std::string graph;
  int unavailable = 0;
  bool evicted = false;
  double backoff = 0.2;
  while (true) {
    outcome = FreezeOutcome();
    graph.clear();
    recipe.Clear();
    try {
      Upload(files, &outcome);
    } catch (const Error& e) {
      // A replica went away: a freeze is a pure function of the uploaded bytes and options,
      // so doing it again on another replica is safe (one address: gRPC's retries were all).
      if (e.code() != "UNAVAILABLE" || !replicated_ || ++unavailable >= 3) throw;
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 2.0);
      continue;
    }
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
      } else if (event.event_case() == v1::FreezeResponse::kRecipe) {
        recipe = event.recipe();
      } else if (event.event_case() == v1::FreezeResponse::kGraph) {
        graph = event.graph();
      } else if (event.event_case() == v1::FreezeResponse::kManifest) {
        outcome.manifest = event.manifest();
      } else if (event.has_result()) {
        outcome.result = event.result();
        have = true;
      }
    }
    grpc::Status st = reader->Finish();
    if (st.ok()) {
      if (!have || outcome.manifest.empty()) throw Error("UNKNOWN", "the server ended the freeze without a result");
      break;
    }
    Error err = FromStatus(st, target_);
    if (err.code() == "UNAVAILABLE" && replicated_ && ++unavailable < 3) {
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 2.0);
      continue;
    }
    // A blob evicted between upload and freeze: upload again, once.
    if (evicted || err.reason() != "ERROR_REASON_BLOBS_MISSING") throw err;
    evicted = true;
  }
  std::error_code ec;
  if (fs::is_regular_file(output_path, ec) &&
      static_cast<int64_t>(fs::file_size(output_path, ec)) == outcome.result.size_bytes()) {
    int64_t size = 0;
    if (FileDigest(output_path, &size) == outcome.result.sha256()) {
      outcome.downloaded = false;  // already there (an incremental build): not downloaded again
      fs::last_write_time(output_path, fs::file_time_type::clock::now(), ec);  // newer than its inputs
      RememberDigest(output_path, outcome.result.sha256());
      SaveDigests();
      return outcome;
    }
  }
  bool written = false;
  if (!graph.empty()) {
    Sha256 h;
    h.Update(graph.data(), graph.size());
    if (static_cast<int64_t>(graph.size()) == outcome.result.size_bytes() && h.HexDigest() == outcome.result.sha256()) {
      WriteAtomically(output_path, graph);
      written = true;
    }
  }
  if (!written && recipe.pieces_size() > 0 && Assemble(recipe, files, outcome.result, output_path)) {
    outcome.assembled = true;
    outcome.downloaded = false;
    written = true;
  }
  if (!written) Download(outcome.result.sha256(), outcome.result.size_bytes(), output_path);
  RememberDigest(output_path, outcome.result.sha256());  // checked as it was written
  SaveDigests();
  return outcome;
}

bool Client::Assemble(const v1::AssemblyRecipe& recipe, const std::vector<LocalFile>& files,
                      const v1::FreezeResult& result, const std::string& path, bool download) {
  std::map<std::string, std::string> local;
  for (const auto& f : files) local[f.path] = f.local;
  try {
    TempBeside tmp(path);
    Sha256 h;
    int64_t written = 0;
    std::vector<char> buf(kChunk);
    for (const auto& piece : recipe.pieces()) {
      if (piece.source_case() == v1::RecipePiece::kData) {
        if (static_cast<int64_t>(piece.data().size()) != piece.length()) return false;
        tmp.Write(piece.data().data(), piece.data().size());
        h.Update(piece.data().data(), piece.data().size());
      } else if (piece.source_case() == v1::RecipePiece::kFile) {
        auto it = local.find(piece.file().path());
        if (it == local.end()) return false;
        std::unique_ptr<FILE, int (*)(FILE*)> in(std::fopen(it->second.c_str(), "rb"), std::fclose);
        if (!in || fseeko(in.get(), piece.file().offset(), SEEK_SET) != 0) return false;
        for (int64_t left = piece.length(); left > 0;) {
          size_t n = std::fread(buf.data(), 1, static_cast<size_t>(std::min<int64_t>(left, kChunk)), in.get());
          if (n == 0) return false;
          tmp.Write(buf.data(), n);
          h.Update(buf.data(), n);
          left -= static_cast<int64_t>(n);
        }
      } else if (piece.source_case() == v1::RecipePiece::kGraphOffset) {
        v1::DownloadBlobRequest req;
        req.mutable_digest()->set_sha256(result.sha256());
        req.mutable_digest()->set_size_bytes(result.size_bytes());
        req.set_offset(piece.graph_offset());
        req.set_limit(piece.length());
        grpc::ClientContext ctx;
        Prepare(&ctx, options_);
        auto reader = impl_->stub->DownloadBlob(&ctx, req);
        v1::DownloadBlobResponse chunk;
        int64_t got = 0;
        while (reader->Read(&chunk)) {
          tmp.Write(chunk.data().data(), chunk.data().size());
          h.Update(chunk.data().data(), chunk.data().size());
          got += static_cast<int64_t>(chunk.data().size());
        }
        grpc::Status st = reader->Finish();
        if (!st.ok() && download) throw FromStatus(st, target_);
        if (!st.ok() || got != piece.length()) return false;
      } else {
        return false;
      }
      written += piece.length();
    }
    if (written != result.size_bytes() || h.HexDigest() != result.sha256()) return false;
    tmp.Commit();
    return true;
  } catch (const Error&) {
    if (download) throw;
    return false;  // the caller downloads the graph instead
  }
}

v1::InspectResponse Client::Inspect(const std::string& source, const FreezeOptions& options) {
  std::vector<LocalFile> files;
  v1::PlanFreezeResponse plan = Plan(source, options, &files);
  FreezeOutcome stats;
  Upload(files, &stats);
  v1::InspectRequest request;
  *request.mutable_options() = plan.options();
  *request.mutable_plan() = plan;
  AddFiles(files, request.mutable_files());
  grpc::ClientContext ctx;
  Prepare(&ctx, options_);
  v1::InspectResponse response;
  grpc::Status st = impl_->stub->Inspect(&ctx, request, &response);
  if (!st.ok()) throw FromStatus(st, target_);
  return response;
}

}  // namespace tffreeze
