#include "bench.h"

#include <algorithm>
#include <cstdio>

#include <torch/cuda.h>
#include <torch/torch.h>
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define RETREEVER_HAS_RECORD_PROFILE 1
#endif
#if __has_include(<torch/csrc/autograd/profiler_kineto.h>)
#include <torch/csrc/autograd/profiler_kineto.h>
#define RETREEVER_HAS_KINETO 1
#endif
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "app/cli/command_line.h"
#include "core/cuda/cuda_graph.h"
#include "core/cuda/cuda_ops.h"
#include "core/decoders/decoder.h"
#include "core/memory.h"
#include "core/registry.h"
#include "core/scaling.h"
#include "core/stage.h"
#include "core/table.h"
#include "core/training/device.h"
#include "core/training/precision.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

namespace retreever::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The figures, for --json; the tables print only without it.
struct Output {
  bool json = false;
  nlohmann::json doc = nlohmann::json::object();
};

template <typename... A>
void say(const Output& o, const char* format, A... a) {
  if (o.json) return;
  std::printf(format, a...);
  std::fflush(stdout);
}

// Every setting of the command, read and checked before anything is measured: a bad one fails at
// once, not after minutes of the other part's figures.
// Training: the models --models names (all by default); --profile's folder, created (empty: no
// profile); the copy preset sized by --seq-len, --batch and --dropout.
struct TrainChoice {
  std::vector<std::string> models;
  std::string profile_dir;
  Config base;
  int steps = 0;
};

TrainChoice train_choice(const Args& args) {
  TrainChoice choice;
  const auto seq_len = args.integer("seq-len", 64), batch = args.integer("batch", 32);
  choice.steps = int(args.integer("steps", 30));
  if (seq_len < 4 || batch <= 0 || choice.steps <= 0)
    throw UsageError("--seq-len must be >= 4, --batch and --steps positive");
  // The copy preset's model and optimiser. Dropout is 0 unless --dropout asks (the preset trains
  // with the reference script's 0.1, which on a GPU takes the tensor paths instead of the kernels).
  choice.base = Config::preset("copy");
  choice.base.seq_len = seq_len;
  choice.base.batch = batch;
  choice.base.dropout = args.number("dropout", 0.0);
  if (const auto problems = choice.base.validate(); !problems.empty()) throw UsageError(problems.front());
  const auto& all = Config::choices("model");
  std::string names;
  for (const auto& m : all) names += (names.empty() ? "" : ", ") + m;
  choice.models = all;
  if (args.has("models")) {
    choice.models.clear();
    std::stringstream list(args.str("models"));
    for (std::string m; std::getline(list, m, ',');) {
      if (std::find(all.begin(), all.end(), m) == all.end())
        throw UsageError("--models: unknown model '" + m + "'; use some of " + names);
      choice.models.push_back(m);
    }
    if (choice.models.empty()) throw UsageError("--models: name at least one of " + names);
  }
  choice.profile_dir = args.str("profile");
  if (!choice.profile_dir.empty()) {
#ifndef RETREEVER_HAS_RECORD_PROFILE
    throw UsageError("--profile: this LibTorch has no legacy profiler; build against LibTorch 1.x or 2.x headers that ship it");
#endif
    std::error_code ec;
    std::filesystem::create_directories(choice.profile_dir, ec);
    if (ec) throw UsageError("--profile: cannot create '" + choice.profile_dir + "': " + ec.message());
  }
  return choice;
}

// Inference: the Scaling view's measurement (core/scaling.h: d_model 64, 4 heads, b = 2, no encoder,
// sizes from 1k by factors of 4) of TCA and CA on `device`, sized by --max-n, --queries, --repeats.
ScalingOptions inference_choice(const Args& args, const std::string& device) {
  ScalingOptions s;
  s.models = {"tca", "ca"};
  s.device = resolve_device(device).str();
  s.max_n = args.integer("max-n", 262144);
  s.queries = args.integer("queries", s.queries);
  s.repeats = int(args.integer("repeats", 5));
  if (s.max_n < s.min_n || s.queries <= 0 || s.repeats <= 0)
    throw UsageError("--max-n must be >= " + std::to_string(s.min_n) + ", --queries and --repeats positive");
  return s;
}

