// One self-describing checkpoint file (DESIGN.md "Files") in the safetensors format: the
// parameters under their module names, the optimiser's moments under "optimizer.exp_avg." and
// "optimizer.exp_avg_sq." + the parameter's name, and in __metadata__ the format name and version,
// the config JSON, the step, the best evaluation and the metrics history, and the CRC-32s of the
// header and of the data. Reading runs no code from the file, validates it before allocating and
// checks its checksums (safetensors.h).
#pragma once

#include <optional>
#include <string>

#include <torch/nn/module.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/training/checkpoint_header.h"

namespace retreever {

class FlatAdam;

void save_checkpoint(const std::string& path, const CheckpointHeader& header, torch::nn::Module& model,
                     FlatAdam* optimizer);

// Loads parameters into `model` (built from the header's config by the caller) and the optimiser
// state when given. Throws std::runtime_error with a message naming the file and the problem
// (missing, truncated, foreign, mismatched, changed since it was written (the checksums), or the
// old torch-archive format, which only `retreever convert --trust` reads).
void load_checkpoint_state(const std::string& path, torch::nn::Module& model,
                           FlatAdam* optimizer, const torch::Device& device);

// The old format (a TorchScript archive: reading one runs code the file carries). Only for
// `retreever convert --trust`.
CheckpointHeader read_legacy_checkpoint_header(const std::string& path);
void load_legacy_checkpoint_state(const std::string& path, torch::nn::Module& model,
                                  FlatAdam* optimizer, const torch::Device& device);
// Throws std::runtime_error when PATH is not a file that can be read, naming why (a run folder
// gets the path of its checkpoint).
void require_checkpoint_file(const std::string& path);
// Throws when a checkpoint's config (read by either reader) is not valid.
void check_checkpoint_config(const std::string& path, const Config& config);
// True when PATH holds the old format.
bool is_legacy_checkpoint(const std::string& path);

// Parameters alone, to and from bytes (snapshots for inspection).
std::string serialize_parameters(torch::nn::Module& model);
void deserialize_parameters(const std::string& bytes, torch::nn::Module& model, const torch::Device& device);

}  // namespace retreever
