#include "cuda_ops.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>

#ifdef RETREEVER_CUDA
#include <ATen/record_function.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/cuda/kernels.h"
#include "core/nn/keep_hash.h"
#include "core/training/precision.h"
#endif

namespace retreever {
namespace {
std::atomic<bool> g_enabled{true};
}  // namespace

bool cuda_kernels_available() {
#ifdef RETREEVER_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_kernels_enabled() { return g_enabled.load(); }
void set_cuda_kernels_enabled(bool on) { g_enabled.store(on); }

namespace {
// The kernels are built and enabled, and x is a float32 CUDA tensor (or bfloat16, where the
// operation converts it: bf16_too).
bool kernels_take(const torch::Tensor& x, bool bf16_too = false) {
#ifdef RETREEVER_CUDA
  return g_enabled.load() && x.defined() && x.is_cuda() &&
         (x.scalar_type() == torch::kFloat || (bf16_too && x.scalar_type() == torch::kBFloat16));
#else
  (void)x, (void)bf16_too;
  return false;
#endif
}
}  // namespace

bool use_cuda_kernels(const torch::Tensor& x, std::int64_t head_dim) {
#ifdef RETREEVER_CUDA
  // bfloat16 too: walk_cuda and group_attention_cuda compute it in float32.
  return kernels_take(x, true) && cuda::head_dim_supported(head_dim);
#else
  (void)head_dim;
  return kernels_take(x);
#endif
}

namespace {
// rows_product by torch's operations (cuBLAS on the GPU): the product added into add_to in place.
torch::Tensor rows_product_torch(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                 bool transposed_w, torch::Tensor add_to) {
  if (!add_to.defined()) {
    if (transposed_w) return torch::linear(x, w, bias);
    auto r = torch::matmul(x, w);
    return bias.defined() ? r.add_(bias) : r;
  }
  const auto wk = transposed_w ? w.t() : w;
  add_to.view({-1, wk.size(1)}).addmm_(x.reshape({-1, x.size(-1)}), wk);
  return bias.defined() ? add_to.add_(bias) : add_to;
}
}  // namespace

#ifdef RETREEVER_CUDA
namespace {

// Runs one of kernels.h's launches and throws if it failed. The launch is a profiler record of its
// own, named `what`: a trace then ties its kernels to it (and to the stage around it), where a launch
// from an autograd function's forward would have no operator.
template <class Launch>
void launch(const char* what, Launch&& run) {
  RECORD_FUNCTION_WITH_SCOPE(at::RecordScope::FUNCTION, what, c10::ArrayRef<const c10::IValue>{});
  const int code = run();
  if (code != 0) throw std::runtime_error(std::string(what) + ": " + cuda::error_string(code));
}

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

struct Group {
  torch::Tensor out, p, raw;
};

cuda::GroupArgs group_args(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const torch::Tensor& idx, const torch::Tensor& mask, const torch::Tensor& drop) {
  cuda::GroupArgs a;
  a.q = q.data_ptr<float>();
  a.k = k.data_ptr<float>();
  a.v = v.data_ptr<float>();
  a.G = q.size(0);
  a.m = q.size(1);
  a.H = q.size(2);
  a.d = q.size(3);
  if (idx.defined() && idx.numel() > 0) {
    a.idx = idx.data_ptr<std::int64_t>();
    a.nk = idx.size(1);
    a.n = k.size(1);
    a.groups_per_row = a.G / k.size(0);
  } else {
    a.nk = k.size(1);
    a.n = a.nk;
    a.groups_per_row = 1;
  }
  if (mask.defined() && mask.numel() > 0) a.mask = mask.data_ptr<bool>();
  if (drop.defined() && drop.numel() > 0) a.drop = drop.data_ptr<float>();
  return a;
}

Group group_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& idx,
                    const torch::Tensor& mask, const torch::Tensor& drop, bool keep_weights, bool raw_scores) {
  c10::cuda::CUDAGuard guard(q.device());
  auto a = group_args(q, k, v, idx, mask, drop);
  Group g;
  g.out = torch::empty_like(q);
  a.out = g.out.data_ptr<float>();
  if (keep_weights) {
    g.p = torch::empty({a.G, a.m, a.nk, a.H}, q.options());
    a.p = g.p.data_ptr<float>();
  }
  if (raw_scores) {
    g.raw = torch::empty({a.G, a.m, a.nk, a.H}, q.options());
    a.raw = g.raw.data_ptr<float>();
  }
  launch("group attention (CUDA)", [&] { return cuda::group_forward(a, stream()); });
  return g;
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct GroupAttentionFunction : public torch::autograd::Function<GroupAttentionFunction> {
  // Returns the output and, when raw_scores, the scores before masking [G,m,nk,H] (else an empty
  // tensor), differentiable too.
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, const torch::Tensor& idx, const torch::Tensor& mask,
                             const torch::Tensor& drop, bool raw_scores) {
    auto g = group_forward(q, k, v, idx, mask, drop, true, raw_scores);
    ctx->save_for_backward({q, k, v, g.out});
    ctx->saved_data["p"] = g.p;
    ctx->saved_data["idx"] = idx;
    ctx->saved_data["mask"] = mask;
    ctx->saved_data["drop"] = drop;
    if (!raw_scores) {
      g.raw = torch::empty({0}, q.options());
      ctx->mark_non_differentiable({g.raw});
    }
    return {g.out, g.raw};
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3];
    const auto p = ctx->saved_data["p"].toTensor();
    const auto idx = ctx->saved_data["idx"].toTensor(), mask = ctx->saved_data["mask"].toTensor(),
               drop = ctx->saved_data["drop"].toTensor();
    // An output no loss read comes as an undefined gradient.
    auto dout = grads[0].defined() ? grads[0].contiguous() : torch::zeros_like(out);
    auto dscore = grads[1].defined() && grads[1].numel() > 0 ? grads[1].contiguous() : torch::Tensor();
    c10::cuda::CUDAGuard guard(q.device());
    cuda::GroupGradArgs a;
    a.f = group_args(q, k, v, idx, mask, drop);
    a.f.out = const_cast<float*>(out.data_ptr<float>());
    a.f.p = const_cast<float*>(p.data_ptr<float>());
    a.dout = dout.data_ptr<float>();
    if (dscore.defined()) a.dscore = dscore.data_ptr<float>();
    auto dq = torch::empty_like(q), dk = torch::zeros_like(k), dv = torch::zeros_like(v);
    a.dq = dq.data_ptr<float>();
    a.dk = dk.data_ptr<float>();
    a.dv = dv.data_ptr<float>();
    launch("group attention backward (CUDA)", [&] { return cuda::group_backward(a, stream()); });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Layer norm over the last dimension with the kernels of kernels.cu.
struct LayerNormFunction : public torch::autograd::Function<LayerNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& w_in,
                               const torch::Tensor& b_in, double eps) {
    c10::cuda::CUDAGuard guard(x_in.device());
    auto x = x_in.contiguous(), w = w_in.contiguous(), b = b_in.contiguous();
    cuda::LayerNormArgs a;
    a.D = x.size(-1);
    a.R = a.D > 0 ? x.numel() / a.D : 0;
    a.eps = float(eps);
    auto y = torch::empty_like(x), stats = torch::empty({2, a.R}, x.options());
    a.x = x.data_ptr<float>();
    a.w = w.data_ptr<float>();
    a.b = b.data_ptr<float>();
    a.y = y.data_ptr<float>();
    a.mean = stats[0].data_ptr<float>();
    a.rstd = stats[1].data_ptr<float>();
    launch("layer norm (CUDA)", [&] { return cuda::layer_norm_forward(a, stream()); });
    ctx->save_for_backward({x, w, stats});
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &stats = saved[2];
    c10::cuda::CUDAGuard guard(x.device());
    auto dy = grads[0].contiguous();
    cuda::LayerNormGradArgs a;
    a.f.D = x.size(-1);
    a.f.R = x.numel() / a.f.D;
    a.f.x = x.data_ptr<float>();
    a.f.w = w.data_ptr<float>();
    a.f.mean = stats[0].data_ptr<float>();
    a.f.rstd = stats[1].data_ptr<float>();
    a.parts = cuda::layer_norm_parts(a.f.R);
    auto dx = torch::empty_like(x), part = torch::empty({2, a.parts, a.f.D}, x.options());
    auto sums = torch::empty({2, a.f.D}, x.options());
    a.dy = dy.data_ptr<float>();
    a.dx = dx.data_ptr<float>();
    a.part = part.data_ptr<float>();
    a.sums = sums.data_ptr<float>();
    launch("layer norm backward (CUDA)", [&] { return cuda::layer_norm_backward(a, stream()); });
    return {dx, sums[0], sums[1], torch::Tensor()};
  }
};

struct SoftmaxFunction : public torch::autograd::Function<SoftmaxFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    auto y = torch::softmax(x, -1).contiguous();  // PyTorch's forward reads and writes once already
    ctx->save_for_backward({y});
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    c10::cuda::CUDAGuard guard(y.device());
    auto dy = grads[0].contiguous();
    auto dx = torch::empty_like(y);
    cuda::SoftmaxGradArgs a;
    a.D = y.size(-1);
    a.R = a.D > 0 ? y.numel() / a.D : 0;
    a.y = y.data_ptr<float>();
    a.dy = dy.data_ptr<float>();
    a.dx = dx.data_ptr<float>();
    launch("softmax backward (CUDA)", [&] { return cuda::softmax_backward(a, stream()); });
    return {dx};
  }
};

