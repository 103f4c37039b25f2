// tffreeze-cpp: freeze checkpoints with a tffreeze server over gRPC and run frozen graphs
// on the TensorFlow C API. Verbs and exit codes as the Python CLI: 0 ok, 1 error (one
// line on stderr naming the problem, its status in brackets), 2 usage error.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <memory>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "tffreeze/client.h"
#include "tffreeze/runner.h"

namespace fs = std::filesystem;

namespace {

// Request fields (the server's words) -> this command line's flags: the same table as
// tffreeze_api.options.FLAGS (api_py/tffreeze_api/options.py), in its order.
const std::vector<std::pair<std::string, std::string>> kFieldFlags = {
    {"options.outputs", "--outputs"}, {"options.inputs", "--inputs"}, {"options.step", "--step"},
    {"options.checkpoint_prefix", "SOURCE"}, {"options.graph_path", "--graph"}, {"options.signature", "--signature"},
    {"options.tags", "--tag"}, {"options.bind", "--bind"}, {"options.ema", "--ema"}, {"options.var_map", "--var-map"},
    {"options.include_variables", "--include-variables"}, {"options.exclude_variables", "--exclude-variables"},
    {"options.optimize", "--optimize"}, {"options.verify", "--verify"}, {"options.target", "--target"},
    {"options.format", "--format"}, {"options.input_shapes", "--input-shape"},
};

// Request fields that are not "options.X" above, as this command line spells them. The
// reference is _WORDS in client_py/tffreeze/cli.py: the same patterns, in the same order.
const std::vector<std::pair<std::string, std::string>> kWords = {
    {R"(\bname it in graph_path\b)", "name it with --graph FILE"},
    {R"(\bthe graph option \(--graph\))", "--graph"},
    {R"(\bthe graph option\b)", "--graph"},
    {R"(\bgraph_path\b)", "--graph"},
    {R"(\be\.g\. outputs=)", "e.g. --outputs "},  // the server's examples, never a value the user gave
    {R"(\be\.g\. inputs=)", "e.g. --inputs "},
    {R"(\bvar_map\b)", "--var-map"},
    {R"(\binput_shapes\b)", "--input-shape"},
    {R"(\binclude_variables\b)", "--include-variables"},
    {R"(\bexclude_variables\b)", "--exclude-variables"},
};
// The server's trailing note of the outputs a freeze chose (cli.py's _OUTPUTS_NOTE).
const char kOutputsNote[] = R"(\s*\[outputs: (.*)\]\s*$)";
// What the library names an output path by, as this command line's flag (cli.py's _PATH_FLAGS).
const std::map<std::string, std::string> kPathFlags = {{"output_path", "-o"}};

// The source as typed (freeze, inspect), for messages that name it; "" for run.
std::string typed_source;
std::string typed_timeout = "600";  // --timeout as typed (seconds), for a deadline's message

// Every match of pattern in text replaced by the literal text with (no $ references).
std::string ReplaceAll(const std::string& text, const std::string& pattern, const std::string& with) {
  return std::regex_replace(text, std::regex(pattern), std::regex_replace(with, std::regex(R"(\$)"), "$$$$"));
}

std::string RegexEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::strchr(R"(\^$.|?*+()[]{})", c)) out += '\\';
    out += c;
  }
  return out;
}

// os.path.join of two parts, as the Python client joins them.
std::string JoinPath(const std::string& a, const std::string& b) {
  if (!b.empty() && b[0] == '/') return b;
  return a.empty() || a.back() == '/' ? a + b : a + "/" + b;
}

// A message worded in request terms (the server's), in this command line's: request fields
// as flags, SOURCE as the source the user gave (cli.py's _in_cli_words).
std::string InCliWords(std::string msg, const std::string& source, const std::string& command) {
  auto fields = kFieldFlags;
  std::stable_sort(fields.begin(), fields.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [field, flag] : fields)
    if (flag != "SOURCE") msg = ReplaceAll(msg, R"(\b)" + RegexEscape(field) + R"(\b)", flag);
  for (const auto& [pattern, words] : kWords) msg = ReplaceAll(msg, pattern, words);
  const std::string shown = source.empty() ? "the source" : source;
  std::smatch first;
  bool found = std::regex_search(msg, first, std::regex(R"(folders below it do: (\S+?)/?[,.])"));
  const std::string example = found && !source.empty() ? JoinPath(source, first[1].str()) : "FOLDER";
  msg = ReplaceAll(msg, R"(Pass one of them as SOURCE\.?)",
                   "Give one of them instead, e.g. `tffreeze-cpp " + command + " " + example + "`.");
  msg = ReplaceAll(msg, "pass its folder as SOURCE", "give `tffreeze-cpp " + command + "` its folder");
  msg = ReplaceAll(msg, R"(\binside SOURCE\b)", "inside " + shown);
  msg = ReplaceAll(msg, R"(\bSOURCE\b)", shown);
  msg = ReplaceAll(msg, R"(\boptions\.checkpoint_prefix\b)", shown);
  return msg;
}

// The error's message, whitespace runs collapsed to one space, as every client prints it.
std::string OneLine(const std::string& text) {
  std::string msg;
  for (char c : text) {
    bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
    if (space && (msg.empty() || msg.back() == ' ')) continue;
    msg += space ? ' ' : c;
  }
  while (!msg.empty() && msg.back() == ' ') msg.pop_back();
  return msg;
}

