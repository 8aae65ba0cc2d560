// The devices this machine can train on, torch-free (the studio's device menu asks).
#pragma once

#include <string>
#include <vector>

namespace retreever {

// GPUs LibTorch sees (0 in a CPU-only build).
int cuda_device_count();

// The CPU threads a run may use here: every core, or where OMP_NUM_THREADS is set, the count
// LibTorch started with. LibTorch's count now may be another: a trainer's tuner, --threads or a
// run before this one set it.
int default_cpu_threads();

// "1 CPU thread", "4 CPU threads": how the tools name a thread count.
std::string cpu_threads_text(int n);

// What this build is and what it sees, one line, for `retreever --version` and the studio's About
// box: "ReTreever 0.1.0, LibTorch 1.13.0, 2 CPU threads, no GPU" (with a GPU: "1 GPU", and whether
// this build has our CUDA kernels).
std::string build_summary();

// "auto", "cpu", "cuda", and "cuda:0" .. "cuda:K-1" where there are several GPUs: the values
// Config::device accepts on this machine, in the order menus list them.
std::vector<std::string> device_names(int count = cuda_device_count());

// The studio's "all GPUs" choice: data parallel over cuda:0 .. cuda:K-1 (core/training/
// local_replicas.h). The devices where this machine has K >= 2 GPUs, else none.
constexpr const char* kAllGpus = "all GPUs";
std::vector<std::string> all_gpus(int count = cuda_device_count());

}  // namespace retreever
