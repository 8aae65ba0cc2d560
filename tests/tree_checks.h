// A check of build_tree under dropout, shared by test_tree (CPU) and test_cuda (GPU). Qt-free.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "core/nn/blocks.h"
#include "core/tree/tree.h"

namespace retreever::testing {

// Builds a tree (training, no bptt, as a training step does) with the aggregator dropping out at
// rate p, then aggregates the kept nodes once more, level by level from the leaves up, drawing the
// masks again from the same seed in the same order. Returns the largest |difference| between each
// kept parent and the aggregate of its kept children: about 0 when every node was aggregated from
// the nodes the tree keeps (the reference's tree), of the order of the nodes themselves when a
// node comes from another draw of the masks than its parent was aggregated from. `replay_seed`
// other than 11 draws other masks for the second aggregation (the check's own control).
inline double tree_dropout_mismatch(const torch::Device& device, std::int64_t N, std::int64_t b, double p,
                                    std::uint64_t replay_seed = 11) {
  torch::manual_seed(std::uint64_t(N) * 31 + std::uint64_t(b));
  Aggregator agg(1, 16, 2, 32);
  agg->to(device);
  set_dropout(*agg, p);
  agg->train();
  const std::int64_t B = 2, D = 16;
  auto context = torch::randn({B, N, D}, torch::TensorOptions().device(device)).requires_grad_();
  auto order = context_order(torch::zeros({B, N, 1}, context.options().requires_grad(false)), "given", b);
  DropoutStream stream(11);
  DropoutScope scope(stream);
  auto tree = build_tree(context, order, b, agg, /*bptt=*/false);
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

}  // namespace retreever::testing