// value * gelu(gate) for two contiguous float32 tensors of one shape.
struct GegluFunction : public torch::autograd::Function<GegluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& value, const torch::Tensor& gate) {
    c10::cuda::CUDAGuard guard(value.device());
    ctx->save_for_backward({value, gate});
    auto out = torch::empty_like(value);
    cuda::GegluArgs a;
    a.value = value.data_ptr<float>();
    a.gate = gate.data_ptr<float>();
    a.out = out.data_ptr<float>();
    a.n = value.numel();
    launch("GEGLU (CUDA)", [&] { return cuda::geglu_forward(a, stream()); });
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &value = saved[0], &gate = saved[1];
    c10::cuda::CUDAGuard guard(value.device());
    auto dout = grads[0].contiguous();
    auto d_value = torch::empty_like(value), d_gate = torch::empty_like(gate);
    cuda::GegluGradArgs a;
    a.f.value = value.data_ptr<float>();
    a.f.gate = gate.data_ptr<float>();
    a.f.n = value.numel();
    a.dout = dout.data_ptr<float>();
    a.d_value = d_value.data_ptr<float>();
    a.d_gate = d_gate.data_ptr<float>();
    launch("GEGLU backward (CUDA)", [&] { return cuda::geglu_backward(a, stream()); });
    return {d_value, d_gate};
  }
};

