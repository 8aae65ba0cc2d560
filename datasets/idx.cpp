#include "idx.h"

#include <zlib.h>

#include <filesystem>
#include <memory>
#include <stdexcept>

namespace retreever::datasets {
namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr std::int64_t kMaxSide = 4096;             // refuse absurd headers before allocating
constexpr std::int64_t kMinSide = 2;                // a 1-pixel image has no neighbourhood to complete
// The most bytes one file may yield (EMNIST's largest split is under 1 GB).
constexpr std::uint64_t kMaxPayload = std::uint64_t(4) << 30;
constexpr std::size_t kChunk = std::size_t(16) << 20;  // read in pieces: memory follows the data, not the header

const char* kFormatHint =
    "expected an IDX file (big-endian magic 0x00000803 for images or 0x00000801 for labels, "
    "then the dimensions, then unsigned bytes), optionally gzipped, as MNIST, EMNIST and "
    "Fashion-MNIST ship them";

// zlib reads gzipped and plain files alike.
struct GzFile {
  explicit GzFile(const std::string& path) : f(gzopen(path.c_str(), "rb")), path(path) {
    if (!f) throw std::runtime_error("cannot open '" + path + "': no such file or not readable");
  }
  ~GzFile() { gzclose(f); }
  // Reads `bytes` in chunks, so that a header promising more than the file (or a gzip stream)
  // holds fails at the end of the real data instead of allocating what it promised.
  template <class T>
  void read_all(std::vector<T>& out, std::uint64_t bytes, const char* what) {
    if (bytes > kMaxPayload)
      throw std::runtime_error("'" + path + "' promises " + std::to_string(bytes) + " bytes of " + what +
                               ", more than the " + std::to_string(kMaxPayload >> 30) + " GiB an IDX file may hold");
    if (gzdirect(f) && bytes > remaining_plain())
      throw std::runtime_error("'" + path + "' promises " + std::to_string(bytes) + " bytes of " + what + " but holds " +
                               std::to_string(remaining_plain()) + " (truncated or corrupt); " + kFormatHint);
    out.clear();
    while (out.size() < bytes) {
      const auto start = out.size();
      const auto n = std::min<std::uint64_t>(kChunk, bytes - start);
      out.resize(start + n);
      read(out.data() + start, std::size_t(n), what);
    }
  }
  // Bytes left in a plain (not gzipped) file.
  std::uint64_t remaining_plain() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    const auto at = gztell(f);
    return ec || at < 0 || std::uint64_t(at) > size ? 0 : size - std::uint64_t(at);
  }
  void read(void* buffer, std::size_t bytes, const char* what) {
    const int got = gzread(f, buffer, unsigned(bytes));
    if (got < 0 || std::size_t(got) != bytes)
      throw std::runtime_error("'" + path + "' ends early while reading " + what + " (truncated or corrupt); " +
                               kFormatHint);
  }
  std::uint32_t u32(const char* what) {
    unsigned char b[4];
    read(b, 4, what);
    return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
  }
  gzFile f;
  std::string path;
};

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  GzFile f(path);
  const auto magic = f.u32("the header");
  if (magic != kImagesMagic)
    throw std::runtime_error("'" + path + "' is not an IDX image file (magic " + std::to_string(magic) + "); " +
                             kFormatHint);
  IdxImages images;
  images.count = f.u32("the image count");
  images.height = f.u32("the image height");
  images.width = f.u32("the image width");
  if (images.count <= 0 || images.height < kMinSide || images.width < kMinSide || images.height > kMaxSide ||
      images.width > kMaxSide)
    throw std::runtime_error("'" + path + "' has an implausible IDX header (" + std::to_string(images.count) + " images of " +
                             std::to_string(images.height) + "x" + std::to_string(images.width) + "; images must be " +
                             std::to_string(kMinSide) + ".." + std::to_string(kMaxSide) + " pixels a side); " + kFormatHint);
  f.read_all(images.pixels, std::uint64_t(images.count) * std::uint64_t(images.height) * std::uint64_t(images.width), "pixels");
  return images;
}

std::vector<std::uint8_t> read_idx_labels(const std::string& path) {
  GzFile f(path);
  const auto magic = f.u32("the header");
  if (magic != kLabelsMagic)
    throw std::runtime_error("'" + path + "' is not an IDX label file (magic " + std::to_string(magic) + "); " +
                             kFormatHint);
  std::vector<std::uint8_t> labels;
  f.read_all(labels, f.u32("the label count"), "labels");
  return labels;
}

std::string find_idx_file(const std::string& folder, const std::string& name) {
  namespace fs = std::filesystem;
  for (const auto& candidate : {fs::path(folder) / name, fs::path(folder) / (name + ".gz")})
    if (fs::exists(candidate)) return candidate.string();
  throw std::runtime_error("image data: neither '" + name + "' nor '" + name + ".gz' is in '" + folder +
                           "'. Install Debian's Fashion-MNIST (apt-get install dataset-fashion-mnist, which "
                           "fills /usr/share/datasets/fashion-mnist) or pass --data with a folder of IDX files");
}

}  // namespace retreever::datasets
