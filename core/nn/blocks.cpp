#include "blocks.h"

#include "core/cuda/cuda_ops.h"
#include "core/nn/group_attention.h"
#include "core/nn/keep_hash.h"
#include "core/nn/paired_linear.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/StringUtil.h>

#include <cmath>
#include <map>
#include <mutex>
#include <limits>
#include <stdexcept>
#include <torch/nn/functional.h>

namespace retreever {
namespace F = torch::nn::functional;

namespace {
// Up to this many query-key pairs per row, attention over keys of its own runs the group kernels
// on the CPU (group_attention.h).
constexpr std::int64_t kGroupAttentionMax = 256;
}  // namespace

MultiHeadAttentionImpl::MultiHeadAttentionImpl(std::int64_t d_model, std::int64_t heads)
    : heads_(heads), head_dim_(d_model / heads), scale_(1.0 / std::sqrt(double(d_model / heads))) {
  to_q_ = register_module("to_q", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_model).bias(false)));
  to_kv_ = register_module("to_kv", torch::nn::Linear(torch::nn::LinearOptions(d_model, 2 * d_model).bias(false)));
  to_out_ = register_module("to_out", torch::nn::Linear(d_model, d_model));
}

double masked_score(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kHalf: return double(std::numeric_limits<c10::Half>::lowest()) / 2;
    case torch::kBFloat16: return double(std::numeric_limits<c10::BFloat16>::lowest()) / 2;
    case torch::kDouble: return std::numeric_limits<double>::lowest() / 2;
    default: return double(std::numeric_limits<float>::lowest() / 2);
  }
}

// torch::linear, or its CUDA twin whose products and gradients run in our kernels (cuda_ops.h).
static torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return use_cuda_linear(x, weight, bias) ? linear_cuda(x, weight, bias) : torch::linear(x, weight, bias);
}
static torch::Tensor linear(const torch::Tensor& x, const torch::nn::Linear& layer) {
  return linear(x, layer->weight, layer->bias);
}

// True when every batch row holds the same values through a zero stride (an expand).
static bool is_shared_over_batch(const torch::Tensor& x) { return x.dim() >= 2 && x.size(0) > 1 && x.stride(0) == 0; }

static torch::Tensor split_heads(const torch::Tensor& x, std::int64_t h, std::int64_t dh) {
  auto sizes = x.sizes().vec();
  sizes.back() = h;
  sizes.push_back(dh);
  return x.view(sizes);
}

// The scale is folded into the weight: a multiply of D x D numbers instead of one per query.
torch::Tensor MultiHeadAttentionImpl::project_query(const torch::Tensor& x) {
  return split_heads(torch::linear(x, to_q_->weight * scale_), heads_, head_dim_);
}
// Keys and values come from the two row blocks of one weight (paired_linear.h).
std::pair<torch::Tensor, torch::Tensor> MultiHeadAttentionImpl::project_key_value(const torch::Tensor& x) {
  auto [k, v] = paired_linear(x, to_kv_->weight, {});
  return {split_heads(k, heads_, head_dim_), split_heads(v, heads_, head_dim_)};
}
torch::Tensor MultiHeadAttentionImpl::project_out(const torch::Tensor& x) {
  return linear(x.flatten(-2), to_out_);
}

// Scores [B,M,S,H] with masked keys (mask [B,M,S], or [B,1,S] for every query; true = keep) pushed
// to masked_score.
static torch::Tensor masked_scores(const torch::Tensor& scores, const torch::Tensor& mask) {
  return mask.defined() ? scores.masked_fill(mask.unsqueeze(-1).logical_not(), masked_score(scores.scalar_type()))
                        : scores;
}

namespace {
thread_local DropoutStream* current_stream = nullptr;
}  // namespace

