#include "core/files.h"

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace retreever {

std::string unreadable_file_reason(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return "does not exist";
  if (std::filesystem::is_directory(status)) return "is a folder, not a file";
  std::ifstream in(path, std::ios::binary);
  return in ? "" : "is not readable";
}

std::string unreadable_checkpoint_reason(const std::string& path) {
  const auto why = unreadable_file_reason(path);
  if (why.empty() || !std::filesystem::is_directory(path)) return why;
  const auto inside = std::filesystem::path(path) / kCheckpointFileName;
  return why + (unreadable_file_reason(inside.string()).empty() ? "; pass '" + inside.string() + "'"
                                                                 : "; pass a .safetensors file");
}

std::string read_text_file(const std::string& path) {
  constexpr std::uintmax_t kMaxTextFile = std::uintmax_t(16) << 20;  // configs and budgets are a few KB
  if (const auto why = unreadable_file_reason(path); !why.empty())
    throw std::runtime_error("cannot read '" + path + "': it " + why);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot read '" + path + "': it is not readable");
  const auto size = std::uintmax_t(std::max<std::streamoff>(0, in.tellg()));
  if (size > kMaxTextFile)
    throw std::runtime_error("'" + path + "' holds " + std::to_string(size) + " bytes, more than the " +
                             std::to_string(kMaxTextFile >> 20) + " MiB a config or budget file may have; is it the right file?");
  in.seekg(0);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': check the folder is writable");
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "': check the folder exists and is writable");
    out << bytes;
    out.flush();
    if (!out) throw std::runtime_error("writing '" + tmp + "' failed (disk full?)");
  });
}

TempFolder::TempFolder(const std::string& prefix) {
  std::string name = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(name.data()))
    throw std::runtime_error("cannot create a folder '" + name + "' in /tmp: check that /tmp is writable");
  path_ = name;
}

TempFolder::~TempFolder() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace retreever