// The error's message on one line, naming the option at fault as the command line spells it
// (the server's "flag" metadata, the field table otherwise), in the command line's words
// (cli.py's _message).
std::string Message(const tffreeze::Error& e, const std::string& command) {
  std::string msg = OneLine(e.what());
  if (e.code() == "DEADLINE_EXCEEDED" && e.reason().empty() && msg.find("Deadline Exceeded") != std::string::npos)
    return "no answer within --timeout " + typed_timeout + " seconds: give a larger --timeout (the default is 600)";
  auto get = [&](const char* key) {
    auto it = e.metadata().find(key);
    return it == e.metadata().end() ? std::string() : it->second;
  };
  const std::string field = get("field"), path = get("path");
  auto path_flag = kPathFlags.find(field);
  if (path_flag != kPathFlags.end() && !path.empty() && msg.rfind(path, 0) == 0)
    return path_flag->second + " " + msg;  // an output this client failed to write
  msg = std::regex_replace(msg, std::regex(kOutputsNote), "");
  std::string flag = get("flag");
  if (flag.empty())
    for (const auto& [f, spelled] : kFieldFlags)
      if (f == field) flag = spelled;
  if (!flag.empty())
    for (const std::string& prefix : {field + ": ", (field.size() > 8 ? field.substr(8) : "") + ": "})
      if (!field.empty() && msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
  msg = InCliWords(msg, typed_source, command);
  if (flag == "SOURCE") flag = typed_source;
  if (!flag.empty() && msg.rfind(flag, 0) != 0) msg = flag + ": " + msg;
  return msg;
}

// The outputs a freeze chose, when the server's message notes them; "" otherwise.
std::string OutputsNoted(const tffreeze::Error& e) {
  std::smatch m;
  const std::string msg = OneLine(e.what());
  return std::regex_search(msg, m, std::regex(kOutputsNote)) ? m[1].str() : "";
}

// How to freeze other outputs than the ones a failed freeze chose: --outputs, or for a source
// whose signature decides them (a TF2 SavedModel), another signature (cli.py's _other_outputs).
std::string OtherOutputs(const tffreeze::Error& e) {
  auto chosen_with = e.metadata().find("chosen_with");
  if (chosen_with == e.metadata().end() || chosen_with->second != "options.signature")
    return "to freeze others, name them: --outputs a,b";
  auto listed = e.metadata().find("signatures");
  std::string others, item;
  std::stringstream in(listed == e.metadata().end() ? "" : listed->second);
  while (std::getline(in, item, ','))
    if (!item.empty()) others += (others.empty() ? "" : ", ") + item;
  if (others.empty()) return "its signature defines a TF2 SavedModel's outputs, and it has no other";
  return "to freeze others, choose another signature with --signature (its others: " + others + ")";
}

const char* kUsage = R"(usage: tffreeze-cpp COMMAND ...

Freeze TensorFlow checkpoints with a tffreeze server (gRPC) and run frozen graphs on the
TensorFlow C API.

commands:
  freeze SOURCE -o OUT.pb [--manifest M.json] [SOURCE OPTIONS] [--optimize] [--verify]
         [--target tensorflowsharp|mlnet] [--format graphdef|onnx|tflite] [--input-shape NAME=D1,D2,...]
         [--quiet] [CONNECTION OPTIONS]
      Upload the checkpoint's files the server lacks, freeze, write OUT.pb (and the
      manifest, as the server rendered it) atomically; OUT.pb already holding the result
      is not downloaded again. -o is also spelled --output-file (--output is run's), given once;
      a .pb, .onnx or .tflite name must match --format (.pb: graphdef, the default).
      --format onnx|tflite writes the model converted from the frozen graph, run in
      onnxruntime / the TFLite interpreter and compared with it first; --input-shape pins
      an input's shape (e.g. a static batch for TFLite).
  inspect SOURCE [--json] [SOURCE OPTIONS] [CONNECTION OPTIONS]
      Show the checkpoint a freeze would use, its variables, and the inputs and outputs it
      would resolve, each with its reason (--json: as JSON).
  run MODEL.pb [--manifest M.json] --input NAME=FILE.npy ... --output NAME[=FILE.npy] ...
      [--runtime tf115] [--libtensorflow PATH] [--verbose]
      Run a frozen GraphDef; what MODEL holds decides (the manifest's format, else its bytes, else
      its name; a GraphDef under another name runs, with a warning): ONNX and TFLite models run
      with the Python `tffreeze run`.
      --output NAME=FILE.npy writes an output, --output NAME prints its dtype, shape and first
      values; with --manifest and no --output, every output the manifest names is printed.
      TensorFlow's own log lines only with --verbose or $TFFREEZE_VERBOSE=1. NAME is a tensor ('x' or 'x:0') or, with --manifest, one of its
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
  --server HOST:PORT (the server's 'listening on' address, not the gRPC-Web http:// URL;
  default $TFFREEZE_SERVER, else this user's local server, started
  on demand by `tffreeze local-server start`; several replicas: H1:P1,H2:P2 or
  dns:///NAME:PORT)  --tls (or $TFFREEZE_TLS=1)  --ca CA.pem (default
  $TFFREEZE_CA; implies --tls)  --token TOKEN (default $TFFREEZE_TOKEN)
  --client-cert CERT.pem --client-key KEY.pem
See README.md, "CLI reference", for what each option does. A flag belongs to the commands
listed with it above (e.g. --output NAME is run's; freeze writes with -o/--output-file); given
to another command it is a usage error (exit 2). Flags are matched whole: no abbreviations.

examples (no server to start: the first command starts your local server, found as
$TFFREEZE_COMMAND, else the checkout's .venv/bin/tffreeze, else `tffreeze` on PATH):
  tffreeze-cpp freeze runs/mnist -o mnist.pb --manifest mnist.json
  tffreeze-cpp inspect runs/mnist
  tffreeze-cpp run mnist.pb --manifest mnist.json --input x=batch.npy --output probs=probs.npy
  tffreeze-cpp run mnist.pb --manifest mnist.json --input x=batch.npy   # prints every output

Ctrl-C, SIGTERM and SIGHUP remove the file being written (exit 130, 143, 129); a freeze
removes stale .OUT.pb.XXXXXX.part files an interrupted one left beside OUT.pb.

tffreeze-cpp --version prints its version (tffreeze --version's).
exit codes: 0 ok, 1 error (message on stderr), 2 usage error, 130 / 143 / 129 stopped by
Ctrl-C / SIGTERM / SIGHUP (nothing left half-written))";

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

// Every flag: its value's name ("" for a switch) and the commands that take it. A flag is
// matched whole (no abbreviations); one given to a command that does not take it is a usage
// error naming the command that does.
struct Flag {
  const char* name;
  const char* metavar;
  const char* commands;  // space-separated
};
const Flag kFlags[] = {
    // freeze
    {"-o", "OUT.pb", "freeze"},
    {"--output-file", "OUT.pb", "freeze"},
    {"--optimize", "", "freeze"},
    {"--verify", "", "freeze"},
    {"--target", "tensorflowsharp|mlnet", "freeze"},
    {"--format", "graphdef|onnx|tflite", "freeze"},
    {"--input-shape", "NAME=D1,D2,...", "freeze"},
    {"--quiet", "", "freeze"},
    {"--manifest", "M.json", "freeze run"},
    // source options
    {"--outputs", "a,b", "freeze inspect"},
    {"--inputs", "a,b", "freeze inspect"},
    {"--step", "N", "freeze inspect"},
    {"--graph", "FILE", "freeze inspect"},
    {"--signature", "NAME", "freeze inspect"},
    {"--tag", "TAG", "freeze inspect"},
    {"--bind", "NAME=VALUE", "freeze inspect"},
    {"--ema", "", "freeze inspect"},
    {"--var-map", "GRAPH_VAR=CKPT_KEY", "freeze inspect"},
    {"--include-variables", "a,b", "freeze inspect"},
    {"--exclude-variables", "a,b", "freeze inspect"},
    {"--timeout", "SECONDS", "freeze inspect"},
    // connection options
    {"--server", "HOST:PORT", "freeze inspect"},
    {"--tls", "", "freeze inspect"},
    {"--ca", "CA.pem", "freeze inspect"},
    {"--token", "TOKEN", "freeze inspect"},
    {"--client-cert", "CERT.pem", "freeze inspect"},
    {"--client-key", "KEY.pem", "freeze inspect"},
    // inspect
    {"--json", "", "inspect"},
    // run
    {"--input", "NAME=FILE.npy", "run"},
    {"--output", "NAME[=FILE.npy]", "run"},
    {"--runtime", "tf115", "run"},
    {"--libtensorflow", "PATH", "run"},
    {"--verbose", "", "run"},
};

const Flag* FindFlag(const std::string& name) {
  for (const auto& f : kFlags)
    if (name == f.name) return &f;
  return nullptr;
}

bool Takes(const Flag& f, const std::string& command) {
  std::stringstream in(f.commands);
  std::string c;
  while (in >> c)
    if (c == command) return true;
  return false;
}

// "--output NAME is a flag of `tffreeze-cpp run`; freeze writes its graph with -o/--output-file"
std::string NotHere(const Flag& f, const std::string& command) {
  std::string spelled = std::string(f.name) + (*f.metavar ? std::string(" ") + f.metavar : "");
  std::string owners;
  std::stringstream in(f.commands);
  std::string c;
  while (in >> c) owners += (owners.empty() ? "`tffreeze-cpp " : " and `tffreeze-cpp ") + c + "`";
  std::string msg = spelled + " is a flag of " + owners;
  std::string name = f.name;
  if (command == "freeze" && name == "--output") return msg + "; freeze writes its graph with -o/--output-file";
  if (command == "freeze" && name == "--input") return msg + "; freeze names the graph's inputs with --inputs a,b";
  if (command == "run" && (name == "-o" || name == "--output-file"))
    return msg + "; run writes an output with --output NAME=FILE.npy";
  if (command == "run" && (name == "--outputs" || name == "--inputs"))
    return msg + "; run takes --" + (name == "--outputs" ? "output" : "input") + " NAME=FILE.npy (one per tensor)";
  return msg + ", not of " + command;
}

// A flag no command takes: the start of one of this command's own (flags are never
// abbreviated: up to four it may have meant, as tffreeze and tffreeze-cs say), else unknown.
std::string Unknown(const std::string& key, const std::string& command) {
  std::vector<std::string> longer;
  if (key.rfind("--", 0) == 0)
    for (const auto& f : kFlags)
      if (Takes(f, command) && std::string(f.name).rfind(key, 0) == 0) longer.push_back(f.name);
  std::sort(longer.begin(), longer.end());
  if (longer.empty()) return "unknown option " + key;
  std::string all;
  for (size_t i = 0; i < longer.size() && i < 4; i++) all += (i ? " or " : "") + longer[i];
  return key + " is not a flag of `tffreeze-cpp " + command + "`: flags are written in full (" + all + ")";
}

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\n") == std::string::npos; }

Options Parse(int argc, char** argv) {
  Options o;
  const std::string command = argv[1];
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
      const Flag* flag = FindFlag(key);
      if (!flag) throw Usage(Unknown(key, command));
      if (!Takes(*flag, command) && (command == "freeze" || command == "inspect" || command == "run"))
        throw Usage(NotHere(*flag, command));
      if (!*flag->metavar) {
        if (has_value) throw Usage(key + " takes no value");
        o.values[key == "--output-file" ? "-o" : key].push_back("true");
        continue;
      }
      if (!has_value) {  // never another flag taken as its value
        std::string next = i + 1 < argc ? argv[i + 1] : "";
        if (i + 1 >= argc || (next.rfind("--", 0) == 0 && FindFlag(next.substr(0, next.find('=')))))
          throw Usage(key + " needs a value: " + flag->name + " " + flag->metavar);
        value = argv[++i];
      }
      if (key == "--output-file") key = "-o";  // one option, two spellings
      static const std::set<std::string> repeatable = {"--tag", "--bind", "--var-map", "--input-shape", "--input",
                                                       "--output"};
      if (o.values.count(key) && !repeatable.count(key) && key != "-o")
        throw Usage(key + " is given more than once: give it once");
      if (key == "--bind") {
        auto name_of = [](const std::string& b) {
          std::string n = b.substr(0, b.find('='));
          n.erase(0, n.find_first_not_of(" \t"));
          n.erase(n.find_last_not_of(" \t") + 1);
          return n;
        };
        for (const auto& b : o.values[key])
          if (name_of(b) == name_of(value)) throw Usage("--bind " + name_of(value) + " is given more than once: give it once");
      }
      if ((key == "--outputs" || key == "--inputs" || key == "--include-variables" || key == "--exclude-variables") &&
          value.find_first_not_of(", \t\n") == std::string::npos)
        throw Usage(key + " names nothing: give names (" + key + " a,b), or leave it out");
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
      if (done > 0 && (seconds >= 1.0 || done >= total)) {
        std::snprintf(line, sizeof line, "upload %3.0f%% %.1f/%.1f MiB, %.1f MiB/s, %s left", frac * 100,
                      done / 1048576, total / 1048576, rate / 1048576, eta.c_str());
      } else {  // (a rate from the first chunk alone says nothing)
        std::snprintf(line, sizeof line, "upload %3.0f%% %.1f/%.1f MiB", frac * 100, done / 1048576, total / 1048576);
      }
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
    copts.timeout = std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(seconds * 1000)));
    typed_timeout = t;
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

// An error writing a file the command line named, worded again with the flag that named it
// ("-o x.pb: no space left for the graph in ...").
tffreeze::Error Flagged(const tffreeze::Error& e,
                        const std::map<std::string, std::pair<std::string, std::string>>& flags) {
  auto path = e.metadata().find("path");
  auto err = e.metadata().find("errno");
  if (path == e.metadata().end() || err == e.metadata().end()) return e;
  auto flag = flags.find(path->second);
  if (flag == flags.end() || flag->first.empty()) return e;
  return tffreeze::WriteError(std::atoi(err->second.c_str()), path->second, flag->second.first, flag->second.second);
}

// A hard link to the file at `path` under a hidden temporary name beside it, named as the Python
// client's (.NAME.PID-keepXXXX.part: removed by a later freeze once this process is gone), so a
// failure after `path` is replaced can put the old file back; "" when there is none or no link.
// Marked for the signal handler before it exists (as the temporary files are): an interrupted
// freeze leaves no link behind (*slot: the mark, for ForgetPending).
std::string KeepOld(const std::string& path, int* slot) {
  std::error_code ec;
  *slot = -1;
  if (!fs::is_regular_file(path, ec)) return "";
  fs::path p = fs::absolute(path);
  for (int attempt = 0; attempt < 20; attempt++) {
    std::string tail;
    for (int i = 0; i < 4; i++) tail += static_cast<char>('a' + std::rand() % 26);
    std::string name = (p.parent_path() / ("." + p.filename().string() + "." + std::to_string(getpid()) + "-keep" +
                                           tail + ".part")).string();
    *slot = tffreeze::MarkPending(name);
    if (link(p.c_str(), name.c_str()) == 0) return name;
    tffreeze::ForgetPending(*slot);
    *slot = -1;
    if (errno != EEXIST) return "";
  }
  return "";
}

// A google.protobuf.Value as Python's json.dumps writes the manifest's value (1 -> 1, 0.5 -> 0.5).
std::string JsonValue(const google::protobuf::Value& v) {
  if (v.kind_case() == google::protobuf::Value::kBoolValue) return v.bool_value() ? "true" : "false";
  if (v.kind_case() == google::protobuf::Value::kStringValue) return "\"" + v.string_value() + "\"";
  if (v.kind_case() == google::protobuf::Value::kNumberValue) {
    double d = v.number_value();
    char buf[64];
    if (d == static_cast<double>(static_cast<long long>(d)) && std::fabs(d) < 1e15)
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(d));
    else
      std::snprintf(buf, sizeof buf, "%.17g", d);
    std::string text = buf;  // the shortest text that reads back the same, as Python's repr
    for (int digits = 1; digits <= 17 && text.find_first_not_of("-0123456789") != std::string::npos; digits++) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, d);
      if (std::strtod(buf, nullptr) == d) {
        text = buf;
        break;
      }
    }
    return text;
  }
  return "null";
}

