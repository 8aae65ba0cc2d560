// The device is chosen in one place (STYLE.md: pytorch/examples' habit).
#pragma once

#include <exception>
#include <functional>
#include <string>

#include <torch/types.h>

#include "core/devices.h"  // default_cpu_threads

namespace retreever {

// Once per process: LibTorch's CPU threads = the number of cores (OMP_NUM_THREADS wins), and
// glibc's allocator keeps large freed blocks for reuse instead of returning them to the kernel.
void prepare_cpu_runtime();

// "auto" -> CUDA when available, else CPU; "cuda" without a GPU throws with the fix.
torch::Device resolve_device(const std::string& name);

// The median over `repeats` calls of fn's wall time in seconds, the device synchronised around each
// call (bench's figures and the Scaling view's).
double median_seconds(const torch::Device& device, int repeats, const std::function<void()>& fn);

// Torch's allocators failed: "CUDA out of memory" on a GPU (or cuBLAS's ALLOC_FAILED), "can't
// allocate memory" on the CPU.
bool is_out_of_memory(const std::exception& e);
// Hands the memory LibTorch's CUDA allocator keeps cached back to the driver (after an
// out-of-memory error, so that a smaller run in the same process finds it); nothing without CUDA.
void release_cached_device_memory();

}  // namespace retreever