void DropoutStream::reseed(std::uint64_t seed) {
  seed_ = seed;
  for (auto& [device, g] : generators_) {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
}

// A clone of the device's default generator (CPU or CUDA alike), seeded with the stream's seed.
at::Generator DropoutStream::generator(const torch::Device& device) {
  const std::pair<int, int> key{int(device.type()), int(device.has_index() ? device.index() : -1)};
  auto it = generators_.find(key);
  if (it == generators_.end()) {
    auto global = at::globalContext().defaultGenerator(device);
    at::Generator g;
    {
      std::lock_guard<std::mutex> lock(global.mutex());
      g = global.clone();
    }
    g.set_current_seed(seed_);
    it = generators_.emplace(key, std::move(g)).first;
  }
  return it->second;
}

DropoutScope::DropoutScope(DropoutStream& stream) : previous_(current_stream) { current_stream = &stream; }
DropoutScope::~DropoutScope() { current_stream = previous_; }

namespace {
thread_local DropoutTape* current_tape = nullptr;
}  // namespace

DropoutTape::DropoutTape(Mode m, std::vector<torch::Tensor> given)
    : masks(std::move(given)), mode(m), previous_(current_tape) {
  current_tape = this;
}
DropoutTape::~DropoutTape() { current_tape = previous_; }

torch::Tensor DropoutTape::next(at::IntArrayRef sizes) {
  if (replayed_ >= masks.size())
    throw std::logic_error(c10::str("dropout replay: mask ", replayed_ + 1, " of shape ", sizes,
                                    " asked for, but the tape holds ", masks.size()));
  const auto& m = masks[replayed_];
  if (m.sizes() != sizes)
    throw std::logic_error(c10::str("dropout replay: mask ", replayed_ + 1, " asked for shape ", sizes,
                                    ", the tape holds ", m.sizes()));
  ++replayed_;
  return m;
}

namespace {
// Elements [i0, i1) of a CPU keep mask keyed by `key` (keep_hash.h). With AVX2 where the CPU has it.
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
__attribute__((target_clones("avx2", "default")))
#endif
#endif
void fill_keep_range(float* out, std::int64_t i0, std::int64_t i1, std::uint64_t key, std::uint32_t threshold,
                     float scale) {
  for (std::int64_t i = i0; i < i1; ++i) out[i] = keep_bits(std::uint64_t(i), key) < threshold ? scale : 0.0f;
}
}  // namespace

// Counter-based, so the numbers do not depend on the thread count, and about ten times faster than
// bernoulli_ (one serial generator call per element in LibTorch 1.13's CPU build without MKL).
torch::Tensor keep_mask_for_key(at::IntArrayRef sizes, std::uint64_t key, double p) {
  auto mask = torch::empty(sizes, torch::kFloat);
  auto* out = mask.data_ptr<float>();
  const auto threshold = keep_threshold(1 - p);
  const auto scale = float(1 / (1 - p));
  at::parallel_for(0, mask.numel(), 1 << 15, [&](std::int64_t i0, std::int64_t i1) {
    fill_keep_range(out, i0, i1, key, threshold, scale);
  });
  return mask;
}

namespace {
// The current DropoutStream's generator for a device, or none (the global one).
c10::optional<at::Generator> stream_generator(const torch::Device& device) {
  if (current_stream) return current_stream->generator(device);
  return {};
}

// Dropout at p for a kernel on `device`: its key drawn from the stream's generator there.
KernelDropout stream_kernel_dropout(double p, const torch::Device& device) {
  return draw_kernel_dropout(p, device, stream_generator(device));
}
}  // namespace

// Drawn in float32 whatever the dtype asked, so runs in other precisions draw the same masks.
torch::Tensor keep_mask(at::IntArrayRef sizes, double p, const torch::TensorOptions& options) {
  if (current_tape && current_tape->mode == DropoutTape::Mode::replay) return current_tape->next(sizes);
  const auto generator = stream_generator(options.device());
  torch::Tensor mask;
  if (options.device().is_cpu()) {
    // One draw from the generator keys the whole mask, so the stream advances by one per mask.
    auto* cpu = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
    std::uint64_t key;
    {
      std::lock_guard<std::mutex> lock(cpu->mutex_);
      key = cpu->random64();
    }
    mask = keep_mask_for_key(sizes, key, p);
  } else if (options.device().is_cuda() && cuda_kernels_available()) {
    // The same hash keyed by one int64 drawn on the device, as maybe_dropout's kernel draws it.
    mask = keep_mask_cuda(sizes, draw_kernel_dropout(p, options.device(), generator));
  } else {
    mask = torch::empty(sizes, options.dtype(torch::kFloat)).bernoulli_(1 - p, generator);
    mask.div_(1 - p);
  }
  if (options.dtype() != torch::kFloat) mask = mask.to(options.dtype().toScalarType());
  if (current_tape) current_tape->masks.push_back(mask);
  return mask;
}

torch::Tensor maybe_dropout(const torch::Tensor& x, double p) {
  if (p <= 0) return x;
  // On a GPU the mask keep_mask would draw, applied in one kernel with no mask in memory (a tape
  // keeps its masks, so it takes keep_mask).
  if (!current_tape && use_cuda_dropout(x))
    return dropout_cuda(x, stream_kernel_dropout(p, x.device()));
  return x * keep_mask(x.sizes(), p, x.options());
}

static torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& mask) {
  return torch::softmax(masked_scores(scores, mask), 2);  // over S, per head
}

