#include "core/training/run_folder.h"

#include <filesystem>
#include <stdexcept>

#include "core/files.h"
#include "core/training/trainer.h"

namespace fs = std::filesystem;

namespace retreever {

RunFolder::RunFolder(std::string path, const Trainer& trainer) : path_(std::move(path)), writer_(trainer.rank() == 0) {
  if (!writer_) return;
  std::error_code ec;
  fs::create_directories(path_, ec);
  if (ec) throw std::runtime_error("cannot create the run's folder '" + path_ + "': " + ec.message());
  write_file_atomic((fs::path(path_) / "config.json").string(), trainer.config().to_json() + "\n");
}

std::string RunFolder::checkpoint() const { return (fs::path(path_) / kCheckpointFileName).string(); }

void RunFolder::write_metrics(const Trainer& trainer) const {
  if (writer_) write_file_atomic((fs::path(path_) / "metrics.csv").string(), trainer.history().to_csv());
}

void RunFolder::save(const Trainer& trainer) const {
  if (!writer_) return;
  trainer.save(checkpoint());
  write_metrics(trainer);
}

void RunFolder::save_evaluated(const Trainer& trainer) const {
  if (!writer_) return;
  trainer.save(checkpoint());
  if (trainer.last_eval_was_best()) trainer.save((fs::path(path_) / kBestCheckpointFileName).string());
  write_metrics(trainer);
}

std::string kept_checkpoint_text(const std::string& folder) {
  const auto checkpoint = (fs::path(folder) / kCheckpointFileName).string();
  std::error_code ec;
  return fs::exists(checkpoint, ec) ? "The last good checkpoint is kept: " + checkpoint : "No checkpoint was written yet.";
}

}  // namespace retreever
