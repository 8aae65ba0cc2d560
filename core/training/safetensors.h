// The safetensors file format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets"}
// (plus an optional "__metadata__" map of strings to strings), then the raw little-endian bytes.
//
// Reading validates everything before it allocates anything sized by the file: the header length
// against the file's size and a cap, strict JSON (no duplicate keys), known dtypes, shapes whose
// byte counts match their offsets, and offsets that tile the data buffer exactly. No code from a
// file ever runs: this is the only reader of user checkpoints (DESIGN.md "Files").
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace retreever::safetensors {

// The largest header accepted (the metrics history of a long run is a few hundred kilobytes).
constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t(64) << 20;

struct Entry {
  std::string dtype;                // "F32", "F64", "I64", ... (only known names pass)
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range in the data buffer
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Entry> tensors;
  std::uint64_t data_start = 0;  // 8 + header length: where the data buffer begins in the file
  std::uint32_t header_crc = 0;  // computed by read_header where the file records kHeaderCrc, as write() does
};

// Bytes per element of a dtype name, or 0 when the name is not a safetensors dtype.
std::size_t dtype_size(const std::string& dtype);

// Parses and validates the header of a stream holding `size` bytes. Throws std::runtime_error
// naming the problem (without a file name: callers add it).
Header read_header(std::istream& in, std::uint64_t size);
Header read_header_file(const std::string& path);

// Reads tensor `name` into `dest` (a contiguous CPU tensor of the same dtype and shape, or any
// tensor: the bytes then go through a CPU staging copy). Throws when the file's dtype or shape
// differs from dest's.
void read_tensor(std::istream& in, const Header& header, const std::string& name, torch::Tensor& dest);

// Checksums. write() adds two entries to __metadata__: kHeaderCrc, the CRC-32 (zlib's) of the
// header without them (its JSON object as nlohmann dumps it: keys sorted, compact), which covers
// the metadata and the tensors' names, dtypes, shapes and offsets; and kDataCrc, the CRC-32 of the
// data buffer. A bit that flips on a disk or in a copy then fails a check instead of loading as a
// slightly different model. The checks throw std::runtime_error naming the part that changed; a
// file that records no checksums (another program's, or ours before December 2026) passes them.
inline constexpr const char* kHeaderCrc = "crc32_header";
inline constexpr const char* kDataCrc = "crc32_data";
void verify_header(const Header& header);
void verify_data(std::istream& in, const Header& header);

// Writes the tensors (CPU or not, any layout) and metadata to a stream, with the checksums above
// (metadata must not hold their names).
void write(std::ostream& out, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
           const std::map<std::string, std::string>& metadata);
// The same as one file, atomically: PATH.tmp, then a rename. Throws std::runtime_error when the
// file cannot be written.
void write_file(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                const std::map<std::string, std::string>& metadata);

// True when the file starts as a ZIP archive does (a TorchScript / torch.save archive: the old
// checkpoint format).
bool looks_like_torch_archive(const std::string& path);

}  // namespace retreever::safetensors
