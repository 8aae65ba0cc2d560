// The training loop behind 'train', 'study' and 'report': progress, periodic evaluation,
// checkpoints, Ctrl-C and divergence handling.
#pragma once

#include <filesystem>
#include <string>

#include "core/metrics.h"

namespace retreever {
class Trainer;
}

namespace retreever::cli {

constexpr int kExitError = 1, kExitUsage = 2, kExitDiverged = 3, kExitInterrupted = 130;

// "eval accuracy 99.10%" or "eval log-likelihood 0.812".
std::string metric_text(const EvalMetrics& e);

// Ctrl-C and SIGTERM: the first sets interrupt_requested() (run_training stops at the end of the
// step, saving a checkpoint), the same signal once more ends the process at once, by that signal.
// announce: say so on stderr (a data-parallel run's rank 0 alone).
void install_interrupt_handlers(bool announce = true);
bool interrupt_requested();

// Trains to the end, evaluating and checkpointing on the way, into `out` (config.json,
// metrics.csv, checkpoint.safetensors, checkpoint_best.safetensors). Returns 0, kExitInterrupted (Ctrl-C or
// SIGTERM: checkpoint saved), kExitDiverged or, out of the device's memory, kExitError (both keep
// the last good checkpoint).
int run_training(Trainer& trainer, const std::filesystem::path& out);

}  // namespace retreever::cli
