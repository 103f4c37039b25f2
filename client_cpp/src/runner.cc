#include <dlfcn.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "tensorflow/c/c_api.h"
#include "tffreeze/runner.h"

namespace fs = std::filesystem;

namespace tffreeze {

int ElementSize(const std::string& dtype);  // npy.cc

namespace {

// The C API functions this runner calls, looked up in the loaded library (one list, used to
// declare and to bind them).
#define TFF_FUNCTIONS(X)                                                                                  \
  X(Version) X(NewStatus) X(DeleteStatus) X(GetCode) X(Message) X(NewGraph) X(DeleteGraph)                \
  X(NewImportGraphDefOptions) X(DeleteImportGraphDefOptions) X(NewBufferFromString) X(DeleteBuffer)       \
  X(GraphImportGraphDef) X(GraphOperationByName) X(OperationNumOutputs) X(OperationOutputType)            \
  X(GraphNextOperation) X(OperationName) X(OperationOpType) X(GraphGetTensorNumDims) X(GraphGetTensorShape)                  \
  X(NewSessionOptions) X(DeleteSessionOptions) X(SetConfig) X(NewSession) X(CloseSession) X(DeleteSession) \
  X(SessionRun) X(AllocateTensor) X(DeleteTensor) X(TensorData) X(TensorByteSize) X(TensorType)          \
  X(NumDims) X(Dim)

struct Api {
#define TFF_DECLARE(name) decltype(&::TF_##name) name = nullptr;
  TFF_FUNCTIONS(TFF_DECLARE)
#undef TFF_DECLARE
};

Api api;
std::vector<void*> handles;
std::string loaded_from;
std::mutex load_mutex;

void* Symbol(const char* name) {
  for (void* h : handles)
    if (void* p = dlsym(h, name)) return p;
  throw Error("FAILED_PRECONDITION", std::string("the TensorFlow library has no ") + name);
}

const std::map<std::string, TF_DataType>& DTypes() {
  static const std::map<std::string, TF_DataType> m = {
      {"float32", TF_FLOAT}, {"float64", TF_DOUBLE}, {"float16", TF_HALF}, {"int32", TF_INT32}, {"int64", TF_INT64},
      {"int16", TF_INT16}, {"int8", TF_INT8}, {"uint8", TF_UINT8}, {"uint16", TF_UINT16}, {"uint32", TF_UINT32},
      {"uint64", TF_UINT64}, {"bool", TF_BOOL}};
  return m;
}

std::string DTypeName(TF_DataType t) {
  for (const auto& kv : DTypes())
    if (kv.second == t) return kv.first;
  throw Error("INVALID_ARGUMENT", std::string(t == 7 ? "string (text) tensors are" : ("TensorFlow dtype " + std::to_string(t) +
                                  " is").c_str()) + " not supported here (numeric and bool; text tensors: run the "
                                  "graph with `tffreeze run`, the Python client)");
}

// RAII holders for the C API's objects.
struct StatusDeleter { void operator()(TF_Status* s) const { api.DeleteStatus(s); } };
struct TensorDeleter { void operator()(TF_Tensor* t) const { api.DeleteTensor(t); } };
struct BufferDeleter { void operator()(TF_Buffer* b) const { api.DeleteBuffer(b); } };
struct OptionsDeleter { void operator()(TF_ImportGraphDefOptions* o) const { api.DeleteImportGraphDefOptions(o); } };
struct SessionOptionsDeleter { void operator()(TF_SessionOptions* o) const { api.DeleteSessionOptions(o); } };
using StatusPtr = std::unique_ptr<TF_Status, StatusDeleter>;
using TensorPtr = std::unique_ptr<TF_Tensor, TensorDeleter>;

StatusPtr NewStatus() { return StatusPtr(api.NewStatus()); }

// Throw TensorFlow's error, as a tffreeze::Error with its code, unless the status is OK.
void Check(TF_Status* s, const std::string& what) {
  TF_Code code = api.GetCode(s);
  if (code == TF_OK) return;
  throw Error(StatusName(static_cast<int>(code)), what + ": " + api.Message(s));
}

void RequireLoaded() {
  if (!Runtime::Loaded())
    throw Error("FAILED_PRECONDITION", "no TensorFlow C library loaded: call tffreeze::Runtime::Load(PATH) "
                "(the CLI: --libtensorflow PATH or $TFFREEZE_LIBTENSORFLOW)");
}

}  // namespace

void Runtime::Load(const std::string& path, const std::string& preload) {
  std::lock_guard<std::mutex> lock(load_mutex);
  if (!loaded_from.empty()) {
    if (loaded_from == path) return;
    throw Error("FAILED_PRECONDITION", "a TensorFlow library is already loaded from " + loaded_from);
  }
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    const std::vector<std::vector<std::string>> layouts = {
        {"libtensorflow_framework.so.2", "libtensorflow_cc.so.2"}, {"libtensorflow.so.2"}, {"libtensorflow.so"},
        {"libtensorflow_framework.so.1", "libtensorflow.so.1"}, {"python/_pywrap_tensorflow_internal.so"},
        {"_pywrap_tensorflow_internal.so"}};
    for (const auto& layout : layouts) {
      bool all = true;
      for (const auto& n : layout) all = all && fs::exists(fs::path(path) / n);
      if (!all) continue;
      for (const auto& n : layout) files.push_back((fs::path(path) / n).string());
      break;
    }
  } else if (fs::exists(path)) {
    files.push_back(path);
  }
  if (files.empty())
    throw Error("NOT_FOUND", "no TensorFlow C library at " + path +
                " (expected libtensorflow_cc.so.2, libtensorflow.so or _pywrap_tensorflow_internal.so)");
  if (!preload.empty() && !dlopen(preload.c_str(), RTLD_NOW | RTLD_GLOBAL))
    throw Error("FAILED_PRECONDITION", "cannot load " + preload + ": " + dlerror());
  std::vector<void*> opened;
  for (const auto& f : files) {
    // RTLD_DEEPBIND: TensorFlow's libraries carry their own protobuf (and absl), which must
    // not bind to the protobuf this program links (and the reverse: RTLD_LOCAL).
    void* h = dlopen(f.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
      std::string why = dlerror();
      throw Error("FAILED_PRECONDITION", "cannot load " + f + ": " + why +
                  (f.find("_pywrap") != std::string::npos ? " (TF 1.15's library needs libpython3.7m loaded first)" : ""));
    }
    opened.push_back(h);
  }
  handles = opened;
#define TFF_BIND(name) api.name = reinterpret_cast<decltype(api.name)>(Symbol("TF_" #name));
  TFF_FUNCTIONS(TFF_BIND)
#undef TFF_BIND
  loaded_from = path;
}