// q [B,M,H,d], k and v [B,N,H,d] with their last dimension contiguous; mask [B,N] bool or empty.
cuda::DenseArgs dense_args(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const torch::Tensor& mask) {
  cuda::DenseArgs a;
  a.q = q.data_ptr<float>();
  a.k = k.data_ptr<float>();
  a.v = v.data_ptr<float>();
  a.qsb = q.stride(0), a.qsm = q.stride(1), a.qsh = q.stride(2);
  a.ksb = k.stride(0), a.ksn = k.stride(1), a.ksh = k.stride(2);
  a.vsb = v.stride(0), a.vsn = v.stride(1), a.vsh = v.stride(2);
  if (mask.numel() > 0) a.mask = mask.data_ptr<bool>();
  a.B = q.size(0), a.M = q.size(1), a.N = k.size(1), a.H = q.size(2), a.d = q.size(3);
  return a;
}

// Dropout's key (an int64 [1] on the device, or empty: none) and rate for a kernel.
cuda::DropKey drop_key(const torch::Tensor& key, double p) {
  cuda::DropKey d;
  if (key.numel() == 0 || p <= 0) return d;
  d.key = key.data_ptr<std::int64_t>();
  d.threshold = keep_threshold(1 - p);
  d.scale = float(1 / (1 - p));
  return d;
}

// A kernel's dropout: p in (0, 1) and its key one int64 on `device` (as draw_kernel_dropout makes them).
void check_kernel_dropout(const KernelDropout& d, const torch::Device& device, const std::string& who) {
  const auto& key = d.key;
  if (!(d.p > 0 && d.p < 1) || !device.is_cuda() || !key.defined() || key.numel() != 1 ||
      key.scalar_type() != torch::kLong || key.device() != device)
    throw std::invalid_argument(who + " needs p in (0, 1) and a key of one int64 on " +
                                (device.is_cuda() ? device.str() : std::string("a GPU")) +
                                " (draw_kernel_dropout makes one)");
}

