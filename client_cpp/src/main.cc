// tffreeze-cpp: freeze checkpoints with a tffreeze server over gRPC and run frozen graphs
// on the TensorFlow C API. Verbs and exit codes as the Python CLI: 0 ok, 1 error (one
// line on stderr naming the problem, its status in brackets), 2 usage error.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "tffreeze/client.h"
#include "tffreeze/runner.h"

namespace fs = std::filesystem;

namespace {

const char* kUsage = R"(usage: tffreeze-cpp COMMAND ...

Freeze TensorFlow checkpoints with a tffreeze server (gRPC) and run frozen graphs on the
TensorFlow C API.

commands:
  freeze SOURCE -o OUT.pb [--manifest M.json] [SOURCE OPTIONS] [--optimize] [--verify]
         [--target tensorflowsharp|mlnet] [--format graphdef|onnx|tflite] [--input-shape NAME=D1,D2,...]
         [--quiet] [CONNECTION OPTIONS]
      Upload the checkpoint's files the server lacks, freeze, write OUT.pb (and the
      manifest, as the server rendered it) atomically; OUT.pb already holding the result
      is not downloaded again.
      --format onnx|tflite writes the model converted from the frozen graph, run in
      onnxruntime / the TFLite interpreter and compared with it first; --input-shape pins
      an input's shape (e.g. a static batch for TFLite).
  inspect SOURCE [--json] [SOURCE OPTIONS] [CONNECTION OPTIONS]
      Show the checkpoint a freeze would use, its variables, and the inputs and outputs it
      would resolve, each with its reason (--json: as JSON).
  run MODEL.pb [--manifest M.json] --input NAME=FILE.npy ... --output NAME=FILE.npy ...
      [--runtime tf115] [--libtensorflow PATH] [--verbose]
      Run a frozen graph (TensorFlow's own log lines only with --verbose or $TFFREEZE_VERBOSE=1). NAME is a tensor ('x' or 'x:0') or, with --manifest, one of its
      names or signature aliases; the manifest's dtypes and shapes are then checked. The
      library: --libtensorflow (a file, or a folder holding libtensorflow_cc.so.2,
      libtensorflow.so or _pywrap_tensorflow_internal.so), else $TFFREEZE_LIBTENSORFLOW,
      else the TensorFlow in the project's .venv; --runtime tf115 uses TF 1.15 from
      `make tf115` (the runtime TensorFlowSharp ships).

SOURCE: a Saver directory, one checkpoint prefix, or a SavedModel directory; the server
chooses the checkpoint (the state file's latest, matched by basename, or --step N; a
folder holding none but exactly one folder below it that does uses that one).

source options (the same in every tffreeze client; the server checks them):
  --outputs a,b  --inputs a,b  --step N  --graph FILE  --signature NAME  --tag TAG (repeatable)
  --bind NAME=VALUE (repeatable)  --ema  --var-map GRAPH_VAR=CKPT_KEY (repeatable)
  --include-variables a,b  --exclude-variables a,b  --timeout SECONDS
connection options:
  --server HOST:PORT (default $TFFREEZE_SERVER, else this user's local server, started
  on demand by `tffreeze local-server start`; several replicas: H1:P1,H2:P2 or
  dns:///NAME:PORT)  --tls (or $TFFREEZE_TLS=1)  --ca CA.pem (default
  $TFFREEZE_CA; implies --tls)  --token TOKEN (default $TFFREEZE_TOKEN)
  --client-cert CERT.pem --client-key KEY.pem
See README.md, "Command line", for what each option does.

examples:
  tffreeze serve &
  tffreeze-cpp freeze runs/mnist -o mnist.pb --manifest mnist.json
  tffreeze-cpp inspect runs/mnist
  tffreeze-cpp run mnist.pb --manifest mnist.json --input x=batch.npy --output probs=probs.npy

exit codes: 0 ok, 1 error (message on stderr), 2 usage error)";

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> values;
  std::string One(const std::string& key, const std::string& fallback = "") const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second.back();
  }
  bool Has(const std::string& key) const { return values.count(key) > 0; }
  std::vector<std::string> All(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

const std::set<std::string> kValued = {"-o", "--output", "--server", "--manifest", "--outputs", "--inputs", "--step",
                                       "--target", "--timeout", "--ca", "--token", "--client-cert", "--client-key",
                                       "--input", "--runtime", "--libtensorflow", "--graph", "--signature", "--tag",
                                       "--bind", "--var-map", "--include-variables", "--exclude-variables",
                                       "--format", "--input-shape"};
const std::set<std::string> kSwitches = {"--tls", "--quiet", "--optimize", "--verify", "--ema", "--json", "--verbose"};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-') {
      std::string key = a, value;
      bool has_value = false;
      auto eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        key = a.substr(0, eq);
        value = a.substr(eq + 1);
        has_value = true;
      }
      if (kSwitches.count(key) && !has_value) {
        o.values[key].push_back("true");
        continue;
      }
      if (!kValued.count(key)) throw Usage("unknown option " + key);
      if (!has_value) {
        if (i + 1 >= argc) throw Usage(key + " needs a value");
        value = argv[++i];
      }
      o.values[key].push_back(value);
    } else {
      o.positional.push_back(a);
    }
  }
  return o;
}

