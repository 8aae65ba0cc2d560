#include "group_attention.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/nn/gather_rows.h"
#include "core/nn/kernel_dot.h"

#include <stdexcept>
#include <string>

namespace retreever {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Sizes of the three kernels: G groups, m queries and n keys per group, H heads, d per head.
struct Dims {
  std::int64_t G, m, n, H, d;
};

// Where key j of group g lives in the keys' operand: row g n + j of [G*n, H, d] keys, or, with picked
// rows (the *_at functions), row (g / per_table) T + rows[g n + j] of a table [tables*T, H, d].
struct KeyRows {
  const std::int64_t* rows = nullptr;
  std::int64_t per_table = 1, T = 0;
  std::int64_t operator()(std::int64_t g, std::int64_t n, std::int64_t j) const {
    return rows == nullptr ? g * n + j : (g / per_table) * T + rows[g * n + j];
  }
};

// Work per parallel chunk: enough multiply-adds that a thread's start-up does not dominate.
std::int64_t grain(const Dims& s) { return std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(1, s.m * s.n * s.H * s.d)); }

// fn(g0, g1) over every group, in parallel chunks; chunks of whole tables where `by_table` (a kernel
// that adds into picked table rows: two groups of one table may pick one row, and never meet in two
// threads that way).
template <typename F>
void for_groups(const Dims& z, const KeyRows& kr, bool by_table, const F& fn) {
  if (!by_table || kr.rows == nullptr) return at::parallel_for(0, z.G, grain(z), fn);
  const auto per = kr.per_table;
  at::parallel_for(0, z.G / per, std::max<std::int64_t>(1, grain(z) / per),
                   [&](std::int64_t t0, std::int64_t t1) { fn(t0 * per, t1 * per); });
}

// s[g,i,j,h] = a[g,i,h,:] . b[key j of g,h,:]    a [G,m,H,d], b keys (KeyRows)
template <typename T>
void scores_kernel(const T* a, const T* b, T* s, const Dims& z, const KeyRows& kr) {
  for_groups(z, kr, false, [&](std::int64_t g0, std::int64_t g1) {
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t i = 0; i < z.m; ++i)
        for (std::int64_t j = 0; j < z.n; ++j) {
          const T* key = b + kr(g, z.n, j) * z.H * z.d;
          for (std::int64_t h = 0; h < z.H; ++h)
            s[((g * z.m + i) * z.n + j) * z.H + h] = kernel_dot(a + ((g * z.m + i) * z.H + h) * z.d, key + h * z.d, z.d);
        }
  });
}

// The weighted sums of attention, over the keys or (Transposed) over the queries:
//   o[g,i,h,:] = sum_j p[g,i,j,h] y[key j of g,h,:]    p [G,m,n,H], y keys (KeyRows) -> o [G,m,H,d]
//   Transposed: o[key j of g,h,:] += sum_i p[g,i,j,h] y[g,i,h,:]    y [G,m,H,d] -> o keys (KeyRows),
//   which the caller zeroes.
template <typename T, bool Transposed>
void mix_kernel(const T* p, const T* y, T* o, const Dims& z, const KeyRows& kr) {
  const auto rows = Transposed ? z.n : z.m, over = Transposed ? z.m : z.n;
  for_groups(z, kr, Transposed, [&](std::int64_t g0, std::int64_t g1) {
    for (std::int64_t g = g0; g < g1; ++g)
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t h = 0; h < z.H; ++h) {
          T* out = (Transposed ? o + kr(g, z.n, r) * z.H * z.d : o + (g * rows + r) * z.H * z.d) + h * z.d;
          if (!Transposed)
            for (std::int64_t c = 0; c < z.d; ++c) out[c] = 0;
          for (std::int64_t e = 0; e < over; ++e) {
            const auto i = Transposed ? e : r, j = Transposed ? r : e;
            const T w = p[((g * z.m + i) * z.n + j) * z.H + h];
            const T* x = (Transposed ? y + (g * over + e) * z.H * z.d : y + kr(g, z.n, e) * z.H * z.d) + h * z.d;
            for (std::int64_t c = 0; c < z.d; ++c) out[c] += w * x[c];
          }
        }
  });
}

enum class Op { Scores, Mix, MixTransposed };