bool Runtime::Loaded() { return !loaded_from.empty(); }

std::string Runtime::Version() {
  RequireLoaded();
  return api.Version();
}

std::vector<std::string> CloseNames(const std::string& wanted, const std::vector<std::string>& names, size_t shown) {
  std::string want = wanted;
  auto colon = want.rfind(':');
  if (colon != std::string::npos && colon + 1 < want.size() &&
      want.find_first_not_of("0123456789", colon + 1) == std::string::npos)
    want = want.substr(0, colon);
  auto last = [](const std::string& s) { return s.substr(s.rfind('/') == std::string::npos ? 0 : s.rfind('/') + 1); };
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
      size_t prev = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); j++) {
        size_t here = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1] ? 1 : 0)});
        prev = row[j];
        row[j] = here;
      }
    }
    return row[b.size()];
  };
  size_t limit = std::max<size_t>(1, want.size() / 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& n : names) {
    size_t d = distance(want, n);
    if (d <= limit || last(n) == last(want)) scored.emplace_back(d, n);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < shown; i++) out.push_back(scored[i].second);
  return out;
}

Error ShapeError(const std::string& label, const std::vector<int64_t>& want, const std::vector<int64_t>& got) {
  auto text = [](const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); i++) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  };
  return Error("INVALID_ARGUMENT", "input " + label + " takes shape " + text(want) + " (-1: any size) but the .npy holds " +
                                       text(got));
}

Error DTypeError(const std::string& label, const std::string& want, const std::string& got) {
  return Error("INVALID_ARGUMENT", "input " + label + " takes " + want + " but the .npy holds " + got + ": save it as " +
                                       want + " (numpy: a.astype('" + want + "'))");
}