std::string Env(const char* name) { return std::getenv(name) ? std::getenv(name) : ""; }

// The repository this binary was built from (the .venv and .tf115 runtimes live there).
fs::path Root() {
#ifdef TFFREEZE_SOURCE_ROOT
  return fs::path(TFFREEZE_SOURCE_ROOT);
#else
  return fs::current_path();
#endif
}

// "[-1, 4]", or "?" for an unknown rank (as the Python CLI prints shapes).
// One line of progress on a terminal, as tffreeze-cs draws it: the upload's percent, bytes,
// rate and time left, then the freeze's percent and stage by name; redrawn at most ten times
// a second.
tffreeze::ProgressFn ProgressLine() {
  struct State {
    std::string kind;
    std::chrono::steady_clock::time_point started, drawn;
  };
  auto state = std::make_shared<State>();
  return [state](const std::string& kind, double done, double total, const std::string& msg) {
    auto now = std::chrono::steady_clock::now();
    if (kind != state->kind) {
      state->kind = kind;
      state->started = now;
      state->drawn = {};
    } else if (now - state->drawn < std::chrono::milliseconds(100) && done < total) {
      return;
    }
    state->drawn = now;
    double frac = total > 0 ? std::min(1.0, done / total) : 1.0;
    char line[256];
    if (kind == "upload") {
      double seconds = std::max(std::chrono::duration<double>(now - state->started).count(), 1e-3);
      double rate = done / seconds, left = rate > 0 ? (total - done) / rate : 0;
      std::string eta = left < 90 ? std::to_string(static_cast<int>(left)) + " s"
                                  : std::to_string(static_cast<int>(left / 60 + 0.5)) + " min";
      std::snprintf(line, sizeof line, "upload %3.0f%% %.1f/%.1f MiB, %.1f MiB/s, %s left", frac * 100, done / 1048576,
                    total / 1048576, rate / 1048576, eta.c_str());
    } else {
      auto colon = msg.find(": ");
      std::string stage = msg.substr(0, colon), detail = colon == std::string::npos ? "" : msg.substr(colon + 2);
      std::replace(stage.begin(), stage.end(), '_', ' ');
      std::snprintf(line, sizeof line, "freeze %3.0f%% %s%s", frac * 100, stage.c_str(),
                    detail.empty() ? "" : (" (" + detail + ")").c_str());
    }
    std::fprintf(stderr, "\r\033[K%.79s", line);
  };
}

std::string ShapeText(const tffreeze::v1::TensorInfo& t) {
  if (!t.has_shape()) return "?";
  std::string s = "[";
  for (int i = 0; i < t.shape().values_size(); i++)
    s += (i ? ", " : "") + std::to_string(static_cast<long long>(t.shape().values(i).number_value()));
  return s + "]";
}

