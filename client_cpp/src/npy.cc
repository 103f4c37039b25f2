#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "tffreeze/client.h"
#include "tffreeze/runner.h"

namespace tffreeze {
namespace {

const std::map<std::string, std::string>& Descrs() {  // .npy descr -> dtype
  static const std::map<std::string, std::string> m = {
      {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"<i4", "int32"}, {"<i8", "int64"},
      {"<i2", "int16"}, {"|i1", "int8"}, {"|u1", "uint8"}, {"<u2", "uint16"}, {"<u4", "uint32"},
      {"<u8", "uint64"}, {"|b1", "bool"}};
  return m;
}

}  // namespace

int ElementSize(const std::string& dtype) {
  static const std::map<std::string, int> sizes = {
      {"float32", 4}, {"float64", 8}, {"float16", 2}, {"int32", 4}, {"int64", 8}, {"int16", 2}, {"int8", 1},
      {"uint8", 1}, {"uint16", 2}, {"uint32", 4}, {"uint64", 8}, {"bool", 1}};
  auto it = sizes.find(dtype);
  if (it == sizes.end())
    throw Error("INVALID_ARGUMENT", "dtype " + dtype + " is not supported here (numeric and bool tensors only; text "
                                    "tensors: run the graph with `tffreeze run`, the Python client)");
  return it->second;
}

int64_t Tensor::elements() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Tensor ReadNpy(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error("INVALID_ARGUMENT", path + " is a folder: give an .npy file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("NOT_FOUND", "cannot read " + path);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0) throw Error("INVALID_ARGUMENT", path + " is not a .npy file");
  int major = static_cast<unsigned char>(all[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(all[8]) | static_cast<unsigned char>(all[9]) << 8;
    start = 10;
  } else {
    uint32_t n;
    std::memcpy(&n, all.data() + 8, 4);
    header_len = n;
    start = 12;
  }
  if (all.size() < start + header_len) throw Error("INVALID_ARGUMENT", path + " is truncated");
  std::string header = all.substr(start, header_len);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']+)'")))
    throw Error("INVALID_ARGUMENT", path + ": no dtype in the .npy header");
  auto d = Descrs().find(m[1]);
  if (d == Descrs().end())
    throw Error("INVALID_ARGUMENT", path + ": dtype " + m[1].str() + " is not supported (numeric and bool, little-endian; " +
                                        "text tensors: run the graph with `tffreeze run`, the Python client)");
  if (std::regex_search(header, std::regex("'fortran_order':\\s*True")))
    throw Error("INVALID_ARGUMENT", path + ": Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
  Tensor t;
  t.dtype = d->second;
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
    throw Error("INVALID_ARGUMENT", path + ": no shape in the .npy header");
  std::stringstream dims(m[1]);
  std::string dim;
  while (std::getline(dims, dim, ','))
    if (dim.find_first_not_of(" ") != std::string::npos) t.shape.push_back(std::stoll(dim));
  size_t bytes = static_cast<size_t>(t.elements()) * ElementSize(t.dtype);
  if (all.size() - start - header_len < bytes) throw Error("INVALID_ARGUMENT", path + " is truncated");
  t.data = all.substr(start + header_len, bytes);
  return t;
}

void WriteNpy(const std::string& path, const Tensor& t) {
  std::string descr;
  for (const auto& kv : Descrs())
    if (kv.second == t.dtype) descr = kv.first;
  if (descr.empty()) throw Error("INVALID_ARGUMENT", "cannot write dtype " + t.dtype + " to .npy");
  std::string shape = "(";
  for (size_t i = 0; i < t.shape.size(); i++) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  shape += t.shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  WriteAtomically(path, out + header + t.data);
}

}  // namespace tffreeze
