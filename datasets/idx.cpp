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
  if (images.count <= 0 || images.height <= 0 || images.width <= 0 || images.height > kMaxSide ||
      images.width > kMaxSide)
    throw std::runtime_error("'" + path + "' has an implausible IDX header; " + kFormatHint);
  images.pixels.resize(std::size_t(images.count * images.height * images.width));
  f.read(images.pixels.data(), images.pixels.size(), "the pixels");
  return images;
}

std::vector<std::uint8_t> read_idx_labels(const std::string& path) {
  GzFile f(path);
  const auto magic = f.u32("the header");
  if (magic != kLabelsMagic)
    throw std::runtime_error("'" + path + "' is not an IDX label file (magic " + std::to_string(magic) + "); " +
                             kFormatHint);
  std::vector<std::uint8_t> labels(f.u32("the label count"));
  f.read(labels.data(), labels.size(), "the labels");
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