tffreeze::ClientOptions Connection(const Options& o) {
  tffreeze::ClientOptions copts;
  std::string tls = Env("TFFREEZE_TLS");
  copts.tls = o.Has("--tls") || tls == "1" || tls == "true" || tls == "yes";
  copts.ca_file = o.One("--ca", Env("TFFREEZE_CA"));
  copts.token = o.One("--token", Env("TFFREEZE_TOKEN"));
  copts.client_cert = o.One("--client-cert");
  copts.client_key = o.One("--client-key");
  if (o.Has("--timeout")) {
    char* end = nullptr;
    std::string t = o.One("--timeout");
    double seconds = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0' || !(seconds > 0))
      throw Usage("--timeout takes seconds, e.g. --timeout 300 (got '" + t + "')");
    copts.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  return copts;
}

// The source options as typed: the server parses and checks them.
tffreeze::FreezeOptions SourceOptions(const Options& o) {
  tffreeze::FreezeOptions f;
  f.outputs = o.One("--outputs");
  f.inputs = o.One("--inputs");
  if (o.Has("--step")) {
    const std::string s = o.One("--step");  // an integer as typed; the server checks its range
    size_t digits = s.find_first_not_of("+-") == 1 ? 1 : 0;
    if (s.size() <= digits || s.find_first_not_of("0123456789", digits) != std::string::npos)
      throw Usage("--step takes a global step (an integer), got '" + s + "'");
    f.step = s;
  }
  f.graph = o.One("--graph");
  f.signature = o.One("--signature");
  f.tags = o.All("--tag");
  f.bind = o.All("--bind");
  f.ema = o.Has("--ema");
  f.var_map = o.All("--var-map");
  f.include_variables = o.One("--include-variables");
  f.exclude_variables = o.One("--exclude-variables");
  return f;
}

void Only(const Options& o, const std::string& command, const std::set<std::string>& allowed) {
  for (const auto& [key, values] : o.values)
    if (!allowed.count(key)) throw Usage(key + " is not an option of " + command);
}

const std::set<std::string> kSourceOptions = {
    "--server", "--tls", "--ca", "--token", "--client-cert", "--client-key", "--outputs", "--inputs", "--step",
    "--timeout", "--graph", "--signature", "--tag", "--bind", "--ema", "--var-map", "--include-variables",
    "--exclude-variables"};

int Freeze(const Options& o) {
  auto allowed = kSourceOptions;
  allowed.insert({"-o", "--output", "--manifest", "--optimize", "--verify", "--target", "--quiet", "--format",
                  "--input-shape"});
  Only(o, "freeze", allowed);
  if (o.positional.size() != 1) throw Usage("freeze takes one SOURCE");
  std::string out = o.One("-o", o.One("--output"));
  if (out.empty()) throw Usage("freeze needs -o OUT.pb");
  tffreeze::CheckOutputFolder(out);
  if (o.Has("--manifest")) tffreeze::CheckOutputFolder(o.One("--manifest"));
  tffreeze::FreezeOptions fopts = SourceOptions(o);
  fopts.target = o.One("--target");
  fopts.format = o.One("--format");
  fopts.input_shapes = o.All("--input-shape");
  fopts.optimize = o.Has("--optimize");
  fopts.verify = o.Has("--verify");
  tffreeze::Client client(o.One("--server"), Connection(o));
  bool tty = isatty(2) && !o.Has("--quiet");
  if (tty) client.progress = ProgressLine();
  tffreeze::FreezeOutcome outcome = client.Freeze(o.positional[0], out, fopts);
  if (tty) std::fprintf(stderr, "\r\033[K");
  const auto& r = outcome.result;
  if (o.Has("--manifest")) tffreeze::WriteAtomically(o.One("--manifest"), outcome.manifest);
  for (const auto& w : r.warnings()) std::cerr << "tffreeze-cpp: warning: " << w << "\n";
  if (!o.Has("--quiet")) {
    std::cout << "wrote " << out << " (" << r.size_bytes() << " bytes, sha256 " << r.sha256().substr(0, 12) << ") from "
              << r.checkpoint().prefix() << (r.checkpoint().has_step() ? " (step " + std::to_string(r.checkpoint().step()) + ")" : "")
              << "\n  uploaded " << outcome.uploaded_files << " of " << outcome.files << " file(s), " << outcome.uploaded_bytes
              << " bytes"
              << (outcome.assembled ? "; assembled from the local files"
                  : outcome.downloaded ? "" : "; " + out + " already held this graph (not downloaded)") << "\n";
    for (const auto& t : r.inputs()) std::printf("  %-7s %s %s %s\n", "input", t.name().c_str(), t.dtype().c_str(), ShapeText(t).c_str());
    for (const auto& t : r.outputs()) std::printf("  %-7s %s %s %s\n", "output", t.name().c_str(), t.dtype().c_str(), ShapeText(t).c_str());
  }
  return 0;
}

int Inspect(const Options& o) {
  auto allowed = kSourceOptions;
  allowed.insert("--json");
  Only(o, "inspect", allowed);
  if (o.positional.size() != 1) throw Usage("inspect takes one SOURCE");
  tffreeze::Client client(o.One("--server"), Connection(o));
  auto response = client.Inspect(o.positional[0], SourceOptions(o));
  std::cout << (o.Has("--json") ? response.rendered().json() : response.rendered().text());
  return 0;
}

std::pair<std::string, std::string> SplitPair(const std::string& pair, const std::string& flag) {
  auto eq = pair.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) throw Usage(flag + " '" + pair + "': write NAME=FILE.npy");
  return {pair.substr(0, eq), pair.substr(eq + 1)};
}

