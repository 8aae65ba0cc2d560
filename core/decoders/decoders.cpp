// Full cross attention, Perceiver IO and the decoder factory. Both baselines reuse the
// CrossAttentionBlock that tree cross attention uses, so the three differ only in what they read.
#include <stdexcept>

#include "core/config.h"
#include "core/decoders/cross_attention.h"
#include "core/decoders/perceiver_io.h"
#include "core/decoders/tree_cross_attention.h"

namespace retreever {

CrossAttentionImpl::CrossAttentionImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim) {
  block_ = register_module("block", CrossAttentionBlock(d_model, heads, ff_dim));
}

std::shared_ptr<Memory> CrossAttentionImpl::prepare(const torch::Tensor& context, const torch::Tensor&) {
  auto memory = std::make_shared<TokensMemory>();
  std::tie(memory->keys, memory->values) = block_->keys_values(context);
  return memory;
}

DecodeOutput CrossAttentionImpl::decode(const Memory& base, const torch::Tensor& queries,
                                        const DecodeRequest&) {
  const auto& memory = static_cast<const TokensMemory&>(base);
  auto attended = block_->attention->attend_shared(block_->queries(queries), memory.keys,
                                                   memory.values, {}, false);
  DecodeOutput out;
  out.encoding = block_->finish(queries, attended.out);
  return out;
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
  auto memory = std::make_shared<LatentMemory>();
  std::tie(memory->keys, memory->values) = read_->keys_values(z);
  return memory;
}

DecodeOutput PerceiverIOImpl::decode(const Memory& base, const torch::Tensor& queries,
                                     const DecodeRequest&) {
  const auto& memory = static_cast<const LatentMemory&>(base);
  auto attended = read_->attention->attend_shared(read_->queries(queries), memory.keys,
                                                  memory.values, {}, false);
  DecodeOutput out;
  out.encoding = read_->finish(queries, attended.out);
  return out;
}

std::shared_ptr<DecoderImpl> make_decoder(const Config& c) {
  if (c.model == "tca")
    return std::make_shared<TreeCrossAttentionImpl>(c.d_model, c.heads, c.ff_dim, c.branch_factor,
                                                    c.aggregator_layers, c.bptt, c.ordering);
  if (c.model == "ca") return std::make_shared<CrossAttentionImpl>(c.d_model, c.heads, c.ff_dim);
  if (c.model == "perceiver")
    // Perceiver IO's own encoder replaces ReTreever's: its latent layers take the encoder's depth.
    return std::make_shared<PerceiverIOImpl>(c.d_model, c.heads, c.ff_dim, c.latents,
                                             std::max<std::int64_t>(1, c.encoder_layers));
  throw std::invalid_argument("unknown model '" + c.model + "'; use tca|ca|perceiver");
}

}  // namespace retreever
