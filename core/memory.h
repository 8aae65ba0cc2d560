// Whether a run fits in this machine's memory, decided before anything is built (torch-free: the
// studio's experiment panel asks as the user types, the trainer before it builds).
#pragma once

#include <string>

#include "core/config.h"

namespace retreever {

// MemAvailable from /proc/meminfo in bytes; 0 when it cannot be read (nothing is then refused).
double available_memory_bytes();

// "350 MB", "1.2 GB" or "2.6e+06 TB".
std::string memory_text(double bytes);

// Whether runs on `device` (a Config::device value, or a resolved one such as "cuda:0") are held to
// the estimate: CPU runs are; on a GPU the fused kernels keep no N x N scores, so the estimate
// would refuse runs that fit, and a run that does not fit stops at its first step instead
// (OutOfMemoryError, core/training/trainer.h).
bool memory_estimated_on(const std::string& device);

// Empty when the config's estimate (Config::memory_estimate) fits in `available` bytes (with a
// margin); otherwise one line saying what the run needs, what there is and which setting to lower.
// processes > 1: that many data-parallel processes on this machine, each with its share of the batch.
std::string memory_refusal(const Config& config, double available, int processes = 1);

}  // namespace retreever
