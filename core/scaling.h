// Inference at growing context sizes: per-query latency and tokens read of a decoder against N,
// the O(log N) promise made visible (the studio's Scaling view; torch-free header).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace retreever {

struct ScalingPoint {
  std::string model;         // a registered decoder
  std::int64_t n = 0;        // context tokens
  double us_per_query = 0;   // median decode time over the queries, microseconds
  double prepare_ms = 0;     // median time to build the tree / project the keys / the latents
  double tokens_per_query = 0;
  // With ScalingOptions::graphs on a GPU, the same calls replayed from CUDA graphs (-1: not
  // captured, graph_error says why) and whether the replayed decode equals the eager one.
  double graph_us_per_query = -1, graph_prepare_ms = -1;
  bool graph_matches_eager = false;
  std::string graph_error;
  // The replayed time where there is one (launch costs gone, as an application would serve the
  // queries), else the eager one: what the Scaling view plots.
  double latency_us() const { return graph_us_per_query > 0 ? graph_us_per_query : us_per_query; }
  double preparation_ms() const { return graph_prepare_ms > 0 ? graph_prepare_ms : prepare_ms; }  // the same for prepare
  int cpu_threads = 0;  // the CPU threads it was measured with (0 on a GPU)
};

struct ScalingOptions {
  std::vector<std::string> models = {"tca", "ca", "perceiver"};
  std::string device = "auto";
  std::int64_t min_n = 1024, max_n = 1 << 20;  // N from min_n, times 4, up to max_n
  std::int64_t queries = 1024;
  int repeats = 3;
  std::int64_t d_model = 64, heads = 4;  // the paper's defaults, no encoder, batch 1
  std::string precision = "fp32";        // bf16: the decoders, context and queries in bfloat16
  bool graphs = false;                   // on a GPU, also time prepare and decode replayed from CUDA graphs
  // On the CPU, the threads to measure with (0: every core, default_cpu_threads), set on the calling
  // thread: a worker thread's own count is whatever LibTorch's was when it first ran (a training
  // run's tuner may have left one).
  int cpu_threads = 0;
};

// The bytes one size needs on the device (context, keys and values of every level, the queries,
// attention scores of the widest read), for stopping before memory runs out.
double scaling_bytes(const ScalingOptions& options, std::int64_t n);

// The largest N of min_n, 4 min_n, ... max_n whose scaling_bytes fit in `available_bytes` with a
// margin (0: no limit, max_n's own size); 0 when not even min_n fits.
std::int64_t largest_fitting_n(const ScalingOptions& options, double available_bytes);

// Measures every model at N = min_n, 4 min_n, ... max_n, calling `point` as each is measured
// (on the calling thread), and stops early when `stop` becomes true or the next size would not fit
// in `available_bytes` (0: no limit). Perceiver IO gets as many latents as TCA reads. Returns the
// largest N measured. Throws std::runtime_error naming the problem (e.g. CUDA missing).
std::int64_t measure_scaling(const ScalingOptions& options, double available_bytes,
                             const std::function<void(const ScalingPoint&)>& point,
                             const std::atomic<bool>* stop = nullptr);

}  // namespace retreever
