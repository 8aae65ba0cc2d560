// Full cross attention, Perceiver IO and the decoder factory. Both baselines reuse the
// CrossAttentionBlock that tree cross attention uses, so the three differ only in what they read.
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/decoders/cross_attention.h"
#include "core/decoders/perceiver_io.h"
#include "core/decoders/tree_cross_attention.h"
#include "core/decoders/treeformer.h"

namespace retreever {
namespace {

std::shared_ptr<Memory> project(CrossAttentionBlock& block, const torch::Tensor& nodes) {
  auto memory = std::make_shared<ProjectedMemory>();
  std::tie(memory->keys, memory->values) = block->keys_values(nodes);
  return memory;
}

// Every query reads every projected node through the block.
DecodeOutput read_all(CrossAttentionBlock& block, const Memory& base, const torch::Tensor& queries) {
  const auto& memory = static_cast<const ProjectedMemory&>(base);
  DecodeOutput out;
  out.encoding = block->read(queries, memory.keys, memory.values);
  return out;
}

}  // namespace

CrossAttentionImpl::CrossAttentionImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                                       BlockStyle style) {
  block_ = register_module("block", CrossAttentionBlock(d_model, heads, ff_dim, style));
}

std::shared_ptr<Memory> CrossAttentionImpl::prepare(const torch::Tensor& context, const torch::Tensor&) {
  return project(block_, context);
}

DecodeOutput CrossAttentionImpl::decode(const Memory& memory, const torch::Tensor& queries,
                                        const DecodeRequest&) {
  return read_all(block_, memory, queries);
}

PerceiverIOImpl::PerceiverIOImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                                 std::int64_t latents, std::int64_t latent_layers) {
  latents_ = register_parameter("latents", torch::randn({latents, d_model}) * 0.02);
  encode_ = register_module("encode", CrossAttentionBlock(d_model, heads, ff_dim));
  latent_attention_ =
      register_module("latent_attention", TransformerEncoder(latent_layers, d_model, heads, ff_dim));
  read_ = register_module("read", CrossAttentionBlock(d_model, heads, ff_dim));
}

std::shared_ptr<Memory> PerceiverIOImpl::prepare(const torch::Tensor& context, const torch::Tensor&) {
  const auto B = context.size(0);
  auto z = latents_.unsqueeze(0).expand({B, latents_.size(0), latents_.size(1)});
  z = latent_attention_->forward(encode_->forward(z, context));
  return project(read_, z);
}

DecodeOutput PerceiverIOImpl::decode(const Memory& memory, const torch::Tensor& queries,
                                     const DecodeRequest&) {
  return read_all(read_, memory, queries);
}

BlockStyle block_style(const Config& c, bool tree) {
  return c.block == "reference" ? BlockStyle::reference(tree) : BlockStyle::v1();
}

std::shared_ptr<DecoderImpl> make_decoder(const Config& c) {
  if (c.model == "tca")
    return std::make_shared<TreeCrossAttentionImpl>(c.d_model, c.heads, c.ff_dim, c.branch_factor,
                                                    c.aggregator_layers, c.bptt, c.ordering,
                                                    c.leaf_layout == "balanced", block_style(c, true),
                                                    c.block == "reference");
  if (c.model == "ca") return std::make_shared<CrossAttentionImpl>(c.d_model, c.heads, c.ff_dim, block_style(c, false));
  if (c.model == "perceiver")
    // Perceiver IO's own encoder replaces ReTreever's: its latent layers take the encoder's depth.
    return std::make_shared<PerceiverIOImpl>(c.d_model, c.heads, c.ff_dim, c.latents,
                                             std::max<std::int64_t>(1, c.encoder_layers));
  if (c.model == "treeformer")
    return std::make_shared<TreeformerImpl>(c.d_model, c.heads, c.ff_dim, c.treeformer_depth);
  throw std::invalid_argument("unknown model '" + c.model + "'; use tca|ca|perceiver|treeformer");
}

}  // namespace retreever
