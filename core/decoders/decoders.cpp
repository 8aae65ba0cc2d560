// Full cross attention and Perceiver IO, and the decoder factory. Both baselines reuse the
// CrossAttentionBlock that tree cross attention uses, so the three differ only in what they read.
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/registry.h"
#include "core/decoders/cross_attention.h"
#include "core/decoders/perceiver_io.h"

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

std::shared_ptr<DecoderImpl> make_decoder(const Config& c) { return decoder_info(c.model).make(c); }

DecoderInfo ca_decoder() {
  DecoderInfo d;
  d.name = "ca";
  d.title = "Transformer + CA";
  d.summary = "full cross attention: every query reads every context token";
  d.reference_block = true;
  d.make = [](const Config& c) -> std::shared_ptr<DecoderImpl> {
    return std::make_shared<CrossAttentionImpl>(c.d_model, c.heads, c.ff_dim, block_style(c, false));
  };
  return d;
}

DecoderInfo perceiver_decoder() {
  DecoderInfo d;
  d.name = "perceiver";
  d.title = "Perceiver IO";
  d.summary = "Perceiver IO: the context is compressed into L learned latents that every query reads";
  d.fields = {"latents"};
  d.encoder = false;  // its latent layers replace ReTreever's encoder and take its depth
  d.size_for_tokens = [](Config& c, std::int64_t tokens) { c.latents = std::max<std::int64_t>(1, tokens); };
  d.size_label = [](const Config& c) { return "(L=" + std::to_string(c.latents) + ")"; };
  d.make = [](const Config& c) -> std::shared_ptr<DecoderImpl> {
    return std::make_shared<PerceiverIOImpl>(c.d_model, c.heads, c.ff_dim, c.latents,
                                             std::max<std::int64_t>(1, c.encoder_layers));
  };
  return d;
}

}  // namespace retreever
