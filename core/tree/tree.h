// The tree of Tree Cross Attention: ordering heuristics, padding, bottom-up aggregation.
#pragma once

#include <string>
#include <vector>

#include <torch/nn.h>

#include "core/nn/blocks.h"
#include "core/tree/tree_shape.h"

namespace retreever {

// Orders a context so that neighbours in the order are neighbours in input space.
// x [B,N,dx] (raw inputs) -> [B,N] long: the original index of each position.
// "given": as is; "sort_x1"/"sort_x2": by that coordinate; "kdtree": median splits along
// alternating axes, lined up with the nodes of a tree of branch factor b (binary splits when b is a
// power of two, b-way quantile splits otherwise); "random_proj": by the projection on a fixed
// random direction.
torch::Tensor context_order(const torch::Tensor& x, const std::string& ordering, std::int64_t b = 2);

// Levels 1 .. k+1 of a tree (the root is implicit: it is never a candidate in S).
struct Tree {
  TreeShape shape;
  std::vector<torch::Tensor> nodes;  // nodes[l-1]: level l, [B, level_size(l), D]; back() = leaves
  std::vector<torch::Tensor> masks;  // masks[l-1]: [B, level_size(l)] bool, false = padding
  torch::Tensor order;               // [B, padded] long: original context index under each leaf

  const torch::Tensor& leaves() const { return nodes.back(); }
  const torch::Tensor& leaf_mask() const { return masks.back(); }
};

// Summarises a node's children: a masked Transformer over them, then a masked mean.
class AggregatorImpl : public torch::nn::Module {
 public:
  // reference: its layers in the reference's style (TransformerLayer).
  AggregatorImpl(std::int64_t layers, std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                 bool reference = false);
  // children [G,c,D], mask [G,c] (undefined: every child is real) -> [G,D]
  torch::Tensor forward(const torch::Tensor& children, const torch::Tensor& mask);

 private:
  TransformerEncoder encoder_{nullptr};
};
TORCH_MODULE(Aggregator);

// Builds the tree bottom-up. context [B,N,D] in original order, order [B,N] from context_order.
// Leaf group g takes the ordered positions TreeShape::first_in_group(g) onwards (layout: packed or
// balanced, see TreeShape); padding slots repeat a real leaf (finite values) and are masked.
// With bptt false the aggregator sees detached children, so the task loss does not flow through
// the tree.
// `batching`: whether the levels run twice, first without autograd, then batched with it (as a
// training step does on a GPU by default, build_tree's comment says why): tests ask for both ways
// on every device.
enum class LevelBatching { automatic, always, never };
Tree build_tree(const torch::Tensor& context, const torch::Tensor& order, std::int64_t branch_factor,
                Aggregator& aggregator, bool bptt, bool balanced = false,
                LevelBatching batching = LevelBatching::automatic);

}  // namespace retreever
