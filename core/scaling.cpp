#include "core/scaling.h"

#include <algorithm>
#include <stdexcept>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "core/config.h"
#include "core/cuda/cuda_graph.h"
#include "core/decoders/decoder.h"
#include "core/nn/blocks.h"
#include "core/registry.h"
#include "core/training/device.h"
#include "core/training/precision.h"
#include "core/tree/tree_shape.h"

namespace retreever {

namespace {

// The point's prepare and decode replayed from CUDA graphs: the launch costs mostly go.
void time_replays(DecoderImpl& decoder, const std::shared_ptr<Memory>& memory, const torch::Tensor& context,
                  const torch::Tensor& x, const torch::Tensor& queries, int repeats, ScalingPoint& p) {
  const auto device = queries.device();
  CudaGraph decode, prepare;
  DecodeOutput replayed;
  std::shared_ptr<Memory> built;
  if (decode.capture([&] { replayed = decoder.decode(*memory, queries, DecodeRequest{}); })) {
    p.graph_us_per_query = 1e6 * median_seconds(device, repeats, [&] { decode.replay(); }) / double(queries.size(1));
    const auto eager = decoder.decode(*memory, queries, DecodeRequest{}).encoding;
    const double tol = eager.scalar_type() == torch::kFloat ? 1e-5 : 1e-2;
    p.graph_matches_eager = torch::allclose(eager, replayed.encoding, tol, tol);
  } else {
    p.graph_error = "decode: " + decode.error();
  }
  if (prepare.capture([&] { built = decoder.prepare(context, x); }))
    p.graph_prepare_ms = 1e3 * median_seconds(device, repeats, [&] { prepare.replay(); });
  else
    p.graph_error += (p.graph_error.empty() ? "" : "; ") + std::string("prepare: ") + prepare.error();
}

}  // namespace

double scaling_bytes(const ScalingOptions& o, std::int64_t n) {
  const double D = double(o.d_model), N = double(n), Q = double(o.queries), H = double(o.heads);
  // Context, then keys and values of every tree level (about 2N nodes) or of the N tokens, with the
  // temporaries of building them. CA's read is the widest: its scores [H, Q, N] come in chunks of
  // queries (MultiHeadAttention::attend_shared), at least one query's, with their softmax and a copy.
  const double chunk = std::max(H * N, std::min(H * Q * N, double(default_max_score_elements(resolve_device(o.device).is_cuda()))));
  return 4 * (N * D * 10 + Q * D * 8 + chunk * 3);
}

std::int64_t largest_fitting_n(const ScalingOptions& o, double available_bytes) {
  std::int64_t largest = 0;
  for (std::int64_t n = o.min_n; n <= o.max_n; n *= 4) {
    if (available_bytes > 0 && scaling_bytes(o, n) > 0.7 * available_bytes) break;
    largest = n;
    if (n > o.max_n / 4) break;  // n * 4 would pass max_n (and could overflow)
  }
  return largest;
}

std::int64_t measure_scaling(const ScalingOptions& o, double available_bytes,
                             const std::function<void(const ScalingPoint&)>& point, const std::atomic<bool>* stop) {
  if (o.min_n < 2 || o.max_n < o.min_n || o.queries <= 0)
    throw std::invalid_argument("scaling: sizes must satisfy 2 <= min_n <= max_n, and queries > 0");
  torch::NoGradGuard no_grad;
  const auto device = resolve_device(o.device);
  Config c;
  c.d_model = o.d_model;
  c.heads = o.heads;
  c.encoder_layers = 0;
  const int threads = device.is_cpu() ? (o.cpu_threads > 0 ? o.cpu_threads : default_cpu_threads()) : 0;
  if (threads > 0) torch::set_num_threads(threads);
  const auto dtype = precision_dtype(o.precision);
  const bool graphs = o.graphs && device.is_cuda();
  const auto fitting = largest_fitting_n(o, available_bytes);
  std::int64_t largest = 0;
  for (std::int64_t n = o.min_n; n <= fitting; n *= 4) {
    if (stop && stop->load()) break;
    torch::manual_seed(0);
    const auto opts = torch::TensorOptions().device(device);
    const auto context = torch::randn({1, n, c.d_model}, opts).to(dtype);
    const auto x = torch::linspace(-1, 1, n, opts).view({1, n, 1});  // the leaves' order only: float32 in any precision
    const auto queries = torch::randn({1, o.queries, c.d_model}, opts).to(dtype);
    const auto tca_tokens = TreeShape::of(n, c.branch_factor).tokens_per_query();
    for (const auto& name : o.models) {
      if (stop && stop->load()) break;
      auto decoder = decoder_info(name).make(sized_like(c, name, tca_tokens));
      decoder->to(device, dtype);
      decoder->eval();
      std::shared_ptr<Memory> memory;
      ScalingPoint p;
      p.model = name;
      p.n = n;
      if (threads > 0) p.cpu_threads = torch::get_num_threads();  // this thread's count, as measured
      p.prepare_ms = 1e3 * median_seconds(device, o.repeats, [&] { memory = decoder->prepare(context, x); });
      decoder->decode(*memory, queries, DecodeRequest{});  // warm caches and allocators
      p.us_per_query = 1e6 * median_seconds(device, o.repeats, [&] { decoder->decode(*memory, queries, DecodeRequest{}); }) /
                       double(o.queries);
      p.tokens_per_query = double(decoder->tokens_per_query(n));
      if (graphs) time_replays(*decoder, memory, context, x, queries, o.repeats, p);
      point(p);
    }
    largest = n;
    if (n > o.max_n / 4) break;  // n * 4 would pass max_n (and could overflow)
  }
  return largest;
}

}  // namespace retreever
