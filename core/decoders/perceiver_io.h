// Perceiver IO (Jaegle et al. 2021): L learned latents cross-attend to the context, latent
// self-attention refines them, and each query reads the L latents.
#pragma once

#include "core/decoders/decoder.h"

namespace retreever {

class PerceiverIOImpl : public DecoderImpl {
 public:
  PerceiverIOImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                  std::int64_t latents, std::int64_t latent_layers);
  std::shared_ptr<Memory> prepare(const torch::Tensor& context, const torch::Tensor& x_context) override;
  DecodeOutput decode(const Memory& memory, const torch::Tensor& queries,
                      const DecodeRequest& request) override;
  std::int64_t tokens_per_query(std::int64_t) const override { return latents_.size(0); }

 private:
  torch::Tensor latents_;               // [L,D]
  CrossAttentionBlock encode_{nullptr};  // latents <- context
  TransformerEncoder latent_attention_{nullptr};
  CrossAttentionBlock read_{nullptr};    // queries <- latents
};

}  // namespace retreever