std::string FormatClash(const std::string& path, const std::string& fmt);  // below, with run's model kinds

int Freeze(const Options& o) {
  // (as the Python client: no SOURCE, then no -o, then SOURCE and a second path, the -o left out)
  if (o.positional.empty()) throw Usage("freeze takes one SOURCE");
  if (!o.Has("-o")) throw Usage("freeze needs -o OUT.pb");
  if (o.positional.size() != 1) throw Usage("freeze takes one SOURCE");
  if (o.All("-o").size() > 1) throw Usage("freeze writes one graph: give -o/--output-file once");
  std::string out = o.One("-o");
  if (Blank(out)) throw Usage("freeze needs -o OUT.pb");
  if (o.Has("--manifest") && Blank(o.One("--manifest"))) throw Usage("--manifest needs a path: --manifest OUT.json");
  const std::string clash = FormatClash(out, o.One("--format"));
  if (!clash.empty()) throw Usage(clash);  // before anything is uploaded
  tffreeze::CheckAFile(out, "-o");  // (before the links: /dev/stdout is one, to a pipe or a terminal)
  if (o.Has("--manifest")) tffreeze::CheckAFile(o.One("--manifest"), "--manifest", "the manifest");
  // Written through a symbolic link: to its final target, and the link stays a link.
  out = tffreeze::ThroughLink(out);
  const std::string manifest = o.Has("--manifest") ? tffreeze::ThroughLink(o.One("--manifest")) : "";
  // Both outputs checked before anything is read, sent or written: neither may be a file the
  // checkpoint being frozen is made of, nor the --graph file (writing it would destroy the user's
  // own checkpoint); an earlier graph written into SOURCE's folder may be replaced.
  for (const auto& given : {std::make_pair(std::string("-o"), out), std::make_pair(std::string("--manifest"), manifest)}) {
    if (given.second.empty()) continue;
    const std::string listed = tffreeze::ListedFileAt(o.positional[0], given.second, o.One("--graph"));
    if (!listed.empty())
      throw Usage(given.first + " " + given.second + " is a file of the checkpoint being frozen (" + listed + "): give " +
                  (given.first == "-o" ? "the graph" : "the manifest") + " another path");
  }
  tffreeze::CheckOutputFolder(out, "-o");
  if (!manifest.empty()) {
    tffreeze::CheckOutputFolder(manifest, "--manifest", "the manifest");
    std::error_code ec;
    if (fs::weakly_canonical(manifest, ec) == fs::weakly_canonical(out, ec))
      throw Usage("--manifest " + manifest + " is the graph's own path (-o): give the manifest another name");
    tffreeze::RemoveStaleTempFiles(manifest);
  }
  tffreeze::FreezeOptions fopts = SourceOptions(o);
  fopts.target = o.One("--target");
  fopts.format = o.One("--format");
  fopts.input_shapes = o.All("--input-shape");
  fopts.optimize = o.Has("--optimize");
  fopts.verify = o.Has("--verify");
  tffreeze::Client client(o.One("--server"), Connection(o));
  bool tty = isatty(2) && !o.Has("--quiet");
  if (tty) client.progress = ProgressLine();
  tffreeze::FreezeOutcome outcome;
  // The graph and its manifest are written both or neither: the old graph is kept (a hard link)
  // until the manifest is in place, and put back when the manifest cannot be written.
  std::error_code ec;
  bool existed = fs::exists(out, ec);
  int kept_slot = -1;
  std::string old = manifest.empty() ? "" : KeepOld(out, &kept_slot);
  struct Drop {
    std::string* path;
    int slot;
    ~Drop() {
      if (!path->empty()) unlink(path->c_str());
      tffreeze::ForgetPending(slot);
    }
  } drop{&old, kept_slot};
  try {
    outcome = client.Freeze(o.positional[0], out, fopts);
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (!manifest.empty()) {
      try {
        tffreeze::WriteAtomically(manifest, outcome.manifest);
      } catch (const tffreeze::Error& e) {
        std::string what;
        if (!old.empty() && rename(old.c_str(), out.c_str()) == 0) {
          old.clear();
          what = " (-o " + out + " is as it was: nothing was written)";
        } else if (!existed && unlink(out.c_str()) == 0) {
          what = " (nothing was written)";
        } else {
          what = " (-o " + out + " holds the new graph; its manifest was not written)";
        }
        tffreeze::Error flagged = Flagged(e, {{manifest, {"--manifest", "the manifest"}}});
        auto metadata = flagged.metadata();
        metadata.erase("errno");  // (worded already: the outer Flagged leaves it as it is)
        throw tffreeze::Error(flagged.code(), flagged.what() + what, flagged.reason(), metadata);
      }
    }
  } catch (const tffreeze::Error& e) {
    if (tty) std::fprintf(stderr, "\r\033[K");
    throw Flagged(e, {{out, {"-o", "the graph"}}, {manifest, {"--manifest", "the manifest"}}});
  }
  const auto& r = outcome.result;
  for (const auto& w : r.warnings()) std::cerr << "tffreeze-cpp: warning: " << InCliWords(w, typed_source, "freeze") << "\n";
  if (!o.Has("--quiet")) {
    std::cout << "wrote " << out << " (" << r.size_bytes() << " bytes, sha256 " << r.sha256().substr(0, 12) << ") from "
              << r.checkpoint().prefix() << (r.checkpoint().has_step() ? " (step " + std::to_string(r.checkpoint().step()) + ")" : "")
              << "\n  uploaded " << outcome.uploaded_files << " of " << outcome.files << " file(s), " << outcome.uploaded_bytes
              << " bytes"
              << (outcome.assembled ? "; assembled from the local files"
                  : outcome.downloaded ? "" : "; " + out + " already held this graph (not downloaded)") << "\n";
    for (const auto& t : r.inputs()) std::printf("  %-7s %s %s %s\n", "input", t.name().c_str(), t.dtype().c_str(), ShapeText(t).c_str());
    for (const auto& t : r.outputs()) std::printf("  %-7s %s %s %s\n", "output", t.name().c_str(), t.dtype().c_str(), ShapeText(t).c_str());
    for (const auto& b : r.bindings())
      std::printf("  bound   %s = %s (%s)\n", b.name().c_str(), JsonValue(b.value()).c_str(), b.reason().c_str());
    for (const auto& v : r.verification())
      std::printf("  verify  %s max |frozen - original| = %.3g\n", v.name().c_str(), v.max_abs_diff());
    if (r.session_config_passes_off_size() > 0) {
      std::string passes;
      for (const auto& p : r.session_config_passes_off()) passes += (passes.empty() ? "" : ", ") + p;
      std::printf("  session grappler %s off: the manifest's session_config, which run applies\n", passes.c_str());
    }
    if (r.has_conversion()) {
      std::string format = tffreeze::v1::Format_Name(r.format());
      if (format.rfind("FORMAT_", 0) == 0) format = format.substr(7);
      for (auto& c : format) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const auto& c = r.conversion();
      std::printf("  format  %s (%s), ran in %s: max |%s - frozen| = %.3g\n", format.c_str(), c.converter().c_str(),
                  c.runtime().c_str(), format.c_str(), c.max_abs_diff());
    }
  }
  return 0;
}