std::int64_t default_max_score_elements(bool cuda) { return std::int64_t(1) << (cuda ? 28 : 24); }

AttentionResult MultiHeadAttentionImpl::attend_shared(const torch::Tensor& q,
                                                      const torch::Tensor& k,
                                                      const torch::Tensor& v,
                                                      const torch::Tensor& mask,
                                                      bool need_weights,
                                                      std::int64_t max_score_elements) {
  const auto B = q.size(0), M = q.size(1), N = k.size(1);
  // Queries shared over the batch (a stride-0 batch, e.g. the copy task's positions) are read in one
  // matmul per head against every row's keys at once on the CPU. Not on a GPU: there the backward's
  // query gradient becomes one matmul over B*N keys with a few output tiles (a quarter of a training
  // step at N = 256); a batched matmul over (row, head) takes the queries copied per row instead.
  const bool shared = is_shared_over_batch(q) && q.device().is_cpu();
  if (!shared && q.device().is_cpu() && M * N <= kGroupAttentionMax) {
    // Few queries and keys per row (the aggregator's children): the group kernels, no BLAS calls.
    auto keep = mask.defined() && mask.dim() == 2 ? mask.view({B, 1, N}) : mask;  // [B,M|1,N]
    auto attn = masked_softmax(group_scores(q, k), keep);                          // [B,M,N,H]
    AttentionResult r;
    r.out = project_out(group_mix(maybe_dropout(attn, active_dropout()), v));
    if (need_weights) r.weights = attn.mean(-1);
    return r;
  }
  const bool dropping = active_dropout() > 0;
  if (!shared && !need_weights && M * N <= kGroupAttentionMax &&
      (!mask.defined() || (mask.dim() == 2 && mask.scalar_type() == torch::kBool)) && use_cuda_kernels(q, head_dim_)) {
    // The same on a GPU, where the CUDA kernels are built: one launch each way (cuda_ops.h). Under
    // dropout the kernel takes the keep mask the tensor path below draws for its [B,H,M,N] weights
    // (one chunk at these sizes), so the two paths draw alike.
    AttentionResult r;
    const auto drop = dropping ? keep_mask({B, heads_, M, N}, active_dropout(), q.options()) : torch::Tensor();
    r.out = project_out(group_attention_cuda(q, k, v, {}, mask, drop));
    return r;
  }
  if (!need_weights && !(dropping && current_tape) && use_cuda_dense_attention(q, k, v, mask)) {
    // Many queries over every key on a GPU: the fused kernels, no [B,H,M,N] scores (cuda_ops.h).
    // Under dropout they draw the mask themselves, from a key drawn from the dropout stream (not
    // where a tape records or replays masks: those take the tensor path's).
    AttentionResult r;
    const auto drop = dropping ? stream_kernel_dropout(active_dropout(), q.device()) : KernelDropout{};
    r.out = project_out(dense_attention_cuda(q, k, v, mask, -1, drop));
    return r;
  }
  if (max_score_elements <= 0) max_score_elements = default_max_score_elements(q.is_cuda());
  // Otherwise batched matmuls at every key count: on the CPU they beat broadcast products even for
  // two keys, whose backward runs strided reductions.
  const auto kh = shared ? torch::Tensor() : k.permute({0, 2, 3, 1}).contiguous();  // [B,H,dh,N]
  const auto k_rows = shared ? k.permute({2, 3, 0, 1}).reshape({heads_, head_dim_, B * N})
                             : torch::Tensor();  // [H,dh,B*N]
  const auto vh = v.transpose(1, 2).contiguous();  // [B,H,N,dh]
  const std::int64_t chunk =
      std::max<std::int64_t>(1, std::min<std::int64_t>(M, max_score_elements / std::max<std::int64_t>(1, B * heads_ * N)));
  std::vector<torch::Tensor> outs, weights;
  for (std::int64_t m0 = 0; m0 < M; m0 += chunk) {
    const auto m1 = std::min(M, m0 + chunk);
    torch::Tensor scores;  // [B,H,m,N]
    if (shared) {
      // One matmul per head against every row's keys at once, instead of a B*H loop.
      auto qs = q.select(0, 0).slice(0, m0, m1).transpose(0, 1);            // [H,m,dh]
      scores = torch::matmul(qs, k_rows).view({heads_, m1 - m0, B, N}).permute({2, 0, 1, 3});
    } else {
      auto qh = q.slice(1, m0, m1).transpose(1, 2).contiguous();  // [B,H,m,dh]
      scores = torch::matmul(qh, kh);
    }
    if (mask.defined()) {
      auto keep = mask.dim() == 2 ? mask.view({B, 1, 1, N}) : mask.slice(1, m0, m1).unsqueeze(1);
      scores = scores.masked_fill(keep.logical_not(), masked_score(scores.scalar_type()));
    }
    // Under autograd on a GPU, a backward of one pass over the [B,H,m,N] weights instead of two.
    auto attn = scores.requires_grad() && use_cuda_softmax(scores) ? softmax_cuda(scores) : torch::softmax(scores, -1);
    auto o = torch::matmul(maybe_dropout(attn, active_dropout()), vh);
    outs.push_back(o.transpose(1, 2));  // [B,m,H,dh]
    if (need_weights) weights.push_back(attn.mean(1));
  }
  AttentionResult r;
  r.out = project_out(outs.size() == 1 ? outs[0] : torch::cat(outs, 1));
  if (need_weights) r.weights = weights.size() == 1 ? weights[0] : torch::cat(weights, 1);
  return r;
}