// The library for --runtime (and, for TF 1.15, the libpython3.7m it needs loaded first).
std::pair<std::string, std::string> Library(const Options& o) {
  std::string runtime = o.One("--runtime");
  if (!runtime.empty() && runtime != "tf115" && runtime != "default") throw Usage("--runtime must be tf115 or default");
  std::string lib = o.One("--libtensorflow", Env("TFFREEZE_LIBTENSORFLOW"));
  if (runtime == "tf115") {
    fs::path tf115 = Env("TFFREEZE_TF115").empty() ? Root() / ".tf115" : fs::path(Env("TFFREEZE_TF115"));
    std::string preload;
    std::ifstream cfg(tf115 / "pyvenv.cfg");
    std::string line;
    while (std::getline(cfg, line))
      if (line.rfind("home = ", 0) == 0) preload = (fs::path(line.substr(7)) / ".." / "lib" / "libpython3.7m.so.1.0").string();
    if (!o.Has("--libtensorflow")) {
      lib = Env("TFFREEZE_TF115_LIB");
      if (lib.empty()) lib = (tf115 / "lib/python3.7/site-packages/tensorflow_core/python/_pywrap_tensorflow_internal.so").string();
    }
    if (!fs::exists(lib)) throw tffreeze::Error("NOT_FOUND", "no TF 1.15 runtime at " + tf115.string() + "; run 'make tf115' first");
    return {lib, preload};
  }
  if (lib.empty()) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(Root() / ".venv" / "lib", ec)) {
      fs::path candidate = e.path() / "site-packages" / "tensorflow";
      if (fs::exists(candidate / "libtensorflow_cc.so.2")) lib = candidate.string();
    }
    if (lib.empty())
      throw tffreeze::Error("NOT_FOUND", "no TensorFlow C library: pass --libtensorflow PATH or set TFFREEZE_LIBTENSORFLOW");
  }
  return {lib, ""};
}

// fd 2 pointed at /dev/null while TensorFlow loads and runs (its C++ log lines ignore the log
// level at load time); restored on scope exit, so our own errors are printed normally.
class StderrSilenced {
 public:
  explicit StderrSilenced(bool on) {
    if (!on) return;
    std::fflush(stderr);
    saved_ = dup(2);
    int null = open("/dev/null", O_WRONLY);
    if (saved_ >= 0 && null >= 0) dup2(null, 2);
    if (null >= 0) close(null);
  }
  ~StderrSilenced() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
  }

 private:
  int saved_ = -1;
};