// x times its keep bits (drop_key), forward and backward; x contiguous float32.
struct DropoutFunction : public torch::autograd::Function<DropoutFunction> {
  static torch::Tensor apply_bits(const torch::Tensor& x, const torch::Tensor& key, double p) {
    c10::cuda::CUDAGuard guard(x.device());
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    launch("dropout (CUDA)", [&] {
      return cuda::dropout_apply(out.data_ptr<float>(), in.data_ptr<float>(), in.numel(), drop_key(key, p), stream());
    });
    return out;
  }
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& key, double p) {
    ctx->save_for_backward({key});
    ctx->saved_data["p"] = p;
    return apply_bits(x, key, p);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto key = ctx->get_saved_variables()[0];
    return {apply_bits(grads[0], key, ctx->saved_data["p"].toDouble()), torch::Tensor(), torch::Tensor()};
  }
};

struct DenseAttentionFunction : public torch::autograd::Function<DenseAttentionFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& mask, int64_t passes,
                               const torch::Tensor& key, double p) {
    c10::cuda::CUDAGuard guard(q.device());
    auto a = dense_args(q, k, v, mask);
    a.tensor_passes = int(passes);
    a.drop = drop_key(key, p);
    auto out = torch::empty({a.B, a.M, a.H, a.d}, q.options());
    auto stats = torch::empty({a.B, a.H, a.M, 2}, q.options());
    a.out = out.data_ptr<float>();
    a.stats = stats.data_ptr<float>();
    launch("dense attention (CUDA)", [&] { return cuda::dense_attention_forward(a, stream()); });
    ctx->save_for_backward({q, k, v, mask, out, stats, key});
    ctx->saved_data["passes"] = passes;
    ctx->saved_data["p"] = p;
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[4], &stats = saved[5];
    c10::cuda::CUDAGuard guard(q.device());
    cuda::DenseGradArgs g;
    g.f = dense_args(q, k, v, saved[3]);
    g.f.tensor_passes = int(ctx->saved_data["passes"].toInt());
    g.f.drop = drop_key(saved[6], ctx->saved_data["p"].toDouble());
    g.f.out = out.data_ptr<float>();
    g.f.stats = stats.data_ptr<float>();
    auto dout = grads[0].contiguous();
    auto dq = torch::empty_like(out), dk = torch::empty({g.f.B, g.f.N, g.f.H, g.f.d}, q.options()),
         dv = torch::empty_like(dk), delta = torch::empty({g.f.B, g.f.H, g.f.M}, q.options());
    g.dout = dout.data_ptr<float>();
    g.delta = delta.data_ptr<float>();
    g.dq = dq.data_ptr<float>();
    g.dk = dk.data_ptr<float>();
    g.dv = dv.data_ptr<float>();
    launch("dense attention backward (CUDA)", [&] { return cuda::dense_attention_backward(g, stream()); });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// x [.., in], weight [out, in], bias [out]: the same gradients as torch::linear's, the products by
// rows_product and weight_gradient_into, the bias's summed in the weight's pass.
struct LinearFunction : public torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    return rows_product(x, w, b, true);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    c10::cuda::CUDAGuard guard(x.device());
    const auto out = w.size(0), in = w.size(1);
    auto g = grads[0].contiguous().view({-1, out});
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = rows_product(g, w, {}, false).view(x.sizes());
    if (ctx->needs_input_grad(2)) db = torch::empty({out}, g.options());
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty_like(w, torch::MemoryFormat::Contiguous);
      weight_gradient_into(g, x.reshape({-1, in}), dw, db);
    } else if (db.defined()) {
      column_sum_into(g, db);
    }
    return {dx, dw, db};
  }
};

}  // namespace