// Picked rows of a table: rows [G,n] (int64) into a table [tables,T,H,d], G a multiple of tables.
// Undefined rows: the keys are [G,n,H,d] themselves.
struct Picked {
  torch::Tensor rows;
  std::int64_t tables = 0, T = 0;
  bool on() const { return rows.defined(); }
};

// Runs one kernel on contiguous copies of its inputs:
//   Scores:        a [G,m,H,d], b keys -> [G,m,n,H]
//   Mix:           a = p [G,m,n,H], b = keys (values) -> [G,m,H,d]
//   MixTransposed: a = p [G,m,n,H], b = x [G,m,H,d] -> keys' shape ([G,n,H,d], or the table's)
// where keys are [G,n,H,d], or with `picked` a table [tables,T,H,d] and its rows.
// Inputs of another dtype than float32 and float64 (bfloat16 under autocast), or of two dtypes, are
// computed in float32 (float64 when both are) and the result takes the inputs' promoted dtype.
torch::Tensor run_cpu(Op op, const torch::Tensor& a_in, const torch::Tensor& b_in, const Picked& picked = {}) {
  const auto result = c10::promoteTypes(a_in.scalar_type(), b_in.scalar_type());
  const auto work = result == torch::kDouble ? torch::kDouble : torch::kFloat;
  if (a_in.scalar_type() != work || b_in.scalar_type() != work)
    return run_cpu(op, a_in.to(work), b_in.to(work), picked).to(result);
  auto a = a_in.contiguous(), b = b_in.contiguous();
  KeyRows kr;
  if (picked.on()) kr = KeyRows{picked.rows.data_ptr<std::int64_t>(), a.size(0) / picked.tables, picked.T};
  const auto n = picked.on() ? picked.rows.size(1) : op == Op::Scores ? b.size(1) : a.size(2);
  const Dims z = op == Op::Scores ? Dims{a.size(0), a.size(1), n, a.size(2), a.size(3)}
                                  : Dims{a.size(0), a.size(1), n, a.size(3), b.size(3)};
  torch::Tensor out;
  if (op == Op::Scores) out = torch::empty({z.G, z.m, z.n, z.H}, a.options());
  else if (op == Op::Mix) out = torch::empty({z.G, z.m, z.H, z.d}, b.options());
  else if (picked.on()) out = torch::zeros({picked.tables, picked.T, z.H, z.d}, b.options());
  else out = torch::zeros({z.G, z.n, z.H, z.d}, b.options());
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "group_attention", [&] {
    const auto* x = a.data_ptr<scalar_t>();
    const auto* y = b.data_ptr<scalar_t>();
    auto* o = out.data_ptr<scalar_t>();
    if (op == Op::Scores) scores_kernel<scalar_t>(x, y, o, z, kr);
    else if (op == Op::Mix) mix_kernel<scalar_t, false>(x, y, o, z, kr);
    else mix_kernel<scalar_t, true>(x, y, o, z, kr);
  });
  return out;
}

// Picked rows travel beside the autograd inputs (a custom function takes no undefined tensor).
void save_picked(AutogradContext* ctx, const Picked& picked) {
  if (picked.on()) ctx->saved_data["rows"] = picked.rows;
}
Picked saved_picked(AutogradContext* ctx, const torch::Tensor& keys) {
  const auto it = ctx->saved_data.find("rows");
  return it == ctx->saved_data.end() ? Picked{} : Picked{it->second.toTensor(), keys.size(0), keys.size(1)};
}

// Gradients of s = scores(q, k): dq = mix(ds, k), dk = mix_transposed(ds, q).
struct GroupScores : public torch::autograd::Function<GroupScores> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const Picked& picked) {
    auto qc = q.contiguous(), kc = k.contiguous();
    ctx->save_for_backward({qc, kc});
    save_picked(ctx, picked);
    return run_cpu(Op::Scores, qc, kc, picked);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& ds = grads[0];
    const auto picked = saved_picked(ctx, saved[1]);
    return {ctx->needs_input_grad(0) ? run_cpu(Op::Mix, ds, saved[1], picked).to(saved[0].scalar_type()) : torch::Tensor(),
            ctx->needs_input_grad(1) ? run_cpu(Op::MixTransposed, ds, saved[0], picked).to(saved[1].scalar_type())
                                     : torch::Tensor(),
            torch::Tensor()};
  }
};

