// The device is chosen in one place (STYLE.md: pytorch/examples' habit).
#pragma once

#include <string>

#include <torch/types.h>

namespace retreever {

// Once per process: LibTorch's CPU threads = the number of cores (OMP_NUM_THREADS wins), and
// glibc's allocator keeps large freed blocks for reuse instead of returning them to the kernel.
void prepare_cpu_runtime();

// "auto" -> CUDA when available, else CPU; "cuda" without a GPU throws with the fix.
torch::Device resolve_device(const std::string& name);

}  // namespace retreever
