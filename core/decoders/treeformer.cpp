#include "treeformer.h"

#include <cmath>

#include "core/config.h"
#include "core/registry.h"

namespace retreever {

TreeformerImpl::TreeformerImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                               std::int64_t depth)
    : depth_(depth) {
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  splits_ = register_module("splits", torch::nn::Linear(d_model, (std::int64_t(1) << depth) - 1));
  read_ = register_module("read", CrossAttentionBlock(d_model, heads, ff_dim));
}

torch::Tensor TreeformerImpl::routing(const torch::Tensor& context, bool hard) {
  // p(right) at every internal node (heap order: node i has children 2i+1, 2i+2).
  auto right = torch::sigmoid(splits_->forward(layer_norm(norm_, context)));  // [B,N,2^d-1]
  if (hard) right = (right > 0.5).to(right.dtype());
  auto reach = torch::ones_like(right.narrow(-1, 0, 1));  // [B,N,1]: everyone reaches the root
  std::int64_t first = 0;
  for (std::int64_t level = 0; level < depth_; ++level) {
    const std::int64_t width = std::int64_t(1) << level;
    auto p = right.narrow(-1, first, width);                            // this level's nodes
    reach = torch::stack({reach * (1 - p), reach * p}, -1).flatten(-2);  // children in order
    first += width;
  }
  return reach;  // [B,N,2^d]
}

std::shared_ptr<Memory> TreeformerImpl::prepare(const torch::Tensor& context, const torch::Tensor&) {
  auto weights = routing(context, !is_training());                          // [B,N,L]
  auto mass = weights.sum(1);                                               // [B,L]
  auto summaries = torch::matmul(weights.transpose(1, 2), context) / mass.clamp_min(1e-6).unsqueeze(-1);
  auto memory = std::make_shared<TreeformerMemory>();
  std::tie(memory->keys, memory->values) = read_->keys_values(summaries);
  memory->occupied = mass > 1e-3;  // empty leaves are not read
  return memory;
}

DecodeOutput TreeformerImpl::decode(const Memory& base, const torch::Tensor& queries, const DecodeRequest&) {
  const auto& memory = static_cast<const TreeformerMemory&>(base);
  DecodeOutput out;
  out.encoding = read_->read(queries, memory.keys, memory.values, memory.occupied);
  return out;
}

DecoderInfo treeformer_decoder() {
  DecoderInfo d;
  d.name = "treeformer";
  d.title = "Simplified Treeformer TC";
  d.summary =
      "simplified Treeformer TC attention: one shared learned decision tree picks 2^d leaf summaries (none of "
      "Treeformer's per-head trees, query routing, TF attention or bootstrapped training)";
  d.fields = {"treeformer_depth"};
  d.size_for_tokens = [](Config& c, std::int64_t tokens) {
    c.treeformer_depth = std::max<std::int64_t>(1, std::llround(std::log2(double(std::max<std::int64_t>(2, tokens)))));
  };
  d.size_label = [](const Config& c) { return "(d=" + std::to_string(c.treeformer_depth) + ")"; };
  d.make = [](const Config& c) -> std::shared_ptr<DecoderImpl> {
    return std::make_shared<TreeformerImpl>(c.d_model, c.heads, c.ff_dim, c.treeformer_depth);
  };
  return d;
}

}  // namespace retreever