// Few keys per query: each query is a group of its own (group_attention.h).
torch::Tensor MultiHeadAttentionImpl::scores_each(const torch::Tensor& q, const torch::Tensor& keys,
                                                  const torch::Tensor& rows) {
  const auto B = rows.size(0), M = rows.size(1), S = rows.size(2);
  return group_scores_at(q.reshape({B * M, 1, heads_, head_dim_}), keys, rows.reshape({B * M, S}))
      .view({B, M, S, heads_});  // [B,M,S,H]
}

torch::Tensor MultiHeadAttentionImpl::head_averaged_weights(const torch::Tensor& scores,
                                                            const torch::Tensor& mask) {
  return masked_softmax(scores, mask).mean(-1);
}

torch::Tensor MultiHeadAttentionImpl::head_log_weights(const torch::Tensor& scores, const torch::Tensor& mask) {
  auto masked = masked_scores(scores, mask);
  // On a GPU, a log-softmax over the S of [B,M,S,H] (a few children, H heads after them) takes a
  // kernel made for wide strided rows, 10x slower than its warp kernel over the last dimension:
  // the heads go in front of S for it and back (a view). Not on the CPU, where the last dimension's
  // kernel is 3x slower for rows of two (copy task, batch 32: 0.94 ms against 0.29).
  if (masked.is_cuda() && masked.dim() == 4)
    return torch::log_softmax(masked.transpose(2, 3).contiguous(), -1).transpose(2, 3);
  return torch::log_softmax(masked, 2);
}

torch::Tensor MultiHeadAttentionImpl::head_averaged_log_weights(const torch::Tensor& scores,
                                                                const torch::Tensor& mask) {
  return head_averaged(head_log_weights(scores, mask));
}

torch::Tensor MultiHeadAttentionImpl::head_averaged(const torch::Tensor& log_weights) {
  return torch::logsumexp(log_weights, -1) - std::log(double(log_weights.size(-1)));
}