int Inspect(const Options& o) {
  if (o.positional.size() != 1) throw Usage("inspect takes one SOURCE");
  tffreeze::Client client(o.One("--server"), Connection(o));
  auto response = client.Inspect(o.positional[0], SourceOptions(o));
  std::cout << (o.Has("--json") ? response.rendered().json() : response.rendered().text());
  return 0;
}

std::pair<std::string, std::string> SplitPair(const std::string& pair, const std::string& flag) {
  auto eq = pair.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size())  // worded as runner.py's pair_error
    throw Usage(flag + " '" + pair + "': write NAME=FILE.npy (NAME: the tensor it feeds, e.g. " + flag + " x=" +
                (eq == std::string::npos && !pair.empty() ? pair : std::string("x.npy")) + ")");
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
    if (!fs::exists(lib)) throw tffreeze::Error("NOT_FOUND", "no TF 1.15 runtime at " + tf115.string() +
                                                  ": run `make tf115` in the checkout (it needs Python 3.7: pyenv install "
                                                  "3.7.16, or make tf115 PY37=/path/to/python3.7), or run without "
                                                  "--runtime tf115");
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

// Python's describe(): dtype, shape and the first values ("float32 [1, 2] [0.5, -1]").
std::string Describe(const tffreeze::Tensor& t, size_t limit = 6) {
  std::string shape = "[";
  for (size_t d = 0; d < t.shape.size(); d++) shape += (d ? ", " : "") + std::to_string(t.shape[d]);
  shape += "]";
  size_t count = static_cast<size_t>(t.elements());
  std::string values;
  char buf[64];
  auto at = [&](size_t i) -> std::string {
    const char* p = t.data.data();
    if (t.dtype == "float32") { float v; std::memcpy(&v, p + 4 * i, 4); std::snprintf(buf, sizeof buf, "%.6g", v); }
    else if (t.dtype == "float64") { double v; std::memcpy(&v, p + 8 * i, 8); std::snprintf(buf, sizeof buf, "%.6g", v); }
    else if (t.dtype == "int32") { int32_t v; std::memcpy(&v, p + 4 * i, 4); std::snprintf(buf, sizeof buf, "%d", v); }
    else if (t.dtype == "int64") { int64_t v; std::memcpy(&v, p + 8 * i, 8); std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v)); }
    else if (t.dtype == "int16") { int16_t v; std::memcpy(&v, p + 2 * i, 2); std::snprintf(buf, sizeof buf, "%d", v); }
    else if (t.dtype == "int8") { std::snprintf(buf, sizeof buf, "%d", static_cast<int>(static_cast<int8_t>(p[i]))); }
    else if (t.dtype == "uint8") { std::snprintf(buf, sizeof buf, "%u", static_cast<unsigned>(static_cast<uint8_t>(p[i]))); }
    else if (t.dtype == "uint16") { uint16_t v; std::memcpy(&v, p + 2 * i, 2); std::snprintf(buf, sizeof buf, "%u", v); }
    else if (t.dtype == "uint32") { uint32_t v; std::memcpy(&v, p + 4 * i, 4); std::snprintf(buf, sizeof buf, "%u", v); }
    else if (t.dtype == "uint64") { uint64_t v; std::memcpy(&v, p + 8 * i, 8); std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v)); }
    else if (t.dtype == "bool") { return p[i] ? "True" : "False"; }
    else return "?";
    return buf;
  };
  for (size_t i = 0; i < std::min(count, limit); i++) values += (i ? ", " : "") + at(i);
  return t.dtype + " " + shape + " [" + values + (count > limit ? ", ..." : "") + "]";
}

