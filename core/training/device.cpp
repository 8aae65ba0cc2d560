#include "device.h"

#include "core/devices.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include <cstdlib>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "core/cuda/cuda_ops.h"

#ifdef RETREEVER_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace retreever {

namespace {
int cpu_threads_at_start = 1;
}  // namespace

void prepare_cpu_runtime() {
  static const bool done = [] {
#if defined(__GLIBC__)
    // A training step allocates and frees hundreds of tensors of 0.1-2 MB. By default glibc maps
    // each large block from the kernel and unmaps it when freed, so every step pays page faults
    // (a fifth of the step's time went to the kernel). Keep freed blocks in the heap instead.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest allowed value
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    // Debian's LibTorch starts with one intra-op thread; use every core unless the user
    // chose a number through OMP_NUM_THREADS.
    if (!std::getenv("OMP_NUM_THREADS")) {
      const unsigned cores = std::thread::hardware_concurrency();
      if (cores > 0 && torch::get_num_threads() < int(cores)) torch::set_num_threads(int(cores));
    }
    cpu_threads_at_start = torch::get_num_threads();
    return true;
  }();
  (void)done;
}

int default_cpu_threads() {
  prepare_cpu_runtime();
  if (std::getenv("OMP_NUM_THREADS")) return cpu_threads_at_start;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

std::string build_summary() {
  const int gpus = cuda_device_count();
  std::string gpu_text = gpus == 0 ? "no GPU" : std::to_string(gpus) + (gpus == 1 ? " GPU" : " GPUs");
  if (cuda_kernels_available()) gpu_text += ", our CUDA kernels built";
  else if (gpus > 0) gpu_text += ", without our CUDA kernels (LibTorch's own operations)";
  return std::string("ReTreever ") + RETREEVER_VERSION + ", LibTorch " + TORCH_VERSION + ", " +
         cpu_threads_text(default_cpu_threads()) + ", " + gpu_text;
}

std::string cpu_threads_text(int n) { return std::to_string(n) + (n == 1 ? " CPU thread" : " CPU threads"); }

double median_seconds(const torch::Device& device, int repeats, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    if (device.is_cuda()) torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    if (device.is_cuda()) torch::cuda::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

torch::Device resolve_device(const std::string& name) {
  prepare_cpu_runtime();
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name == "auto") {
    if (torch::cuda::is_available()) return torch::Device(torch::kCUDA, 0);
    if (name == "auto") return torch::kCPU;
    throw std::runtime_error("--device cuda was asked for, but this LibTorch build sees no CUDA GPU; "
                             "use --device cpu or auto");
  }
  if (name.rfind("cuda:", 0) == 0) {  // one GPU of several
    const std::string index = name.substr(5);
    const int count = cuda_device_count();
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos || index.size() > 4 ||
        std::stoi(index) >= count)
      throw std::runtime_error("--device " + name + ": this machine has " + std::to_string(count) +
                               " CUDA GPU(s), numbered from 0; use cuda:0.." + std::to_string(std::max(0, count - 1)) +
                               ", cuda or cpu");
    return torch::Device(torch::kCUDA, torch::DeviceIndex(std::stoi(index)));
  }
  throw std::invalid_argument("unknown device '" + name + "'; use auto|cpu|cuda|cuda:K");
}

int cuda_device_count() { return torch::cuda::is_available() ? int(torch::cuda::device_count()) : 0; }

std::vector<std::string> device_names(int count) {
  std::vector<std::string> names = {"auto", "cpu", "cuda"};
  for (const auto& gpu : all_gpus(count)) names.push_back(gpu);
  return names;
}

std::vector<std::string> all_gpus(int count) {
  std::vector<std::string> devices;
  if (count > 1)
    for (int k = 0; k < count; ++k) devices.push_back("cuda:" + std::to_string(k));
  return devices;
}

bool is_out_of_memory(const std::exception& e) {
  const std::string what = e.what();
  // (cuBLAS says CUBLAS_STATUS_ALLOC_FAILED when its handle or workspace finds no memory.)
  for (const char* words : {"out of memory", "can't allocate memory", "not enough memory", "ALLOC_FAILED"})
    if (what.find(words) != std::string::npos) return true;
  return false;
}

void release_cached_device_memory() {
#ifdef RETREEVER_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace retreever
