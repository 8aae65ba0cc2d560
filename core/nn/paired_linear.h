// The two halves of one linear layer, each its own contiguous output: the keys and values of an
// attention (weight [2D, D], no bias) and the value and gate of a GEGLU (weight [2F, D], bias [2F]).
//
// Two matmuls on the weight's row blocks give contiguous halves (a split of one product would
// not be, and its backward concatenates). Left to autograd, the two narrowed weights' backward
// would then write each gradient into a zeroed full-size copy of the weight and add the copies,
// and add the two input gradients in one more pass over the input's size. Here the backward
// writes the weight's (and bias's) gradient halves in place and adds the second input gradient
// inside its matmul: per layer, about ten small operations and one pass over the input fewer.
#pragma once

#include <torch/types.h>

#include <utility>

namespace retreever {

// (x W[:h]^T + b[:h], x W[h:]^T + b[h:]) for weight [2h, in] and bias [2h] or undefined.
// Under autocast the two narrowed linears run as PyTorch's (its casts, the same numbers).
std::pair<torch::Tensor, torch::Tensor> paired_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                                      const torch::Tensor& bias);

}  // namespace retreever