// Gradients of o = mix(p, v): dp = scores(do, v), dv = mix_transposed(p, do).
struct GroupMix : public torch::autograd::Function<GroupMix> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& p, const torch::Tensor& v,
                               const Picked& picked) {
    auto pc = p.contiguous(), vc = v.contiguous();
    ctx->save_for_backward({pc, vc});
    save_picked(ctx, picked);
    return run_cpu(Op::Mix, pc, vc, picked);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& dout = grads[0];
    const auto picked = saved_picked(ctx, saved[1]);
    return {ctx->needs_input_grad(0) ? run_cpu(Op::Scores, dout, saved[1], picked).to(saved[0].scalar_type()) : torch::Tensor(),
            ctx->needs_input_grad(1) ? run_cpu(Op::MixTransposed, saved[0], dout, picked).to(saved[1].scalar_type())
                                     : torch::Tensor(),
            torch::Tensor()};
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
  return GroupScores::apply(q, k, Picked{});
}

torch::Tensor group_mix(const torch::Tensor& p, const torch::Tensor& v) {
  check(p.dim() == 4 && v.dim() == 4 && p.size(0) == v.size(0) && p.size(2) == v.size(1) && p.size(3) == v.size(2),
        "group_mix needs p [G,m,n,H] and v [G,n,H,dh]");
  if (!p.device().is_cpu()) return (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2);
  return GroupMix::apply(p, v, Picked{});
}

namespace {

void check_table_rows(const torch::Tensor& table, const torch::Tensor& rows) {
  check(table.dim() == 4 && rows.dim() == 2 && rows.scalar_type() == torch::kLong && table.size(0) > 0 &&
            rows.size(0) % table.size(0) == 0,
        "picked rows need a table [B,T,H,dh] and int64 rows [G,n], G a multiple of B");
}

// The rows for the CPU kernels, which read the table at them directly: rows outside it are refused,
// as gather_rows refuses them. Off the CPU none (Picked::on() false): the products take picked_rows.
Picked cpu_picked(const torch::Tensor& table, const torch::Tensor& rows) {
  check_table_rows(table, rows);
  if (!table.device().is_cpu() || !rows.device().is_cpu()) return {};
  const auto T = table.size(1);
  auto r = rows.contiguous();
  const auto* x = r.data_ptr<std::int64_t>();
  for (std::int64_t i = 0, e = r.numel(); i < e; ++i)
    if (x[i] < 0 || x[i] >= T)
      throw std::out_of_range("group attention: row " + std::to_string(x[i]) + " outside a table of " +
                              std::to_string(T) + " rows");
  return Picked{r, table.size(0), T};
}

}  // namespace

torch::Tensor picked_rows(const torch::Tensor& table, const torch::Tensor& rows) {
  check_table_rows(table, rows);
  const auto B = table.size(0), T = table.size(1), G = rows.size(0), n = rows.size(1);
  auto base = (torch::arange(B, rows.options()) * T).repeat_interleave(G / B).view({G, 1});
  return gather_rows(table.reshape({B * T, table.size(2) * table.size(3)}), (rows + base).reshape(-1))
      .view({G, n, table.size(2), table.size(3)});
}

torch::Tensor group_scores_at(const torch::Tensor& q, const torch::Tensor& table, const torch::Tensor& rows) {
  const auto picked = cpu_picked(table, rows);
  if (!picked.on()) return group_scores(q, picked_rows(table, rows));
  check(q.dim() == 4 && q.size(0) == rows.size(0) && q.size(2) == table.size(2) && q.size(3) == table.size(3),
        "group_scores_at needs q [G,m,H,dh] for a table [B,T,H,dh] and rows [G,n]");
  return GroupScores::apply(q, table, picked);
}

torch::Tensor group_mix_at(const torch::Tensor& p, const torch::Tensor& table, const torch::Tensor& rows) {
  const auto picked = cpu_picked(table, rows);
  if (!picked.on()) return group_mix(p, picked_rows(table, rows));
  check(p.dim() == 4 && p.size(0) == rows.size(0) && p.size(2) == rows.size(1) && p.size(3) == table.size(2),
        "group_mix_at needs p [G,m,n,H] for a table [B,T,H,dh] and rows [G,n]");
  return GroupMix::apply(p, table, picked);
}

}  // namespace retreever
