// The ReTreever model (PAPER.md "ReTreever"): embedders -> encoder -> decoder -> head.
#pragma once

#include <torch/nn.h>

#include "core/config.h"
#include "core/decoders/decoder.h"
#include "core/task.h"

namespace retreever {

struct ModelOutput {
  torch::Tensor prediction;  // [B,M,C] logits, or [B,M,2*dy] Gaussian (mean | std)
  torch::Tensor prediction_all_leaves;  // TCA with all_leaves: the L_CA prediction
  torch::Tensor log_prob;    // [B,M] TCA: log-probability of the walk
  torch::Tensor entropy;     // [] TCA: mean policy entropy
  RetrievalTrace trace;
  std::shared_ptr<Memory> memory;  // what the decoder prepared (the tree for TCA)
};

class ReTreeverImpl : public torch::nn::Module {
 public:
  ReTreeverImpl(const Config& config, const TaskSpec& spec);

  ModelOutput forward(const Batch& batch, const DecodeRequest& request);

  // The stages, for benchmarks and inspection.
  torch::Tensor encode_context(const Batch& batch);  // [B,N,D]
  torch::Tensor embed_queries(const Batch& batch);   // [B,M,D]
  torch::Tensor head(const torch::Tensor& encoding);  // [B,M,D] -> prediction
  DecoderImpl& decoder() { return *decoder_; }

  const Config& config() const { return config_; }
  // Dropout in training (Config::dropout; the constructor sets it): every attention's weights, each
  // feed-forward's output, and a sequence's embedding plus positional encoding.
  void set_dropout(double p);
  double positions_dropout() const { return is_training() ? positions_dropout_ : 0; }
  const TaskSpec& spec() const { return spec_; }
  std::int64_t tokens_per_query(std::int64_t n) const { return decoder_->tokens_per_query(n); }

 private:
  Config config_;
  TaskSpec spec_;
  double positions_dropout_ = 0;
  MLP embedder_{nullptr}, query_embedder_{nullptr};
  MLP context_position_{nullptr}, query_position_{nullptr};  // sequential data only
  TransformerEncoder encoder_{nullptr};
  std::shared_ptr<DecoderImpl> decoder_;
  torch::nn::LayerNorm norm_{nullptr};
  MLP head_{nullptr};
};
TORCH_MODULE(ReTreever);

// Splits a Gaussian prediction [.., 2*dy] into mean and std (bounded as the config says).
std::pair<torch::Tensor, torch::Tensor> gaussian(const torch::Tensor& prediction, bool bound_std);

}  // namespace retreever
