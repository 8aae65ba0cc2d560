// Tree Cross Attention (PAPER.md "Retrieval", Algorithm 1), batched over every query:
// one gather per tree level, never a loop over queries or nodes.
#pragma once

#include <vector>

#include "core/decoders/decoder.h"

namespace retreever {

struct TreeMemory : Memory {
  Tree tree;
  // Every node of levels 1..k+1 in one table, level by level: [B,n,H,dh] keys and values, [B,n]
  // mask. Level l starts at row offsets[l-1]; the leaves are the last rows.
  torch::Tensor all_keys, all_values, all_masks;
  std::vector<std::int64_t> offsets;
  // all_keys and all_values in float32 for the CUDA kernels, made once here where the tables are
  // bfloat16 on a GPU (a decoder converted, or autocast); undefined otherwise.
  torch::Tensor kernel_keys, kernel_values;
};

// One child per query drawn from probabilities [B,M,b] by inverting their CDF at u [B,M,1]; real
// [B,M,b] marks the children that are not padding. A draw past the rounded CDF takes the last real
// child, never a padding child.
torch::Tensor draw_children(const torch::Tensor& probabilities, const torch::Tensor& real, const torch::Tensor& u);

class TreeCrossAttentionImpl : public DecoderImpl {
 public:
  TreeCrossAttentionImpl(std::int64_t d_model, std::int64_t heads, std::int64_t ff_dim,
                         std::int64_t branch_factor, std::int64_t aggregator_layers, bool bptt,
                         std::string ordering, bool balanced_leaves = false,
                         BlockStyle style = BlockStyle::v1(), bool head_entropy = false);

  std::shared_ptr<Memory> prepare(const torch::Tensor& context, const torch::Tensor& x_context) override;
  DecodeOutput decode(const Memory& memory, const torch::Tensor& queries,
                      const DecodeRequest& request) override;
  std::int64_t tokens_per_query(std::int64_t n) const override {
    return TreeShape::of(n, branch_factor_).tokens_per_query();
  }
  // On the CPU the walk runs as one kernel (tree_walk.h); on a GPU, where the CUDA kernels are
  // built (core/cuda/cuda_ops.h), the walk and the read of S run as one kernel each. false walks
  // with tensor operations on both (tests compare the two).
  void use_walk_kernel(bool on) { walk_kernel_ = on; }
  // A sibling on the walk that covers only padding (a zero vector in the node table): true keeps it in
  // S, where its zero key takes attention weight (score 0) and its zero value adds nothing, as the
  // reference code's S does (Config::padding_siblings "zero"); false leaves it out ("masked").
  void zero_padding_siblings(bool on) { zero_padding_siblings_ = on; }

 private:
  // Whether decode() takes decode_cuda for a tree of this shape and queries or node tables like x
  // (prepare() makes the kernels' float32 tables where it will).
  bool cuda_walk_serves(const torch::Tensor& x, const TreeShape& shape) const;
  // decode() on a GPU with the CUDA kernels.
  DecodeOutput decode_cuda(const TreeMemory& memory, const BlockQueries& queries, const DecodeRequest& request);
  // out.log_prob and out.entropy from the children's scores [B,M,k*b,H], their masks [B,M,k*b] and
  // the children taken [B,M,k,1].
  void policy_terms(const torch::Tensor& scores, const torch::Tensor& real, const torch::Tensor& actions,
                    const DecodeRequest& request, DecodeOutput& out);
  // The prediction from the read of S, attended [B,M,D] (and the all-leaves read when asked).
  void finish_decode(const TreeMemory& memory, const BlockQueries& queries, const torch::Tensor& attended,
                     const DecodeRequest& request, DecodeOutput& out);
  std::int64_t branch_factor_;
  bool bptt_;
  std::string ordering_;
  bool balanced_leaves_ = false;
  bool walk_kernel_ = true;
  bool head_entropy_ = false;  // entropy bonus: mean of each head's entropy (the reference) vs the policy's
  bool zero_padding_siblings_ = false;
  Aggregator aggregator_{nullptr};
  CrossAttentionBlock block_{nullptr};  // the policy's attention and the prediction's attention
};

}  // namespace retreever