AttentionResult MultiHeadAttentionImpl::attend_scores(const torch::Tensor& scores,
                                                      const torch::Tensor& values,
                                                      const torch::Tensor& rows,
                                                      const torch::Tensor& mask,
                                                      bool need_weights) {
  auto attn = masked_softmax(scores, mask);             // [B,M,S,H]
  const auto B = rows.size(0), M = rows.size(1), S = rows.size(2);
  auto dropped = maybe_dropout(attn, active_dropout());
  auto out = group_mix_at(dropped.reshape({B * M, 1, S, heads_}), values, rows.reshape({B * M, S}))
                 .view({B, M, heads_, head_dim_});

  AttentionResult r;
  r.out = project_out(out);
  if (need_weights) r.weights = attn.mean(-1);
  return r;
}

AttentionResult MultiHeadAttentionImpl::attend_each(const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v,
                                                    const torch::Tensor& mask,
                                                    bool need_weights) {
  // Query m's keys are rows m S .. m S + S - 1 of a table [B, M S, H, dh].
  const auto B = k.size(0), M = k.size(1), S = k.size(2);
  const auto rows = torch::arange(M * S, torch::TensorOptions().dtype(torch::kLong).device(k.device()))
                        .view({1, M, S})
                        .expand({B, M, S});
  const auto table = [&](const torch::Tensor& x) { return x.reshape({B, M * S, heads_, head_dim_}); };
  return attend_scores(scores_each(q, table(k), rows), table(v), rows, mask, need_weights);
}

AttentionResult MultiHeadAttentionImpl::forward(const torch::Tensor& query,
                                                const torch::Tensor& context,
                                                const torch::Tensor& mask, bool need_weights) {
  auto [k, v] = project_key_value(context);
  return attend_shared(project_query(query), k, v, mask, need_weights);
}

FeedForwardImpl::FeedForwardImpl(std::int64_t d_model, std::int64_t hidden) {
  in_ = register_module("expand", torch::nn::Linear(d_model, 2 * hidden));
  out_ = register_module("contract", torch::nn::Linear(hidden, d_model));
}

torch::Tensor FeedForwardImpl::hidden(const torch::Tensor& x) {
  // The value and gate halves of the expansion, both contiguous (GELU's CPU kernel is about 5x
  // slower on a strided half; paired_linear.h). On a GPU their product is one kernel each way.
  auto [value, gate] = paired_linear(x, in_->weight, in_->bias);
  if (use_cuda_geglu(value, gate)) return geglu_cuda(value, gate);
  return value * torch::gelu(gate);
}

torch::Tensor FeedForwardImpl::output(const torch::Tensor& h, const torch::Tensor& bias_scale) {
  if (!bias_scale.defined()) return linear(h, out_);
  return torch::linear(h, out_->weight) + out_->bias * bias_scale;
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  return maybe_dropout(linear(hidden(x), out_), active_dropout());
}

