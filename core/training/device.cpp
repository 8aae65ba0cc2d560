#include "device.h"

#include <stdexcept>

#include <torch/cuda.h>

namespace retreever {

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name == "auto") {
    if (torch::cuda::is_available()) return torch::Device(torch::kCUDA, 0);
    if (name == "auto") return torch::kCPU;
    throw std::runtime_error("--device cuda was asked for, but this LibTorch build sees no CUDA GPU; "
                             "use --device cpu or auto");
  }
  throw std::invalid_argument("unknown device '" + name + "'; use auto|cpu|cuda");
}

}  // namespace retreever
