#include "trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include <torch/cuda.h>

#include "core/memory.h"
#include "core/registry.h"
#include "core/stage.h"
#include "core/cuda/cuda_graph.h"
#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/nn/blocks.h"
#include "core/training/checkpoint.h"
#include "core/training/device.h"
#include "core/training/distributed.h"
#include "core/training/flat_adam.h"
#include "core/training/precision.h"
#include "core/training/thread_tuner.h"

namespace retreever {
namespace {

// Random streams derived from the seed (see derive_seed): one per purpose.
// (The evaluation set's stream, 2, belongs to evaluation_set().)
constexpr std::uint64_t kTrainData = 1, kPolicySampling = 3, kInit = 4, kDropout = 5;
// Data-parallel gradients travel in buckets of at most this many values (64 MB of floats): few
// large transfers, with a bounded staging buffer in the backend.
constexpr std::int64_t kGradientBucket = std::int64_t(1) << 24;

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += (s.empty() ? "" : "\n") + l;
  return s;
}

// The model's forward under Config::precision (bf16: autocast to bfloat16 on the run's device); the
// floating outputs come back as float32, so the losses, the rewards and the metrics are computed in
// float32 whatever the forward ran in.
ModelOutput forward_in_precision(ReTreever& model, const Batch& batch, const DecodeRequest& request,
                                 const torch::Device& device, bool bf16) {
  ModelOutput out;
  {
    AutocastGuard autocast(device, bf16);
    out = model->forward(batch, request);
  }
  if (bf16) {
    for (auto* t : {&out.prediction, &out.prediction_all_leaves, &out.log_prob, &out.entropy})
      if (t->defined() && t->is_floating_point()) *t = t->to(torch::kFloat);
    if (out.trace.probabilities.defined()) out.trace.probabilities = out.trace.probabilities.to(torch::kFloat);
  }
  return out;
}

}  // namespace

double cosine_lr(double peak, std::int64_t t, std::int64_t total) {
  if (total <= 0) return peak;
  const double progress = std::min(1.0, double(t) / double(total));
  return 0.5 * peak * (1.0 + std::cos(M_PI * progress));
}