CudaWalk walk_cuda(const torch::Tensor& queries, const torch::Tensor& keys_in, const torch::Tensor& masks_in,
                   const std::vector<std::int64_t>& offsets, std::int64_t b, std::int64_t k, std::int64_t p,
                   const torch::Tensor& uniform_in, double explore, bool keep_padding_siblings) {
  if (b > cuda::kMaxBranch || k > cuda::kMaxLevels || std::int64_t(offsets.size()) < k + 1)
    throw std::logic_error("walk_cuda: branch factor, depth or offsets out of range");
  c10::cuda::CUDAGuard guard(queries.device());
  // float32 in any case (bfloat16 queries and keys are read as float32: the kernel's arithmetic).
  auto q = queries.to(torch::kFloat).contiguous(), keys = keys_in.to(torch::kFloat).contiguous();
  auto masks = masks_in.contiguous();
  auto uniform = uniform_in.defined() ? uniform_in.to(torch::kFloat).contiguous() : torch::Tensor();
  cuda::WalkArgs a;
  a.Q = q.size(0);
  a.H = q.size(1);
  a.d = q.size(2);
  a.B = keys.size(0);
  a.n = keys.size(1);
  a.b = b;
  a.k = k;
  a.p = p;
  for (std::int64_t l = 0; l <= k; ++l) a.offsets[l] = offsets[l];
  a.explore = float(explore);
  a.keep_padding_siblings = keep_padding_siblings;
  if (k > 0) {
    a.entropy_scale = float(1.0 / double(a.Q * k));
    a.head_entropy_scale = float(1.0 / double(a.Q * k * a.H));
  }
  a.queries = q.data_ptr<float>();
  a.keys = keys.data_ptr<float>();
  a.masks = masks.data_ptr<bool>();
  if (uniform.defined()) a.uniform = uniform.data_ptr<float>();
  const auto S = k * b + p;
  auto long_opts = q.options().dtype(torch::kLong), bool_opts = q.options().dtype(torch::kBool);
  CudaWalk w;
  w.rows = torch::empty({a.Q, S}, long_opts);
  w.real = torch::empty({a.Q, S}, bool_opts);
  w.keep = torch::empty({a.Q, S}, bool_opts);
  w.actions = torch::empty({a.Q, k}, long_opts);
  w.path = torch::empty({a.Q, k}, long_opts);
  w.pi = torch::empty({a.Q, k, b}, q.options());
  auto sums = torch::empty({3, a.Q}, q.options());
  w.log_prob = sums[0];
  w.entropy = sums[1];
  w.head_entropy = sums[2];
  a.rows = w.rows.data_ptr<std::int64_t>();
  a.real = w.real.data_ptr<bool>();
  a.keep = w.keep.data_ptr<bool>();
  a.actions = w.actions.data_ptr<std::int64_t>();
  a.path = w.path.data_ptr<std::int64_t>();
  a.pi = w.pi.data_ptr<float>();
  a.log_prob = w.log_prob.data_ptr<float>();
  a.entropy = w.entropy.data_ptr<float>();
  a.head_entropy = w.head_entropy.data_ptr<float>();
  launch("tree walk (CUDA)", [&] { return cuda::walk(a, stream()); });
  return w;
}

namespace {
GroupRead group_read(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& idx,
                     const torch::Tensor& mask, const torch::Tensor& drop, bool scores) {
  if (q.scalar_type() != torch::kFloat || k.scalar_type() != torch::kFloat || v.scalar_type() != torch::kFloat) {
    // bfloat16 (autocast, or a decoder converted): computed in float32, returned in q's dtype; the
    // conversions are differentiable, so the gradients come back in the inputs' dtypes.
    auto r = group_read(q.to(torch::kFloat), k.to(torch::kFloat), v.to(torch::kFloat), idx, mask, drop, scores);
    r.out = r.out.to(q.scalar_type());
    if (r.scores.defined()) r.scores = r.scores.to(q.scalar_type());
    return r;
  }
  auto qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  // Absent indices or mask travel as empty tensors: autograd's Function takes no undefined inputs.
  auto ic = idx.defined() ? idx.contiguous() : torch::empty({0}, q.options().dtype(torch::kLong));
  auto mc = mask.defined() ? mask.contiguous() : torch::empty({0}, q.options().dtype(torch::kBool));
  auto dc = drop.defined() ? drop.to(torch::kFloat).contiguous() : torch::empty({0}, q.options());
  GroupRead r;
  if (!torch::GradMode::is_enabled() || !(q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    auto g = group_forward(qc, kc, vc, ic, mc, dc, false, scores);
    r.out = g.out;
    r.scores = g.raw;
    return r;
  }
  auto both = GroupAttentionFunction::apply(qc, kc, vc, ic, mc, dc, scores);
  r.out = both[0];
  if (scores) r.scores = both[1];
  return r;
}
}  // namespace

GroupRead group_attention_scores_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& idx, const torch::Tensor& mask, bool scores) {
  return group_read(q, k, v, idx, mask, {}, scores);
}

torch::Tensor group_attention_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& idx, const torch::Tensor& mask, const torch::Tensor& drop) {
  return group_read(q, k, v, idx, mask, drop, false).out;
}

bool use_cuda_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const auto D = x.defined() && x.dim() > 0 ? x.size(-1) : 0;
  return kernels_take(x) && cuda::layer_norm_width_supported(D) && weight.defined() && bias.defined() &&
         weight.numel() == D && bias.numel() == D && weight.scalar_type() == torch::kFloat &&
         bias.scalar_type() == torch::kFloat && weight.device() == x.device();
}

