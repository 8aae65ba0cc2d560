// A CUDA graph of a piece of work with fixed shapes (inference decode, tree building): capture()
// runs fn once eagerly on a side stream (the warm-up: handles, workspaces, allocator), then records
// a second run; replay() runs the recording on the current stream at a fraction of the launch
// cost. The tensors fn reads must stay alive at the same addresses (copy new inputs into them),
// and what fn assigned during the capture is overwritten in place by every replay.
// When the capture fails (an operation that synchronises, a CPU tensor, no CUDA), capture()
// returns false with the reason in error() and leaves nothing capturing: run fn eagerly instead.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace at {
struct Generator;
}

namespace retreever {

// Whether training replays its steps from CUDA graphs where it can (default on; `train --graphs off`
// and `bench --graphs off` turn it off for the process).
bool cuda_graphs_enabled();
void set_cuda_graphs_enabled(bool on);

// A memory pool that several graphs' captures share (at::cuda::graph_pool_handle): their work memory
// then overlaps, which is safe where they never run concurrently and each graph's outputs are read
// before another graph replays (the training step's graphs). Empty: each graph has a pool of its own.
struct CudaGraphPool {
  unsigned long long a = 0, b = 0;
  bool empty() const { return a == 0 && b == 0; }
  static CudaGraphPool make();  // empty without CUDA
};

class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // `generators`: CUDA generators other than the default one that fn draws from (dropout's
  // stream): registered with the graph, each replay draws from their seed and offset at that time.
  bool capture(const std::function<void()>& fn, CudaGraphPool pool = {},
               const std::vector<at::Generator>& generators = {});
  void replay();  // throws when nothing was captured
  bool captured() const;
  const std::string& error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace retreever
