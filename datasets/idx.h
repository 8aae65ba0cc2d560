// Reads IDX files (the MNIST format: MNIST, EMNIST, Fashion-MNIST), gzipped or not.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace retreever::datasets {

struct IdxImages {
  std::int64_t count = 0, height = 0, width = 0;
  std::vector<std::uint8_t> pixels;  // count * height * width, row-major
};

// Throws std::runtime_error naming the file and what is wrong with it.
IdxImages read_idx_images(const std::string& path);
std::vector<std::uint8_t> read_idx_labels(const std::string& path);

// Finds NAME or NAME.gz in folder; throws naming both and the package that provides them.
std::string find_idx_file(const std::string& folder, const std::string& name);

}  // namespace retreever::datasets