torch::Tensor layer_norm_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps) {
  return LayerNormFunction::apply(x, weight, bias, eps);
}

namespace {
// Under autocast a float32 input may leave in bfloat16: those take PyTorch's operations.
bool autocast_on() { return AutocastGuard::enabled(torch::kCUDA); }
}  // namespace

bool use_cuda_softmax(const torch::Tensor& x) {
  return kernels_take(x) && !autocast_on() && x.dim() > 0 && cuda::softmax_width_supported(x.size(-1));
}

torch::Tensor softmax_cuda(const torch::Tensor& x) { return SoftmaxFunction::apply(x); }

bool use_cuda_dense_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& mask) {
  if (!kernels_take(q) || autocast_on() || q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return false;
  const auto B = q.size(0), M = q.size(1), H = q.size(2), d = q.size(3), N = k.size(1);
  const auto same = [&](const torch::Tensor& t) {
    return t.scalar_type() == torch::kFloat && t.device() == q.device() && t.size(0) == B && t.size(1) == N &&
           t.size(2) == H && t.size(3) == d;
  };
  const bool mask_ok = !mask.defined() || (mask.dim() == 2 && mask.scalar_type() == torch::kBool &&
                                           mask.size(0) == B && mask.size(1) == N && mask.device() == q.device());
  // A block row per (batch row, head): the grid's second dimension holds at most 65535.
  return cuda::dense_head_dim_supported(d) && same(k) && same(v) && N > 0 && mask_ok &&
         B * H * M >= kCudaDenseMinQueries && B * H <= 65535;
}

int dense_tensor_passes() {
  if (!cuda::dense_tensor_cores_available()) return 0;
  return MatmulPrecisionScope::tf32_allowed() ? 1 : 3;
}

torch::Tensor dense_attention_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& mask, int passes, const KernelDropout& dropout) {
  if (passes < 0)
    passes = dense_tensor_passes();
  else if (!cuda::dense_passes_supported(passes) || (passes != 0 && !cuda::dense_tensor_cores_available()))
    throw std::invalid_argument("dense_attention_cuda: " + std::to_string(passes) +
                                " tensor-core passes; use 0 (FMA), or 1 or 3 on a GPU of compute capability 8.0 or later");
  // The kernels read rows with their last dimension contiguous; other strides are taken as they are.
  auto rows = [](const torch::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); };
  auto m = mask.defined() ? mask.contiguous() : torch::empty({0}, q.options().dtype(torch::kBool));
  const bool dropping = dropout.p > 0;
  if (dropping) check_kernel_dropout(dropout, q.device(), "dense_attention_cuda: dropout");
  auto key = dropping ? dropout.key : torch::empty({0}, q.options().dtype(torch::kLong));
  return DenseAttentionFunction::apply(rows(q), rows(k), rows(v), m, int64_t(passes), key, dropping ? dropout.p : 0.0);
}

KernelDropout draw_kernel_dropout(double p, const torch::Device& device, c10::optional<at::Generator> generator) {
  KernelDropout d;
  d.p = p;
  d.key = torch::empty({1}, torch::TensorOptions().dtype(torch::kLong).device(device))
              .random_(std::numeric_limits<std::int64_t>::min(), c10::optional<std::int64_t>(), generator);
  return d;
}

torch::Tensor keep_mask_cuda(at::IntArrayRef sizes, const KernelDropout& dropout) {
  const auto& key = dropout.key;
  check_kernel_dropout(dropout, key.defined() ? key.device() : torch::Device(torch::kCUDA), "keep_mask_cuda");
  c10::cuda::CUDAGuard guard(key.device());
  auto mask = torch::empty(sizes, key.options().dtype(torch::kFloat));
  launch("keep mask (CUDA)", [&] {
    return cuda::dropout_apply(mask.data_ptr<float>(), nullptr, mask.numel(), drop_key(key, dropout.p), stream());
  });
  return mask;
}

bool use_cuda_dropout(const torch::Tensor& x) { return kernels_take(x); }

torch::Tensor dropout_cuda(const torch::Tensor& x, const KernelDropout& dropout) {
  if (!x.is_cuda() || x.scalar_type() != torch::kFloat)
    throw std::invalid_argument("dropout_cuda: needs a float32 CUDA tensor, not " +
                                std::string(c10::toString(x.scalar_type())) + " on " + x.device().str());
  check_kernel_dropout(dropout, x.device(), "dropout_cuda");
  return DropoutFunction::apply(x, dropout.key, dropout.p);
}

