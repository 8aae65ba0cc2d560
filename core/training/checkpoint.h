// One self-describing checkpoint file (DESIGN.md "Files"): config JSON, parameters, optimiser
// state, step and metrics history in one torch archive, tagged with a format name.
#pragma once

#include <optional>
#include <string>

#include <torch/nn/module.h>

#include "core/config.h"
#include "core/metrics.h"

namespace retreever {

class FlatAdam;

struct CheckpointHeader {
  Config config;
  std::int64_t step = 0;
  MetricsHistory history;
  double best = 0;
};

void save_checkpoint(const std::string& path, const CheckpointHeader& header, torch::nn::Module& model,
                     FlatAdam* optimizer);

// Reads the header, then loads parameters into `model` (built from header.config by the
// caller-supplied function) and the optimiser state when given. Throws std::runtime_error
// with a message naming the file and the problem (missing, truncated, foreign, mismatched).
CheckpointHeader read_checkpoint_header(const std::string& path);
void load_checkpoint_state(const std::string& path, torch::nn::Module& model,
                           FlatAdam* optimizer, const torch::Device& device);

// Parameters alone, to and from bytes (snapshots for inspection).
std::string serialize_parameters(torch::nn::Module& model);
void deserialize_parameters(const std::string& bytes, torch::nn::Module& model, const torch::Device& device);

}  // namespace retreever
