// Adam over all of a model's parameters at once. The parameters and their gradients live in two
// flat buffers, each parameter (and its gradient) a view into them, so zeroing the gradients, their
// global norm, clipping and the update are a handful of tensor operations instead of a dozen per
// parameter tensor: on a small model, per-operation overhead is most of the optimiser's time.
//
// The update is torch::optim::Adam's (no weight decay, no AMSGrad), element for element, and the
// state is saved and loaded in torch::optim::Adam's archive format, so checkpoints written before
// this class existed resume unchanged.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/serialize/archive.h>
#include <torch/types.h>

namespace retreever {

class FlatAdam {
 public:
  explicit FlatAdam(std::vector<torch::Tensor> parameters, double beta1 = 0.9, double beta2 = 0.999,
                    double eps = 1e-8);

  // Zeroes every gradient in place (one operation). Call before backward().
  void zero_grad();
  // Points the parameters and gradients back at the flat buffers if something moved them (loading a
  // checkpoint does), copying their values in; the buffers themselves never move, so work recorded
  // on them (a CUDA graph of the step) stays valid.
  void reattach();
  // The global L2 norm of the gradients, as a 0-dim tensor on their device (no host wait).
  torch::Tensor grad_norm();
  // Multiplies every gradient by `factor` (a 0-dim tensor): gradient clipping.
  void scale_grad(const torch::Tensor& factor);
  // One Adam update with learning rate lr.
  void step(double lr);
  std::int64_t steps_taken() const { return step_; }
  // Parameter i's first and second moments: views into the flat state (writable, so a checkpoint
  // reads straight into them), and the step count the bias correction uses.
  torch::Tensor exp_avg_of(std::size_t i) const;
  torch::Tensor exp_avg_sq_of(std::size_t i) const;
  void set_steps_taken(std::int64_t steps);
  // The flat buffers themselves (data-parallel training all-reduces the gradients and broadcasts
  // the parameters in a few large transfers); writing them writes every parameter or gradient.
  torch::Tensor flat_parameters() const { return flat_; }
  torch::Tensor flat_gradients() const { return grad_; }

  // torch::optim::Adam's archive format (param groups and per-parameter state).
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  // Points every parameter and gradient at its slice of the flat buffers, copying the current
  // values in. Done at construction and again whenever something replaced a parameter's storage
  // (loading a checkpoint does) or dropped a gradient.
  void attach();
  bool attached() const;

  std::vector<torch::Tensor> params_;
  std::vector<std::int64_t> offsets_;  // start of each parameter in the flat buffers
  torch::Tensor flat_, grad_, exp_avg_, exp_avg_sq_;
  double beta1_, beta2_, eps_;
  std::int64_t step_ = 0;
};

}  // namespace retreever
