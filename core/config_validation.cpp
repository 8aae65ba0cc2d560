// What a Config may hold: choices, bounds, cross-field rules, and the memory a run of it needs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "core/config.h"
#include "core/config_fields.h"
#include "core/registry.h"

namespace retreever {
namespace {

using detail::for_each_field;

void check_choice(std::vector<std::string>& errors, const char* field, const std::string& value,
                  const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices) {
    if (value == c) return;
    list += (list.empty() ? "" : "|") + c;
  }
  errors.push_back(std::string(field) + ": unknown value '" + value + "'. Use one of " + list + ".");
}

// A registered decoder with a retrieval policy (TCA): the fields of the RL and L_CA terms apply.
bool has_policy(const std::string& model) {
  const auto* d = find_decoder(model);
  return d && d->policy;
}

// An integer as it is, a real number in its shortest form ("1e+35", "0.5"), as a user would write it.
template <typename T>
std::string number_text(T value) {
  if constexpr (std::is_integral_v<T>) {
    return std::to_string(value);
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", double(value));
    return buf;
  }
}
}  // namespace

std::vector<std::string> Config::warnings() const {
  std::vector<std::string> w;
  if (has_policy(model) && explore > 0 && !is_classification())
    w.push_back("explore: uniform draws get a near-zero policy probability, and with a log-likelihood reward "
                "(never 0) REINFORCE then swamps training: a GP run with explore 0.05 stalled at -0.7 nats. "
                "Keep explore at 0 for gp and image.");
  if (has_policy(model) && ca_warmup >= steps && ca_warmup > 0)
    w.push_back("ca_warmup: the warm-up (" + std::to_string(ca_warmup) + " steps) lasts the whole run, so the "
                "policy and the read of S are never trained. Set ca_warmup below steps (" +
                std::to_string(steps) + ").");
  return w;
}

std::vector<std::string> Config::validate() const {
  std::vector<std::string> e;
  for (const auto& [field, value] : std::vector<std::pair<const char*, const std::string*>>{
           {"task", &task}, {"model", &model}, {"ordering", &ordering}, {"leaf_layout", &leaf_layout},
           {"query_positions", &query_positions}, {"padding_siblings", &padding_siblings},
           {"reward", &reward}, {"rl_baseline", &rl_baseline},
           {"block", &block}, {"kernel", &kernel}, {"eval_kernel", &eval_kernel}, {"eval_split", &eval_split},
           {"precision", &precision}})
    check_choice(e, field, *value, choices(field));
  // A GPU of several is named "cuda:K" (core/devices.h; the device is checked when a run starts).
  const bool gpu_index = device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() <= 9 &&
                         device.find_first_not_of("0123456789", 5) == std::string::npos;
  if (!gpu_index) check_choice(e, "device", device, choices("device"));
  auto positive = [&](const char* field, std::int64_t v) {
    if (v <= 0) e.push_back(std::string(field) + ": must be positive, got " + std::to_string(v) + ".");
  };
  for_each_field(const_cast<Config&>(*this), [&](const char* field, auto& value) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      const double most = upper_bound(field);
      if (most > 0 && double(value) > most)
        e.push_back(std::string(field) + ": at most " + std::to_string(std::llround(most)) + " (got " +
                    number_text(value) + "); lower it.");
    }
  });
  positive("batch", batch);
  positive("steps", steps);
  positive("d_model", d_model);
  positive("heads", heads);
  positive("ff_dim", ff_dim);
  positive("embed_depth", embed_depth);
  positive("aggregator_layers", aggregator_layers);
  positive("latents", latents);
  if (treeformer_depth < 1 || treeformer_depth > 12)
    e.push_back("treeformer_depth: must be 1..12 (2^depth leaf summaries), got " + std::to_string(treeformer_depth) + ".");
  positive("log_every", log_every);
  positive("eval_every", eval_every);
  positive("eval_batches", eval_batches);
  if (eval_batch < 0) e.push_back("eval_batch: must be 0 (same as batch) or positive.");
  if (schedule_steps < 0) e.push_back("schedule_steps: must be 0 (the schedule spans steps) or positive.");
  if (encoder_layers < 0) e.push_back("encoder_layers: must be 0 or more.");
  if (!(lr > 0) || !std::isfinite(lr))
    e.push_back("lr: the learning rate must be a positive number, e.g. 5e-4.");
  if (!(dropout >= 0 && dropout <= 0.9))
    e.push_back("dropout: must be in [0, 0.9], e.g. 0 (the paper) or 0.1 (the reference's copy task).");
  if (!(adam_beta1 >= 0 && adam_beta1 < 1))
    e.push_back("adam_beta1: must be in [0, 1), e.g. 0.9 (PyTorch's default) or 0.1 (the reference's copy task).");
  if (!(grad_clip >= 0) || !std::isfinite(grad_clip))
    e.push_back("grad_clip: must be 0 (off) or a positive number.");
  if (branch_factor < 2)
    e.push_back("branch_factor: must be at least 2 (a tree needs two children per node), got " +
                std::to_string(branch_factor) + ".");
  if (d_model > 0 && heads > 0 && d_model % heads != 0)
    e.push_back("heads: d_model (" + std::to_string(d_model) + ") must be divisible by heads (" +
                std::to_string(heads) + ").");
  if (eval_context != 0) {
    const auto* drawn = find_task(task);
    if (!drawn || drawn->max_context == 0)
      e.push_back("eval_context: only the gp and image tasks draw their context size; the copy task's "
                  "context is half of seq_len. Leave it at 0.");
    else if (eval_context < drawn->min_context || eval_context > drawn->max_context)
      e.push_back("eval_context: the " + task + " task's contexts hold " + drawn->context_range() +
                  " points (0 = drawn as in training), got " + std::to_string(eval_context) + ".");
  }
  const auto* t = find_task(task);
  if (t && std::count(t->fields.begin(), t->fields.end(), "seq_len") && seq_len < 4)
    e.push_back("seq_len: the copy task needs a sequence of at least 4 tokens, got " +
                std::to_string(seq_len) + ".");
  for (auto [name, v] : {std::pair<const char*, double>{"lambda_rl", lambda_rl},
                         {"lambda_ca", lambda_ca},
                         {"entropy_bonus", entropy_bonus}})
    if (!(v >= 0) || !std::isfinite(v)) e.push_back(std::string(name) + ": must be 0 or more.");
  if (ca_warmup < 0)
    e.push_back("ca_warmup: must be 0 or more: the steps that train on L_CA alone (0 = none).");
  else if (ca_warmup > 0 && has_policy(model) && !(lambda_ca > 0))
    e.push_back("ca_warmup: the warm-up trains on L_CA alone, but lambda_ca is 0. Set lambda_ca above 0 or "
                "ca_warmup to 0.");
  if (!(explore >= 0 && explore < 1))
    e.push_back("explore: must be in [0, 1): the share of uniformly drawn policy choices in training.");
  return e;
}