// The kind of model a file name says, --format writes and a manifest's format names, in words
// (the table of client_py/tffreeze/cli.py and runner.py; tffreeze-cs has the same).
const std::map<std::string, std::string> kModelKinds = {
    {"graphdef", "a frozen GraphDef"}, {"onnx", "an ONNX model"}, {"tflite", "a TensorFlow Lite model"}};
const std::map<std::string, std::string> kExtensionKinds = {{".pb", "graphdef"}, {".onnx", "onnx"}, {".tflite", "tflite"}};

std::string ExtensionOf(const std::string& kind) {
  for (const auto& [ext, k] : kExtensionKinds)
    if (k == kind) return ext;
  return "";
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// os.path.splitext's extension: the last component's last ".X" (not a leading dot).
std::string Extension(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || name.find_first_not_of('.') > dot) return "";
  return name.substr(dot);
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? (slash == 0 ? "/" : ".") : path.substr(0, slash);
}

// Why -o PATH does not fit --format FMT ("" when it does): a .pb, .onnx or .tflite name says which
// model the file holds (cli.py's format_clash); other names are the user's choice.
std::string FormatClash(const std::string& path, const std::string& fmt) {
  const std::string ext = Extension(path);
  auto named = kExtensionKinds.find(Lower(ext));
  std::string want = Lower(fmt);
  want.erase(0, want.find_first_not_of(" \t"));
  want.erase(want.find_last_not_of(" \t") + 1);
  if (want.empty()) want = "graphdef";
  if (named == kExtensionKinds.end() || !kModelKinds.count(want) || named->second == want) return "";
  const std::string stem = path.substr(0, path.size() - ext.size());
  return "-o " + path + " is named for " + kModelKinds.at(named->second) + " (" + ext + ") but " +
         (fmt.empty() ? std::string("freeze without --format") : "--format " + fmt) + " writes " + kModelKinds.at(want) +
         ": name it " + stem + ExtensionOf(want) + ", or " +
         (named->second == "graphdef" ? "drop --format " + fmt : "give --format " + named->second);
}

