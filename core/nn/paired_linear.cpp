#include "paired_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/cuda/cuda_ops.h"
#include "core/training/precision.h"

#include <stdexcept>

namespace retreever {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Row block i of t [2h, ...]; an undefined or empty t (no bias) stays undefined.
torch::Tensor half(const torch::Tensor& t, int i) {
  if (!t.defined() || t.numel() == 0) return {};
  const auto h = t.size(0) / 2;
  return t.narrow(0, i * h, h);
}

struct PairedLinear : public torch::autograd::Function<PairedLinear> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                             const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    return {rows_product(x, half(w, 0), half(b, 0), true), rows_product(x, half(w, 1), half(b, 1), true)};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const auto h = w.size(0) / 2, in = w.size(1);
    // Rows of the two output gradients (zeros where an output was not used).
    const torch::Tensor g[2] = {grads[0].reshape({-1, h}), grads[1].reshape({-1, h})};
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = rows_product(g[0], half(w, 0), {}, false);
      dx = rows_product(g[1], half(w, 1), {}, false, dx).view(x.sizes());
    }
    // Never for no bias: its empty stand-in needs no gradient.
    if (ctx->needs_input_grad(2)) db = torch::empty({2 * h}, w.options());
    if (ctx->needs_input_grad(1)) {
      const auto rows = x.reshape({-1, in});
      dw = torch::empty_like(w, torch::MemoryFormat::Contiguous);
      for (int i = 0; i < 2; ++i) weight_gradient_into(g[i], rows, half(dw, i), half(db, i));
    } else if (db.defined()) {
      for (int i = 0; i < 2; ++i) column_sum_into(g[i], half(db, i));
    }
    return {dx, dw, db};
  }
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> paired_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                                      const torch::Tensor& bias) {
  if (weight.dim() != 2 || weight.size(0) % 2 != 0 || (bias.defined() && bias.numel() != weight.size(0)))
    throw std::invalid_argument("paired_linear needs a weight [2h, in] and a bias [2h] or none");
  if (AutocastGuard::enabled(x.device().type()))
    return {torch::linear(x, half(weight, 0), half(bias, 0)), torch::linear(x, half(weight, 1), half(bias, 1))};
  // Function::apply reads every tensor argument's device: no bias travels as an empty tensor.
  auto out = PairedLinear::apply(x, weight, bias.defined() ? bias : torch::empty({0}, weight.options()));
  return {out[0], out[1]};
}

}  // namespace retreever
