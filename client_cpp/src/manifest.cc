// The manifest printer: tffreeze_api/manifest.py's rules in C++, so this client writes the
// bytes the Python and C# clients write (field order as declared, every field, null for an
// unset message/optional field, enums by name, 64-bit integers as numbers, integral numbers
// inside google.protobuf.Value as integers, other doubles as Python's repr, map keys sorted,
// two-space indentation, ASCII only, one final newline).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tffreeze/client.h"

namespace pb = google::protobuf;

namespace tffreeze {
namespace {

// A JSON value as Python's json module would hold it.
struct J {
  enum Kind { Null, Bool, Int, Float, Str, List, Object } kind = Null;
  bool b = false;
  std::string text;  // Int/Float: the number as printed; Str: the string (UTF-8)
  std::vector<J> items;
  std::vector<std::pair<std::string, J>> fields;
};

J Str(std::string s) { J j; j.kind = J::Str; j.text = std::move(s); return j; }
J Int(std::string digits) { J j; j.kind = J::Int; j.text = std::move(digits); return j; }

// repr() of a Python float: the shortest digits that round-trip, in fixed notation when
// the decimal exponent is in [-4, 16), else as d.ddde+XX.
std::string PyRepr(double v) {
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  std::string sign;
  if (s[0] == '-') { sign = "-"; s.erase(0, 1); }
  auto e = s.find('e');
  int exp = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char c : s.substr(0, e)) if (c != '.') digits.push_back(c);
  if (exp >= -4 && exp < 16) {
    std::string out;
    if (exp >= 0) {
      std::string ip = digits.substr(0, std::min<size_t>(digits.size(), exp + 1));
      while (static_cast<int>(ip.size()) < exp + 1) ip.push_back('0');
      std::string fp = static_cast<int>(digits.size()) > exp + 1 ? digits.substr(exp + 1) : "0";
      out = ip + "." + fp;
    } else {
      out = "0." + std::string(-exp - 1, '0') + digits;
    }
    return sign + out;
  }
  char e_part[16];
  std::snprintf(e_part, sizeof e_part, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return sign + digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + e_part;
}

J Number(double v, bool integral_as_int) {
  if (std::isnan(v)) return Str("NaN");
  if (std::isinf(v)) return Str(v > 0 ? "Infinity" : "-Infinity");
  if (integral_as_int && std::floor(v) == v && std::fabs(v) < 9007199254740992.0)
    return Int(std::to_string(static_cast<long long>(v)));
  J j;
  j.kind = J::Float;
  j.text = PyRepr(v);
  return j;
}

std::string Base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned n = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {t[n >> 18], t[(n >> 12) & 63], t[(n >> 6) & 63], t[n & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned n = (unsigned char)in[i] << 16;
    out += {t[n >> 18], t[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned n = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {t[n >> 18], t[(n >> 12) & 63], t[(n >> 6) & 63], '='};
  }
  return out;
}

J ToJ(const pb::Message& msg);

J WellKnown(const pb::Message& msg) {
  const std::string& name = msg.GetDescriptor()->full_name();
  if (name == "google.protobuf.Value") {
    pb::Value v;
    v.CopyFrom(msg);
    switch (v.kind_case()) {
      case pb::Value::kNumberValue: return Number(v.number_value(), true);
      case pb::Value::kStringValue: return Str(v.string_value());
      case pb::Value::kBoolValue: { J j; j.kind = J::Bool; j.b = v.bool_value(); return j; }
      case pb::Value::kListValue: return WellKnown(v.list_value());
      case pb::Value::kStructValue: return WellKnown(v.struct_value());
      default: return J();
    }
  }
  if (name == "google.protobuf.ListValue") {
    pb::ListValue l;
    l.CopyFrom(msg);
    J j;
    j.kind = J::List;
    for (const auto& v : l.values()) j.items.push_back(WellKnown(v));
    return j;
  }
  pb::Struct s;
  s.CopyFrom(msg);
  std::map<std::string, const pb::Value*> sorted;
  for (const auto& kv : s.fields()) sorted[kv.first] = &kv.second;
  J j;
  j.kind = J::Object;
  for (const auto& kv : sorted) j.fields.push_back({kv.first, WellKnown(*kv.second)});
  return j;
}

// One value of a field (index -1: a singular field).
J FieldValue(const pb::Message& msg, const pb::FieldDescriptor* f, int index) {
  const pb::Reflection* r = msg.GetReflection();
  bool rep = index >= 0;
  using F = pb::FieldDescriptor;
  switch (f->cpp_type()) {
    case F::CPPTYPE_MESSAGE: return ToJ(rep ? r->GetRepeatedMessage(msg, f, index) : r->GetMessage(msg, f));
    case F::CPPTYPE_ENUM: {
      int number = rep ? r->GetRepeatedEnumValue(msg, f, index) : r->GetEnumValue(msg, f);
      const pb::EnumValueDescriptor* ev = f->enum_type()->FindValueByNumber(number);
      return ev ? Str(ev->name()) : Int(std::to_string(number));
    }
    case F::CPPTYPE_INT32: return Int(std::to_string(rep ? r->GetRepeatedInt32(msg, f, index) : r->GetInt32(msg, f)));
    case F::CPPTYPE_INT64: return Int(std::to_string(rep ? r->GetRepeatedInt64(msg, f, index) : r->GetInt64(msg, f)));
    case F::CPPTYPE_UINT32: return Int(std::to_string(rep ? r->GetRepeatedUInt32(msg, f, index) : r->GetUInt32(msg, f)));
    case F::CPPTYPE_UINT64: return Int(std::to_string(rep ? r->GetRepeatedUInt64(msg, f, index) : r->GetUInt64(msg, f)));
    case F::CPPTYPE_DOUBLE: return Number(rep ? r->GetRepeatedDouble(msg, f, index) : r->GetDouble(msg, f), false);
    case F::CPPTYPE_FLOAT: return Number(rep ? r->GetRepeatedFloat(msg, f, index) : r->GetFloat(msg, f), false);
    case F::CPPTYPE_BOOL: { J j; j.kind = J::Bool; j.b = rep ? r->GetRepeatedBool(msg, f, index) : r->GetBool(msg, f); return j; }
    case F::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(msg, f, index) : r->GetString(msg, f);
      return f->type() == F::TYPE_BYTES ? Str(Base64(s)) : Str(s);
    }
  }
  return J();
}

// A map key as Python's str() of it, and its sort order (numbers by value, strings by text).
std::string MapKey(const pb::Message& entry, const pb::FieldDescriptor* key) {
  J k = FieldValue(entry, key, -1);
  if (k.kind == J::Bool) return k.b ? "True" : "False";
  return k.text;
}

J ToJ(const pb::Message& msg) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const std::string& name = d->full_name();
  if (name == "google.protobuf.Value" || name == "google.protobuf.ListValue" || name == "google.protobuf.Struct")
    return WellKnown(msg);
  const pb::Reflection* r = msg.GetReflection();
  J out;
  out.kind = J::Object;
  for (int i = 0; i < d->field_count(); i++) {
    const pb::FieldDescriptor* f = d->field(i);
    J value;
    if (f->is_map()) {
      const pb::FieldDescriptor* key = f->message_type()->map_key();
      const pb::FieldDescriptor* val = f->message_type()->map_value();
      std::vector<std::pair<std::string, J>> entries;
      std::vector<std::pair<double, std::string>> numeric;
      bool numbers = key->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING;
      for (int k = 0; k < r->FieldSize(msg, f); k++) {
        const pb::Message& entry = r->GetRepeatedMessage(msg, f, k);
        entries.push_back({MapKey(entry, key), FieldValue(entry, val, -1)});
      }
      std::sort(entries.begin(), entries.end(), [numbers](const auto& a, const auto& b) {
        return numbers ? std::stod(a.first) < std::stod(b.first) : a.first < b.first;
      });
      value.kind = J::Object;
      value.fields = std::move(entries);
    } else if (f->is_repeated()) {
      value.kind = J::List;
      for (int k = 0; k < r->FieldSize(msg, f); k++) value.items.push_back(FieldValue(msg, f, k));
    } else if (f->has_presence() && !r->HasField(msg, f)) {
      value = J();
    } else {
      value = FieldValue(msg, f, -1);
    }
    out.fields.push_back({f->name(), std::move(value)});
  }
  return out;
}

void Quote(const std::string& s, std::string* out) {
  out->push_back('"');
  char esc[16];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    uint32_t cp;
    int len;
    if (c < 0x80) { cp = c; len = 1; }
    else if ((c >> 5) == 6 && i + 1 < s.size()) { cp = ((c & 31) << 6) | (s[i + 1] & 63); len = 2; }
    else if ((c >> 4) == 14 && i + 2 < s.size()) { cp = ((c & 15) << 12) | ((s[i + 1] & 63) << 6) | (s[i + 2] & 63); len = 3; }
    else if ((c >> 3) == 30 && i + 3 < s.size()) {
      cp = ((c & 7) << 18) | ((s[i + 1] & 63) << 12) | ((s[i + 2] & 63) << 6) | (s[i + 3] & 63); len = 4;
    } else { cp = 0xFFFD; len = 1; }
    i += len;
    switch (cp) {
      case '"': *out += "\\\""; continue;
      case '\\': *out += "\\\\"; continue;
      case '\n': *out += "\\n"; continue;
      case '\r': *out += "\\r"; continue;
      case '\t': *out += "\\t"; continue;
      case '\b': *out += "\\b"; continue;
      case '\f': *out += "\\f"; continue;
    }
    if (cp < 0x20 || (cp > 0x7e && cp != 0x7f)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(esc, sizeof esc, "\\u%04x", cp);
      }
      *out += esc;
    } else {
      out->push_back(static_cast<char>(cp));
    }
  }
  out->push_back('"');
}