// What a model file holds, by its bytes (runner.py's sniff: the same rule): "tflite", "onnx",
// "savedmodel", "metagraph", "graphdef" or "unknown", from its top-level fields.
std::string Sniff(const std::string& data) {
  if (data.size() >= 8 && data.compare(4, 4, "TFL3") == 0) return "tflite";
  std::set<std::pair<uint64_t, int>> fields;
  size_t i = 0, n = data.size();
  auto varint = [&](uint64_t* value) {
    *value = 0;
    for (int shift = 0; i < n && shift < 64; shift += 7) {
      const auto b = static_cast<unsigned char>(data[i++]);
      *value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < n) {
    uint64_t tag, value;
    if (!varint(&tag) || (tag >> 3) == 0) return "unknown";
    const int wire = static_cast<int>(tag & 7);
    if (wire == 0) {
      if (!varint(&value)) return "unknown";
    } else if (wire == 1) {
      i += 8;
    } else if (wire == 2) {
      if (!varint(&value) || value > n) return "unknown";
      i += static_cast<size_t>(value);
    } else if (wire == 5) {
      i += 4;
    } else {
      return "unknown";
    }
    if (i > n) return "unknown";
    fields.insert({tag >> 3, wire});
  }
  auto has = [&](uint64_t f, int w) { return fields.count({f, w}) > 0; };
  if (fields.empty()) return "unknown";
  if (has(1, 0)) return has(7, 2) || has(8, 2) ? "onnx" : has(2, 2) ? "savedmodel" : "unknown";
  if (has(3, 2) || has(5, 2) || has(6, 2) || has(7, 2)) return "metagraph";
  for (const auto& f : fields)
    if (f != std::make_pair<uint64_t, int>(1, 2) && f != std::make_pair<uint64_t, int>(2, 2) &&
        f != std::make_pair<uint64_t, int>(3, 0) && f != std::make_pair<uint64_t, int>(4, 2))
      return "unknown";
  return "graphdef";
}

// What `run` runs MODEL as ("graphdef", "onnx", "tflite") and a warning ("" if none), as runner.py's
// model_kind decides: the manifest's format (manifest_format "-": no --manifest), else the bytes,
// else the name; a MetaGraphDef, a SavedModel's graph, and a manifest of another kind are refused.
std::pair<std::string, std::string> ModelKind(const std::string& path, const std::string& manifest_format,
                                              const std::string& manifest_path) {
  std::ifstream in(path, std::ios::binary);
  std::string data;
  if (in) {
    std::ostringstream all;
    all << in.rdbuf();
    data = all.str();
  }
  const std::string content = Sniff(data);
  const std::string ext = Lower(Extension(path));
  const std::string stem = path.substr(0, path.size() - ext.size());
  if (content == "metagraph" || (ext == ".meta" && (content == "graphdef" || content == "unknown")))
    throw tffreeze::Error("INVALID_ARGUMENT", path + " is a checkpoint's MetaGraphDef (its graph without the variables' "
                          "values), not a frozen graph: freeze the checkpoint first (`tffreeze-cpp freeze " +
                          (ext == ".meta" ? stem : Dirname(path)) + " -o model.pb`) and run the .pb");
  if (content == "savedmodel")
    throw tffreeze::Error("INVALID_ARGUMENT", path + " is a SavedModel's graph, not a frozen graph: freeze the SavedModel "
                          "first (`tffreeze-cpp freeze " + Dirname(path) + " -o model.pb`) and run the .pb");
  auto found = kExtensionKinds.find(ext);
  const std::string named = found == kExtensionKinds.end() ? "" : found->second;
  std::string kind;
  if (manifest_format != "-") {
    kind = manifest_format == "FORMAT_ONNX" ? "onnx" : manifest_format == "FORMAT_TFLITE" ? "tflite" : "graphdef";
    if (kModelKinds.count(content) && content != kind)
      throw tffreeze::Error("INVALID_ARGUMENT", path + " holds " + kModelKinds.at(content) + " but --manifest " +
                            manifest_path + " describes " + kModelKinds.at(kind) + ": give the manifest written with it");
  } else {
    kind = kModelKinds.count(content) ? content : !named.empty() ? named : "graphdef";
  }
  if (!named.empty() && named != kind)
    return {kind, path + " holds " + kModelKinds.at(kind) + ", not " + kModelKinds.at(named) +
                      " as its name says: rename it to " + stem + ExtensionOf(kind)};
  return {kind, ""};
}

// tffreeze-cpp runs frozen GraphDefs; a converted model (by the manifest's format, its bytes or its
// name: ModelKind) is refused, saying what runs it.
void RefuseConverted(const std::string& model, const std::string& kind, const std::string& warning) {
  if (kind == "graphdef") return;
  const std::string what = warning.empty() ? model + " is " + kModelKinds.at(kind)
                                           : warning.substr(0, warning.find(": rename it to "));
  throw tffreeze::Error("INVALID_ARGUMENT",
                        what + ": tffreeze-cpp runs frozen GraphDef .pb files only. Run .onnx and "
                        ".tflite models with the Python client (`tffreeze run " + model +
                        " ...`, the same flags), or freeze without --format to get a .pb for tffreeze-cpp");
}

// The error for an input the graph needs and no --input feeds (runner.py's not_fed).
tffreeze::Error NotFed(const std::string& name) {
  const std::string tensor = name.find(':') == std::string::npos ? name + ":0" : name;
  return tffreeze::Error("INVALID_ARGUMENT", "input " + tensor + " is not fed: give --input " +
                                                 tensor.substr(0, tensor.rfind(':')) + "=FILE.npy");
}

int Run(const Options& o) {
  if (o.positional.size() != 1) throw Usage("run takes one MODEL.pb");
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
  for (const auto& p : o.All("--input")) inputs.push_back(SplitPair(p, "--input"));
  for (const auto& p : o.All("--output")) {  // NAME=FILE.npy, or NAME alone: printed
    auto eq = p.find('=');
    std::string name = p.substr(0, eq), file = eq == std::string::npos ? "" : p.substr(eq + 1);
    if (name.empty() || (eq != std::string::npos && file.empty()))
      throw Usage("--output '" + p + "': write NAME=FILE.npy, or NAME to print it");
    outputs.emplace_back(name, file);
  }
  if (o.Has("--manifest") && Blank(o.One("--manifest"))) throw Usage("--manifest needs a path: --manifest M.json");
  if (outputs.empty() && !o.Has("--manifest"))
    throw Usage("name the outputs: --output NAME[=FILE.npy] (or give --manifest to print every output)");
  const std::string& model_path = o.positional[0];
  std::error_code ec;
  if (fs::is_directory(model_path, ec))
    throw tffreeze::Error("INVALID_ARGUMENT", "MODEL " + model_path + " is a folder: give the frozen .pb file");
  if (!fs::exists(model_path, ec)) throw tffreeze::Error("NOT_FOUND", "MODEL " + model_path + " does not exist");
  std::unique_ptr<tffreeze::Manifest> manifest;
  if (o.Has("--manifest")) manifest.reset(new tffreeze::Manifest(tffreeze::Manifest::Load(o.One("--manifest"))));
  // What MODEL holds decides: the manifest's format, else its bytes (not only its name).
  const auto [kind, warning] = ModelKind(
      model_path, manifest ? tffreeze::v1::Format_Name(manifest->result().format()) : std::string("-"), o.One("--manifest"));
  RefuseConverted(model_path, kind, warning);
  if (!warning.empty()) std::cerr << "tffreeze-cpp: warning: " << warning << "\n";
  if (manifest && !manifest->result().sha256().empty()) {  // a manifest written with another graph
    int64_t size = 0;
    const std::string actual = tffreeze::FileDigest(model_path, &size), written = manifest->result().sha256();
    if (actual != written)
      std::cerr << "tffreeze-cpp: warning: --manifest " << o.One("--manifest") << " was written with another graph than "
                << model_path << " (sha256 " << written.substr(0, 12) << ", the file's is " << actual.substr(0, 12)
                << "): its names, dtypes and shapes may not be this graph's; give the manifest written with it\n";
  }
  if (outputs.empty())
    for (const auto& t : manifest->result().outputs()) outputs.emplace_back(t.name(), "");
  for (const auto& out : outputs)
    if (!out.second.empty()) tffreeze::CheckOutputFolder(out.second, "--output " + out.first + "=", "the output");
  for (const auto& in : inputs) {  // named as typed, before TensorFlow loads (as the other clients say it)
    if (fs::is_directory(in.second, ec))
      throw tffreeze::Error("INVALID_ARGUMENT", "--input " + in.first + "=" + in.second + " is a folder: give an .npy file");
    if (!fs::exists(in.second, ec))
      throw tffreeze::Error("NOT_FOUND", "--input " + in.first + "=" + in.second + " does not exist");
    std::ifstream npy(in.second, std::ios::binary);
    char head[6] = {0};
    if (npy && !(npy.read(head, 6) && std::string(head, 6) == "\x93NUMPY"))
      throw tffreeze::Error("INVALID_ARGUMENT", "--input " + in.first + "=" + in.second +
                                                    " is not a .npy file (it lacks NumPy's header): save the array "
                                                    "with numpy.save");
  }
  auto lib = Library(o);
  const bool verbose = o.Has("--verbose") || (!Env("TFFREEZE_VERBOSE").empty() && Env("TFFREEZE_VERBOSE") != "0");
  if (!verbose) setenv("TF_CPP_MIN_LOG_LEVEL", "3", 0);  // TensorFlow's log lines, unless asked for
  std::vector<std::pair<std::string, tffreeze::Tensor>> feeds;
  for (const auto& in : inputs) {
    tffreeze::Tensor t = tffreeze::ReadNpy(in.second);
    std::string name = in.first;
    if (manifest) {
      const auto& info = manifest->Input(in.first);
      tffreeze::Manifest::Check(info, t, in.first);  // named as the user typed it
      name = info.name();
    }
    feeds.emplace_back(name, std::move(t));
  }
  std::vector<std::string> fetches;
  for (const auto& out : outputs) fetches.push_back(manifest ? manifest->Output(out.first).name() : out.first);
  if (manifest)  // after every name is checked: every input without a default is fed
    for (const auto& t : manifest->result().inputs()) {
      bool fed = t.has_default();
      for (const auto& f : feeds) fed = fed || f.first == t.name();
      if (!fed) throw NotFed(t.name());
    }
  std::vector<tffreeze::Tensor> results;
  {
    StderrSilenced quiet(!verbose);  // absl's start-up warning and CUDA probing go to fd 2 at load
    tffreeze::Runtime::Load(lib.first, lib.second);
    try {
      tffreeze::Model model(o.positional[0], manifest ? manifest->result().session_config() : std::string());
      results = model.Run(feeds, fetches);
    } catch (const tffreeze::Error& e) {
      std::smatch unfed;
      const std::string said = e.what();
      if (std::regex_search(said, unfed, std::regex("You must feed a value for placeholder tensor '([^']+)'")))
        throw NotFed(unfed[1].str());
      if (std::string(e.what()).find("Invalid GraphDef") == std::string::npos) throw;
      throw tffreeze::Error(e.code(), o.positional[0] + " is not a frozen GraphDef (.pb): tffreeze-cpp runs GraphDef "
                                      ".pb files only; an ONNX or TFLite model runs with the Python `tffreeze run`",
                            e.reason(), e.metadata());
    }
  }
  for (size_t i = 0; i < results.size(); i++) {
    if (outputs[i].second.empty()) {
      std::cout << outputs[i].first << " " << Describe(results[i]) << "\n";
      continue;
    }
    try {
      tffreeze::WriteNpy(outputs[i].second, results[i]);
    } catch (const tffreeze::Error& e) {
      throw Flagged(e, {{outputs[i].second, {"--output " + outputs[i].first + "=", "the output"}}});
    }
    std::string shape = "[";
    for (size_t d = 0; d < results[i].shape.size(); d++) shape += (d ? ", " : "") + std::to_string(results[i].shape[d]);
    std::cout << outputs[i].first << " -> " << outputs[i].second << " " << results[i].dtype << " " << shape << "]\n";
  }
  std::cerr << "(TensorFlow " << tffreeze::Runtime::Version() << ")\n";  // which runtime ran
  return 0;
}

char signal_command[16] = "";  // the command, for OnSignal's line (set once in main)

// Says so on stderr as the other clients do, with write(2) only (async-signal-safe).
void OnSignal(int sig) {
  tffreeze::RemovePendingTempFiles();
  const char* said = sig == SIGINT ? ": interrupted\n"
                     : sig == SIGTERM ? ": stopped by SIGTERM (nothing left half-written)\n"
                                      : ": stopped by SIGHUP (nothing left half-written)\n";
  const char lead[] = "tffreeze-cpp ";
  ssize_t ignored = write(2, lead, sizeof lead - 1);
  ignored = write(2, signal_command, strlen(signal_command));
  ignored = write(2, said, strlen(said));
  (void)ignored;
  _exit(128 + sig);
}

}  // namespace