TransformerLayerImpl::TransformerLayerImpl(std::int64_t d_model, std::int64_t heads,
                                           std::int64_t ff_dim, bool reference)
    : reference_(reference) {
  norm_attn_ = register_module("norm_attn", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  attn_ = register_module("attn", MultiHeadAttention(d_model, heads));
  norm_ff_ = register_module("norm_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  ff_ = register_module("ff", FeedForward(d_model, ff_dim));
}

std::pair<torch::Tensor, torch::Tensor> TransformerLayerImpl::attend(const torch::Tensor& x,
                                                                    const torch::Tensor& key_mask) {
  auto h = layer_norm(norm_attn_, x);
  if (!reference_) {
    auto y = x + attn_->forward(h, h, key_mask).out;
    return {y, layer_norm(norm_ff_, y)};
  }
  auto y = h + attn_->forward(h, x, key_mask).out;
  auto n = layer_norm(norm_ff_, y);
  return {n, n};  // the feed-forward adds to its normalised input
}

torch::Tensor TransformerLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
  auto [y, n] = attend(x, key_mask);
  return y + ff_->forward(n);
}

torch::Tensor TransformerLayerImpl::forward_mean(const torch::Tensor& x, const torch::Tensor& key_mask) {
  if (ff_->active_dropout() > 0) {  // dropout on every token's feed-forward output: no shortcut
    auto z = forward(x, key_mask);
    if (!key_mask.defined()) return z.mean(1);
    auto m = key_mask.unsqueeze(-1).to(z.dtype());
    return (z * m).sum(1) / m.sum(1).clamp_min(1.0);
  }
  auto [y, n] = attend(x, key_mask);                  // [B,N,D]
  auto g = ff_->hidden(n);                            // [B,N,F]
  // mean(y + W g + b) = mean(y) + W mean(g) + b, the bias only where a token is real.
  if (!key_mask.defined()) return y.mean(1) + ff_->output(g.mean(1), {});
  auto m = key_mask.unsqueeze(-1).to(y.dtype());      // [B,N,1]
  auto count = m.sum(1);                              // [B,1]
  auto inverse = 1.0 / count.clamp_min(1.0);
  return (y * m).sum(1) * inverse + ff_->output((g * m).sum(1) * inverse, (count > 0).to(y.dtype()));
}

TransformerEncoderImpl::TransformerEncoderImpl(std::int64_t layers, std::int64_t d_model,
                                               std::int64_t heads, std::int64_t ff_dim,
                                               bool final_norm, bool reference) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < layers; ++i) layers_->push_back(TransformerLayer(d_model, heads, ff_dim, reference));
  if (reference && layers > 1) {
    torch::NoGradGuard no_grad;
    const auto first = layers_[0]->named_parameters();
    for (std::int64_t i = 1; i < layers; ++i)
      for (auto& p : layers_[i]->named_parameters()) p.value().copy_(first[p.key()]);
  }
  if (layers > 0 && final_norm)
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
}

torch::Tensor TransformerEncoderImpl::forward(torch::Tensor x, const torch::Tensor& key_mask) {
  for (const auto& layer : *layers_) x = layer->as<TransformerLayer>()->forward(x, key_mask);
  return norm_ ? layer_norm(norm_, x) : x;
}

torch::Tensor TransformerEncoderImpl::forward_mean(torch::Tensor x, const torch::Tensor& key_mask) {
  if (layers_->size() == 0 || norm_) throw std::logic_error("forward_mean needs layers and no final LayerNorm");
  const auto last = layers_->size() - 1;
  for (std::size_t i = 0; i < last; ++i) x = layers_[i]->as<TransformerLayer>()->forward(x, key_mask);
  return layers_[last]->as<TransformerLayer>()->forward_mean(x, key_mask);
}

MLPImpl::MLPImpl(std::int64_t in, std::int64_t hidden, std::int64_t out, std::int64_t depth,
                 Activation act)
    : act_(act) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < depth; ++i) {
    const auto a = i == 0 ? in : hidden;
    const auto b = i == depth - 1 ? out : hidden;
    layers_->push_back(torch::nn::Linear(a, b));
  }
}

torch::Tensor MLPImpl::forward(torch::Tensor x) {
  const auto n = layers_->size();
  for (size_t i = 0; i < n; ++i) {
    const auto* layer = layers_[i]->as<torch::nn::Linear>();
    x = linear(x, layer->weight, layer->bias);
    if (i + 1 < n) x = act_ == Activation::ELU ? torch::elu(x) : torch::relu(x);
  }
  return x;
}

void set_dropout(torch::nn::Module& root, double p) {
  const auto set = [p](torch::nn::Module* m) {
    if (auto* a = dynamic_cast<MultiHeadAttentionImpl*>(m)) a->dropout = a->spared_from_dropout ? 0 : p;
    if (auto* f = dynamic_cast<FeedForwardImpl*>(m)) f->dropout = p;
  };
  set(&root);  // root itself by pointer: a module under construction has no shared_ptr yet
  for (auto& m : root.modules(/*include_self=*/false)) set(m.get());
}