#ifdef RETREEVER_HAS_KINETO
// An event's start and duration in microseconds: LibTorch 2.x times Kineto events in nanoseconds,
// 1.13 in microseconds.
template <class E>
auto event_us(const E& e, int) -> decltype(std::pair<double, double>(double(e.startNs()), double(e.durationNs()))) {
  return {double(e.startNs()) / 1e3, double(e.durationNs()) / 1e3};
}
template <class E>
std::pair<double, double> event_us(const E& e, long) {
  return {double(e.startUs()), double(e.durationUs())};
}
#endif

// Steps after the timed ones that time the stages (at most --steps).
constexpr int kStageSteps = 10;

// Stages (core/stage.h) as --json gives them: [{"stage": "decode/walk", "ms_per_step": 0.6}, ...].
nlohmann::json stage_json(const std::vector<StageClock::Stage>& stages, double steps) {
  auto found = nlohmann::json::array();
  for (const auto& s : stages) found.push_back({{"stage", s.name}, {"ms_per_step", s.ms / steps}});
  return found;
}

// The CPU's stages: each the mean over the steps the clock saw (kStageSteps), and "rest", the mean
// step's time outside the stages (the batch and the policy's draws).
nlohmann::json stage_figures(const std::vector<StageClock::Stage>& stages, const std::vector<double>& seconds) {
  const double steps = double(seconds.size());
  double step_ms = 0, inside = 0;
  for (double s : seconds) step_ms += 1000 * s / steps;
  for (const auto& s : stages)
    if (s.name.find('/') == std::string::npos) inside += s.ms / steps;
  auto found = stage_json(stages, steps);
  if (!found.empty()) found.push_back({{"stage", "rest"}, {"ms_per_step", std::max(0.0, step_ms - inside)}});
  return found;
}

// Two lines of stage times: the stages, then the parts of those that have them ("decode: walk ...").
// A stage of more parts than kShownParts (the backward's autograd nodes) shows its largest ones and
// the sum of the others.
constexpr std::size_t kShownParts = 6;

void say_stages(const Output& o, const nlohmann::json& stages, const char* what) {
  std::string whole;
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, double>>>> parts;  // by stage, in order
  for (const auto& s : stages) {
    const auto name = s["stage"].get<std::string>();
    const auto cut = name.find('/');
    const double ms = s["ms_per_step"].get<double>();
    if (cut == std::string::npos) {
      whole += (whole.empty() ? "" : " | ") + name + " " + format_number("%.2f", ms);
      continue;
    }
    const auto of = name.substr(0, cut);
    if (parts.empty() || parts.back().first != of) parts.push_back({of, {}});
    parts.back().second.push_back({name.substr(cut + 1), ms});
  }
  say(o, "  stages, %s: %s\n", what, whole.c_str());
  std::string line;
  for (auto& [of, list] : parts) {
    if (list.size() > kShownParts) {
      std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      double others = 0;
      for (auto i = kShownParts - 1; i < list.size(); ++i) others += list[i].second;
      const auto more = list.size() - (kShownParts - 1);
      list.resize(kShownParts - 1);
      list.push_back({std::to_string(more) + " more", others});
    }
    line += (line.empty() ? "" : "; ") + of + ":";
    for (std::size_t i = 0; i < list.size(); ++i)
      line += (i ? ", " : " ") + list[i].first + " " + format_number("%.2f", list[i].second);
  }
  if (!line.empty()) say(o, "    of which %s\n", line.c_str());
}

// --profile around one model's timed steps. On a GPU, with a LibTorch built with Kineto, the trace
// holds the device's kernels too, and finish() tells their time per step, largest first;
// elsewhere (or where Kineto cannot start) LibTorch's legacy profiler writes the CPU's operators.
class StepProfile {
 public:
  StepProfile(std::string path, bool gpu) : path_(std::move(path)) {
#ifdef RETREEVER_HAS_KINETO
    if (gpu) {
      namespace prof = torch::profiler::impl;
      try {
        const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
        const std::set<prof::ActivityType> activities = {prof::ActivityType::CPU, prof::ActivityType::CUDA};
        torch::autograd::profiler::prepareProfiler(config, activities);
        torch::autograd::profiler::enableProfiler(config, activities);
        kineto_ = true;
        return;
      } catch (const std::exception& e) {
        kineto_error_ = e.what();
      }
    }
#endif
    (void)gpu;
#ifdef RETREEVER_HAS_RECORD_PROFILE
    legacy_ = std::make_unique<torch::autograd::profiler::RecordProfile>(path_);
#endif
  }

