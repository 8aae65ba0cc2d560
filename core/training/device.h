// The device is chosen in one place (STYLE.md: pytorch/examples' habit).
#pragma once

#include <string>

#include <torch/types.h>

namespace retreever {

// Sets LibTorch's CPU threads to the number of cores (once; OMP_NUM_THREADS wins).
void use_all_cores();

// "auto" -> CUDA when available, else CPU; "cuda" without a GPU throws with the fix.
torch::Device resolve_device(const std::string& name);

}  // namespace retreever