// Rethrows an allocator's failure (is_out_of_memory) as an OutOfMemoryError saying where and when,
// what the allocator said (its first sentences) and which settings to lower; returns otherwise.
void rethrow_if_out_of_memory(const std::exception& e, const std::string& device, const std::string& when,
                              const std::string& lower) {
  if (!is_out_of_memory(e)) return;
  std::string said = e.what();
  said = said.substr(0, said.find('\n'));
  // From the sentence that names the failure, three sentences at most (the CUDA allocator's
  // message goes on with advice on its own settings; the CPU's starts with a source location).
  for (const char* start : {"CUDA out of memory", "DefaultCPUAllocator"})
    if (const auto at = said.find(start); at != std::string::npos) said = said.substr(at);
  std::size_t end = 0;
  for (int sentences = 0; sentences < 3 && end != std::string::npos; ++sentences) end = said.find(". ", end ? end + 2 : 0);
  if (end != std::string::npos) said = said.substr(0, end + 1);
  release_cached_device_memory();
  throw OutOfMemoryError("out of memory on " + device + " " + when + " (" + said + "): the run does not fit; lower " +
                         lower + ", or use a device with more memory");
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
  std::shared_ptr<ProcessGroup> group;  // data-parallel training; null: this process alone
  // On the CPU, the steps' threads chosen from their speed (thread_tuner.h): unset where
  // OMP_NUM_THREADS fixes them, on a GPU, in data-parallel processes and in the bench.
  std::optional<ThreadTuner> threads;
  int threads_set = 0;  // the count last given to torch::set_num_threads (0: none)
  int fixed_threads = 0;  // use_cpu_threads' count (0: none)

  // The tuner over the machine's threads, not over LibTorch's count now: a trainer before this one
  // in the process (the studio's runs, a report's) may have left it at one.
  void tune_cpu_threads() {
    threads.reset();
    threads_set = fixed_threads = 0;
    if (device.is_cpu() && !std::getenv("OMP_NUM_THREADS") && default_cpu_threads() > 1)
      threads.emplace(default_cpu_threads());
  }

  // Training steps replayed from CUDA graphs (cuda_graph.h): one graph per batch shape, captured the
  // second time the shape comes (GP's context and target counts give about a thousand shapes, each
  // met about once per thousand steps; past kMaxStepGraphs shapes the others run eagerly). A graph
  // holds its own copy of the batch and of the policy's draws, refilled before each replay, and works
  // on the optimiser's flat buffers, which never move. The graphs share one memory pool: one runs at
  // a time and its numbers are read before the next. The optimiser's update stays outside: a step
  // whose loss is not finite must leave the model as it was.
  struct StepGraph {
    Batch batch;
    std::shared_ptr<torch::Tensor> draws = std::make_shared<torch::Tensor>();
    CudaGraph graph;
    torch::Tensor values;
  };
  static constexpr std::size_t kMaxStepGraphs = 2048;
  CudaGraphPool graph_pool;
  std::map<std::string, std::unique_ptr<StepGraph>> graphs;
  // shape -> why its last capture failed and how often; a shape is tried again when it comes back,
  // up to kCaptureAttempts times (something passing, such as a lack of memory, may have failed it)
  std::map<std::string, std::pair<std::string, int>> graph_failures;
  static constexpr int kCaptureAttempts = 3;
  std::map<std::string, int> shapes_seen;  // a shape is captured at its second step: one-offs are not
  std::int64_t replayed = 0, eager = 0;
  StepGraph* last_graph = nullptr;  // the graph this step replayed
  // On a GPU the next step's batch (and its draws, where a graph replays) are made on the CPU while
  // the GPU runs this step: the steps' data depend only on the seed and the step.
  std::optional<std::pair<std::int64_t, Batch>> next_batch;
  std::optional<std::pair<std::uint64_t, torch::Tensor>> next_draws;  // the draws' seed, the draws
  DropoutStream dropout_stream;  // dropout's masks (Config::dropout), reseeded every step
  std::uint64_t dropout_seed = 0;

  Batch sample_step(std::int64_t t) const {
    auto b = task->sample(config.batch, derive_seed(config.seed, kTrainData, t), false);
    return device.is_cuda() ? b.pinned() : b;
  }
  Batch batch_of_step(std::int64_t t) {
    if (!next_batch || next_batch->first != t) return sample_step(t);
    auto b = std::move(next_batch->second);
    next_batch.reset();
    return b;
  }
  // The walk's draws of a seed in the shape a graph holds, page-locked (prefetched where they were).
  torch::Tensor draws_of(std::uint64_t seed, const torch::Tensor& like) const {
    if (next_draws && next_draws->first == seed && next_draws->second.sizes() == like.sizes()) return next_draws->second;
    return policy_draws(seed, like.size(0), like.size(1)).pin_memory();
  }
  void prefetch(std::int64_t t) {
    next_batch.emplace(t, sample_step(t));
    if (last_graph && last_graph->draws->defined()) {  // the next step most likely has the same shape
      const auto seed = derive_seed(config.seed, kPolicySampling, t);
      next_draws.emplace(seed, draws_of(seed, *last_graph->draws));
    }
  }

  torch::Tensor backward_pass(const Batch& batch, const DecodeRequest& request, bool warm_up, double share);
  torch::Tensor graph_step(const Batch& batch, const DecodeRequest& request, bool warm_up);

  void build(const Config& c, const TaskFactory& tasks) {
    auto problems = c.validate();
    if (!problems.empty()) throw std::invalid_argument(join(problems));
    config = c;
    device = resolve_device(c.device);
    if (c.precision == "bf16")
      if (const auto refusal = bf16_refusal(device); !refusal.empty()) throw std::invalid_argument(refusal);
    // Before the task's data, the model or the evaluation set.
    if (memory_estimated_on(device.str())) {
      const auto refusal = memory_refusal(c, available_memory_bytes());
      if (!refusal.empty()) throw std::invalid_argument(refusal);
    }
    task = tasks(c);
    spec = task->spec();
    torch::manual_seed(derive_seed(c.seed, kInit, 0));
    model = ReTreever(c, spec);
    model->to(device);
    tune_cpu_threads();
    optimizer = std::make_unique<FlatAdam>(model->parameters(), c.adam_beta1);
    for (const auto& batch : evaluation_set(*task, c, std::uint64_t(c.seed))) eval_set.push_back(batch.to(device));
  }
};