int Run(const Options& o) {
  if (o.positional.size() != 1) throw Usage("run takes one MODEL.pb");
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
  for (const auto& p : o.All("--input")) inputs.push_back(SplitPair(p, "--input"));
  for (const auto& p : o.All("--output")) outputs.push_back(SplitPair(p, "--output"));
  if (outputs.empty()) throw Usage("run needs at least one --output NAME=FILE.npy");
  if (!fs::is_regular_file(o.positional[0])) throw tffreeze::Error("NOT_FOUND", "no model file " + o.positional[0]);
  auto lib = Library(o);
  const bool verbose = o.Has("--verbose") || (!Env("TFFREEZE_VERBOSE").empty() && Env("TFFREEZE_VERBOSE") != "0");
  if (!verbose) setenv("TF_CPP_MIN_LOG_LEVEL", "3", 0);  // TensorFlow's log lines, unless asked for
  std::unique_ptr<tffreeze::Manifest> manifest;
  if (o.Has("--manifest")) manifest.reset(new tffreeze::Manifest(tffreeze::Manifest::Load(o.One("--manifest"))));
  std::vector<std::pair<std::string, tffreeze::Tensor>> feeds;
  for (const auto& in : inputs) {
    tffreeze::Tensor t = tffreeze::ReadNpy(in.second);
    std::string name = in.first;
    if (manifest) {
      const auto& info = manifest->Input(in.first);
      tffreeze::Manifest::Check(info, t, info.name());
      name = info.name();
    }
    feeds.emplace_back(name, std::move(t));
  }
  std::vector<std::string> fetches;
  for (const auto& out : outputs) fetches.push_back(manifest ? manifest->Output(out.first).name() : out.first);
  std::vector<tffreeze::Tensor> results;
  {
    StderrSilenced quiet(!verbose);  // absl's start-up warning and CUDA probing go to fd 2 at load
    tffreeze::Runtime::Load(lib.first, lib.second);
    tffreeze::Model model(o.positional[0]);
    results = model.Run(feeds, fetches);
  }
  for (size_t i = 0; i < results.size(); i++) {
    tffreeze::WriteNpy(outputs[i].second, results[i]);
    std::string shape = "[";
    for (size_t d = 0; d < results[i].shape.size(); d++) shape += (d ? ", " : "") + std::to_string(results[i].shape[d]);
    std::cout << outputs[i].first << " -> " << outputs[i].second << " " << results[i].dtype << " " << shape << "]\n";
  }
  std::cerr << "(TensorFlow " << tffreeze::Runtime::Version() << ")\n";  // which runtime ran
  return 0;
}

// The error's message on one line, naming the option at fault as the command line spells it
// (the server's "flag" metadata, with the "field: " prefix of its message dropped).
std::string Message(const tffreeze::Error& e) {
  std::string msg;  // whitespace runs collapsed, as every client prints it
  for (char c : std::string(e.what())) {
    bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t';
    if (space && (msg.empty() || msg.back() == ' ')) continue;
    msg += space ? ' ' : c;
  }
  while (!msg.empty() && msg.back() == ' ') msg.pop_back();
  auto flag = e.metadata().find("flag");
  if (flag == e.metadata().end()) return msg;
  auto field = e.metadata().find("field");
  if (field != e.metadata().end() && !field->second.empty())
    for (const std::string& prefix : {field->second + ": ", field->second.substr(field->second.find('.') + 1) + ": "})
      if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
  return flag->second + ": " + msg;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cout << kUsage << "\n";
    return 2;
  }
  for (int i = 1; i < argc; i++) {  // help for any command: the usage, exit 0
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::cout << kUsage << "\n";
      return 0;
    }
  }
  std::string command = argv[1];
  setenv("GRPC_VERBOSITY", "NONE", 0);  // gRPC's own log lines (the error says what failed)
  try {
    Options o = Parse(argc, argv);
    if (command == "freeze") return Freeze(o);
    if (command == "inspect") return Inspect(o);
    if (command == "run") return Run(o);
    throw Usage("unknown command '" + command + "' (freeze, inspect, run)");
  } catch (const Usage& e) {
    std::cerr << "tffreeze-cpp " << command << ": " << e.what() << "\n(see tffreeze-cpp --help)\n";
    return 2;
  } catch (const tffreeze::Error& e) {
    std::string reason = e.reason().rfind("ERROR_REASON_", 0) == 0 ? e.reason().substr(13) : e.reason();
    if (reason == "UNSPECIFIED") reason.clear();
    std::cerr << "tffreeze-cpp " << command << ": " << Message(e) << (reason.empty() ? "" : " (" + reason + ")")
              << " [" << e.code() << "]\n";
    auto candidates = e.metadata().find("candidates");
    auto field = e.metadata().find("field");
    if (candidates != e.metadata().end() && !candidates->second.empty() && field != e.metadata().end() &&
        field->second == "options.outputs") {
      const std::string& all = candidates->second;
      std::cerr << "to freeze the best candidate, add:  --outputs " << all.substr(0, all.find(',')) << "\n"
                << "all candidates (keep those the model deploys):  --outputs " << all << "\n";
    }
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "tffreeze-cpp " << command << ": " << e.what() << " [IO_ERROR]\n";
    return 1;
  }
}
