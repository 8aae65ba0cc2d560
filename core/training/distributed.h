// Data-parallel training across processes: where a process stands in a run, how the processes
// find each other, and the few collectives the Trainer needs (c10d: Gloo on the CPU, NCCL on GPUs
// where the build has it). Torch-free header: every c10d call lives in distributed.cpp, the one
// file that follows c10d's API changes between LibTorch versions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace at {
class Tensor;
}

namespace retreever {

// A collective or the rendezvous failed: another process died, stayed silent past the timeout,
// or the processes could not meet. The model was not updated by the step that threw.
struct CommunicationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// This process's place in a data-parallel run and how to reach the others.
struct DistributedSetup {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;  // on this machine
  std::string master_addr;  // TCP rendezvous (torchrun, SLURM): rank 0 serves a store there
  int master_port = 0;
  std::string store_file;        // or a file all processes share (the local launcher, --nproc)
  std::string backend = "gloo";  // "gloo" (CPU tensors) or "nccl" (CUDA tensors)
  int timeout_seconds = 300;     // a collective or the rendezvous waits at most this long
  int cuda_device = 0;  // nccl: the GPU of this process's tensors (several ranks in one process)
};

// The launcher variables: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
// (torchrun), or SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE with MASTER_ADDR
// and MASTER_PORT (srun); RETREEVER_STORE_FILE (our own launcher) instead of the address;
// RETREEVER_DIST_TIMEOUT (seconds). `get` is getenv or a stand-in for tests. nullopt when they
// describe no run of several processes; std::invalid_argument naming the variable when they are
// inconsistent.
std::optional<DistributedSetup> setup_from_environment(
    const std::function<const char*(const char*)>& get);

// Rows [first, second) of a global batch of `batch` rows that `rank` of `world` trains on:
// contiguous, in rank order, sizes differing by at most one, so that the slices put together are
// the batch.
inline std::pair<std::int64_t, std::int64_t> rank_rows(std::int64_t batch, int rank, int world) {
  return {batch * rank / world, batch * (rank + 1) / world};
}

// Whether this build can join a run over `backend` ("gloo", "nccl"): "" if it can, else why not.
std::string distributed_unsupported_reason(const std::string& backend = "gloo");

// The processes of one run. Every process must call the same collectives in the same order.
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `tensor` over every process, in place. Throws CommunicationError.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // Copies rank `root`'s `tensor` into every process's, in place. Throws CommunicationError.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  // true on every process when any process passes true. Throws CommunicationError.
  virtual bool any(bool flag) = 0;
};

// Joins the run: waits (at most the timeout) until all world_size processes arrived. Throws
// CommunicationError naming the address or file when they do not meet, and std::runtime_error
// ("this build has no distributed support: ...") when the build lacks c10d.
std::shared_ptr<ProcessGroup> join_process_group(const DistributedSetup& setup);

}  // namespace retreever