// The part of a step a CUDA graph can hold, without a host wait: the forward, the losses, the
// backward, the gradient norm and clipping, and every reported number in one tensor (loss, gradient
// norm, L_TCA, L_CA, L_RL, entropy, metric), so that one transfer per step carries them all.
torch::Tensor Trainer::Impl::backward_pass(const Batch& batch, const DecodeRequest& request, bool warm_up,
                                           double share) {
  const int world = group ? group->size() : 1;
  auto out = forward_in_precision(model, batch, request, device, config.precision == "bf16");
  // Every loss term is a mean over rows: weighted by this process's share of the rows and summed over
  // processes it is the whole batch's mean, and so is its gradient. Batch statistics (the REINFORCE
  // baseline "mean") are summed over the processes before they are used.
  BatchMean batch_mean;
  if (world > 1)
    batch_mean = [&](const torch::Tensor& t) {
      auto sum = t.sum().reshape({1});
      group->all_reduce_sum(sum);
      return (sum / (double(t.numel()) / share)).reshape({});
    };
  LossTerms terms;
  {
    RETREEVER_STAGE("loss");
    terms = compute_losses(out, batch, spec, config, warm_up, batch_mean);
  }
  RETREEVER_STAGE("backward");

  // Gradient clipping and every reported number without a device-to-host wait per value:
  // one transfer per step carries them all (it matters on a GPU).
  optimizer->zero_grad();
  if (world > 1) {
    (terms.total * share).backward();
    auto grad = optimizer->flat_gradients();
    for (std::int64_t i = 0; i < grad.numel(); i += kGradientBucket) {
      auto bucket = grad.narrow(0, i, std::min(kGradientBucket, grad.numel() - i));
      group->all_reduce_sum(bucket);
    }
  } else {
    terms.total.backward();
  }
  auto grad_norm = optimizer->grad_norm();
  if (config.grad_clip > 0) optimizer->scale_grad((config.grad_clip / (grad_norm + 1e-6)).clamp_max(1.0));
  auto zero = torch::zeros({}, terms.total.options());
  auto scalar = [&](const torch::Tensor& t) { return t.defined() ? t.detach().reshape({}) : zero; };
  auto losses = torch::stack({scalar(terms.total), scalar(terms.tca), scalar(terms.ca), scalar(terms.rl),
                              scalar(terms.entropy), scalar(terms.metric)});
  if (world > 1) {  // the whole batch's values, as the gradient's
    losses = losses * share;
    group->all_reduce_sum(losses);
  }
  return torch::cat({losses.narrow(0, 0, 1), grad_norm.detach().reshape({1}), losses.narrow(0, 1, 5)});
}

