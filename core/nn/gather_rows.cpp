#include "gather_rows.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace retreever {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Rows per parallel chunk of the forward copy.
constexpr std::int64_t kRowGrain = 512;

struct GatherRows : public torch::autograd::Function<GatherRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& table, const torch::Tensor& index) {
    auto t = table.contiguous();
    auto idx = index.contiguous();
    const auto R = t.size(0), C = t.size(1), K = idx.numel();
    const auto* rows = idx.data_ptr<std::int64_t>();
    for (std::int64_t k = 0; k < K; ++k)
      if (rows[k] < 0 || rows[k] >= R)
        throw std::out_of_range("gather_rows: index " + std::to_string(rows[k]) + " outside a table of " +
                                std::to_string(R) + " rows");
    auto out = torch::empty({K, C}, t.options());
    const auto bytes = C * t.element_size();
    const auto* from = static_cast<const char*>(t.data_ptr());
    auto* to = static_cast<char*>(out.data_ptr());
    at::parallel_for(0, K, kRowGrain, [&](std::int64_t k0, std::int64_t k1) {
      for (std::int64_t k = k0; k < k1; ++k) std::memcpy(to + k * bytes, from + rows[k] * bytes, bytes);
    });
    ctx->save_for_backward({idx});
    ctx->saved_data["rows"] = R;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto idx = ctx->get_saved_variables()[0];
    const auto R = ctx->saved_data["rows"].toInt();
    const auto grad = grads[0].contiguous();
    const auto K = grad.size(0), C = grad.size(1);
    auto table_grad = torch::zeros({R, C}, grad.options());
    const auto* rows = idx.data_ptr<std::int64_t>();
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "gather_rows_backward", [&] {
      const auto* g = grad.data_ptr<scalar_t>();
      auto* out = table_grad.data_ptr<scalar_t>();
      // Threads take columns, not rows: two picks of one row never meet in two threads.
      at::parallel_for(0, C, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, K)),
                       [&](std::int64_t c0, std::int64_t c1) {
                         for (std::int64_t k = 0; k < K; ++k) {
                           const auto* from = g + k * C;
                           auto* to = out + rows[k] * C;
                           for (std::int64_t c = c0; c < c1; ++c) to[c] += from[c];
                         }
                       });
    });
    return {table_grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor gather_rows(const torch::Tensor& table, const torch::Tensor& index) {
  if (table.dim() != 2 || index.dim() != 1)
    throw std::invalid_argument("gather_rows needs a table [R,C] and an index [K]");
  const auto type = table.scalar_type();
  if (!table.device().is_cpu() || !index.device().is_cpu() || index.scalar_type() != torch::kLong ||
      (type != torch::kFloat && type != torch::kDouble))
    return torch::embedding(table, index);
  return GatherRows::apply(table, index);
}

}  // namespace retreever
