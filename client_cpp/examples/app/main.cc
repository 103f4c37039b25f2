// The example app: runs the model its build froze (model.pb + model.json beside the
// binary), binding every input and output by the manifest's names. Each input is fed
// ones of its manifest shape (unknown dimensions = 1); each output's shape and first
// values are printed.
//
//   classify [LIBTENSORFLOW]   (default: $TFFREEZE_LIBTENSORFLOW)
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "tffreeze/runner.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  fs::path here = fs::canonical("/proc/self/exe").parent_path();
  const char* lib = argc > 1 ? argv[1] : std::getenv("TFFREEZE_LIBTENSORFLOW");
  if (!lib) {
    std::cerr << "usage: classify LIBTENSORFLOW (or set TFFREEZE_LIBTENSORFLOW)\n";
    return 2;
  }
  try {
    tffreeze::Runtime::Load(lib);
    tffreeze::Manifest manifest = tffreeze::Manifest::Load((here / "model.json").string());
    tffreeze::Model model((here / "model.pb").string());
    std::vector<std::pair<std::string, tffreeze::Tensor>> feeds;
    for (const auto& input : manifest.result().inputs()) {
      if (input.has_default()) continue;
      tffreeze::Tensor t;
      t.dtype = input.dtype();
      for (const auto& d : input.shape().values()) t.shape.push_back(d.number_value() < 0 ? 1 : static_cast<int64_t>(d.number_value()));
      if (t.dtype == "float32") { float v = 1; for (int64_t i = 0; i < t.elements(); i++) t.data.append(reinterpret_cast<char*>(&v), 4); }
      else if (t.dtype == "int32") { int32_t v = 1; for (int64_t i = 0; i < t.elements(); i++) t.data.append(reinterpret_cast<char*>(&v), 4); }
      else if (t.dtype == "int64") { int64_t v = 1; for (int64_t i = 0; i < t.elements(); i++) t.data.append(reinterpret_cast<char*>(&v), 8); }
      else if (t.dtype == "bool" || t.dtype == "uint8") t.data.assign(static_cast<size_t>(t.elements()), '\1');
      else { std::cerr << "input " << input.name() << ": dtype " << t.dtype << " not handled by this example\n"; return 1; }
      tffreeze::Manifest::Check(input, t, input.name());
      feeds.emplace_back(input.name(), std::move(t));
    }
    std::vector<std::string> fetches;
    for (const auto& output : manifest.result().outputs()) fetches.push_back(output.name());
    auto results = model.Run(feeds, fetches);
    for (size_t i = 0; i < results.size(); i++) {
      std::cout << fetches[i] << ": " << results[i].dtype << " [";
      for (size_t d = 0; d < results[i].shape.size(); d++) std::cout << (d ? ", " : "") << results[i].shape[d];
      std::cout << "]";
      if (results[i].dtype == "float32")
        for (int64_t k = 0; k < std::min<int64_t>(4, results[i].elements()); k++)
          std::cout << " " << reinterpret_cast<const float*>(results[i].data.data())[k];
      std::cout << "\n";
    }
  } catch (const tffreeze::Error& e) {
    std::cerr << "classify: " << e.what() << " [" << e.code() << "]\n";
    return 1;
  }
  return 0;
}
