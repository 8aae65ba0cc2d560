#include "tree.h"

#include <optional>
#include <stdexcept>
#include <string>

namespace retreever {

namespace {
constexpr std::uint64_t kRandomProjectionSeed = 2147483647;  // fixes the random direction
}  // namespace

torch::Tensor context_order(const torch::Tensor& x, const std::string& ordering, std::int64_t b) {
  const auto B = x.size(0), N = x.size(1);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(x.device());
  if (ordering == "given") return torch::arange(N, opts).unsqueeze(0).expand({B, N}).contiguous();
  if (ordering == "sort_x1" || ordering == "sort_x2") {
    const std::int64_t axis = ordering == "sort_x1" ? 0 : 1;
    if (axis >= x.size(2))
      throw std::invalid_argument("ordering '" + ordering + "' needs inputs with at least " +
                                  std::to_string(axis + 1) + " coordinates; use 'given' or 'sort_x1'");
    return std::get<1>(torch::sort(x.select(2, axis), /*stable=*/true, /*dim=*/1, false));
  }
  if (ordering == "random_proj") {
    // Sort by the projection on one fixed random direction (the same for every run).
    auto gen = at::make_generator<at::CPUGeneratorImpl>(kRandomProjectionSeed);
    auto direction = torch::randn({x.size(2)}, gen, torch::kFloat32).to(x.device(), x.scalar_type());
    return std::get<1>(torch::sort(torch::matmul(x, direction), true, 1, false));
  }
  if (ordering == "kdtree") {
    // Each pass splits every current segment into `split` quantile parts along axis (pass mod dx),
    // done for all segments at once: sort by (segment, coordinate) with a combined key. Segment j
    // of s holds the positions with floor(i * s / N) = j: after the passes of l tree levels, s =
    // b^l and the segments are exactly the nodes of level l (TreeShape::first_in_group).
    if (b < 2) throw std::invalid_argument("branch factor must be at least 2, got " + std::to_string(b));
    const bool power_of_two = (b & (b - 1)) == 0;
    const std::int64_t split = power_of_two ? 2 : b;  // b = 4: quadrants, not strips
    const auto dx = x.size(2);
    auto order = torch::arange(N, opts).unsqueeze(0).expand({B, N}).contiguous();
    auto pos = torch::arange(N, opts.dtype(torch::kDouble));
    auto xd = x.to(torch::kDouble);
    std::int64_t segments = 1, pass = 0;
    while (segments < N) {
      auto coord = xd.select(2, pass % dx).gather(1, order);  // [B,N] in current order
      auto lo = std::get<0>(coord.min(1, true)), hi = std::get<0>(coord.max(1, true));
      auto unit = (coord - lo) / (hi - lo).clamp_min(1e-12) * 0.999;  // in [0, 1)
      auto segment = torch::floor(pos * double(segments) / double(N)).unsqueeze(0);
      auto perm = std::get<1>(torch::sort(segment + unit, true, 1, false));
      order = order.gather(1, perm);
      segments *= split;
      ++pass;
    }
    return order;
  }
  throw std::invalid_argument("unknown ordering '" + ordering + "'; use given|sort_x1|sort_x2|kdtree|random_proj");
}

AggregatorImpl::AggregatorImpl(std::int64_t layers, std::int64_t d_model, std::int64_t heads,
                               std::int64_t ff_dim, bool reference) {
  // No final LayerNorm: every reader of a node (the next level, the decoder) normalises first.
  encoder_ = register_module("encoder", TransformerEncoder(layers, d_model, heads, ff_dim, false, reference));
}

torch::Tensor AggregatorImpl::forward(const torch::Tensor& children, const torch::Tensor& mask) {
  return encoder_->forward_mean(children, mask);  // the masked mean, its last matmul after the mean
}

Tree build_tree(const torch::Tensor& context, const torch::Tensor& order, std::int64_t branch_factor,
                Aggregator& aggregator, bool bptt, bool balanced, LevelBatching batching) {
  const auto B = context.size(0), N = context.size(1), D = context.size(2);
  Tree tree;
  tree.shape = TreeShape::of(N, branch_factor, balanced);
  const auto& s = tree.shape;
  const auto padded = s.padded();

  // Leaves: the ordered context laid out in the groups; a padding slot repeats its group's last
  // real leaf (packed: an empty group repeats the leaf of its slot modulo N).
  // Computed on the device (TreeShape::first_in_group, vectorised): no host-to-device copy.
  const auto G = s.groups();
  auto index = torch::arange(padded, order.options());  // [padded]
  auto group = torch::div(index, s.p, "floor"), j = index - group * s.p;
  auto first_of = [&](const torch::Tensor& g) {
    return s.balanced ? torch::div(g * N + G - 1, G, "floor") : (g * s.p).clamp_max(N);
  };
  auto first = first_of(group), count = first_of(group + 1) - first;
  auto leaf_real = j < count;
  auto slot = torch::where(count > 0, first + torch::minimum(j, (count - 1).clamp_min(0)), index % N);
  tree.order = order.index_select(1, slot);  // [B,padded]
  auto leaves = context.gather(1, tree.order.unsqueeze(-1).expand({B, padded, D}));
  auto leaf_mask = leaf_real.unsqueeze(0).expand({B, padded});

  std::vector<torch::Tensor> nodes{leaves}, masks{leaf_mask.contiguous()};
  // Without padding slots (the shape tells) every child is real: the aggregator skips its masks.
  const bool padding = s.has_padding();
  // Bottom-up: level k aggregates groups of P leaves, every level above groups of b.
  // On a GPU, training without bptt, the levels first run without autograd, then once more all
  // together with it: each level reads the values below it, detached, so one batched call gives the
  // same nodes and the same gradients in a fraction of the kernel launches (a training step of
  // small models is launch-bound there; on the CPU the second forward would only cost time).
  // While the aggregator drops out, the first pass records the masks it draws and the batched call
  // replays them (DropoutTape): each node is then the one its parent was aggregated from, as in the
  // reference, which aggregates the nodes it keeps, level by level.
  // A level of at least kDirectRows child rows runs once, with autograd, as on the CPU: there the
  // arithmetic of a second forward (and the copy into the batched call) outweighs the launches it
  // saves (H100, copy N = 1024, batch 128: 0.18 ms of a 9.3 ms step; no change at N = 256).
  constexpr std::int64_t kDirectRows = 65536;
  const bool batched = !bptt && torch::GradMode::is_enabled() && s.k > 1 &&
                       (batching == LevelBatching::automatic ? context.is_cuda() : batching == LevelBatching::always);
  const bool dropping = batched && dropout_active(*aggregator);  // masks to record and replay
  std::vector<torch::Tensor> inputs, input_masks;  // batched levels: children [B*count,fan,D], [B*count,fan]
  std::vector<std::size_t> input_node;              // where each batched level's parents go in nodes
  std::vector<std::vector<torch::Tensor>> input_drops;  // the dropout masks each batched level drew
  {
    const bool grad = torch::GradMode::is_enabled();
    for (std::int64_t level = s.k; level >= 1; --level) {
      const auto fan = s.fan_out(level), count = s.level_size(level);
      const bool again = batched && (batching == LevelBatching::always || B * count * fan < kDirectRows);
      torch::AutoGradMode grad_mode(grad && !again);
      auto children = nodes.back();
      if (!bptt) children = children.detach();
      auto child_mask = masks.back().reshape({B * count, fan});
      auto input = children.reshape({B * count, fan, D});
      std::optional<DropoutTape> tape;
      if (again && dropping) tape.emplace(DropoutTape::Mode::record);
      auto parent = aggregator->forward(input, padding ? child_mask : torch::Tensor());
      if (again) {
        inputs.push_back(input);
        input_node.push_back(nodes.size());
        input_masks.push_back(child_mask);
        input_drops.push_back(tape ? std::move(tape->masks) : std::vector<torch::Tensor>{});
      }
      nodes.push_back(parent.view({B, count, D}));
      masks.push_back(child_mask.any(1).view({B, count}));  // padding only if all children are
    }
  }
  // Levels of one fan-out (the leaf groups' P, then b above) go in one call each; under dropout,
  // each of the call's masks is the levels' masks of that draw, stacked as their rows are.
  for (std::size_t first = 0; first < inputs.size();) {
    auto last = first + 1;
    while (last < inputs.size() && inputs[last].size(1) == inputs[first].size(1)) ++last;
    std::vector<torch::Tensor> x(inputs.begin() + first, inputs.begin() + last),
        m(input_masks.begin() + first, input_masks.begin() + last);
    std::vector<std::int64_t> rows;
    for (const auto& t : x) rows.push_back(t.size(0));
    std::optional<DropoutTape> replay;
    if (dropping) {
      const auto draws = input_drops[first].size();
      for (auto i = first + 1; i < last; ++i)
        if (input_drops[i].size() != draws)
          throw std::logic_error("build_tree: the aggregator drew " + std::to_string(input_drops[i].size()) +
                                 " dropout masks at one level and " + std::to_string(draws) + " at another");
      std::vector<torch::Tensor> stacked;
      for (std::size_t j = 0; j < draws; ++j) {
        std::vector<torch::Tensor> parts;
        for (auto i = first; i < last; ++i) parts.push_back(input_drops[i][j]);
        stacked.push_back(torch::cat(parts));
      }
      replay.emplace(DropoutTape::Mode::replay, std::move(stacked));
    }
    auto parents = aggregator->forward(torch::cat(x), padding ? torch::cat(m) : torch::Tensor()).split_with_sizes(rows);
    if (replay && !replay->finished())
      throw std::logic_error("build_tree: the batched levels drew fewer dropout masks than their first pass");
    for (auto i = first; i < last; ++i) nodes[input_node[i]] = parents[i - first].view({B, rows[i - first] / B, D});
    first = last;
  }
  tree.nodes.assign(nodes.rbegin(), nodes.rend());
  tree.masks.assign(masks.rbegin(), masks.rend());
  return tree;
}

}  // namespace retreever
