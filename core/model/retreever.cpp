#include "retreever.h"

#include <torch/nn/functional.h>
#include "core/registry.h"
#include "core/stage.h"

namespace retreever {

torch::Tensor pixel_coordinates(const torch::Tensor& rows, const torch::Tensor& columns, std::int64_t height,
                                std::int64_t width) {
  const auto r = rows.to(torch::kFloat32), c = columns.to(torch::kFloat32);
  return torch::stack({r / double(height - 1) * 2 - 1, c / double(width - 1) * 2 - 1}, -1);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(seed ^ mix((stream << 40) ^ mix(index))) >> 1;  // positive as int64
}

std::vector<Batch> evaluation_set(const Task& task, const Config& config, std::uint64_t seed) {
  constexpr std::uint64_t kEvalData = 2;  // the evaluation stream of derive_seed
  const auto rows = config.eval_batch > 0 ? config.eval_batch : config.batch;
  std::vector<Batch> set;
  for (std::int64_t j = 0; j < config.eval_batches; ++j)
    set.push_back(task.sample(rows, derive_seed(seed, kEvalData, std::uint64_t(j)), true));
  return set;
}

ReTreeverImpl::ReTreeverImpl(const Config& config, const TaskSpec& spec) : config_(config), spec_(spec) {
  const auto D = config.d_model;
  const auto context_in = spec.x_dim + (spec.metalearning ? spec.y_dim : 0);
  embedder_ = register_module("embedder", MLP(context_in, D, D, config.embed_depth, Activation::ELU));
  query_embedder_ =
      register_module("query_embedder", MLP(spec.x_dim, D, D, config.embed_depth, Activation::ELU));
  if (spec.sequential) {
    context_position_ = register_module("context_position", MLP(D, 2 * D, D, 3, Activation::ReLU));
    query_position_ = register_module("query_position", MLP(D, 2 * D, D, 3, Activation::ReLU));
  }
  // Perceiver IO brings its own latent encoder; the others encode the context tokens.
  const auto& decoder = decoder_info(config.model);
  const auto layers = decoder.encoder ? config.encoder_layers : 0;
  // The reference's encoder ends without a LayerNorm, and its head reads the decoder's output as it is.
  // The block style applies to the two models the reference code has, TCA and CA; Perceiver IO and
  // Treeformer keep v1 throughout.
  const bool v1 = config.block != "reference" || !decoder.reference_block;
  encoder_ = register_module("encoder", TransformerEncoder(layers, D, config.heads, config.ff_dim,
                                                           v1, !v1));
  decoder_ = register_module("decoder", make_decoder(config));
  if (v1)
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  const auto out = spec.classification() ? spec.classes : 2 * spec.y_dim;
  head_ = register_module("head", MLP(D, 2 * D, out, 2, Activation::ReLU));
  set_dropout(config.dropout);
}

void ReTreeverImpl::set_dropout(double p) {
  retreever::set_dropout(*this, p);
  positions_dropout_ = p;
}

torch::Tensor ReTreeverImpl::encode_context(const Batch& batch) {
  auto input = spec_.metalearning ? torch::cat({batch.xc, batch.yc}, -1) : batch.xc;
  auto h = embedder_->forward(input);
  if (spec_.sequential) {
    // Context tokens sit at positions 0..N-1 of the sequence.
    h = context_position_->forward(
        maybe_dropout(h + sinusoidal_positions(0, h.size(1), h.size(2), h.options()), positions_dropout()));
  }
  return encoder_->forward(h);
}

torch::Tensor ReTreeverImpl::embed_queries(const Batch& batch) {
  // When every row asks the same queries (the copy task: all-zero inputs that differ only by
  // position), embed one row and share it; gradients sum over the rows exactly as before.
  const auto B = batch.xt.size(0);
  bool shared = B > 1 && batch.shared_targets;
  auto h = query_embedder_->forward(shared ? batch.xt.narrow(0, 0, 1) : batch.xt);
  if (spec_.sequential) {
    // Target positions count from 0 as the context's do (the reference), or follow the context.
    const auto first = config_.query_positions == "after_context" ? batch.xc.size(1) : 0;
    h = h + sinusoidal_positions(first, h.size(1), h.size(2), h.options());
    // Under dropout each row draws its own mask, as the reference's per-row embedding does: the rows
    // part here, after the shared embedder, and the position MLP reads each row.
    if (shared && positions_dropout() > 0) {
      h = h.expand({B, -1, -1});
      shared = false;
    }
    h = query_position_->forward(maybe_dropout(h, positions_dropout()));
  }
  return shared ? h.expand({B, -1, -1}) : h;
}

torch::Tensor ReTreeverImpl::head(const torch::Tensor& encoding) {
  return head_->forward(norm_ ? layer_norm(norm_, encoding) : encoding);
}

ModelOutput ReTreeverImpl::forward(const Batch& batch, const DecodeRequest& request) {
  torch::Tensor context, queries;
  {
    RETREEVER_STAGE("embed");
    context = encode_context(batch);
    queries = embed_queries(batch);
  }
  ModelOutput out;
  {
    RETREEVER_STAGE("prepare");
    out.memory = decoder_->prepare(context, batch.xc);
  }
  DecodeOutput decoded;
  {
    RETREEVER_STAGE("decode");
    decoded = decoder_->decode(*out.memory, queries, request);
  }
  RETREEVER_STAGE("head");
  if (decoded.all_leaves.defined()) {  // one head pass over both reads (see TCA's decode)
    auto both = head(torch::cat({decoded.encoding, decoded.all_leaves})).chunk(2);
    out.prediction = both[0];
    out.prediction_all_leaves = both[1];
  } else {
    out.prediction = head(decoded.encoding);
  }
  out.log_prob = decoded.log_prob;
  out.entropy = decoded.entropy;
  out.trace = decoded.trace;
  return out;
}

std::pair<torch::Tensor, torch::Tensor> gaussian(const torch::Tensor& prediction, bool bound_std) {
  auto parts = prediction.chunk(2, -1);
  auto std = bound_std ? 0.05 + 0.95 * torch::nn::functional::softplus(parts[1]) : torch::exp(parts[1]);
  return {parts[0], std};
}

}  // namespace retreever