  // Stops the profiler, writes the trace and returns what it found: the trace's path and, from
  // Kineto, the GPU time a step and the largest kernels (--json's figures; say_profile prints them).
  nlohmann::json finish(int steps) {
    nlohmann::json found = {{"trace", path_}};
#ifdef RETREEVER_HAS_KINETO
    if (kineto_) {
      kineto_ = false;
      auto result = torch::autograd::profiler::disableProfiler();
      std::map<std::string, std::pair<double, int>> kernels;  // name: microseconds, launches
      double total = 0;
      int events = 0;
      std::vector<TraceEvent> trace;  // what device_stages reads
      for (const auto& e : result->events()) {
        TraceEvent t;
        t.name = e.name();
        t.device = e.deviceType() == c10::DeviceType::CUDA;
        std::tie(t.start_us, t.duration_us) = event_us(e, 0);
        t.correlation = t.device ? e.linkedCorrelationId() : e.correlationId();
        trace.push_back(std::move(t));
      }
      result->save(path_);
      drop_span_copies(trace);
      for (const auto& t : trace)
        if (t.device) {
          auto& k = kernels[t.name];
          k.first += t.duration_us, k.second += 1, total += t.duration_us, ++events;
        }
      if (const auto stages = device_stages(trace); !stages.empty()) found["stages"] = stage_json(stages, steps);
      std::vector<std::pair<std::string, std::pair<double, int>>> sorted(kernels.begin(), kernels.end());
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
      found["gpu_ms_per_step"] = total / 1e3 / steps;
      found["device_events_per_step"] = double(events) / steps;
      found["kernels"] = nlohmann::json::array();
      for (std::size_t i = 0; i < sorted.size() && i < 15; ++i)
        found["kernels"].push_back({{"name", sorted[i].first},
                                    {"ms_per_step", sorted[i].second.first / 1e3 / steps},
                                    {"launches_per_step", double(sorted[i].second.second) / steps}});
      return found;
    }
    if (!kineto_error_.empty()) found["kineto_error"] = kineto_error_;
#endif
    (void)steps;
    legacy_.reset();  // writes the file
    return found;
  }

 private:
  std::string path_;
#ifdef RETREEVER_HAS_KINETO
  bool kineto_ = false;
  std::string kineto_error_;
#endif
#ifdef RETREEVER_HAS_RECORD_PROFILE
  std::unique_ptr<torch::autograd::profiler::RecordProfile> legacy_;
#else
  std::unique_ptr<int> legacy_;
#endif
};

// The lines under a model's row that tell what its profile found (StepProfile::finish).
void say_profile(const Output& o, const nlohmann::json& found) {
  const auto trace = found["trace"].get<std::string>();
  if (found.contains("kineto_error"))
    say(o, "  profile: Kineto did not start (%.150s); CPU operators only\n",
        found["kineto_error"].get<std::string>().c_str());
  if (!found.contains("gpu_ms_per_step")) {
    say(o, "  profile: %s\n", trace.c_str());
    return;
  }
  say(o, "  profile: %s; GPU time %.3f ms a step in %.0f device events a step\n", trace.c_str(),
      found["gpu_ms_per_step"].get<double>(), found["device_events_per_step"].get<double>());
  for (const auto& k : found["kernels"])
    say(o, "  %9.3f ms %6.1f x  %.90s\n", k["ms_per_step"].get<double>(), k["launches_per_step"].get<double>(),
        k["name"].get<std::string>().c_str());
  if (found.contains("stages")) say_stages(o, found["stages"], "GPU ms a step (each kernel by the stage that launched it)");
}

