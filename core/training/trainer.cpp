#include "trainer.h"

#include <chrono>
#include <cmath>
#include <limits>

#include <torch/cuda.h>

#include "core/memory.h"
#include "core/registry.h"
#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "core/training/device.h"
#include "core/training/flat_adam.h"

namespace retreever {
namespace {

// Random streams derived from the seed (see derive_seed): one per purpose.
// (The evaluation set's stream, 2, belongs to evaluation_set().)
constexpr std::uint64_t kTrainData = 1, kPolicySampling = 3, kInit = 4;

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += (s.empty() ? "" : "\n") + l;
  return s;
}

}  // namespace

double cosine_lr(double peak, std::int64_t t, std::int64_t total) {
  if (total <= 0) return peak;
  const double progress = std::min(1.0, double(t) / double(total));
  return 0.5 * peak * (1.0 + std::cos(M_PI * progress));
}

struct Trainer::Impl {
  Config config;
  TaskSpec spec;
  std::unique_ptr<Task> task;
  torch::Device device = torch::kCPU;
  ReTreever model{nullptr};
  std::unique_ptr<FlatAdam> optimizer;
  std::vector<Batch> eval_set;
  std::int64_t step = 0;
  MetricsHistory history;
  double best = -std::numeric_limits<double>::infinity();
  bool last_best = false;

  void build(const Config& c, const TaskFactory& tasks) {
    auto problems = c.validate();
    if (!problems.empty()) throw std::invalid_argument(join(problems));
    config = c;
    device = resolve_device(c.device);
    // Before the task's data, the model or the evaluation set. (On a GPU the activations live in its
    // memory, which this estimate does not read.)
    if (device.is_cpu()) {
      const auto refusal = memory_refusal(c, available_memory_bytes());
      if (!refusal.empty()) throw std::invalid_argument(refusal);
    }
    task = tasks(c);
    spec = task->spec();
    torch::manual_seed(derive_seed(c.seed, kInit, 0));
    model = ReTreever(c, spec);
    model->to(device);
    optimizer = std::make_unique<FlatAdam>(model->parameters(), c.adam_beta1);
    for (const auto& batch : evaluation_set(*task, c, std::uint64_t(c.seed))) eval_set.push_back(batch.to(device));
  }
};

Trainer::Trainer() : impl_(std::make_unique<Impl>()) {}

Trainer::Trainer(const Config& config, const TaskFactory& tasks) : Trainer() {
  impl_->build(config, tasks);
}

Trainer::~Trainer() = default;

std::unique_ptr<Trainer> Trainer::load(const std::string& path, const TaskFactory& tasks,
                                       const std::function<void(Config&)>& adjust, bool trust_legacy) {
  const bool legacy = trust_legacy && is_legacy_checkpoint(path);
  auto header = legacy ? read_legacy_checkpoint_header(path) : read_checkpoint_header(path);
  if (adjust) adjust(header.config);
  std::unique_ptr<Trainer> t(new Trainer());
  t->impl_->build(header.config, tasks);
  if (legacy) load_legacy_checkpoint_state(path, *t->impl_->model, t->impl_->optimizer.get(), t->impl_->device);
  else load_checkpoint_state(path, *t->impl_->model, t->impl_->optimizer.get(), t->impl_->device);
  t->impl_->step = header.step;
  t->impl_->history = header.history;
  t->impl_->best = header.history.evals.empty() ? -std::numeric_limits<double>::infinity() : header.best;
  return t;
}

