#include "device.h"

#include <stdexcept>

#include <cstdlib>
#include <thread>

#include <torch/cuda.h>
#include <torch/utils.h>

namespace retreever {

void use_all_cores() {
  // Debian's LibTorch starts with one intra-op thread; use every core unless the user
  // chose a number through OMP_NUM_THREADS.
  static const bool done = [] {
    if (!std::getenv("OMP_NUM_THREADS")) {
      const unsigned cores = std::thread::hardware_concurrency();
      if (cores > 0 && torch::get_num_threads() < int(cores)) torch::set_num_threads(int(cores));
    }
    return true;
  }();
  (void)done;
}

torch::Device resolve_device(const std::string& name) {
  use_all_cores();
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