void bench_train(const std::string& device, const std::string& precision, const TrainChoice& choice, Output& o) {
  const Config& base = choice.base;
  const auto seq_len = base.seq_len, batch = base.batch;
  const int steps = choice.steps;
  const double dropout = base.dropout;
  say(o, "training step, copy task, sequence length %lld, batch %lld, %d timed steps (median), precision %s, dropout %g\n",
      (long long)seq_len, (long long)batch, steps, precision.c_str(), dropout);
  say(o, "%-10s %10s %12s %14s\n", "model", "ms/step", "steps/s", "tokens/query");
  auto& train = o.doc["train"];
  train = {{"task", "copy"},   {"seq_len", seq_len},     {"batch", batch},
           {"steps", steps},   {"precision", precision}, {"dropout", dropout}, {"models", nlohmann::json::array()}};
  std::int64_t tca_tokens = 0;
  for (const auto& model : choice.models) {
    Config c = sized_like(base, model, tca_tokens);  // baselines read as many tokens as TCA
    c.steps = 1000000;
    c.device = device;
    c.precision = precision;
    c.eval_batches = 1;
    Trainer trainer(c, datasets::make_task);
    trainer.keep_cpu_threads();  // the threads the bench was given, every step
    std::vector<double> t;
    nlohmann::json profiled;  // what the profile found (StepProfile::finish), or null
    nlohmann::json stages;    // the steps' stages (stage_figures), or null
    for (int i = 0; i < 3; ++i) trainer.step();  // the first steps warm caches and allocators
    {
      std::unique_ptr<StepProfile> profile;
      if (!choice.profile_dir.empty())
        profile = std::make_unique<StepProfile>(
            (std::filesystem::path(choice.profile_dir) / ("train-" + model + ".trace.json")).string(),
            trainer.device_name() != "cpu");
      for (int i = 0; i < steps; ++i) t.push_back(trainer.step().seconds);
      if (profile) profiled = profile->finish(steps);
    }
    if (trainer.device_name() == "cpu") {  // where a span's wall time is its work's
      // The stages in steps of their own, so that the timed steps ran without the clock.
      StageClock clock;
      std::vector<double> staged;
      for (int i = 0; i < std::min(steps, kStageSteps); ++i) staged.push_back(trainer.step().seconds);
      stages = stage_figures(clock.stages(), staged);
    }
    auto e = trainer.evaluate();
    if (decoder_info(model).policy) tca_tokens = std::int64_t(e.tokens_per_query);
    const double ms = 1000 * median(t);
    say(o, "%-10s %10.2f %12.1f %14.0f\n", model.c_str(), ms, 1000 / ms, e.tokens_per_query);
    train["models"].push_back(
        {{"model", model}, {"ms_per_step", ms}, {"steps_per_s", 1000 / ms}, {"tokens_per_query", e.tokens_per_query}});
    if (trainer.device_name() != "cpu") {
      say(o, "  %s\n", trainer.graph_summary().c_str());
      train["models"].back()["graphs"] = trainer.graph_summary();
    }
    if (!profiled.is_null()) {
      say_profile(o, profiled);
      train["models"].back()["profile"] = profiled;
    }
    if (!stages.is_null()) {
      say_stages(o, stages, "ms a step (mean)");
      train["models"].back()["stages"] = stages;
    }
  }
  // A speed claim is a ratio within one run: each model's step against CA's, measured just now.
  double ca_ms = 0;
  for (const auto& m : train["models"])
    if (m["model"] == "ca") ca_ms = m["ms_per_step"].get<double>();
  if (ca_ms <= 0) return;
  std::string line;
  for (auto& m : train["models"])
    if (m["model"] != "ca") {
      m["ratio_to_ca"] = m["ms_per_step"].get<double>() / ca_ms;
      char part[96];
      std::snprintf(part, sizeof part, "%s%s %.2fx", line.empty() ? "" : ", ",
                    m["model"].get<std::string>().c_str(), m["ratio_to_ca"].get<double>());
      line += part;
    }
  if (!line.empty()) say(o, "step time against CA's, this run: %s\n", line.c_str());
}