StepMetrics Trainer::step() {
  auto& m = *impl_;
  const auto start = std::chrono::steady_clock::now();
  const double lr = learning_rate();
  m.model->train();
  auto batch = m.task->sample(m.config.batch, derive_seed(m.config.seed, kTrainData, m.step), false)
                   .to(m.device);
  torch::manual_seed(derive_seed(m.config.seed, kPolicySampling, m.step));
  DecodeRequest request;
  request.retrieval = Retrieval::Sample;
  request.explore = m.config.explore;
  request.all_leaves = decoder_info(m.config.model).policy && m.config.lambda_ca > 0;
  auto out = m.model->forward(batch, request);
  const bool warm_up = request.all_leaves && m.step < m.config.ca_warmup;  // L_CA alone (Config::ca_warmup)
  auto terms = compute_losses(out, batch, m.spec, m.config, warm_up);

  // Gradient clipping and every reported number without a device-to-host wait per value:
  // one transfer per step carries them all (it matters on a GPU).
  m.optimizer->zero_grad();
  terms.total.backward();
  auto grad_norm = m.optimizer->grad_norm();
  if (m.config.grad_clip > 0) m.optimizer->scale_grad((m.config.grad_clip / (grad_norm + 1e-6)).clamp_max(1.0));
  auto zero = torch::zeros({}, terms.total.options());
  auto scalar = [&](const torch::Tensor& t) { return t.defined() ? t.detach().reshape({}) : zero; };
  auto values = torch::stack({scalar(terms.total), grad_norm.detach(), scalar(terms.tca), scalar(terms.ca),
                              scalar(terms.rl), scalar(terms.entropy), scalar(terms.metric)})
                    .to(torch::kCPU, torch::kDouble);
  const double* v = values.data_ptr<double>();
  StepMetrics s;
  s.loss = v[0];
  s.grad_norm = v[1];
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm))
    throw DivergenceError("training diverged at step " + std::to_string(m.step + 1) + ": the " +
                          (std::isfinite(s.loss) ? "gradient" : "loss") + " is not finite; the model was "
                          "not updated. Lower the learning rate (--lr) or keep gradient clipping on");
  m.optimizer->step(lr);
  ++m.step;

  s.step = m.step;
  s.tca_loss = v[2];
  s.ca_loss = v[3];
  s.rl_loss = v[4];
  s.entropy = v[5];
  s.train_metric = v[6];
  s.lr = lr;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (m.step % m.config.log_every == 0 || m.step == m.config.steps) m.history.steps.push_back(s);
  return s;
}

EvalMetrics Trainer::evaluate() {
  auto& m = *impl_;
  torch::NoGradGuard no_grad;
  m.model->eval();
  double total = 0, count = 0, tokens = 0, context = 0, batch_means = 0;
  torch::Tensor per_target;  // [M] sums, while every batch has the same target count
  bool same_targets = true;
  for (const auto& batch : m.eval_set) {
    auto out = m.model->forward(batch, DecodeRequest{});
    auto metric = task_metric(out.prediction, batch.yt, m.spec, m.config.bound_std);
    if (m.spec.classification() && metric.dim() == 2 && same_targets) {
      auto sums = metric.sum(0).to(torch::kCPU, torch::kDouble);
      if (!per_target.defined()) per_target = sums;
      else if (per_target.size(0) == sums.size(0)) per_target += sums;
      else same_targets = false;
    }
    const double sum = metric.sum().item<double>();
    total += sum;
    count += double(metric.numel());
    batch_means += sum / double(metric.numel());
    const auto n = batch.xc.size(1);
    tokens += double(m.model->tokens_per_query(n)) * double(metric.numel());
    context += double(n) * double(metric.numel());
  }
  EvalMetrics e;
  e.step = m.step;
  e.metric = m.spec.classification() ? "accuracy" : "log_likelihood";
  e.value = batch_means / double(m.eval_set.size());
  e.per_point = total / count;
  e.tokens_per_query = tokens / count;
  e.context_size = context / count;
  if (same_targets && per_target.defined()) {
    const double rows = count / double(per_target.size(0));
    per_target /= rows;
    e.per_target.assign(per_target.data_ptr<double>(), per_target.data_ptr<double>() + per_target.size(0));
  }
  m.last_best = e.value > m.best;
  if (m.last_best) m.best = e.value;
  m.history.evals.push_back(e);
  return e;
}

void Trainer::save(const std::string& path) const {
  CheckpointHeader h{impl_->config, impl_->step, impl_->history, impl_->best};
  save_checkpoint(path, h, *impl_->model, impl_->optimizer.get());
}

Snapshot Trainer::snapshot() const {
  return Snapshot{impl_->config, serialize_parameters(*impl_->model), impl_->step};
}

std::int64_t Trainer::steps_done() const { return impl_->step; }
const Config& Trainer::config() const { return impl_->config; }
const MetricsHistory& Trainer::history() const { return impl_->history; }
double Trainer::best_eval() const { return impl_->best; }
bool Trainer::last_eval_was_best() const { return impl_->last_best; }
double Trainer::learning_rate() const {
  const auto& c = impl_->config;
  return cosine_lr(c.lr, impl_->step, c.schedule_steps > 0 ? c.schedule_steps : c.steps);
}
void Trainer::set_peak_learning_rate(double lr) {
  if (!(lr > 0) || !std::isfinite(lr))
    throw std::invalid_argument("learning rate must be a positive number");
  impl_->config.lr = lr;
}
void Trainer::set_total_steps(std::int64_t steps) {
  if (steps <= 0) throw std::invalid_argument("steps must be positive");
  impl_->config.steps = steps;
}
std::string Trainer::device_name() const { return impl_->device.str(); }

}  // namespace retreever