bool dropout_active(const torch::nn::Module& root) {
  const auto active = [](const torch::nn::Module* m) {
    if (const auto* a = dynamic_cast<const MultiHeadAttentionImpl*>(m)) return a->active_dropout() > 0;
    if (const auto* f = dynamic_cast<const FeedForwardImpl*>(m)) return f->active_dropout() > 0;
    return false;
  };
  if (active(&root)) return true;
  for (const auto& m : root.modules(/*include_self=*/false))
    if (active(m.get())) return true;
  return false;
}

torch::Tensor layer_norm(const torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  auto& m = *norm.ptr();
  if (m.options.normalized_shape().size() == 1 && m.options.elementwise_affine() &&
      use_cuda_layer_norm(x, m.weight, m.bias))
    return layer_norm_cuda(x, m.weight, m.bias, m.options.eps());
  return m.forward(x);
}

torch::Tensor sinusoidal_positions(std::int64_t start, std::int64_t n, std::int64_t d,
                                   const torch::TensorOptions& options) {
  auto opts = options.dtype(torch::kFloat32);
  auto pos = torch::arange(start, start + n, opts).unsqueeze(1);                  // [n,1]
  auto i = torch::arange(0, d, 2, opts);                                        // [d/2]
  auto freq = torch::exp(i * (-std::log(10000.0) / double(d)));
  auto angles = pos * freq;                                                     // [n, d/2]
  auto pe = torch::zeros({n, d}, opts);
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)},
                torch::sin(angles));
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)},
                torch::cos(angles).slice(1, 0, d / 2));
  return pe;
}

BlockStyle BlockStyle::reference(bool raw_query) {
  BlockStyle s;
  s.norm_kv = false;
  s.normed_residual = true;
  s.raw_query = raw_query;
  return s;
}

CrossAttentionBlockImpl::CrossAttentionBlockImpl(std::int64_t d_model, std::int64_t heads,
                                                 std::int64_t ff_dim, BlockStyle style)
    : style_(style) {
  norm_q_ = register_module("norm_q", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  if (style.norm_kv)
    norm_kv_ = register_module("norm_kv", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  attention = register_module("attention", MultiHeadAttention(d_model, heads));
  norm_ff_ = register_module("norm_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  ff_ = register_module("ff", FeedForward(d_model, ff_dim));
}

std::pair<torch::Tensor, torch::Tensor> CrossAttentionBlockImpl::keys_values(
    const torch::Tensor& nodes) {
  return attention->project_key_value(norm_kv_ ? layer_norm(norm_kv_, nodes) : nodes);
}

BlockQueries CrossAttentionBlockImpl::queries(const torch::Tensor& query) {
  // Queries shared by every batch row (the copy task) are normed and projected once and stay shared.
  if (is_shared_over_batch(query)) {
    auto one = queries(query.narrow(0, 0, 1));
    return {query, one.normed.expand({query.size(0), -1, -1}), one.q.expand({query.size(0), -1, -1, -1})};
  }
  auto normed = layer_norm(norm_q_, query);
  return {query, normed, attention->project_query(normed)};
}

torch::Tensor CrossAttentionBlockImpl::finish(const BlockQueries& query, const torch::Tensor& attended) {
  if (!style_.normed_residual) {
    auto y = query.input + attended;
    return y + ff_->forward(layer_norm(norm_ff_, y));
  }
  auto y = query.normed + attended;
  if (style_.raw_query) y = y + query.input;
  auto n = layer_norm(norm_ff_, y);
  return n + ff_->forward(n);
}

BlockQueries CrossAttentionBlockImpl::twice(const BlockQueries& query) const {
  return {torch::cat({query.input, query.input}),
          style_.normed_residual ? torch::cat({query.normed, query.normed}) : torch::Tensor(), {}};
}

torch::Tensor CrossAttentionBlockImpl::read(const torch::Tensor& query, const torch::Tensor& keys,
                                            const torch::Tensor& values, const torch::Tensor& mask) {
  auto q = queries(query);
  return finish(q, attention->attend_shared(q.q, keys, values, mask, false).out);
}

torch::Tensor CrossAttentionBlockImpl::forward(const torch::Tensor& query,
                                               const torch::Tensor& nodes,
                                               const torch::Tensor& mask) {
  auto [k, v] = keys_values(nodes);
  return read(query, k, v, mask);
}

}  // namespace retreever
