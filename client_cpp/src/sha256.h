#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace tffreeze {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void Update(const void* data, size_t size);
  std::string HexDigest();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The file's sha256 (hex) and, via size, its length.
std::string Sha256File(const std::string& path, int64_t* size);

}  // namespace tffreeze
