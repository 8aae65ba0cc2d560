#include "safetensors.h"

#include "core/files.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <c10/util/StringUtil.h>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <zlib.h>

namespace retreever::safetensors {
namespace {

using json = nlohmann::json;

const std::map<std::string, std::size_t>& dtype_sizes() {
  static const std::map<std::string, std::size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},  {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8},  {"F64", 8}};
  return sizes;
}

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "F32";
    case torch::kDouble: return "F64";
    case torch::kLong: return "I64";
    case torch::kInt: return "I32";
    case torch::kBool: return "BOOL";
    case torch::kHalf: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kByte: return "U8";
    default: throw std::invalid_argument("safetensors: no dtype name for this tensor type");
  }
}

[[noreturn]] void fail(const std::string& why) { throw std::runtime_error(why); }

// Strict JSON: nlohmann keeps the last of two equal keys silently; a file that says one thing
// twice is refused instead.
json parse_strict(const std::string& text) {
  std::vector<std::set<std::string>> objects;
  std::string duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) objects.emplace_back();
    else if (event == json::parse_event_t::object_end && !objects.empty()) objects.pop_back();
    else if (event == json::parse_event_t::key && !objects.empty() && parsed.is_string()) {
      if (!objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, callback);
  } catch (const json::exception& e) {
    fail(std::string("the header is not valid JSON (") + e.what() + ")");
  }
  if (!duplicate.empty()) fail("the header names '" + duplicate + "' twice");
  return j;
}

std::uint64_t checked_u64(const json& v, const std::string& what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
    fail(what + " must be a non-negative integer, got " + v.dump());
  return v.get<std::uint64_t>();
}

Entry parse_entry(const std::string& name, const json& v, std::uint64_t buffer) {
  if (!v.is_object()) fail("tensor '" + name + "' must be described by an object");
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      fail("tensor '" + name + "' has an unknown field '" + it.key() + "'");
  Entry e;
  auto dtype = v.find("dtype"), shape = v.find("shape"), offsets = v.find("data_offsets");
  if (dtype == v.end() || !dtype->is_string()) fail("tensor '" + name + "' has no dtype string");
  e.dtype = dtype->get<std::string>();
  const auto size = dtype_size(e.dtype);
  if (size == 0) fail("tensor '" + name + "' has an unknown dtype '" + e.dtype + "'");
  if (shape == v.end() || !shape->is_array()) fail("tensor '" + name + "' has no shape list");
  if (shape->size() > 16) fail("tensor '" + name + "' has " + std::to_string(shape->size()) + " dimensions");
  // Elements, checked against the buffer at every factor so that the product cannot overflow.
  std::uint64_t count = 1;
  bool empty = false;
  for (const auto& d : *shape) {
    const auto n = checked_u64(d, "a dimension of tensor '" + name + "'");
    if (n > std::uint64_t(std::numeric_limits<std::int64_t>::max())) fail("tensor '" + name + "' has a dimension too large");
    e.shape.push_back(std::int64_t(n));
    if (n == 0) empty = true;
    else if (!empty && count > buffer / n) fail("tensor '" + name + "' is larger than the file");
    else if (!empty) count *= n;
  }
  if (empty) count = 0;
  if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2)
    fail("tensor '" + name + "' needs data_offsets [begin, end]");
  e.begin = checked_u64((*offsets)[0], "data_offsets of '" + name + "'");
  e.end = checked_u64((*offsets)[1], "data_offsets of '" + name + "'");
  if (e.begin > e.end || e.end > buffer)
    fail("tensor '" + name + "' has data_offsets outside the file's data (" + std::to_string(e.begin) + ".." +
         std::to_string(e.end) + " of " + std::to_string(buffer) + " bytes)");
  if (count > buffer / size || count * size != e.end - e.begin)
    fail("tensor '" + name + "': its shape and dtype need " + std::to_string(count) + " x " + std::to_string(size) +
         " bytes, its offsets span " + std::to_string(e.end - e.begin));
  return e;
}