void Dump(const J& j, int level, std::string* out) {
  std::string pad((level + 1) * 2, ' '), end(level * 2, ' ');
  switch (j.kind) {
    case J::Null: *out += "null"; return;
    case J::Bool: *out += j.b ? "true" : "false"; return;
    case J::Int: case J::Float: *out += j.text; return;
    case J::Str: Quote(j.text, out); return;
    case J::List:
      if (j.items.empty()) { *out += "[]"; return; }
      *out += "[\n";
      for (size_t i = 0; i < j.items.size(); i++) {
        *out += pad;
        Dump(j.items[i], level + 1, out);
        *out += i + 1 < j.items.size() ? ",\n" : "\n";
      }
      *out += end + "]";
      return;
    case J::Object:
      if (j.fields.empty()) { *out += "{}"; return; }
      *out += "{\n";
      for (size_t i = 0; i < j.fields.size(); i++) {
        *out += pad;
        Quote(j.fields[i].first, out);
        *out += ": ";
        Dump(j.fields[i].second, level + 1, out);
        *out += i + 1 < j.fields.size() ? ",\n" : "\n";
      }
      *out += end + "}";
      return;
  }
}

}  // namespace

std::string ManifestJson(const pb::Message& message) {
  std::string out;
  Dump(ToJ(message), 0, &out);
  return out + "\n";
}

}  // namespace tffreeze