// bf16: the models, the context and the queries converted to bfloat16 (TCA's walk and read of S
// still run in the CUDA kernels, which compute in float32).
void bench_inference(ScalingOptions s, const std::string& precision, Output& o) {
  s.precision = precision;
  s.cpu_threads = torch::get_num_threads();  // --threads, or as LibTorch started
  const auto device = resolve_device(s.device);
  s.graphs = device.is_cuda() && cuda_graphs_enabled();  // --graphs, set by cmd_bench
  say(o, "inference, batch 1, %lld queries, no encoder, device %s, precision %s (median of %d)\n", (long long)s.queries,
      device.str().c_str(), precision.c_str(), s.repeats);
  say(o, "%8s %6s | %12s %12s | %12s %12s | %8s\n", "N", "|S|", "TCA us/query", "CA us/query", "tree build ms",
      "CA keys ms", "speed-up");
  if (s.graphs)
    say(o, "%s\n", "  each size's second line: the same work replayed from a CUDA graph (-1: the capture failed)");
  auto& inference = o.doc["inference"];
  inference = {{"batch", 1},           {"queries", s.queries},   {"repeats", s.repeats}, {"device", device.str()},
               {"precision", precision}, {"d_model", s.d_model}, {"heads", s.heads},   {"rows", nlohmann::json::array()}};
  ScalingPoint tca;
  // The sizes that do not fit were refused before (cmd_bench): no memory bound here.
  measure_scaling(s, 0, [&](const ScalingPoint& p) {
    if (p.model == "tca") {
      tca = p;
      return;
    }
    const auto& ca = p;  // measured after TCA at the same size
    say(o, "%8lld %6lld | %12.3f %12.3f | %12.2f %12.2f | %7.1fx\n", (long long)p.n, (long long)tca.tokens_per_query,
        tca.us_per_query, ca.us_per_query, tca.prepare_ms, ca.prepare_ms, ca.us_per_query / tca.us_per_query);
    nlohmann::json row = {{"n", p.n},
                          {"tokens_per_query", std::int64_t(tca.tokens_per_query)},
                          {"tca_us_per_query", tca.us_per_query},
                          {"ca_us_per_query", ca.us_per_query},
                          {"tree_build_ms", tca.prepare_ms},
                          {"ca_keys_ms", ca.prepare_ms},
                          {"speedup", ca.us_per_query / tca.us_per_query}};
    if (s.graphs) {
      say(o, "%8s %6s | %12.3f %12.3f | %12.2f %12.2f | %8s\n", "graph", "", tca.graph_us_per_query,
          ca.graph_us_per_query, tca.graph_prepare_ms, ca.graph_prepare_ms, "");
      row.update({{"tca_graph_us_per_query", tca.graph_us_per_query},
                  {"ca_graph_us_per_query", ca.graph_us_per_query},
                  {"tree_build_graph_ms", tca.graph_prepare_ms},
                  {"ca_keys_graph_ms", ca.graph_prepare_ms}});
      if (tca.graph_us_per_query > 0) row["tca_graph_matches_eager"] = tca.graph_matches_eager;
      for (const ScalingPoint* m : std::initializer_list<const ScalingPoint*>{&tca, &ca})
        if (!m->graph_error.empty()) {
          say(o, "  capture failed (%s): %s\n", m->model.c_str(), m->graph_error.c_str());
          row[m->model + "_graph_error"] = m->graph_error;
        }
    }
    inference["rows"].push_back(row);
  });
}

}  // namespace

CommandSpec bench_spec() {
  return {"bench",
          "measure training-step and inference speed",
          "",
          {{"what", "W", "which figures", {"train", "inference", "all"}},
           {"device", "D", "where to measure", Config::choices("device")},
           {"precision", "P",
            "train: bf16 autocasts the forward to bfloat16; inference: bf16 converts the models and inputs to "
            "bfloat16; tf32: float32 matrix products on a GPU's TensorFloat-32 tensor cores (default fp32)",
            Config::choices("precision")},
           {"seq-len", "N", "train: copy-task sequence length (default 64)", {}},
           {"batch", "B", "train: batch (default 32)", {}},
           {"steps", "S", "train: timed steps, the median is printed (default 30)", {}},
           {"models", "M,...", "train: some of the decoders (default all)", Config::choices("model")},
           {"dropout", "P", "train: dropout in training (default 0; the copy preset trains with 0.1)", {}},
           {"profile", "DIR", "train: also write DIR/train-MODEL.trace.json (chrome://tracing, ui.perfetto.dev); on a GPU "
            "the kernels too, and their time a step printed, by kernel and by stage (stages with --graphs off)", {}},
           {"max-n", "N", "inference: the largest context, from 1k by factors of 4 (default 262144)", {}},
           {"queries", "Q", "inference: queries per context (default 1024)", {}},
           {"repeats", "R", "inference: timed repeats, the median is printed (default 5)", {}},
           {"threads", "T", "CPU threads (1 to 1024; default: as LibTorch starts)", {}},
           {"json", "", "print the same figures as one JSON document instead of the tables", {}},
           {"kernels", "K", "off: CUDA tensors take the tensor paths even where the CUDA kernels are built; dropout's "
            "masks are still drawn by the keep-mask kernel, so a seed draws the same masks either way (default on)",
            {"on", "off"}},
           {"graphs", "G",
            "on CUDA: training steps replay from CUDA graphs where they can, and inference also times decode and "
            "tree building replayed from graphs (default on)",
            {"on", "off"}}},
          "train: median time of a training step on the copy task. inference: per-query time of TCA\n"
          "against CA for N = 1k .. max-n context tokens (batch 1, no encoder; tree building and key\n"
          "projection reported apart)."};
}

