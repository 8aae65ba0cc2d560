#include "tree_walk.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/nn/kernel_dot.h"

namespace retreever {
namespace {

template <typename T>
void walk_kernel(const WalkInput& in, const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& masks,
                 const torch::Tensor& uniform, WalkResult& out) {
  const auto Q = q.size(0), H = q.size(1), d = q.size(2);
  const auto B = keys.size(0), n = keys.size(1);
  const auto M = Q / B, b = in.b, k = in.k;
  const T* qp = q.data_ptr<T>();
  const T* kp = keys.data_ptr<T>();
  const bool* mp = masks.data_ptr<bool>();
  const T* up = uniform.defined() ? uniform.data_ptr<T>() : nullptr;
  auto* rows = out.rows.data_ptr<std::int64_t>();
  auto* actions = out.actions.data_ptr<std::int64_t>();
  auto* path = out.path.data_ptr<std::int64_t>();
  T* pi = out.pi.data_ptr<T>();
  T* scores = out.scores.data_ptr<T>();
  const T explore = T(in.explore);

  at::parallel_for(0, Q, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(1, k * b * H * d)),
                   [&](std::int64_t q0, std::int64_t q1) {
    std::vector<T> head(b);
    std::vector<char> keep(b);  // the children that are real
    for (std::int64_t qi = q0; qi < q1; ++qi) {
      const auto row_b = qi / M;
      std::int64_t current = 0;  // the node being expanded, within its level (the root: 0)
      for (std::int64_t level = 1; level <= k; ++level) {
        const auto t = level - 1;
        T* s = scores + (qi * k + t) * b * H;  // [b,H]
        T* p = pi + (qi * k + t) * b;          // [b]
        std::int64_t real = 0;
        for (std::int64_t c = 0; c < b; ++c) {
          const auto row = in.offsets[t] + current * b + c;
          rows[(qi * k + t) * b + c] = row;
          keep[c] = mp[row_b * n + row];
          real += keep[c];
          for (std::int64_t h = 0; h < H; ++h)  // every child's score (S may read a padding sibling)
            s[c * H + h] = kernel_dot(qp + (qi * H + h) * d, kp + ((row_b * n + row) * H + h) * d, d);
          p[c] = 0;
        }
        // The policy: each head's softmax over the real children (padding ones masked as
        // MultiHeadAttention masks a key), averaged over the heads.
        const T masked = std::numeric_limits<T>::lowest() / 2;  // masked_score
        auto score = [&](std::int64_t c, std::int64_t h) { return keep[c] ? s[c * H + h] : masked; };
        for (std::int64_t h = 0; h < H; ++h) {
          T top = score(0, h);
          for (std::int64_t c = 1; c < b; ++c) top = std::max(top, score(c, h));
          T sum = 0;
          for (std::int64_t c = 0; c < b; ++c) sum += head[c] = std::exp(score(c, h) - top);
          for (std::int64_t c = 0; c < b; ++c)
            p[c] += head[c] / (sum * T(H));
        }
        std::int64_t action = 0;
        if (up) {  // invert the CDF of the (exploring) policy at the query's draw
          const T u = T(up[t * Q + qi]);
          T cdf = 0;
          std::int64_t below = 0, last_real = b - 1;  // last_real: where a draw past the rounded CDF lands
          for (std::int64_t c = 0; c < b; ++c) {
            cdf += explore > 0 ? (1 - explore) * p[c] + explore * (keep[c] ? T(1) / T(std::max<std::int64_t>(real, 1)) : T(0))
                               : p[c];
            below += cdf <= u;
          }
          if (real > 0)
            while (!keep[last_real]) --last_real;
          // When rounding leaves the real children's sum below 1, u can pass every child: the draw then
          // takes the last real child, never a padding child after it.
          action = std::min(below, last_real);
        } else {
          for (std::int64_t c = 1; c < b; ++c)
            if (p[c] > p[action]) action = c;
        }
        actions[qi * k + t] = action;
        current = current * b + action;
        path[qi * k + t] = current;
      }
    }
  });
}

}  // namespace

WalkResult walk_cpu(const WalkInput& in) {
  if (!in.queries.device().is_cpu()) throw std::logic_error("walk_cpu needs CPU tensors");
  // float32 or float64; another dtype (bfloat16 under --precision bf16) is walked in float32 and the
  // probabilities and scores come back in the queries' dtype.
  const auto dtype = in.queries.scalar_type();
  const auto work = dtype == torch::kDouble && in.keys.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto q = in.queries.to(work).contiguous(), keys = in.keys.to(work).contiguous(), masks = in.masks.contiguous();
  const auto uniform = in.uniform.defined() ? in.uniform.to(q.scalar_type()).contiguous() : torch::Tensor();
  const auto Q = q.size(0), H = q.size(1);
  if (static_cast<std::int64_t>(in.offsets.size()) < in.k || Q % keys.size(0) != 0)
    throw std::logic_error("walk_cpu: inconsistent shapes");
  auto long_opts = q.options().dtype(torch::kLong);
  WalkResult out;
  out.rows = torch::empty({Q, in.k, in.b}, long_opts);
  out.actions = torch::empty({Q, in.k, 1}, long_opts);
  out.path = torch::empty({Q, in.k}, long_opts);
  out.pi = torch::empty({Q, in.k, in.b}, q.options());
  out.scores = torch::empty({Q, in.k, in.b, H}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "walk_cpu", [&] { walk_kernel<scalar_t>(in, q, keys, masks, uniform, out); });
  if (dtype != work) {
    out.pi = out.pi.to(dtype);
    out.scores = out.scores.to(dtype);
  }
  return out;
}

}  // namespace retreever
