// 'train --nproc N' and launcher variables: starting the local worker processes, and a worker's
// part (joining the run, reporting a lost peer). The collectives live in core/training/distributed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/training/distributed.h"

namespace retreever {
class Trainer;
}

namespace retreever::cli {

// A worker lost contact with the others (CommunicationError); its launcher names the cause.
constexpr int kExitLostContact = 4;
// At most this many local processes for --nproc (beyond it the processes only fight for cores).
constexpr int kMaxProcessesPerCore = 4;

// The run this process is a worker of, read from the launcher variables (torchrun, srun, our own
// launcher), or nullopt. A worker of torchrun or srun gets its own GPU (the LOCAL_RANK-th visible).
// Throws UsageError when the variables are inconsistent or --nproc (nproc_given) is given as well.
std::optional<DistributedSetup> worker_setup(bool nproc_given);

// train --nproc N for a run of `config`: checks N against the batch and this machine (UsageError),
// and for N > 1 runs this command line again (without --nproc) as N local workers (Gloo on the CPU;
// NCCL, one GPU each, on --device cuda), waits for them and returns the run's exit status: when one
// fails the others are stopped and one line says which and why. nullopt for N = 1: train here.
std::optional<int> launch_workers(long long nproc, const Config& config,
                                  const std::filesystem::path& out);

// A worker joins its run (setup from worker_setup): 0, or the exit status after reporting why not.
int join_run(Trainer& trainer, DistributedSetup setup);

// Reports a lost peer (to the launcher when it started us, else on stderr) and returns
// kExitLostContact.
int lost_contact(const CommunicationError& e, int rank);

}  // namespace retreever::cli
