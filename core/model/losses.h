// The ReTreever objective (PAPER.md "Training objective"):
// L = L_TCA + lambda_RL * L_RL + lambda_CA * L_CA.
#pragma once

#include <functional>

#include <torch/types.h>

#include "core/config.h"
#include "core/model/retreever.h"

namespace retreever {

struct LossTerms {
  torch::Tensor total;    // what the optimiser minimises
  torch::Tensor tca;      // task loss of the prediction from S (or from everything for CA/Perceiver)
  torch::Tensor ca;       // task loss of the all-leaves prediction (TCA training only)
  torch::Tensor rl;       // REINFORCE term including the entropy bonus (TCA training only)
  torch::Tensor entropy;  // mean policy entropy (TCA only)
  torch::Tensor metric;   // accuracy (classification) or mean target log-likelihood (regression)
};

// Per-target task loss [B,M]: cross entropy, or Gaussian negative log-likelihood summed over dims.
torch::Tensor task_loss(const torch::Tensor& prediction, const torch::Tensor& yt, const TaskSpec& spec,
                        bool bound_std);
// Per-target metric [B,M]: 1/0 correctness, or the Gaussian log-likelihood.
torch::Tensor task_metric(const torch::Tensor& prediction, const torch::Tensor& yt,
                          const TaskSpec& spec, bool bound_std);
// REINFORCE reward minus its baseline, per target [B,M] (detached). Rewards: accuracy, negative
// cross entropy, or the log-likelihood for regression. Baselines (config rl_baseline): "fixed",
// the paper's 0 / -log C / 0; "mean", the batch mean of the reward.
// batch_mean: the mean of a per-row statistic over the whole batch; data-parallel training passes
// one that averages over every process's rows (empty: the tensor's own mean).
using BatchMean = std::function<torch::Tensor(const torch::Tensor&)>;
torch::Tensor advantage(const torch::Tensor& prediction, const torch::Tensor& yt, const TaskSpec& spec,
                        const Config& config, const BatchMean& batch_mean = {});

// The objective L_TCA + lambda_RL L_RL + lambda_CA L_CA. With ca_only (TCA's warm-up, Config::ca_warmup)
// the total is lambda_CA L_CA alone; every term is still computed and reported.
LossTerms compute_losses(const ModelOutput& out, const Batch& batch, const TaskSpec& spec,
                         const Config& config, bool ca_only = false, const BatchMean& batch_mean = {});

}  // namespace retreever
