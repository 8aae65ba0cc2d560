// A checkpoint's header, read without LibTorch (checkpoint.h writes and loads the rest): what the
// studio lists and restores without building a model. Torch-free header.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/metrics.h"

namespace retreever {

struct CheckpointHeader {
  Config config;
  std::int64_t step = 0;
  MetricsHistory history;
  double best = 0;
};

// The config, step, best evaluation and metrics history of a checkpoint. Throws
// std::runtime_error naming the file and the problem (missing, truncated, foreign, the old
// torch-archive format, or a config that is not valid).
CheckpointHeader read_checkpoint_header(const std::string& path);

}  // namespace retreever
