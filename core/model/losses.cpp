#include "losses.h"

#include <cmath>

#include <torch/nn/functional.h>

namespace retreever {
namespace F = torch::nn::functional;

torch::Tensor task_loss(const torch::Tensor& prediction, const torch::Tensor& yt, const TaskSpec& spec,
                        bool bound_std) {
  if (spec.classification()) {
    auto ce = F::cross_entropy(prediction.reshape({-1, prediction.size(-1)}), yt.reshape(-1),
                               F::CrossEntropyFuncOptions().reduction(torch::kNone));
    return ce.view(yt.sizes());
  }
  return -task_metric(prediction, yt, spec, bound_std);
}

torch::Tensor task_metric(const torch::Tensor& prediction, const torch::Tensor& yt,
                          const TaskSpec& spec, bool bound_std) {
  if (spec.classification()) return (prediction.argmax(-1) == yt).to(prediction.dtype());
  auto [mean, std] = gaussian(prediction, bound_std);
  auto z = (yt - mean) / std;
  auto log_prob = -0.5 * z * z - torch::log(std) - 0.5 * std::log(2.0 * M_PI);
  return log_prob.sum(-1);
}

// R minus its baseline, per target (detached).
torch::Tensor advantage(const torch::Tensor& prediction, const torch::Tensor& yt, const TaskSpec& spec,
                        const Config& config, const BatchMean& batch_mean) {
  torch::NoGradGuard no_grad;
  const bool nce = spec.classification() && config.reward == "nce";
  auto r = nce ? -task_loss(prediction, yt, spec, config.bound_std) : task_metric(prediction, yt, spec, config.bound_std);
  if (config.rl_baseline == "mean") return r - (batch_mean ? batch_mean(r) : r.mean());
  return nce ? r + std::log(double(spec.classes)) : r;
}

LossTerms compute_losses(const ModelOutput& out, const Batch& batch, const TaskSpec& spec,
                         const Config& config, bool ca_only, const BatchMean& batch_mean) {
  LossTerms t;
  t.tca = task_loss(out.prediction, batch.yt, spec, config.bound_std).mean();
  {
    torch::NoGradGuard no_grad;
    t.metric = task_metric(out.prediction, batch.yt, spec, config.bound_std).mean();
  }
  t.total = t.tca;
  if (out.prediction_all_leaves.defined()) {
    t.ca = task_loss(out.prediction_all_leaves, batch.yt, spec, config.bound_std).mean();
    t.total = ca_only ? config.lambda_ca * t.ca : t.total + config.lambda_ca * t.ca;
  }
  if (out.log_prob.defined() && out.log_prob.requires_grad()) {
    auto a = advantage(out.prediction, batch.yt, spec, config, batch_mean);
    t.entropy = out.entropy;
    t.rl = -(a * out.log_prob).mean() - config.entropy_bonus * out.entropy;
    if (!ca_only) t.total = t.total + config.lambda_rl * t.rl;
  } else if (out.entropy.defined()) {
    t.entropy = out.entropy;
  }
  return t;
}

}  // namespace retreever