// CRC-32 of bytes, continuing from `crc` (zlib takes at most 4 GiB a call).
std::uint32_t crc32_of(std::uint32_t crc, const char* bytes, std::uint64_t n) {
  constexpr std::uint64_t kPart = std::uint64_t(1) << 30;
  for (; n > 0;) {
    const auto part = std::min(n, kPart);
    crc = std::uint32_t(::crc32(crc, reinterpret_cast<const Bytef*>(bytes), uInt(part)));
    bytes += part;
    n -= part;
  }
  return crc;
}

std::string hex8(std::uint32_t v) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", v);
  return text;
}

// kHeaderCrc's value: the header with the two checksum entries left out of its __metadata__.
std::uint32_t header_crc(json header) {
  auto& metadata = header["__metadata__"];
  metadata.erase(kHeaderCrc);
  metadata.erase(kDataCrc);
  const auto text = header.dump();
  return crc32_of(0, text.data(), text.size());
}

void compare_crc(const std::string& recorded, std::uint32_t computed, const std::string& what) {
  if (recorded == hex8(computed)) return;
  fail(what + " do not match the checksum written with them (CRC-32 " + recorded + ", now " + hex8(computed) +
       "): the file changed after it was written (a failing disk, an interrupted copy, an edit). To read a file "
       "you edited on purpose, remove '" + kHeaderCrc + "' and '" + kDataCrc + "' from its __metadata__");
}

// Whether the file records the checksums (both, or it is damaged).
bool has_checksums(const Header& header) {
  const bool meta = header.metadata.count(kHeaderCrc) > 0, data = header.metadata.count(kDataCrc) > 0;
  if (meta != data) fail("it records one checksum without the other (" + std::string(meta ? kHeaderCrc : kDataCrc) + ")");
  return meta;
}

}  // namespace

void verify_header(const Header& header) {
  if (has_checksums(header))
    compare_crc(header.metadata.at(kHeaderCrc), header.header_crc, "its header (config, step, history, tensor names and shapes)");
}

void verify_data(std::istream& in, const Header& header) {
  if (!has_checksums(header)) return;
  std::uint64_t size = 0;  // the tensors tile the buffer (read_header): it ends where the last one does
  for (const auto& [name, e] : header.tensors) size = std::max(size, e.end);
  std::vector<char> chunk(std::size_t(1) << 20);
  std::uint32_t crc = 0;
  in.clear();
  in.seekg(std::streamoff(header.data_start));
  for (std::uint64_t left = size; left > 0;) {
    const auto n = std::min<std::uint64_t>(left, chunk.size());
    if (!in.read(chunk.data(), std::streamsize(n))) fail("its data could not be read (truncated file?)");
    crc = crc32_of(crc, chunk.data(), n);
    left -= n;
  }
  compare_crc(header.metadata.at(kDataCrc), crc, "its tensors' bytes");
}

std::size_t dtype_size(const std::string& dtype) {
  auto it = dtype_sizes().find(dtype);
  return it == dtype_sizes().end() ? 0 : it->second;
}

