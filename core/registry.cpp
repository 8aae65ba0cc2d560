#include "core/registry.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/config.h"

namespace retreever {

#define RETREEVER_DECODER(name) DecoderInfo name##_decoder();
#include "core/decoders/decoder_list.h"
#undef RETREEVER_DECODER

namespace {

std::vector<TaskInfo> make_tasks() {
  TaskInfo copy;
  copy.name = "copy";
  copy.title = "Copy task";
  copy.summary = "copy a sequence of digits: each target position reads one context token";
  copy.fields = {"seq_len", "query_positions"};
  copy.classification = true;
  copy.view = "sequence";
  copy.largest_row = [](const Config& c) {
    const double half = std::max(1.0, double(c.seq_len) / 2);
    return TaskInfo::Row{half, half, 13};
  };
  copy.typical_context = [](const Config& c) { return (c.seq_len + 1) / 2; };
  copy.reference_settings = [](Config& c) {
    c.adam_beta1 = 0.1;  // its copy script's Adam betas
    c.dropout = 0.1;     // its copy script's default --dropout
  };

  TaskInfo gp;
  gp.name = "gp";
  gp.title = "GP regression";
  gp.fields = {"kernel", "eval_kernel", "eval_context"};
  // The reference's sampler (TNP's): randint(3, 50 - 3) context points, randint(3, 50 - Nc) targets,
  // upper bounds exclusive (PAPER.md's "3..47" and "3..(50-Nc)" read them as inclusive).
  gp.min_context = 3, gp.max_context = 46, gp.max_points = 49;
  gp.summary = "1-D regression: functions drawn from a Gaussian process, " + gp.context_range() + " context points";
  gp.view = "function";
  gp.point_numbers = 2;
  gp.typical_context = [](const Config&) { return std::int64_t(25); };
  gp.reference_settings = [](Config& c) {
    c.bound_std = false;  // its GP script's head: std = exp(raw) (its EMNIST script bounds it, as Config's default)
  };

  TaskInfo image;
  image.name = "image";
  image.title = "Image completion";
  image.fields = {"data_dir", "eval_split", "eval_context"};
  // The reference's img_to_task with max_num_points 200: randint(3, 200 - 3) context pixels and
  // randint(3, 200 - Nc) targets, upper bounds exclusive; at most the image's pixels.
  image.min_context = 3, image.max_context = 196, image.max_points = 199;
  image.summary = "complete Fashion-MNIST images (14x14) from " + image.context_range() + " context pixels";
  image.view = "image";
  image.point_numbers = 3;
  image.typical_context = [](const Config&) { return std::int64_t(100); };
  return {copy, gp, image};
}

template <typename Info>
std::string names(const std::vector<Info>& list) {
  std::string s;
  for (const auto& i : list) s += (s.empty() ? "" : "|") + i.name;
  return s;
}

template <typename Info>
const Info* find(const std::vector<Info>& list, const std::string& name) {
  for (const auto& i : list)
    if (i.name == name) return &i;
  return nullptr;
}

}  // namespace

std::string TaskInfo::context_range() const { return std::to_string(min_context) + ".." + std::to_string(max_context); }

TaskInfo::Row TaskInfo::largest(const Config& c) const {
  if (largest_row) return largest_row(c);
  return Row{double(max_context), double(max_points - min_context), point_numbers};
}

const std::vector<DecoderInfo>& decoders() {
#define RETREEVER_DECODER(name) name##_decoder(),
  static const std::vector<DecoderInfo> list = {
#include "core/decoders/decoder_list.h"
  };
#undef RETREEVER_DECODER
  return list;
}

const std::vector<TaskInfo>& tasks() {
  static const std::vector<TaskInfo> list = make_tasks();
  return list;
}

const DecoderInfo* find_decoder(const std::string& name) { return find(decoders(), name); }
const TaskInfo* find_task(const std::string& name) { return find(tasks(), name); }

const DecoderInfo& decoder_info(const std::string& name) {
  if (const auto* d = find_decoder(name)) return *d;
  throw std::invalid_argument("unknown model '" + name + "'; use " + names(decoders()));
}

const TaskInfo& task_info(const std::string& name) {
  if (const auto* t = find_task(name)) return *t;
  throw std::invalid_argument("unknown task '" + name + "'; use " + names(tasks()));
}

std::string unread_field_reason(const std::string& field, const std::string& task, const std::string& model) {
  auto reads = [&](const auto& info) { return std::count(info.fields.begin(), info.fields.end(), field) > 0; };
  // "only the copy task reads it" / "only the gp and image tasks read it": the readers named.
  auto readers = [&](const auto& list, auto&& keep, const std::string& kind) {
    std::vector<std::string> n;
    for (const auto& i : list)
      if (keep(i)) n.push_back(i.name);
    std::string s = n.empty() ? "no" : "the " + n[0];
    for (std::size_t i = 1; i < n.size(); ++i) s += (i + 1 == n.size() ? " and " : ", ") + n[i];
    return "only " + s + " " + kind + (n.size() == 1 ? "" : "s") + " read" + (n.size() == 1 ? "s" : "") + " it";
  };
  const auto* d = find_decoder(model);
  const auto* t = find_task(task);
  const bool decoder_field = std::any_of(decoders().begin(), decoders().end(), reads);
  if (decoder_field && !(d && reads(*d))) return readers(decoders(), reads, "model");
  const bool task_field = std::any_of(tasks().begin(), tasks().end(), reads);
  if (task_field && !(t && reads(*t))) return readers(tasks(), reads, "task");
  if (field == "reward" && !(t && t->classification))  // the accuracy and cross-entropy rewards
    return readers(tasks(), [](const TaskInfo& i) { return i.classification; }, "task");
  if (field == "block" && !(d && d->reference_block))  // the models the reference code has
    return readers(decoders(), [](const DecoderInfo& i) { return i.reference_block; }, "model");
  return "";
}

Config paper_recipe_for(const std::string& task) {
  Config c;
  c.task = task;
  if (const auto* t = find_task(task); t && t->reference_settings) t->reference_settings(c);
  return c;
}

const std::vector<std::string>& recipe_settings() {
  static const std::vector<std::string> settings = {"block",       "adam_beta1",  "dropout",   "explore",
                                                    "ca_warmup",   "rl_baseline", "leaf_layout", "lambda_rl",
                                                    "lambda_ca",   "entropy_bonus", "query_positions", "bound_std",
                                                    "padding_siblings"};
  return settings;
}

namespace {
// A config's settings by key (its JSON form): recipe settings compare and copy without a field list.
nlohmann::json settings_of(const Config& c) { return nlohmann::json::parse(c.to_json()); }
}  // namespace

std::vector<std::string> recipe_departures(const Config& c) {
  const auto ours = settings_of(c), paper = settings_of(paper_recipe_for(c.task));
  std::vector<std::string> differ;
  for (const auto& key : recipe_settings())
    if (ours.at(key) != paper.at(key)) differ.push_back(key);
  return differ;
}

Config with_recipe(const Config& c) {
  const auto paper = settings_of(paper_recipe_for(c.task));
  nlohmann::json settings = nlohmann::json::object();
  for (const auto& key : recipe_settings()) settings[key] = paper.at(key);
  return Config::from_json(settings.dump(), c);
}

Config sized_like(const Config& base, const std::string& model, std::int64_t tca_tokens) {
  Config c = base;
  c.model = model;
  const auto& d = decoder_info(model);
  if (d.size_for_tokens && tca_tokens > 0) d.size_for_tokens(c, tca_tokens);
  return c;
}

std::string model_label(const Config& c) {
  const auto* d = find_decoder(c.model);
  std::string s = c.model;
  if (d && d->size_label) s += d->size_label(c);
  if (d && d->policy && c.reward != "acc" && find_task(c.task) && task_info(c.task).classification) s += "/" + c.reward;
  return s;
}

std::string task_label(const Config& c) {
  const auto* t = find_task(c.task);
  const bool has_length = t && std::count(t->fields.begin(), t->fields.end(), "seq_len");
  return has_length ? c.task + "-" + std::to_string(c.seq_len) : c.task;
}

}  // namespace retreever
