// 'train --nproc N' and launcher variables: starting the local worker processes, and a worker's
// part (joining the run, reporting a lost peer). The collectives live in core/training/distributed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/training/distributed.h"

namespace retreever::cli {

// A worker lost contact with the others (CommunicationError); its launcher names the cause.
constexpr int kExitLostContact = 4;
// At most this many local processes for --nproc (beyond it the processes only fight for cores).
constexpr int kMaxProcessesPerCore = 4;

// The run this process is a worker of, read from the launcher variables (torchrun, srun, our own
// launcher), or nullopt. Throws UsageError when they are inconsistent.
std::optional<DistributedSetup> worker_setup();

// Checks --nproc against the batch and this machine before anything starts (UsageError otherwise),
// and that this build can train on several processes.
void check_process_count(long long nproc, long long batch, const std::string& device);

// Runs `retreever train ARGS` as `nproc` local worker processes (Gloo on the CPU; NCCL, one GPU
// each, on
// --device cuda) and waits for them. When one fails the others are stopped and one line says which
// and why. Returns the run's exit status.
int launch_workers(int nproc, const std::vector<std::string>& train_args, bool cuda,
                   const std::filesystem::path& out);

// Whether LibTorch sees a CUDA GPU (--device auto).
bool cuda_available();
// A worker started by torchrun or srun with several processes on its machine: its own GPU, the
// LOCAL_RANK-th visible one (before anything touches CUDA). Our launcher sets it itself.
void select_local_gpu(const DistributedSetup& setup);

// Reports a lost peer (to the launcher when it started us, else on stderr) and returns
// kExitLostContact.
int lost_contact(const CommunicationError& e, int rank);

}  // namespace retreever::cli