// This step replayed from the graph of its batch's shape, captured when the shape comes the second
// time; undefined where no graph serves (the step then runs eagerly).
torch::Tensor Trainer::Impl::graph_step(const Batch& batch, const DecodeRequest& request, bool warm_up) {
  std::ostringstream key;
  for (const auto* t : {&batch.xc, &batch.yc, &batch.xt, &batch.yt})
    key << (t->defined() ? t->sizes() : torch::IntArrayRef{}) << (t->defined() ? t->scalar_type() : torch::kFloat);
  key << batch.shared_targets << warm_up;
  auto found = graphs.find(key.str());
  if (found == graphs.end()) {
    const auto failed = graph_failures.find(key.str());
    if (++shapes_seen[key.str()] < 2 || graphs.size() >= kMaxStepGraphs ||
        (failed != graph_failures.end() && failed->second.second >= kCaptureAttempts))
      return {};
    auto g = std::make_unique<StepGraph>();
    // The graph's input from now on (later batches are copied into it): its own dense copy.
    g->batch = batch.map([](const torch::Tensor& t) { return t.clone(at::MemoryFormat::Contiguous); });
    DecodeRequest r = request;
    r.draw_buffer = g->draws;  // made by the capture's eager warm-up, refilled before each replay
    auto* target = g.get();
    optimizer->reattach();
    if (graph_pool.empty()) graph_pool = CudaGraphPool::make();
    std::vector<at::Generator> generators;  // dropout's: each replay draws from its seed of the step
    if (config.dropout > 0) generators.push_back(dropout_stream.generator(g->batch.xt.device()));  // with its index
    if (!g->graph.capture([&] { target->values = backward_pass(target->batch, r, warm_up, 1.0); }, graph_pool,
                          generators)) {
      auto& failure = graph_failures[key.str()];
      failure = {g->graph.error(), failure.second + 1};
      shapes_seen[key.str()] = 0;  // tried again from its second coming after this
      return {};
    }
    found = graphs.emplace(key.str(), std::move(g)).first;
  } else {
    auto& into = found->second->batch;  // the same shape: field for field
    into.xc.copy_(batch.xc);
    if (into.yc.defined()) into.yc.copy_(batch.yc);
    into.xt.copy_(batch.xt);
    into.yt.copy_(batch.yt);
  }
  auto& g = *found->second;
  if (g.draws->defined()) {
    if (!request.draw_seed) throw std::logic_error("a captured training step needs DecodeRequest::draw_seed");
    g.draws->copy_(draws_of(*request.draw_seed, *g.draws), /*non_blocking=*/true);
    next_draws.reset();
  }
  optimizer->reattach();
  if (config.dropout > 0) dropout_stream.reseed(dropout_seed);  // the capture's warm-up drew from it
  g.graph.replay();
  last_graph = &g;
  return g.values;
}

Trainer::Trainer() : impl_(std::make_unique<Impl>()) {}

Trainer::Trainer(const Config& config, const TaskFactory& tasks) try : Trainer() {
  impl_->build(config, tasks);
} catch (const std::exception& e) {
  if (is_out_of_memory(e))
    rethrow_if_out_of_memory(e, resolve_device(config.device).str(), "while building the model and the evaluation set",
                             std::string(Config::MemoryEstimate::kLowerEvalSet) + " (or " +
                                 Config::MemoryEstimate::kLowerParameters + ")");
}  // anything else: rethrown as it is

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

