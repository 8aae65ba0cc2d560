// Treeformer-style TC attention (seed 002, Madaan et al.): a learned decision tree of depth d
// routes every context token to one of 2^d leaves; each leaf is summarised by the mean of the
// tokens routed to it, and every query attends coarsely to the 2^d leaf summaries. Routing is
// soft during training (sigmoid splits) so that gradients reach the split hyperplanes, and hard
// at inference. Tokens read per query: 2^d.
#pragma once

#include "core/decoders/decoder.h"

namespace retreever {

struct TreeformerMemory : ProjectedMemory {
  torch::Tensor occupied;  // [B,2^d] leaves that at least one token reaches
};

class TreeformerImpl : public DecoderImpl {
 public:
  TreeformerImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim, std::int64_t depth);
  std::shared_ptr<Memory> prepare(const torch::Tensor& context, const torch::Tensor& x_context) override;
  DecodeOutput decode(const Memory& memory, const torch::Tensor& queries,
                      const DecodeRequest& request) override;
  std::int64_t tokens_per_query(std::int64_t) const override { return std::int64_t(1) << depth_; }

  // Probability of each token reaching each leaf: context [B,N,D] -> [B,N,2^d]; one-hot when hard.
  torch::Tensor routing(const torch::Tensor& context, bool hard);

 private:
  std::int64_t depth_;
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear splits_{nullptr};   // one hyperplane per internal node: D -> 2^d - 1
  CrossAttentionBlock read_{nullptr};   // queries <- leaf summaries
};

}  // namespace retreever