struct Model::Impl {
  TF_Graph* graph = nullptr;
  TF_Session* session = nullptr;
  ~Impl() {
    if (session) {
      StatusPtr s = NewStatus();
      api.CloseSession(session, s.get());
      api.DeleteSession(session, s.get());
    }
    if (graph) api.DeleteGraph(graph);
  }

  TF_Output Output(const std::string& name, bool fed = false) const {
    std::string op = name;
    int index = 0;
    auto colon = name.rfind(':');
    if (colon != std::string::npos && colon + 1 < name.size() &&
        name.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      op = name.substr(0, colon);
      index = std::stoi(name.substr(colon + 1));
    }
    TF_Operation* oper = api.GraphOperationByName(graph, op.c_str());
    if (!oper || index >= api.OperationNumOutputs(oper)) {
      std::vector<std::string> names;
      std::string holders;
      size_t pos = 0;
      while (TF_Operation* o = api.GraphNextOperation(graph, &pos)) {
        names.push_back(api.OperationName(o));
        if (std::string(api.OperationOpType(o)) == "Placeholder") holders += (holders.empty() ? "" : ", ") + names.back();
      }
      std::string hint;
      for (const auto& n : CloseNames(name, names)) hint += (hint.empty() ? "; did you mean '" : ", '") + n + "'";
      if (!hint.empty()) hint += "?";
      else if (fed) hint = "; its placeholders: " + (holders.empty() ? std::string("none") : holders);
      throw Error("NOT_FOUND", "tensor '" + name + "' is not in the graph" + hint);
    }
    return TF_Output{oper, index};
  }
};

Model::Model(const std::string& graph_path, const std::string& session_config) : impl_(new Impl) {
  RequireLoaded();
  std::ifstream in(graph_path, std::ios::binary);
  if (!in) throw Error("NOT_FOUND", "cannot read " + graph_path);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  impl_->graph = api.NewGraph();
  std::unique_ptr<TF_Buffer, BufferDeleter> buffer(api.NewBufferFromString(bytes.data(), bytes.size()));
  std::unique_ptr<TF_ImportGraphDefOptions, OptionsDeleter> options(api.NewImportGraphDefOptions());
  StatusPtr status = NewStatus();
  api.GraphImportGraphDef(impl_->graph, buffer.get(), options.get(), status.get());
  Check(status.get(), "cannot import " + graph_path);
  std::unique_ptr<TF_SessionOptions, SessionOptionsDeleter> session_options(api.NewSessionOptions());
  if (!session_config.empty()) {
    api.SetConfig(session_options.get(), session_config.data(), session_config.size(), status.get());
    Check(status.get(), "the manifest's session_config is not a ConfigProto");
  }
  impl_->session = api.NewSession(impl_->graph, session_options.get(), status.get());
  Check(status.get(), "cannot open a session on " + graph_path);
}

Model::~Model() = default;