StepMetrics Trainer::step() try {
  auto& m = *impl_;
  const auto start = std::chrono::steady_clock::now();
  MatmulPrecisionScope matmuls(m.config.precision == "tf32");  // forward, backward and graph capture
  const double lr = learning_rate();
  if (m.threads && m.threads->threads() != m.threads_set)
    torch::set_num_threads(m.threads_set = m.threads->threads());
  m.model->train();
  auto batch = m.batch_of_step(m.step);
  // Data parallel: every process draws the same global batch and trains on its rows of it.
  const int world = m.group ? m.group->size() : 1;
  const auto [from, to] = rank_rows(m.config.batch, m.group ? m.group->rank() : 0, world);
  if (world > 1) batch = batch.rows(from, to);
  batch = batch.to(m.device, /*non_blocking=*/m.device.is_cuda());
  DecodeRequest request;
  request.retrieval = Retrieval::Sample;
  // The policy's draws from a generator of this trainer's own: trainers on several threads (the
  // studio's "all GPUs") would otherwise interleave their draws in torch's global one, which
  // nothing in a step draws from any more.
  request.draw_seed = derive_seed(m.config.seed, kPolicySampling, m.step);
  request.explore = m.config.explore;
  request.all_leaves = decoder_info(m.config.model).policy && m.config.lambda_ca > 0;
  if (world > 1) {  // the policy's draws too: this process's slice of the whole batch's
    request.draw_batch = m.config.batch;
    request.draw_row = from;
  }
  const bool warm_up = request.all_leaves && m.step < m.config.ca_warmup;  // L_CA alone (Config::ca_warmup)
  // Dropout's masks from the trainer's stream, reseeded for the step (each data-parallel process
  // its own slice's), so a resumed run or a replayed graph draws what the uninterrupted eager run did.
  std::optional<DropoutScope> dropout_scope;
  if (m.config.dropout > 0) {
    m.dropout_seed = derive_seed(m.config.seed, kDropout, std::uint64_t(m.step) * world + (m.group ? m.group->rank() : 0));
    m.dropout_stream.reseed(m.dropout_seed);
    dropout_scope.emplace(m.dropout_stream);
  }
  // A CUDA graph where one can serve: one device, the switch on (bf16 too: AutocastGuard keeps no
  // cache of cast parameters, which a graph would replay stale). Otherwise, or where the capture
  // failed, the same work eagerly.
  torch::Tensor device_values;
  m.last_graph = nullptr;
  if (m.device.is_cuda() && cuda_graphs_enabled() && world == 1)
    device_values = m.graph_step(batch, request, warm_up);
  if (device_values.defined()) {
    ++m.replayed;
  } else {
    ++m.eager;
    device_values = m.backward_pass(batch, request, warm_up, double(to - from) / double(m.config.batch));
  }
  if (m.device.is_cuda() && m.step + 1 < m.config.steps) m.prefetch(m.step + 1);  // while the GPU works
  auto values = device_values.to(torch::kCPU, torch::kDouble);
  const double* v = values.data_ptr<double>();
  StepMetrics s;
  s.loss = v[0];
  s.grad_norm = v[1];
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm))
    throw DivergenceError("training diverged at step " + std::to_string(m.step + 1) + ": the " +
                          (std::isfinite(s.loss) ? "gradient" : "loss") + " is not finite; the model was "
                          "not updated. Lower the learning rate (--lr) or keep gradient clipping on");
  {
    RETREEVER_STAGE("optimizer");
    m.optimizer->step(lr);
  }
  ++m.step;

  s.step = m.step;
  s.tca_loss = v[2];
  s.ca_loss = v[3];
  s.rl_loss = v[4];
  s.entropy = v[5];
  s.train_metric = v[6];
  s.lr = lr;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (m.device.is_cpu()) s.cpu_threads = threads_in_use();
  if (m.threads) m.threads->record(s.seconds);
  if (m.step % m.config.log_every == 0 || m.step == m.config.steps) m.history.steps.push_back(s);
  return s;
} catch (const std::exception& e) {
  rethrow_if_out_of_memory(e, impl_->device.str(), "at step " + std::to_string(impl_->step + 1),
                           Config::MemoryEstimate::kLowerActivations);
  throw;
}

