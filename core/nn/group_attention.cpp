#include "group_attention.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/nn/kernel_dot.h"

#include <stdexcept>

namespace retreever {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Sizes of the three kernels: G groups, m queries, n keys, H heads, d per head.
struct Dims {
  std::int64_t G, m, n, H, d;
};

// Work per parallel chunk: enough multiply-adds that a thread's start-up does not dominate.
std::int64_t grain(const Dims& s) { return std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(1, s.m * s.n * s.H * s.d)); }

// s[g,i,j,h] = a[g,i,h,:] . b[g,j,h,:]    a [G,m,H,d], b [G,n,H,d]
template <typename T>
void scores_kernel(const T* a, const T* b, T* s, const Dims& z) {
  at::parallel_for(0, z.G, grain(z), [&](std::int64_t g0, std::int64_t g1) {
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t i = 0; i < z.m; ++i)
        for (std::int64_t j = 0; j < z.n; ++j)
          for (std::int64_t h = 0; h < z.H; ++h) {
            s[((g * z.m + i) * z.n + j) * z.H + h] =
                kernel_dot(a + ((g * z.m + i) * z.H + h) * z.d, b + ((g * z.n + j) * z.H + h) * z.d, z.d);
          }
  });
}

// The weighted sums of attention, over the keys or (Transposed) over the queries:
//   o[g,i,h,:] = sum_j p[g,i,j,h] y[g,j,h,:]    p [G,m,n,H], y [G,n,H,d] -> o [G,m,H,d]
//   Transposed: o[g,j,h,:] = sum_i p[g,i,j,h] y[g,i,h,:]    y [G,m,H,d] -> o [G,n,H,d]
template <typename T, bool Transposed>
void mix_kernel(const T* p, const T* y, T* o, const Dims& z) {
  const auto rows = Transposed ? z.n : z.m, over = Transposed ? z.m : z.n;
  at::parallel_for(0, z.G, grain(z), [&](std::int64_t g0, std::int64_t g1) {
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t h = 0; h < z.H; ++h) {
          T* out = o + ((g * rows + r) * z.H + h) * z.d;
          for (std::int64_t c = 0; c < z.d; ++c) out[c] = 0;
          for (std::int64_t e = 0; e < over; ++e) {
            const auto i = Transposed ? e : r, j = Transposed ? r : e;
            const T w = p[((g * z.m + i) * z.n + j) * z.H + h];
            const T* x = y + ((g * over + e) * z.H + h) * z.d;
            for (std::int64_t c = 0; c < z.d; ++c) out[c] += w * x[c];
          }
        }
  });
}

enum class Op { Scores, Mix, MixTransposed };

// Runs one kernel on contiguous copies of its inputs:
//   Scores:        a [G,m,H,d], b [G,n,H,d] -> [G,m,n,H]
//   Mix:           a = p [G,m,n,H], b = v [G,n,H,d] -> [G,m,H,d]
//   MixTransposed: a = p [G,m,n,H], b = x [G,m,H,d] -> [G,n,H,d]
// Inputs of another dtype than float32 and float64 (bfloat16 under autocast), or of two dtypes, are
// computed in float32 (float64 when both are) and the result takes the inputs' promoted dtype.
torch::Tensor run_cpu(Op op, const torch::Tensor& a_in, const torch::Tensor& b_in) {
  const auto result = c10::promoteTypes(a_in.scalar_type(), b_in.scalar_type());
  const auto work = result == torch::kDouble ? torch::kDouble : torch::kFloat;
  if (a_in.scalar_type() != work || b_in.scalar_type() != work)
    return run_cpu(op, a_in.to(work), b_in.to(work)).to(result);
  auto a = a_in.contiguous(), b = b_in.contiguous();
  const Dims z = op == Op::Scores ? Dims{a.size(0), a.size(1), b.size(1), a.size(2), a.size(3)}
                                  : Dims{a.size(0), a.size(1), a.size(2), a.size(3), b.size(3)};
  auto out = op == Op::Scores ? torch::empty({z.G, z.m, z.n, z.H}, a.options())
             : op == Op::Mix  ? torch::empty({z.G, z.m, z.H, z.d}, b.options())
                              : torch::empty({z.G, z.n, z.H, z.d}, b.options());
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "group_attention", [&] {
    const auto* x = a.data_ptr<scalar_t>();
    const auto* y = b.data_ptr<scalar_t>();
    auto* o = out.data_ptr<scalar_t>();
    if (op == Op::Scores) scores_kernel<scalar_t>(x, y, o, z);
    else if (op == Op::Mix) mix_kernel<scalar_t, false>(x, y, o, z);
    else mix_kernel<scalar_t, true>(x, y, o, z);
  });
  return out;
}

// Gradients of s = scores(q, k): dq = mix(ds, k), dk = mix_transposed(ds, q).
struct GroupScores : public torch::autograd::Function<GroupScores> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k) {
    auto qc = q.contiguous(), kc = k.contiguous();
    ctx->save_for_backward({qc, kc});
    return run_cpu(Op::Scores, qc, kc);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& ds = grads[0];
    return {ctx->needs_input_grad(0) ? run_cpu(Op::Mix, ds, saved[1]).to(saved[0].scalar_type()) : torch::Tensor(),
            ctx->needs_input_grad(1) ? run_cpu(Op::MixTransposed, ds, saved[0]).to(saved[1].scalar_type())
                                     : torch::Tensor()};
  }
};

// Gradients of o = mix(p, v): dp = scores(do, v), dv = mix_transposed(p, do).
struct GroupMix : public torch::autograd::Function<GroupMix> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& p, const torch::Tensor& v) {
    auto pc = p.contiguous(), vc = v.contiguous();
    ctx->save_for_backward({pc, vc});
    return run_cpu(Op::Mix, pc, vc);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& dout = grads[0];
    return {ctx->needs_input_grad(0) ? run_cpu(Op::Scores, dout, saved[1]).to(saved[0].scalar_type()) : torch::Tensor(),
            ctx->needs_input_grad(1) ? run_cpu(Op::MixTransposed, saved[0], dout).to(saved[1].scalar_type())
                                     : torch::Tensor()};
  }
};

void check(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("group attention: ") + what);
}

}  // namespace

torch::Tensor group_scores(const torch::Tensor& q, const torch::Tensor& k) {
  check(q.dim() == 4 && k.dim() == 4 && q.size(0) == k.size(0) && q.size(2) == k.size(2) && q.size(3) == k.size(3),
        "group_scores needs q [G,m,H,dh] and k [G,n,H,dh]");
  if (!q.device().is_cpu()) return (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1);
  return GroupScores::apply(q, k);
}

torch::Tensor group_mix(const torch::Tensor& p, const torch::Tensor& v) {
  check(p.dim() == 4 && v.dim() == 4 && p.size(0) == v.size(0) && p.size(2) == v.size(1) && p.size(3) == v.size(2),
        "group_mix needs p [G,m,n,H] and v [G,n,H,dh]");
  if (!p.device().is_cpu()) return (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2);
  return GroupMix::apply(p, v);
}

}  // namespace retreever