// Run the command; when the local server it used stops while it runs (`tffreeze local-server
// stop` lets the calls in flight finish, then the command's next call finds no server), run it
// again with a new local server, saying so. Freeze and inspect write their results at the end.
template <class F>
int AgainOnANewLocalServer(const std::string& command, F run) {
  const int restarts = 2;
  for (int attempt = 0;; attempt++) {
    try {
      return run();
    } catch (const tffreeze::Error& e) {
      if (e.code() != "UNAVAILABLE" || attempt == restarts) throw;
      const std::string pid = tffreeze::LocalServerWentAway();
      if (pid.empty()) throw;
      std::cerr << "tffreeze-cpp " << command << ": note: the local server (pid " << pid
                << ") stopped during this command; it goes on with a new local server" << std::endl;
    }
  }
}

// `tffreeze-cpp COMMAND --help`: that command's part of the usage (its synopsis and text, the
// SOURCE, source and connection options it takes, its examples) and the exit codes, as
// `tffreeze COMMAND --help` gives only that command's flags.
std::string CommandHelp(const std::string& command) {
  std::vector<std::string> lines;
  std::stringstream in(kUsage);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  const std::set<std::string> commands = {"freeze", "inspect", "run"};
  auto starts = [](const std::string& line, const std::string& prefix) { return line.rfind(prefix, 0) == 0; };
  auto names_command = [&](const std::string& line) {
    if (!starts(line, "  ") || starts(line, "   ")) return std::string();
    std::string word = line.substr(2, line.find(' ', 2) - 2);
    return commands.count(word) ? word : std::string();
  };
  std::ostringstream out;
  size_t i = 0;
  while (i < lines.size() && names_command(lines[i]) != command) i++;
  if (i == lines.size()) return kUsage;
  out << "usage: tffreeze-cpp " << lines[i].substr(2) << "\n";
  for (i++; i < lines.size() && !lines[i].empty() && names_command(lines[i]).empty(); i++) out << lines[i] << "\n";
  if (command != "run") {
    bool in_options = false;
    for (const auto& line : lines) {
      if (starts(line, "SOURCE:") || starts(line, "source options")) in_options = true;
      if (starts(line, "See README")) in_options = false;
      if (in_options) out << (starts(line, "SOURCE:") ? "\n" : "") << line << "\n";
    }
  }
  out << "\nexamples:\n";
  for (const auto& line : lines)
    if (starts(line, "  tffreeze-cpp " + command + " ")) out << line << "\n";
  bool tail = false;
  out << "\n";
  for (const auto& line : lines) {
    if (starts(line, "exit codes:")) tail = true;
    if (tail) out << line << "\n";
  }
  out << "(tffreeze-cpp --help: every command)";
  return out.str();
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cout << kUsage << "\n";
    return 2;
  }
  if (std::string(argv[1]) == "--version") {  // as `tffreeze --version` (the version of client_py/tffreeze/__init__.py)
    std::cout << "tffreeze-cpp " << TFFREEZE_VERSION << "\n";
    return 0;
  }
  for (int i = 1; i < argc; i++) {  // help: a command's own (COMMAND --help), else the whole usage; exit 0
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
      std::cout << (i > 1 ? CommandHelp(argv[1]) : std::string(kUsage)) << "\n";
      return 0;
    }
  }
  std::string command = argv[1];
  snprintf(signal_command, sizeof signal_command, "%s", command.c_str());
  // Ctrl-C, kill (SIGTERM) and a closed terminal (SIGHUP) remove the temporary file being
  // written (nothing is left beside the output) and exit 128 + the signal.
  struct sigaction act {};
  act.sa_handler = OnSignal;
  sigemptyset(&act.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &act, nullptr);
  setenv("GRPC_VERBOSITY", "NONE", 0);  // gRPC's own log lines (the error says what failed)
  try {
    Options o = Parse(argc, argv);
    if ((command == "freeze" || command == "inspect") && !o.positional.empty()) typed_source = o.positional[0];
    if (command == "freeze") return AgainOnANewLocalServer(command, [&] { return Freeze(o); });
    if (command == "inspect") return AgainOnANewLocalServer(command, [&] { return Inspect(o); });
    if (command == "run") return Run(o);
    throw Usage("unknown command '" + command + "' (freeze, inspect, run)");
  } catch (const Usage& e) {
    std::cerr << "tffreeze-cpp " << command << ": " << e.what() << "\n(see tffreeze-cpp --help)\n";
    return 2;
  } catch (const tffreeze::Error& e) {
    std::string reason = e.reason().rfind("ERROR_REASON_", 0) == 0 ? e.reason().substr(13) : e.reason();
    if (reason == "UNSPECIFIED") reason.clear();
    std::cerr << "tffreeze-cpp " << command << ": " << Message(e, command) << (reason.empty() ? "" : " (" + reason + ")")
              << " [" << e.code() << "]\n";
    const std::string noted = OutputsNoted(e);
    if (!noted.empty())
      std::cerr << "the outputs it chose (nothing was frozen): " << noted << "; " << OtherOutputs(e) << "\n";
    auto candidates = e.metadata().find("candidates");
    auto field = e.metadata().find("field");
    if (candidates != e.metadata().end() && !candidates->second.empty() && field != e.metadata().end() &&
        field->second == "options.outputs") {
      const std::string& all = candidates->second;
      std::cerr << "to freeze the best candidate, add:  --outputs " << all.substr(0, all.find(',')) << "\n"
                << "all candidates (keep those the model deploys):  --outputs " << all << "\n";
    }
    return 1;
  } catch (const std::ios_base::failure& e) {  // a read no check above anticipated: said, never an abort
    std::cerr << "tffreeze-cpp " << command << ": " << e.what() << "; check the path [IO_ERROR]\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A file operation no message above anticipated: the path, what failed, and what to try.
    std::string path = e.path1().empty() ? "" : e.path1().string();
    std::cerr << "tffreeze-cpp " << command << ": " << (path.empty() ? "" : path + ": ") << e.code().message()
              << (e.path2().empty() ? "" : " (" + e.path2().string() + ")")
              << "; check the path and its folder's permissions, or use another path [IO_ERROR]\n";
    return 1;
  }
}
