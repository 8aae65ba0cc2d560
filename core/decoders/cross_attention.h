// Full cross attention: every query reads all N context tokens (the baseline TCA replaces).
#pragma once

#include "core/decoders/decoder.h"

namespace retreever {

class CrossAttentionImpl : public DecoderImpl {
 public:
  CrossAttentionImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                     BlockStyle style = BlockStyle::v1());
  std::shared_ptr<Memory> prepare(const torch::Tensor& context, const torch::Tensor& x_context) override;
  DecodeOutput decode(const Memory& memory, const torch::Tensor& queries,
                      const DecodeRequest& request) override;
  std::int64_t tokens_per_query(std::int64_t n) const override { return n; }

 private:
  CrossAttentionBlock block_{nullptr};
};

}  // namespace retreever