bool use_cuda_geglu(const torch::Tensor& value, const torch::Tensor& gate) {
  return kernels_take(value) && !autocast_on() && gate.defined() && gate.scalar_type() == torch::kFloat &&
         gate.device() == value.device() && gate.sizes() == value.sizes() && value.is_contiguous() &&
         gate.is_contiguous();
}

torch::Tensor geglu_cuda(const torch::Tensor& value, const torch::Tensor& gate) {
  return GegluFunction::apply(value, gate);
}

void column_sum_into(const torch::Tensor& g, torch::Tensor out) {
  if (!kernels_take(g) || g.dim() != 2 || g.size(0) < kCudaLinearMinRows || !g.is_contiguous() ||
      !out.is_contiguous() || out.scalar_type() != torch::kFloat || out.numel() != g.size(1) ||
      out.device() != g.device()) {
    at::sum_out(out, g, at::IntArrayRef{0});
    return;
  }
  c10::cuda::CUDAGuard guard(g.device());
  cuda::ColumnSumArgs a;
  a.R = g.size(0);
  a.C = g.size(1);
  a.parts = cuda::column_sum_parts(a.R);
  auto part = torch::empty({a.parts, a.C}, g.options());
  a.x = g.data_ptr<float>();
  a.part = part.data_ptr<float>();
  a.out = out.data_ptr<float>();
  launch("bias gradient (CUDA)", [&] { return cuda::column_sum(a, stream()); });
}

void weight_gradient_into(const torch::Tensor& g, const torch::Tensor& x, torch::Tensor out, torch::Tensor bias_out) {
  const auto R = g.size(0);
  // Under --precision tf32 cuBLAS's product runs on the tensor cores, faster than this float32 kernel.
  if (!MatmulPrecisionScope::tf32_allowed() && kernels_take(g) && R >= kCudaLinearMinRows && g.dim() == 2 && x.dim() == 2 && x.size(0) == R &&
      g.is_contiguous() && x.is_contiguous() && out.is_contiguous() && x.scalar_type() == torch::kFloat &&
      out.scalar_type() == torch::kFloat && out.numel() == g.size(1) * x.size(1) &&
      cuda::weight_grad_supported(static_cast<const float*>(g.data_ptr()), static_cast<const float*>(x.data_ptr()),
                                  g.size(1), x.size(1)) &&
      (!bias_out.defined() || (bias_out.is_contiguous() && bias_out.numel() == g.size(1)))) {
    c10::cuda::CUDAGuard guard(g.device());
    cuda::WeightGradArgs a;
    a.R = R;
    a.O = g.size(1);
    a.I = x.size(1);
    a.tensor_passes = dense_tensor_passes();  // 3 with tensor cores, else 0 (tf32 took cuBLAS above)
    cuda::weight_grad_split(a);
    auto part = torch::empty({a.parts * (a.O * a.I + (bias_out.defined() ? a.O : 0))}, g.options());
    a.g = g.data_ptr<float>();
    a.x = x.data_ptr<float>();
    a.part = part.data_ptr<float>();
    a.out = out.data_ptr<float>();
    if (bias_out.defined()) {
      a.bias_part = a.part + a.parts * a.O * a.I;
      a.bias_out = bias_out.data_ptr<float>();
    }
    launch("weight gradient (CUDA)", [&] { return cuda::weight_grad(a, stream()); });
    return;
  }
  at::mm_out(out, g.t(), x);
  if (bias_out.defined()) column_sum_into(g, bias_out);
}

