// Run frozen graphs on the TensorFlow C API: the TF 2.x C API inside the TensorFlow pip
// wheel (libtensorflow_framework.so.2 + libtensorflow_cc.so.2), libtensorflow.so, or
// TF 1.15's _pywrap_tensorflow_internal.so (the runtime TensorFlowSharp ships). The
// library is loaded at run time (dlopen), so one build runs on any of them. Native
// objects are held by RAII wrappers; every TF_Status is checked (a tffreeze::Error
// with TensorFlow's message and code).
//
//   tffreeze::Runtime::Load(".venv/lib/python3.11/site-packages/tensorflow");
//   tffreeze::Model model("mnist.pb");
//   tffreeze::Manifest manifest = tffreeze::Manifest::Load("mnist.json");
//   auto outputs = model.Run({{manifest.Input("x").name(), batch}}, {manifest.Output("probs").name()});
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tffreeze/errors.h"
#include "tffreeze/v1/freeze.pb.h"

namespace tffreeze {

// A dense tensor in host memory: NumPy's dtype name ("float32", "int64", "bool", ...),
// dimensions, and the little-endian, row-major bytes.
struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
  int64_t elements() const;
};

// .npy files (format 1.0-3.0, little-endian, C order) for the dtypes above.
Tensor ReadNpy(const std::string& path);
void WriteNpy(const std::string& path, const Tensor& tensor);  // atomically

class Runtime {
 public:
  // Load the C API from a library file or a folder holding one (see the file's header).
  // preload: a library to load first with its symbols global (TF 1.15's needs libpython3.7m).
  // Loading twice is a no-op; a second, different library is refused.
  static void Load(const std::string& path, const std::string& preload = "");
  static bool Loaded();
  static std::string Version();  // TF_Version()
};

// The names a misspelt tensor or node name most likely meant: within an edit distance of a
// third of its length (at least 1), or with the same last path component; nearest first (the
// Python and C# runners use the same rule).
std::vector<std::string> CloseNames(const std::string& wanted, const std::vector<std::string>& names,
                                    size_t shown = 3);

// INVALID_ARGUMENT for an .npy whose dtype is not the input's (no runner casts: a cast can lose values).
Error DTypeError(const std::string& label, const std::string& want, const std::string& got);
// INVALID_ARGUMENT for an .npy whose shape the input does not take (-1: any size).
Error ShapeError(const std::string& label, const std::vector<int64_t>& want, const std::vector<int64_t>& got);

class Model {
 public:
  // Import a frozen GraphDef file and open a session on it; session_config: a serialized
  // ConfigProto the session is created with (TF_SetConfig), e.g. a manifest's
  // result().session_config(), the setting verify found keeps the checkpoint's numbers.
  explicit Model(const std::string& graph_path, const std::string& session_config = "");
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Feed tensors by name ("x" or "x:0"), fetch by name; a name the graph lacks is NOT_FOUND.
  std::vector<Tensor> Run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                          const std::vector<std::string>& fetches);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A manifest (model.json beside model.pb): resolve names ("x", "x:0") and signature
// aliases to its inputs and outputs, and check what is fed against their dtypes and shapes.
class Manifest {
 public:
  static Manifest Load(const std::string& path);
  static Manifest Parse(const std::string& json, const std::string& where = "manifest");
  const tffreeze::v1::FreezeResult& result() const { return result_; }

  // The input or output called name (an alias, "x" or "x:0"); NOT_FOUND lists what there is.
  const tffreeze::v1::TensorInfo& Input(const std::string& name) const;
  const tffreeze::v1::TensorInfo& Output(const std::string& name) const;

  // INVALID_ARGUMENT naming the input when value's dtype or shape does not fit it.
  static void Check(const tffreeze::v1::TensorInfo& input, const Tensor& value, const std::string& label);

 private:
  const tffreeze::v1::TensorInfo& Find(const std::string& name, bool input) const;
  tffreeze::v1::FreezeResult result_;
};

}  // namespace tffreeze
