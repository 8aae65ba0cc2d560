#include "cuda_graph.h"

#include <atomic>
#include <stdexcept>

#include <ATen/core/Generator.h>
#include <torch/version.h>

// CUDAGraph::register_generator_state (generators other than the default one in a graph).
#define RETREEVER_GRAPH_GENERATORS (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

#ifdef RETREEVER_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace retreever {

namespace {
std::atomic<bool> g_graphs{true};
}  // namespace

bool cuda_graphs_enabled() { return g_graphs.load(); }
void set_cuda_graphs_enabled(bool on) { g_graphs.store(on); }

struct CudaGraph::Impl {
#ifdef RETREEVER_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
  bool ok = false;
  std::string error;
};

CudaGraph::CudaGraph() : impl_(std::make_unique<Impl>()) {}
CudaGraph::~CudaGraph() = default;

bool CudaGraph::captured() const { return impl_->ok; }
const std::string& CudaGraph::error() const { return impl_->error; }

#ifdef RETREEVER_CUDA

CudaGraphPool CudaGraphPool::make() {
  const auto id = at::cuda::graph_pool_handle();
  return {id.first, id.second};
}

bool CudaGraph::capture(const std::function<void()>& fn, CudaGraphPool pool,
                        const std::vector<at::Generator>& generators) {
  impl_->ok = false;
  impl_->error.clear();
  impl_->graph.reset();
#if !RETREEVER_GRAPH_GENERATORS
  if (!generators.empty()) {
    impl_->error = "this LibTorch (before 2.4) cannot register a generator with a CUDA graph";
    return false;
  }
#endif
  try {
    auto side = c10::cuda::getStreamFromPool();
    c10::cuda::getCurrentCUDAStream().synchronize();  // the side stream must see the inputs
    c10::cuda::CUDAStreamGuard guard(side);
    fn();  // warm-up, eagerly
    side.synchronize();
    impl_->graph = std::make_unique<at::cuda::CUDAGraph>();
#if RETREEVER_GRAPH_GENERATORS
    for (const auto& g : generators) impl_->graph->register_generator_state(g);
#endif
    // Thread-local: work that other threads do on the GPU meanwhile (the studio's inspector or
    // Scaling view while a run trains) neither fails nor joins this capture.
    impl_->graph->capture_begin({pool.a, pool.b}, cudaStreamCaptureModeThreadLocal);
    try {
      fn();
    } catch (const std::exception& e) {
      impl_->error = e.what();
      // End the capture so that the stream and the allocator leave capture mode; the partial
      // graph is invalid, so ending it reports an error, which is expected here.
      try {
        impl_->graph->capture_end();
      } catch (const std::exception&) {
      }
      cudaGetLastError();
      impl_->graph.reset();
      return false;
    }
    impl_->graph->capture_end();
    side.synchronize();
  } catch (const std::exception& e) {
    if (impl_->error.empty()) impl_->error = e.what();
    cudaGetLastError();
    impl_->graph.reset();
    return false;
  }
  impl_->ok = true;
  return true;
}

void CudaGraph::replay() {
  if (!impl_->ok) throw std::logic_error("CudaGraph::replay: nothing captured (" + impl_->error + ")");
  impl_->graph->replay();
}

#else

CudaGraphPool CudaGraphPool::make() { return {}; }

bool CudaGraph::capture(const std::function<void()>&, CudaGraphPool, const std::vector<at::Generator>&) {
  impl_->error = "built without CUDA";
  return false;
}

void CudaGraph::replay() { throw std::logic_error("CudaGraph::replay: built without CUDA"); }

#endif

}  // namespace retreever
