#include "flat_adam.h"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include <torch/optim/adam.h>

namespace retreever {
namespace {

// The key torch::optim::Adam files a parameter's state under. LibTorch 1.x keys its state map by
// the parameter's TensorImpl address printed as text; later versions may key it by the address
// itself. Deduced from the map's key type, so both compile.
template <class Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return reinterpret_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace

FlatAdam::FlatAdam(std::vector<torch::Tensor> parameters, double beta1, double beta2, double eps)
    : params_(std::move(parameters)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  std::int64_t total = 0;
  for (const auto& p : params_) {
    offsets_.push_back(total);
    total += p.numel();
  }
  auto options = params_.empty() ? torch::TensorOptions(torch::kFloat32) : params_.front().options();
  flat_ = torch::zeros({total}, options);
  grad_ = torch::zeros({total}, options);
  exp_avg_ = torch::zeros({total}, options);
  exp_avg_sq_ = torch::zeros({total}, options);
  attach();
}

namespace {
const void* element(const torch::Tensor& flat, std::int64_t offset) {
  return static_cast<const char*>(flat.data_ptr()) + offset * flat.element_size();
}
}  // namespace

bool FlatAdam::attached() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (p.data_ptr() != element(flat_, offsets_[i]) || !p.grad().defined() ||
        p.grad().data_ptr() != element(grad_, offsets_[i]))
      return false;
  }
  return true;
}

void FlatAdam::attach() {
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const auto n = p.numel();
    auto values = flat_.narrow(0, offsets_[i], n).view(p.sizes());
    if (p.data_ptr() != values.data_ptr()) values.copy_(p.detach());
    p.set_data(values);
    p.mutable_grad() = grad_.narrow(0, offsets_[i], n).view(p.sizes());
  }
}

torch::Tensor FlatAdam::exp_avg_of(std::size_t i) const {
  return exp_avg_.narrow(0, offsets_.at(i), params_.at(i).numel()).view(params_[i].sizes());
}
torch::Tensor FlatAdam::exp_avg_sq_of(std::size_t i) const {
  return exp_avg_sq_.narrow(0, offsets_.at(i), params_.at(i).numel()).view(params_[i].sizes());
}
void FlatAdam::set_steps_taken(std::int64_t steps) {
  if (steps < 0) throw std::runtime_error("the optimiser's step count is negative");
  step_ = steps;
}

void FlatAdam::reattach() {
  if (!attached()) attach();
}

void FlatAdam::zero_grad() {
  reattach();
  grad_.zero_();
}

torch::Tensor FlatAdam::grad_norm() { return grad_.norm(); }

void FlatAdam::scale_grad(const torch::Tensor& factor) { grad_.mul_(factor); }

void FlatAdam::step(double lr) {
  if (!attached())  // backward() cannot have filled gradients that are not ours
    throw std::logic_error("FlatAdam::step: a parameter or gradient left the flat buffers since zero_grad()");
  torch::NoGradGuard no_grad;
  ++step_;
  const double correction1 = 1 - std::pow(beta1_, double(step_));
  const double correction2 = 1 - std::pow(beta2_, double(step_));
  exp_avg_.mul_(beta1_).add_(grad_, 1 - beta1_);
  exp_avg_sq_.mul_(beta2_).addcmul_(grad_, grad_, 1 - beta2_);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(correction2)).add_(eps_);
  flat_.addcdiv_(exp_avg_, denom, -lr / correction1);
}

void FlatAdam::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::Adam adam(params_, torch::optim::AdamOptions(1e-3).betas({beta1_, beta2_}).eps(eps_));
  if (step_ > 0) {
    auto& state = adam.state();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const auto& p = params_[i];
      auto s = std::make_unique<torch::optim::AdamParamState>();
      s->step(step_);
      s->exp_avg(exp_avg_.narrow(0, offsets_[i], p.numel()).view(p.sizes()).clone());
      s->exp_avg_sq(exp_avg_sq_.narrow(0, offsets_[i], p.numel()).view(p.sizes()).clone());
      state[state_key(state, p)] = std::move(s);
    }
  }
  adam.save(archive);
}

void FlatAdam::load(torch::serialize::InputArchive& archive) {
  torch::optim::Adam adam(params_, torch::optim::AdamOptions(1e-3).betas({beta1_, beta2_}).eps(eps_));
  adam.load(archive);
  torch::NoGradGuard no_grad;
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  step_ = 0;
  auto& state = adam.state();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    auto it = state.find(state_key(state, p));
    if (it == state.end()) continue;  // never updated: zero moments
    auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
    if (s.exp_avg().sizes() != p.sizes() || s.exp_avg_sq().sizes() != p.sizes())
      throw std::runtime_error("optimiser state of parameter " + std::to_string(i) + " has the wrong shape");
    exp_avg_.narrow(0, offsets_[i], p.numel()).copy_(s.exp_avg().reshape(-1));
    exp_avg_sq_.narrow(0, offsets_[i], p.numel()).copy_(s.exp_avg_sq().reshape(-1));
    step_ = std::max(step_, s.step());
  }
}

}  // namespace retreever
