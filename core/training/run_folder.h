// A run's folder, as `train --out DIR` writes it and the studio keeps each of its runs:
// config.json, metrics.csv, checkpoint.safetensors (the last) and checkpoint_best.safetensors.
// Every file is written to a temporary name and renamed. In a data-parallel run rank 0 alone
// writes. Torch-free header.
#pragma once

#include <string>

namespace retreever {

class Trainer;

class RunFolder {
 public:
  // Creates the folder and writes config.json; throws std::runtime_error naming the folder.
  RunFolder(std::string path, const Trainer& trainer);

  // After an evaluation: the checkpoint, the best one where that evaluation was the best, metrics.csv.
  void save_evaluated(const Trainer& trainer) const;
  // Anywhere else (stopped, interrupted, diverged with its last good parameters): the checkpoint
  // and metrics.csv.
  void save(const Trainer& trainer) const;
  void write_metrics(const Trainer& trainer) const;

  const std::string& path() const { return path_; }
  std::string checkpoint() const;  // path()/checkpoint.safetensors

 private:
  std::string path_;
  bool writer_;
};

// What a stopped run left in `folder`: "The last good checkpoint is kept: DIR/checkpoint.safetensors"
// or "No checkpoint was written yet." (the end of a one-line error).
std::string kept_checkpoint_text(const std::string& folder);

}  // namespace retreever
