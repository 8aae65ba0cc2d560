// Reading and writing whole files; every file the project writes goes through
// write_atomically, so a crash or a full disk never leaves half a file under the real name.
#pragma once

#include <functional>
#include <string>

namespace retreever {

// The checkpoint's name in a run folder (DIR/checkpoint.safetensors, DESIGN.md "Files").
inline constexpr const char* kCheckpointFileName = "checkpoint.safetensors";
// And the best evaluation's (DIR/checkpoint_best.safetensors).
inline constexpr const char* kBestCheckpointFileName = "checkpoint_best.safetensors";

// Why PATH cannot be opened as a file ("does not exist", "is a folder, not a file", "is not
// readable"), or "" when it can.
std::string unreadable_file_reason(const std::string& path);

// unreadable_file_reason for a checkpoint: a run folder also gets the file to pass instead ("is a
// folder, not a file; pass 'DIR/checkpoint.safetensors'").
std::string unreadable_checkpoint_reason(const std::string& path);

// Reads a whole text file (configs, budgets: at most 16 MiB); throws std::runtime_error with the
// path on failure.
std::string read_text_file(const std::string& path);

// Calls write(PATH.tmp), then renames PATH.tmp over PATH in one step. If write throws or the
// rename fails, PATH.tmp is removed and the error (naming the file) propagates; PATH is untouched.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);

// Writes bytes (text or binary) to PATH through write_atomically.
void write_file_atomic(const std::string& path, const std::string& bytes);

// A new folder of its own under /tmp (mkdtemp: "/tmp/PREFIX-XXXXXX"), removed with what it holds
// when this goes. Throws std::runtime_error naming the folder when it cannot be made.
class TempFolder {
 public:
  explicit TempFolder(const std::string& prefix);
  ~TempFolder();
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace retreever