double Config::upper_bound(const std::string& field) {
  // Far above any run that fits on one machine, low enough that sizes multiplied together cannot
  // overflow; the memory estimate (Trainer) refuses what fits the bounds but not the machine.
  static const std::map<std::string, double> bounds = {
      {"seq_len", 1 << 20},       {"d_model", 4096},          {"heads", 64},
      {"ff_dim", 16384},          {"embed_depth", 16},        {"encoder_layers", 48},
      {"branch_factor", 64},      {"aggregator_layers", 8},   {"latents", 4096},
      {"batch", 65536},           {"steps", 1e9},             {"schedule_steps", 1e9},
      {"lr", 1.0},                {"grad_clip", 1e6},         {"seed", 9007199254740992.0},
      {"log_every", 1e9},         {"eval_every", 1e9},        {"eval_batches", 100000},
      {"eval_batch", 65536},      {"ca_warmup", 1e9},         {"lambda_rl", 1000},
      {"lambda_ca", 1000},        {"entropy_bonus", 1000},
  };
  auto it = bounds.find(field);
  return it == bounds.end() ? 0 : it->second;
}

std::string Config::MemoryEstimate::largest_share() const {
  if (activations >= parameters && activations >= eval_set) return kLowerActivations;
  if (eval_set >= parameters) return kLowerEvalSet;
  return kLowerParameters;
}

Config::MemoryEstimate Config::memory_estimate() const {
  // Rough and on the safe side: float32 everywhere, the largest contexts a task draws.
  const double D = double(d_model), F = double(ff_dim), H = double(heads), B = double(batch);
  const auto* t = find_task(task);
  const TaskInfo::Row row = t ? t->largest(*this) : TaskInfo::Row{};  // an unknown task is refused apart
  const double N = row.context, M = row.targets, io = row.numbers;
  const double layers = double(encoder_layers) + double(aggregator_layers) + 2;  // + decoder, embedders
  const double layer = 4 * D * D + 3 * D * F;                                   // attention + GEGLU
  const double P = layers * layer + 2 * double(embed_depth) * D * D + 4 * D * D + double(latents) * D;
  MemoryEstimate e;
  e.parameters = 5 * P * 4;  // values, gradients, two moments, the flat copy
  const double saved = (N + M) * (double(encoder_layers) + 3) * (12 * D + 4 * F);         // per row
  const double scores = H * (N * N * double(std::max<std::int64_t>(1, encoder_layers)) + M * N) * 3;
  e.activations = 1.5 * B * (saved + scores) * 4;
  const double rows = double(eval_batches) * double(eval_batch > 0 ? eval_batch : batch);
  e.eval_set = rows * (N + M) * (io + 1) * 4;
  return e;
}

std::int64_t Config::max_eval_context(const std::string& task) {
  const auto* t = find_task(task);
  return t ? t->max_context : 0;
}

bool Config::is_classification() const {
  const auto* t = find_task(task);
  return t && t->classification;
}

const std::vector<std::string>& Config::choices(const std::string& field) {
  auto names = [](const auto& list) {
    std::vector<std::string> v;
    for (const auto& i : list) v.push_back(i.name);
    return v;
  };
  static const std::map<std::string, std::vector<std::string>> lists = {
      {"task", names(tasks())},
      {"model", names(decoders())},
      {"ordering", {"given", "sort_x1", "sort_x2", "kdtree", "random_proj"}},
      {"leaf_layout", {"packed", "balanced"}},
      {"query_positions", {"from_zero", "after_context"}},
      {"padding_siblings", {"zero", "masked"}},
      {"block", {"reference", "v1"}},
      {"reward", {"acc", "nce"}},
      {"rl_baseline", {"fixed", "mean"}},
      {"device", {"auto", "cpu", "cuda"}},
      {"precision", {"fp32", "tf32", "bf16"}},
      {"kernel", {"rbf", "matern", "periodic"}},
      {"eval_kernel", {"rbf", "matern", "periodic"}},
      {"eval_split", {"seen", "unseen"}},
  };
  static const std::vector<std::string> none;
  auto it = lists.find(field);
  return it == lists.end() ? none : it->second;
}

}  // namespace retreever
