// A check of build_tree under dropout, shared by test_tree (CPU) and test_cuda (GPU). Qt-free.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "core/nn/blocks.h"
#include "core/tree/tree.h"

namespace retreever::testing {

// An aggregator of `layers` layers (d_model 16, 2 heads) on `device`, training, dropping out at p.
inline Aggregator dropping_aggregator(const torch::Device& device, std::int64_t layers, double p) {
  Aggregator agg(layers, 16, 2, 32);
  agg->to(device);
  set_dropout(*agg, p);
  agg->train();
  return agg;
}

// Builds a tree (training, no bptt, as a training step does) with the aggregator dropping out at
// rate p, then aggregates the kept nodes once more, level by level from the leaves up, drawing the
// masks again from the same seed in the same order. Returns the largest |difference| between each
// kept parent and the aggregate of its kept children: about 0 when every node was aggregated from
// the nodes the tree keeps (the reference's tree), of the order of the nodes themselves when a
// node comes from another draw of the masks than its parent was aggregated from. `replay_seed`
// other than 11 draws other masks for the second aggregation (the check's own control).
// `batching`: how build_tree runs the levels (always: twice, the second pass batched and replaying
// the first pass's masks, as a GPU training step does).
inline double tree_dropout_mismatch(const torch::Device& device, std::int64_t N, std::int64_t b, double p,
                                    std::uint64_t replay_seed = 11,
                                    LevelBatching batching = LevelBatching::automatic) {
  torch::manual_seed(std::uint64_t(N) * 31 + std::uint64_t(b));
  auto agg = dropping_aggregator(device, 1, p);
  const std::int64_t B = 2, D = 16;
  auto context = torch::randn({B, N, D}, torch::TensorOptions().device(device)).requires_grad_();
  auto order = context_order(torch::zeros({B, N, 1}, context.options().requires_grad(false)), "given", b);
  DropoutStream stream(11);
  DropoutScope scope(stream);
  auto tree = build_tree(context, order, b, agg, /*bptt=*/false, /*balanced=*/false, batching);
  stream.reseed(replay_seed);
  torch::NoGradGuard no_grad;
  const auto& s = tree.shape;
  double worst = 0;
  for (std::int64_t level = s.k; level >= 1; --level) {  // nodes[level] is level + 1, the children
    const auto fan = s.fan_out(level), count = s.level_size(level);
    auto children = tree.nodes[level].detach().reshape({B * count, fan, D});
    auto mask = tree.masks[level].reshape({B * count, fan});
    auto parent = agg->forward(children, s.has_padding() ? mask : torch::Tensor()).view({B, count, D});
    worst = std::max(worst, (parent - tree.nodes[level - 1].detach()).abs().max().item<double>());
  }
  return worst;
}

// The tree's nodes and the aggregator's gradients (of a weighted sum over every node) when the
// levels run batched (their masks replayed) against level by level, from one dropout seed. Returns
// the largest |difference| over nodes and gradients, relative to the largest gradient.
inline double tree_batching_difference(const torch::Device& device, std::int64_t N, std::int64_t b, double p) {
  torch::manual_seed(std::uint64_t(N) * 7 + std::uint64_t(b));
  auto agg = dropping_aggregator(device, 2, p);
  const std::int64_t B = 3, D = 16;
  const auto options = torch::TensorOptions().device(device);
  auto context = torch::randn({B, N, D}, options);
  auto order = context_order(torch::zeros({B, N, 1}, options), "given", b);
  std::vector<torch::Tensor> nodes[2], grads[2];
  for (int way = 0; way < 2; ++way) {
    agg->zero_grad();
    DropoutStream stream(5);
    DropoutScope scope(stream);
    auto tree = build_tree(context, order, b, agg, /*bptt=*/false, /*balanced=*/false,
                           way == 0 ? LevelBatching::always : LevelBatching::never);
    auto loss = torch::zeros({}, options);
    for (std::size_t l = 0; l < tree.nodes.size(); ++l) {
      auto weight = torch::linspace(-1, 1, tree.nodes[l].numel(), options).view(tree.nodes[l].sizes());
      loss = loss + (tree.nodes[l] * weight).sum();
      nodes[way].push_back(tree.nodes[l].detach());
    }
    loss.backward();
    for (const auto& param : agg->parameters()) grads[way].push_back(param.grad().clone());
  }
  double scale = 0, worst = 0;
  for (const auto& g : grads[1]) scale = std::max(scale, g.abs().max().item<double>());
  for (std::size_t i = 0; i < nodes[0].size(); ++i)
    worst = std::max(worst, (nodes[0][i] - nodes[1][i]).abs().max().item<double>());
  for (std::size_t i = 0; i < grads[0].size(); ++i)
    worst = std::max(worst, (grads[0][i] - grads[1][i]).abs().max().item<double>() / std::max(scale, 1e-12));
  return worst;
}

}  // namespace retreever::testing