torch::Tensor rows_product(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias, bool transposed_w,
                           torch::Tensor add_to) {
  const auto K = x.size(-1), N = transposed_w ? w.size(0) : w.size(1);
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  // The kernel's three passes are float32's precision: dense_tensor_passes() is 3 on GPUs with tensor
  // cores outside --precision tf32 (there cuBLAS's one pass is faster).
  if (kernels_take(x) && !autocast_on() && dense_tensor_passes() == 3 &&
      x.numel() / std::max<std::int64_t>(K, 1) >= kCudaLinearMinRows &&
      x.is_contiguous() && w.dim() == 2 && w.is_contiguous() && w.scalar_type() == torch::kFloat &&
      w.device() == x.device() && (transposed_w ? w.size(1) : w.size(0)) == K &&
      (!bias.defined() || (bias.is_contiguous() && bias.scalar_type() == torch::kFloat && bias.numel() == N)) &&
      (!add_to.defined() || (add_to.is_contiguous() && add_to.scalar_type() == torch::kFloat && add_to.sizes() == sizes))) {
    c10::cuda::CUDAGuard guard(x.device());
    auto out = add_to.defined() ? add_to : torch::empty(sizes, x.options());
    cuda::RowsMatmulArgs a;
    a.x = x.data_ptr<float>();
    a.w = w.data_ptr<float>();
    a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
    a.out = out.data_ptr<float>();
    a.R = x.numel() / K;
    a.K = K;
    a.N = N;
    a.transposed_w = transposed_w;
    a.accumulate = add_to.defined();
    if (cuda::rows_matmul_supported(a)) {
      launch("rows product (CUDA)", [&] { return cuda::rows_matmul(a, stream()); });
      return out;
    }
  }
  return rows_product_torch(x, w, bias, transposed_w, add_to);
}

bool use_cuda_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return kernels_take(x) && !autocast_on() && x.dim() >= 2 && bias.defined() && weight.dim() == 2 && bias.dim() == 1 &&
         x.size(-1) == weight.size(1) && bias.size(0) == weight.size(0) && weight.scalar_type() == torch::kFloat &&
         bias.scalar_type() == torch::kFloat && x.numel() / x.size(-1) >= kCudaLinearMinRows;
}

torch::Tensor linear_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  return LinearFunction::apply(x, weight, bias);
}

#else  // no CUDA: the hooks never call these

bool use_cuda_softmax(const torch::Tensor&) { return false; }

torch::Tensor softmax_cuda(const torch::Tensor&) { throw std::logic_error("softmax_cuda: built without CUDA"); }

bool use_cuda_dense_attention(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                              const torch::Tensor&) {
  return false;
}

int dense_tensor_passes() { return 0; }

torch::Tensor dense_attention_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                   const torch::Tensor&, int, const KernelDropout&) {
  throw std::logic_error("dense_attention_cuda: built without CUDA");
}

KernelDropout draw_kernel_dropout(double, const torch::Device&, c10::optional<at::Generator>) {
  throw std::logic_error("draw_kernel_dropout: built without CUDA");
}

torch::Tensor keep_mask_cuda(at::IntArrayRef, const KernelDropout&) {
  throw std::logic_error("keep_mask_cuda: built without CUDA");
}

bool use_cuda_dropout(const torch::Tensor&) { return false; }

torch::Tensor dropout_cuda(const torch::Tensor&, const KernelDropout&) {
  throw std::logic_error("dropout_cuda: built without CUDA");
}

bool use_cuda_geglu(const torch::Tensor&, const torch::Tensor&) { return false; }

torch::Tensor geglu_cuda(const torch::Tensor&, const torch::Tensor&) {
  throw std::logic_error("geglu_cuda: built without CUDA");
}

void column_sum_into(const torch::Tensor& g, torch::Tensor out) { at::sum_out(out, g, at::IntArrayRef{0}); }

void weight_gradient_into(const torch::Tensor& g, const torch::Tensor& x, torch::Tensor out, torch::Tensor bias_out) {
  at::mm_out(out, g.t(), x);
  if (bias_out.defined()) column_sum_into(g, bias_out);
}

torch::Tensor rows_product(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias, bool transposed_w,
                           torch::Tensor add_to) {
  return rows_product_torch(x, w, bias, transposed_w, add_to);
}

bool use_cuda_linear(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return false; }

torch::Tensor linear_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  throw std::logic_error("linear_cuda: built without CUDA");
}

bool use_cuda_layer_norm(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return false; }

torch::Tensor layer_norm_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, double) {
  throw std::logic_error("layer_norm_cuda: built without CUDA");
}

CudaWalk walk_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, const std::vector<std::int64_t>&,
                   std::int64_t, std::int64_t, std::int64_t, const torch::Tensor&, double, bool) {
  throw std::logic_error("walk_cuda: built without CUDA");
}

GroupRead group_attention_scores_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                      const torch::Tensor&, const torch::Tensor&, bool) {
  throw std::logic_error("group_attention_scores_cuda: built without CUDA");
}

torch::Tensor group_attention_cuda(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                   const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  throw std::logic_error("group_attention_cuda: built without CUDA");
}

#endif

}  // namespace retreever