std::vector<Tensor> Model::Run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                               const std::vector<std::string>& fetches) {
  std::vector<TF_Output> inputs, outputs;
  std::vector<TensorPtr> values;
  std::vector<TF_Tensor*> raw_values;
  for (const auto& feed : feeds) {
    inputs.push_back(impl_->Output(feed.first, true));
    auto dt = DTypes().find(feed.second.dtype);
    if (dt == DTypes().end()) throw Error("INVALID_ARGUMENT", "input " + feed.first + ": dtype " + feed.second.dtype + " is not supported");
    TF_DataType takes = api.OperationOutputType(inputs.back());
    if (takes != dt->second) {
      std::string want;
      for (const auto& kv : DTypes())
        if (kv.second == takes) want = kv.first;
      if (!want.empty()) throw DTypeError(feed.first, want, feed.second.dtype);
    }
    {
      StatusPtr st = NewStatus();
      int rank = api.GraphGetTensorNumDims(impl_->graph, inputs.back(), st.get());
      if (api.GetCode(st.get()) == TF_OK && rank >= 0) {
        std::vector<int64_t> dims(rank);
        api.GraphGetTensorShape(impl_->graph, inputs.back(), dims.data(), rank, st.get());
        bool fits = api.GetCode(st.get()) != TF_OK || dims.size() == feed.second.shape.size();
        for (size_t i = 0; fits && api.GetCode(st.get()) == TF_OK && i < dims.size(); i++)
          fits = dims[i] == -1 || dims[i] == feed.second.shape[i];
        if (!fits) throw ShapeError(feed.first, dims, feed.second.shape);
      }
    }
    size_t bytes = static_cast<size_t>(feed.second.elements()) * ElementSize(feed.second.dtype);
    if (bytes != feed.second.data.size())
      throw Error("INVALID_ARGUMENT", "input " + feed.first + ": " + std::to_string(feed.second.data.size()) +
                  " bytes for " + std::to_string(feed.second.elements()) + " elements of " + feed.second.dtype);
    TF_Tensor* t = api.AllocateTensor(dt->second, feed.second.shape.data(), static_cast<int>(feed.second.shape.size()), bytes);
    if (bytes) std::memcpy(api.TensorData(t), feed.second.data.data(), bytes);
    values.emplace_back(t);
    raw_values.push_back(t);
  }
  for (const auto& name : fetches) outputs.push_back(impl_->Output(name));
  std::vector<TF_Tensor*> results(outputs.size(), nullptr);
  StatusPtr status = NewStatus();
  api.SessionRun(impl_->session, nullptr, inputs.data(), raw_values.data(), static_cast<int>(inputs.size()),
                 outputs.data(), results.data(), static_cast<int>(outputs.size()), nullptr, 0, nullptr, status.get());
  std::vector<TensorPtr> owned;
  for (TF_Tensor* r : results) owned.emplace_back(r);
  Check(status.get(), "running the graph failed");
  std::vector<Tensor> out;
  for (const auto& r : owned) {
    Tensor t;
    t.dtype = DTypeName(api.TensorType(r.get()));
    for (int i = 0; i < api.NumDims(r.get()); i++) t.shape.push_back(api.Dim(r.get(), i));
    t.data.assign(static_cast<const char*>(api.TensorData(r.get())), api.TensorByteSize(r.get()));
    out.push_back(std::move(t));
  }
  return out;
}

Manifest Manifest::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("NOT_FOUND", "cannot read the manifest " + path);
  return Parse(std::string((std::istreambuf_iterator<char>(in)), {}), path);
}

Manifest Manifest::Parse(const std::string& json, const std::string& where) {
  Manifest m;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(json, &m.result_, options);
  if (!status.ok()) throw Error("INVALID_ARGUMENT", where + " is not a tffreeze manifest: " + status.ToString());
  return m;
}

const tffreeze::v1::TensorInfo& Manifest::Input(const std::string& name) const { return Find(name, true); }
const tffreeze::v1::TensorInfo& Manifest::Output(const std::string& name) const { return Find(name, false); }

const tffreeze::v1::TensorInfo& Manifest::Find(const std::string& name, bool input) const {
  const auto& list = input ? result_.inputs() : result_.outputs();
  std::string full = name.find(':') == std::string::npos ? name + ":0" : name;
  if (result_.has_signature()) {
    const auto& aliases = input ? result_.signature().inputs() : result_.signature().outputs();
    auto it = aliases.find(name);
    if (it != aliases.end()) full = it->second.name();
  }
  for (const auto& t : list)
    if (t.name() == full) return t;
  std::string known;
  for (const auto& t : list) known += (known.empty() ? "" : ", ") + t.name();
  throw Error("NOT_FOUND", "'" + name + "' is not among the manifest's " + (input ? "inputs" : "outputs") + " (" + known + ")");
}

void Manifest::Check(const tffreeze::v1::TensorInfo& input, const Tensor& value, const std::string& label) {
  if (input.dtype() != value.dtype) throw DTypeError(label, input.dtype(), value.dtype);
  if (!input.has_shape()) return;
  std::vector<int64_t> want;
  for (const auto& d : input.shape().values()) want.push_back(static_cast<int64_t>(d.number_value()));
  bool ok = want.size() == value.shape.size();
  for (size_t i = 0; ok && i < want.size(); i++) ok = want[i] == -1 || want[i] == value.shape[i];
  if (!ok) throw ShapeError(label, want, value.shape);
}

}  // namespace tffreeze