EvalMetrics Trainer::evaluate() try {
  auto& m = *impl_;
  torch::NoGradGuard no_grad;
  MatmulPrecisionScope matmuls(m.config.precision == "tf32");
  m.model->eval();
  double total = 0, count = 0, tokens = 0, context = 0, batch_means = 0;
  torch::Tensor per_target;  // [M] sums, while every batch has the same target count
  bool same_targets = true;
  // Data parallel: each process evaluates every world-th batch, and the sums are added up below.
  const std::size_t world = m.group ? std::size_t(m.group->size()) : 1, rank = m.group ? std::size_t(m.group->rank()) : 0;
  for (std::size_t i = rank; i < m.eval_set.size(); i += world) {
    const auto& batch = m.eval_set[i];
    auto out = forward_in_precision(m.model, batch, DecodeRequest{}, m.device, m.config.precision == "bf16");
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
  if (world > 1) {
    // Per-target sums travel too when every batch of the set has the same target count (accuracy sums
    // are whole numbers: their total is exact in any order).
    std::int64_t targets = m.spec.classification() ? m.eval_set.front().yt.size(1) : 0;
    for (const auto& b : m.eval_set)
      if (b.yt.size(1) != targets) targets = 0;
    auto sums = torch::zeros({5 + targets}, torch::kDouble);
    auto s = sums.accessor<double, 1>();
    s[0] = total, s[1] = count, s[2] = batch_means, s[3] = tokens, s[4] = context;
    if (targets > 0 && per_target.defined()) sums.narrow(0, 5, targets).copy_(per_target);
    sums = sums.to(m.device);
    m.group->all_reduce_sum(sums);
    sums = sums.to(torch::kCPU);
    auto r = sums.accessor<double, 1>();
    total = r[0], count = r[1], batch_means = r[2], tokens = r[3], context = r[4];
    same_targets = targets > 0;
    per_target = targets > 0 ? sums.narrow(0, 5, targets).clone() : torch::Tensor();
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
} catch (const std::exception& e) {
  rethrow_if_out_of_memory(e, impl_->device.str(), "in the evaluation at step " + std::to_string(impl_->step),
                           "eval_batch");
  throw;
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
std::string Trainer::graph_summary() const {
  const auto& m = *impl_;
  std::string s = std::to_string(m.replayed) + " steps replayed from " + std::to_string(m.graphs.size()) +
                  " CUDA graph" + (m.graphs.size() == 1 ? "" : "s") + ", " + std::to_string(m.eager) + " eager";
  for (const auto& [shape, why] : m.graph_failures) s += "; a capture failed: " + why.first;
  return s;
}

std::string Trainer::device_name() const { return impl_->device.str(); }

void Trainer::keep_cpu_threads() { impl_->threads.reset(); }

void Trainer::use_cpu_threads(int n) {
  if (n < 0) throw std::invalid_argument("the number of CPU threads must be positive (0: tuned)");
  if (n == 0) {  // the machine's count to start from (a fixed count may have left another), then tuned
    if (impl_->device.is_cpu()) torch::set_num_threads(default_cpu_threads());
    return impl_->tune_cpu_threads();
  }
  impl_->threads.reset();
  torch::set_num_threads(impl_->threads_set = impl_->fixed_threads = n);
}

int Trainer::fixed_cpu_threads() const { return impl_->fixed_threads; }

bool Trainer::tunes_cpu_threads() const { return impl_->threads.has_value(); }

int Trainer::threads_in_use() const { return impl_->threads_set > 0 ? impl_->threads_set : torch::get_num_threads(); }

void Trainer::set_process_group(std::shared_ptr<ProcessGroup> group) {
  auto& m = *impl_;
  if (!group || group->size() <= 1) {
    m.group.reset();
    return;
  }
  m.threads.reset();  // the processes share the cores as the launcher set them
  if (m.config.batch < group->size())
    throw std::invalid_argument("a batch of " + std::to_string(m.config.batch) + " rows cannot be split over " +
                                std::to_string(group->size()) + " processes: use at most " +
                                std::to_string(m.config.batch) + " processes or a larger --batch");
  // The same run everywhere: rank 0's config fingerprint and step against each process's own (the
  // data folder and the device may be spelt differently on each machine).
  Config same = m.config;
  same.data_dir.clear();
  same.device.clear();
  const auto fingerprint = std::int64_t(std::hash<std::string>{}(same.to_json()) >> 1);
  auto mine = torch::tensor({fingerprint, std::int64_t(m.step)}, torch::kLong).to(m.device);
  auto root = mine.clone();
  group->broadcast(root, 0);
  const bool differs = !torch::equal(mine, root);
  if (group->any(differs))
    throw std::invalid_argument(
        differs ? "process " + std::to_string(group->rank()) + " has another config or step than process 0 (step " +
                      std::to_string(m.step) + " here, " + std::to_string(root[1].item<std::int64_t>()) +
                      " there): every process must start from the same flags and checkpoint"
                : "another process has another config or step than process 0: every process must start from the "
                  "same flags and checkpoint");
  // Rank 0's parameters everywhere (they are equal already when the seeds are; this makes sure).
  torch::NoGradGuard no_grad;
  m.optimizer->zero_grad();  // (re)attaches the parameters to the flat buffer
  auto parameters = m.optimizer->flat_parameters();
  group->broadcast(parameters, 0);
  m.group = std::move(group);
}

int Trainer::rank() const { return impl_->group ? impl_->group->rank() : 0; }
int Trainer::world_size() const { return impl_->group ? impl_->group->size() : 1; }
bool Trainer::any_process(bool flag) { return impl_->group ? impl_->group->any(flag) : flag; }

}  // namespace retreever