Header read_header(std::istream& in, std::uint64_t size) {
  if (size < 8) fail("the file is too short to be a safetensors file (" + std::to_string(size) + " bytes)");
  unsigned char prefix[8];
  if (!in.read(reinterpret_cast<char*>(prefix), 8)) fail("cannot read the header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  // A real length below the limit has zero high bytes; eight printable ones are text (a config.json or
  // metrics.csv passed by mistake), which deserves its own words rather than an absurd length.
  if (std::all_of(prefix, prefix + 8, [](unsigned char c) { return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t'; })) {
    std::string start(reinterpret_cast<const char*>(prefix), 8);
    for (auto& c : start) if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    fail("it starts with text ('" + start + "...'), not with the length of a safetensors header: is it a JSON or CSV "
         "file? A run's checkpoint is the checkpoint.safetensors in its folder");
  }
  if (n > kMaxHeaderBytes) fail("the header claims " + std::to_string(n) + " bytes, above the limit of " + std::to_string(kMaxHeaderBytes));
  if (n > size - 8) fail("the header claims " + std::to_string(n) + " bytes but the file holds " + std::to_string(size - 8) + " after the length (truncated?)");
  if (n < 2) fail("the header is empty");
  std::string text(n, '\0');
  if (!in.read(text.data(), std::streamsize(n))) fail("cannot read the header");
  if (text[0] != '{') fail("the header does not start with '{'");
  const auto j = parse_strict(text);
  if (!j.is_object()) fail("the header must be a JSON object");
  Header h;
  h.data_start = 8 + n;
  // Only where the file records it: the dump of a whole header is not free (a long run's history).
  if (const auto m = j.find("__metadata__"); m != j.end() && m->is_object() && m->contains(kHeaderCrc))
    h.header_crc = header_crc(j);
  const std::uint64_t buffer = size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail("__metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        h.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    h.tensors[it.key()] = parse_entry(it.key(), *it, buffer);
  }
  // The tensors' byte ranges must tile the data buffer: no gap, no overlap, nothing after.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& [name, e] : h.tensors) ranges.emplace_back(e.begin, e.end);
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    if (b != at) fail(b < at ? "two tensors' data overlap" : "the tensors' data leave a gap at byte " + std::to_string(at));
    at = e;
  }
  if (at != buffer)
    fail("the tensors' data end at byte " + std::to_string(at) + " but the file's data holds " + std::to_string(buffer) +
         " (truncated or padded)");
  return h;
}

Header read_header_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail("cannot read '" + path + "': no such file or not readable");
  const auto size = std::uint64_t(in.tellg());
  in.seekg(0);
  return read_header(in, size);
}

void read_tensor(std::istream& in, const Header& header, const std::string& name, torch::Tensor& dest) {
  auto it = header.tensors.find(name);
  if (it == header.tensors.end()) fail("it has no tensor '" + name + "'");
  const auto& e = it->second;
  if (e.dtype != dtype_name(dest.scalar_type())) fail("tensor '" + name + "' is " + e.dtype + ", expected " + dtype_name(dest.scalar_type()));
  if (e.shape != dest.sizes().vec())
    fail(c10::str("tensor '", name, "' has shape ", c10::IntArrayRef(e.shape), ", the model's config describes ",
                  dest.sizes()));
  const bool direct = dest.device().is_cpu() && dest.is_contiguous();
  torch::Tensor staging = direct ? dest : torch::empty(dest.sizes(), dest.options().device(torch::kCPU));
  in.clear();
  in.seekg(std::streamoff(header.data_start + e.begin));
  if (!in.read(static_cast<char*>(staging.data_ptr()), std::streamsize(e.end - e.begin)))
    fail("tensor '" + name + "' could not be read (truncated file?)");
  if (!direct) {
    torch::NoGradGuard no_grad;
    dest.copy_(staging);
  }
}

void write(std::ostream& out, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata) {
  if (metadata.count(kHeaderCrc) || metadata.count(kDataCrc))
    throw std::invalid_argument("safetensors: the metadata names a checksum entry, which write() adds itself");
  json header = json::object();
  std::vector<torch::Tensor> data;
  std::uint64_t offset = 0;
  std::uint32_t data_crc = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || header.contains(name)) throw std::invalid_argument("safetensors: bad or repeated name '" + name + "'");
    auto cpu = t.detach().to(torch::kCPU).contiguous();
    const std::uint64_t bytes = std::uint64_t(cpu.numel()) * cpu.element_size();
    header[name] = {{"dtype", dtype_name(cpu.scalar_type())}, {"shape", cpu.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data_crc = crc32_of(data_crc, static_cast<const char*>(cpu.data_ptr()), bytes);
    data.push_back(cpu);
  }
  header["__metadata__"] = metadata;
  const auto covered = header_crc(header);
  header["__metadata__"][kHeaderCrc] = hex8(covered);
  header["__metadata__"][kDataCrc] = hex8(data_crc);
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // the data starts 8-byte aligned
  unsigned char prefix[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(prefix), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& t : data) out.write(static_cast<const char*>(t.data_ptr()), std::streamsize(t.numel() * t.element_size()));
}

void write_file(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                const std::map<std::string, std::string>& metadata) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write '" + tmp + "': check that the folder exists and is writable");
    write(out, tensors, metadata);
    out.flush();
    if (!out) fail("writing '" + tmp + "' failed (disk full?)");
  });
}

bool looks_like_torch_archive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "PK\x03\x04", 4) == 0;
}

}  // namespace retreever::safetensors