int cmd_bench(const Args& args) {
  const auto what = args.str("what", "all");
  if (what != "train" && what != "inference" && what != "all")
    throw UsageError("--what must be train, inference or all");
  const auto device = args.str("device", "auto");
  resolve_device(device);  // fails early with the fix when CUDA is missing
  const auto choice = train_choice(args);
  const auto inference = inference_choice(args, device);
  if (const int threads = threads_value(args)) torch::set_num_threads(threads);
  const bool kernels = args.on_off("kernels", true);
  set_cuda_kernels_enabled(kernels);
  set_cuda_graphs_enabled(args.on_off("graphs", true));
  const auto precision = args.str("precision", "fp32");
  {
    const auto& allowed = Config::choices("precision");
    if (std::find(allowed.begin(), allowed.end(), precision) == allowed.end())
      throw UsageError("--precision must be one of " + join_choices(allowed));
    if (precision == "bf16")
      if (const auto refusal = bf16_refusal(resolve_device(device)); !refusal.empty()) throw UsageError(refusal);
  }
  if (what != "train") {
    // The largest size must fit this machine's memory (the estimate the Scaling view stops by).
    const double available = available_memory_bytes();
    const auto fitting =
        memory_estimated_on(inference.device) ? largest_fitting_n(inference, available) : inference.max_n;
    if (fitting < inference.max_n)
      throw UsageError("--max-n " + std::to_string(inference.max_n) + ": its largest size needs about " +
                       memory_text(scaling_bytes(inference, inference.max_n)) + " but " + memory_text(available) +
                       " is available; " +
                       (fitting > 0 ? "the largest that fits here: --max-n " + std::to_string(fitting)
                                    : std::string("not even ") + std::to_string(inference.min_n) + " tokens fit; lower --queries"));
  }
  Output o;
  o.json = args.has("json");
  say(o, "LibTorch %d.%d.%d, %d CPU threads, CUDA kernels %s\n", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
      TORCH_VERSION_PATCH, torch::get_num_threads(),
      !cuda_kernels_available() ? "not built" : kernels ? "on" : "off");
  o.doc["libtorch"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                      std::to_string(TORCH_VERSION_PATCH);
  o.doc["cpu_threads"] = torch::get_num_threads();
  o.doc["cuda_kernels"] = cuda_kernels_available() ? (kernels ? "on" : "off") : "not built";
  o.doc["precision"] = precision;
  MatmulPrecisionScope matmuls(precision == "tf32");
  if (kernels && cuda_kernels_available() && resolve_device(device).is_cuda()) {
    // Which kernels the dense reads of training take (cuda_ops.h: dense_attention_cuda).
    struct Kind {
      const char *name, *text;
    };
    const int passes = dense_tensor_passes();
    const Kind kind =
        passes == 1   ? Kind{"tf32", "TensorFloat-32 on the tensor cores"}
        : passes == 3 ? Kind{"3xtf32", "three TensorFloat-32 products of split operands on the tensor cores (float32's accuracy)"}
                      : Kind{"fma", "float32 multiply-adds (no tensor cores)"};
    say(o, "dense attention of training: %s\n", kind.text);
    o.doc["dense_attention"] = kind.name;
  }
  if (what != "inference") bench_train(device, precision, choice, o);
  if (what != "train") bench_inference(inference, precision, o);
  if (o.json) std::printf("%s\n", o.doc.dump(2).c_str());
  return 0;
}

}  // namespace retreever::cli
