// retreever: train, evaluate, inspect and benchmark ReTreever from the command line
// (DESIGN.md "Command line contract").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <set>
#include <nlohmann/json.hpp>

#include "app/cli/command_line.h"
#include "app/cli/bench.h"
#include "app/cli/data_parallel.h"
#include "app/cli/parallel_runs.h"
#include "app/cli/report.h"
#include "app/cli/report_budget.h"
#include "app/cli/training_run.h"
#include "core/cuda/cuda_graph.h"
#include "core/devices.h"
#include "core/files.h"
#include "core/inspection.h"
#include "core/registry.h"
#include "core/table.h"
#include "core/training/checkpoint.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"
#ifdef RETREEVER_HAVE_CHARTS
#include "ui/chart_view.h"
#endif

namespace fs = std::filesystem;
using namespace retreever;
using namespace retreever::cli;

namespace {

// The choices of a config field, for the help (from Config and core/registry.h).
std::vector<std::string> choices(const char* field) { return Config::choices(field); }

// "  NAME        summary", the summary wrapped at 100 columns under itself.
std::string listing_line(const std::string& name, const std::string& summary) {
  constexpr std::size_t kIndent = 14, kWidth = 100;
  std::string out = "  " + name + std::string(kIndent - std::min(kIndent - 1, name.size() + 2), ' ');
  std::size_t column = kIndent;
  std::size_t at = 0;
  while (at < summary.size()) {
    const auto end = std::min(summary.find(' ', at), summary.size());
    const auto word = summary.substr(at, end - at);
    if (column > kIndent && column + 1 + word.size() > kWidth) {
      out += "\n" + std::string(kIndent, ' ');
      column = kIndent;
    } else if (column > kIndent) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    at = end + 1;
  }
  return out + "\n";
}

// The registered tasks and models with their one-line summaries (core/registry.h), for train's help.
std::string registry_listing() {
  std::string s = "tasks:\n";
  for (const auto& t : tasks()) s += listing_line(t.name, t.summary);
  s += "models:\n";
  for (const auto& d : decoders()) s += listing_line(d.name, d.summary);
  return s + "\n";
}

CommandSpec train_spec() {
  return {"train",
          "train a model and write DIR/config.json, metrics.csv, checkpoint.safetensors",
          "",
          {{"task", "TASK", "what to learn", choices("task")},
           {"model", "MODEL", "the decoder", choices("model")},
           {"out", "DIR", "the run's folder (required; with --resume, the checkpoint's folder by default)", {}},
           {"config", "FILE.json", "start from a config file (flags override it)", {}},
           {"resume", "FILE", "continue a checkpoint with its config (the training flags may change it)", {}},
           {"overwrite", "", "replace the run --out already holds (without it, train refuses such a folder)", {}},
           {"seq-len", "N", "copy task: sequence length (context = first half), >= 4", {}},
           {"batch", "B", "tasks per training step", {}},
           {"steps", "S", "training steps (the cosine schedule spans them)", {}},
           {"lr", "X", "Adam's peak learning rate", {}},
           {"seed", "K", "seeds data, initialisation and the policy's draws", {}},
           {"branch-factor", "b", "children per tree node, >= 2", {}},
           {"latents", "L", "Perceiver IO latents", {}},
           {"treeformer-depth", "d", "Treeformer TC attention: 2^d leaf summaries per query", {}},
           {"reward", "R", "REINFORCE reward for classification", choices("reward")},
           {"rl-baseline", "B", "subtracted from the reward: the paper's constant or the batch mean", choices("rl_baseline")},
           {"explore", "E", "share of uniformly drawn policy choices in training (default 0)", {}},
           {"ca-warmup", "N", "TCA: the first N steps on L_CA alone (default 0 = the paper's objective)", {}},
           {"dropout", "P", "dropout in training, where the reference code has it (the copy preset: 0.1, "
                            "the reference copy script's; others 0)", {}},
           {"encoder-layers", "E", "Transformer layers over the context (0 = embedder only)", {}},
           {"ordering", "O", "the order of the tree's leaves", choices("ordering")},
           {"leaf-layout", "L", "padding after the real leaves (paper) or spread over the groups", choices("leaf_layout")},
           {"eval-every", "N", "steps between evaluations and checkpoints", {}},
           {"log-every", "N", "steps between metric rows", {}},
           {"data", "DIR", "image task: folder of IDX files (default /usr/share/datasets/fashion-mnist)", {}},
           {"device", "D", "where to train", choices("device")},
           {"precision", "P", "bf16: the forward autocast to bfloat16 (parameters and optimiser stay float32); "
                              "tf32: float32 matrix products on a GPU's TensorFloat-32 tensor cores, elsewhere as "
                              "fp32 (default fp32)", choices("precision")},
           {"graphs", "G", "on a GPU, replay each training step from a CUDA graph where it can (default on)",
            {"on", "off"}},
           threads_option(),
           {"nproc", "N", "data-parallel over N local processes (CPU: Gloo; cuda: a GPU each, NCCL), the same "
                          "steps as one process; under torchrun or srun leave it out", {}}},
          registry_listing() +
          "A task starts from its preset (resources/presets/TASK.json). With --resume, --steps, --lr,\n"
          "--reward, --rl-baseline, --explore, --ca-warmup, --dropout, --eval-every, --log-every, --data,\n"
          "--device and --precision change the checkpoint's config from there on; the other flags are refused."};
}

CommandSpec eval_spec() {
  return {"eval",
          "evaluate a checkpoint on a fixed evaluation set",
          "",
          {{"checkpoint", "FILE", "the checkpoint (required)", {}},
           {"batches", "N", "evaluation batches", {}},
           {"seed", "K", "seed of the evaluation set", {}},
           {"kernel", "K", "GP: the kernel of the evaluation functions", choices("eval_kernel")},
           {"split", "S", "image: the training classes (seen) or the unseen ones", choices("eval_split")},
           {"context", "N", "gp, image: every evaluation task has N context points (default: drawn as in training)", {}},
           {"device", "D", "where to evaluate", choices("device")},
           {"json", "", "print one JSON object", {}}},
          ""};
}

CommandSpec inspect_spec() {
  return {"inspect",
          "show the tree of one context and the retrieval path of one query",
          "",
          {{"checkpoint", "FILE", "the checkpoint (required)", {}},
           {"sample", "I", "the evaluation sample (default 0)", {}},
           {"query", "J", "the query of that sample (default 0)", {}},
           {"seed", "K", "seed of the evaluation set", {}},
           {"json", "", "print one JSON object", {}}},
          ""};
}

CommandSpec study_spec() {
  return {"study",
          "train and compare several runs: reward, ordering or models",
          "reward|ordering|models",
          {{"out", "DIR", "where the runs and study.md, study.csv, plots/ go (required)", {}},
           {"task", "TASK", "the task (reward: copy; ordering: image by default)", choices("task")},
           {"config", "FILE.json", "the budget (steps, batch, ...) for all runs", {}},
           {"seq-len", "N", "copy task: sequence length", {}},
           {"steps", "S", "training steps of each run", {}},
           {"batch", "B", "tasks per step", {}},
           {"seed", "K", "seed of every run", {}},
           {"eval-every", "N", "steps between evaluations", {}},
           {"data", "DIR", "image task: folder of IDX files", {}},
           {"device", "D", "where to train", choices("device")},
           {"parallel", "N", "train the runs as N processes at a time (output in DIR/NAME/train.log)", {}},
           {"devices", "LIST", "train one run per device of LIST at a time, e.g. cuda:0,cuda:1", {}},
           threads_option()},
          "reward: TCA with the accuracy and the negative cross-entropy reward (the paper's Table 3).\n"
          "ordering: TCA with each tree ordering. models: every decoder, the sized ones reading as many\n"
          "tokens as TCA. A study is a built-in budget of 'report' with one section: its runs go to\n"
          "DIR/SECTION/... as 'train' writes them, and are reused or resumed when the command runs again."};
}

CommandSpec convert_spec() {
  return {"convert",
          "rewrite an old checkpoint.pt as a checkpoint.safetensors (--trust: runs code from it)",
          "OLD.pt NEW.safetensors",
          {{"trust", "", "you trust where the old file came from: reading it runs code it carries", {}}},
          "The old format (a torch archive, written before version 2) is read by this command only."};
}

// The flags that change how a run trains but not the model or its data: a new run's and a resumed
// run's. Validates the result.
void apply_training_flags(const Args& args, Config& c) {
  c.steps = args.integer("steps", c.steps);
  c.lr = args.number("lr", c.lr);
  c.reward = args.str("reward", c.reward);
  c.rl_baseline = args.str("rl-baseline", c.rl_baseline);
  c.explore = args.number("explore", c.explore);
  c.ca_warmup = args.integer("ca-warmup", c.ca_warmup);
  c.dropout = args.number("dropout", c.dropout);
  c.eval_every = args.integer("eval-every", c.eval_every);
  c.log_every = args.integer("log-every", c.log_every);
  c.data_dir = args.str("data", c.data_dir);
  c.device = args.str("device", c.device);
  c.precision = args.str("precision", c.precision);
  auto problems = c.validate();
  if (!problems.empty()) throw UsageError(problems.front());
}

// A flag that sets a config field this run does not read is a warning, not an error: a sweep may
// pass one set of flags to every model. The fields that can go unread are those some model or task
// owns (core/registry.h); each flag is named after its field.
void warn_unread_flags(const Args& args, const Config& c) {
  std::set<std::string> owned;
  for (const auto& d : decoders()) owned.insert(d.fields.begin(), d.fields.end());
  for (const auto& t : tasks()) owned.insert(t.fields.begin(), t.fields.end());
  for (const auto& field : owned) {
    auto flag = field == "data_dir" ? std::string("data") : field;
    std::replace(flag.begin(), flag.end(), '_', '-');
    if (!args.has(flag)) continue;
    const auto why = unread_field_reason(field, c.task, c.model);
    if (!why.empty())
      std::fprintf(stderr, "warning: --%s has no effect on a %s run on %s: %s\n", flag.c_str(), c.model.c_str(),
                   c.task.c_str(), why.c_str());
  }
}

// warn: say which flags the run ignores (false in a data-parallel worker: its launcher said it).
Config config_from_args(const Args& args, const std::string& default_task = "copy", bool warn = true) {
  Config file_config;
  std::string file_text;
  if (args.has("config")) {
    file_text = read_text_file(args.str("config"));
    try {
      file_config = Config::from_json(file_text);
    } catch (const std::exception& e) {
      throw UsageError("config file '" + args.str("config") + "': " + e.what());
    }
  }
  const auto task = args.str("task", args.has("config") ? file_config.task : default_task);
  Config c = Config::preset(task);
  if (args.has("config")) c = Config::from_json(file_text, c);
  c.task = task;
  c.model = args.str("model", c.model);
  c.seq_len = args.integer("seq-len", c.seq_len);
  c.batch = args.integer("batch", c.batch);
  c.seed = args.integer("seed", c.seed);
  c.branch_factor = args.integer("branch-factor", c.branch_factor);
  c.latents = args.integer("latents", c.latents);
  c.treeformer_depth = args.integer("treeformer-depth", c.treeformer_depth);
  c.encoder_layers = args.integer("encoder-layers", c.encoder_layers);
  c.ordering = args.str("ordering", c.ordering);
  c.leaf_layout = args.str("leaf-layout", c.leaf_layout);
  apply_training_flags(args, c);
  if (warn) warn_unread_flags(args, c);
  return c;
}

// Whether `out` holds the checkpoint --resume names (going on with a folder's own run).
bool resuming_in_place(const Args& args, const fs::path& out) {
  std::error_code error;
  return args.has("resume") && fs::equivalent(out / kCheckpointFileName, args.str("resume"), error);
}

// A run folder that holds another run's checkpoint is not trained into unless --overwrite says so:
// the new run would replace that checkpoint.
void refuse_to_replace_a_run(const Args& args, const fs::path& out) {
  const auto existing = out / kCheckpointFileName;
  std::error_code error;
  if (args.has("overwrite") || resuming_in_place(args, out) || !fs::exists(existing, error)) return;
  std::string what;
  try {
    const auto header = read_checkpoint_header(existing.string());
    what = " (" + header.config.model + " on " + header.config.task + ", step " + std::to_string(header.step) + ")";
  } catch (const std::exception&) {  // unreadable: still the user's file
  }
  throw UsageError("'" + out.string() + "' already holds a run" + what + "; go on with it: --resume " +
                   existing.string() + "; keep it: pick another --out; replace it: add --overwrite");
}

int cmd_train(const Args& args) {
  // A resumed run goes on in its own folder unless --out says otherwise (what an interrupted run's
  // "resume with --resume FILE" asks for).
  fs::path out = args.has("resume") && !args.has("out") ? fs::path(args.str("resume")).parent_path()
                                                         : fs::path(args.required("out"));
  if (out.empty()) out = ".";
  const int threads = threads_value(args);
  refuse_to_replace_a_run(args, out);
  set_cuda_graphs_enabled(args.on_off("graphs", true));
  // Data parallel (app/cli/data_parallel.h): --nproc starts the workers; a worker joins its run below.
  const auto setup = worker_setup(args.has("nproc"));
  if (args.has("nproc") && !setup) {
    Config c = args.has("resume") ? read_checkpoint_header(args.str("resume")).config : config_from_args(args);
    if (args.has("resume")) apply_training_flags(args, c);
    if (const auto status = launch_workers(args.integer("nproc", 1), c, out)) return *status;
  }
  std::unique_ptr<Trainer> trainer;
  if (args.has("resume")) {
    // Resuming keeps the model and its data; the training settings a flag names apply from here on.
    for (const char* fixed : {"task", "model", "config", "seq-len", "branch-factor", "latents", "treeformer-depth",
                              "encoder-layers", "ordering", "leaf-layout"})
      if (args.has(fixed))
        throw UsageError(std::string("--") + fixed +
                         " cannot change when resuming: the checkpoint's config fixes the model; train a new "
                         "run instead");
    for (const char* fixed : {"batch", "seed"})
      if (args.has(fixed))
        throw UsageError(std::string("--") + fixed +
                         " cannot change when resuming: it fixes the training data and the evaluation set; "
                         "train a new run instead");
    trainer = Trainer::load(args.str("resume"), datasets::make_task, [&](Config& c) { apply_training_flags(args, c); });
  } else {
    trainer = std::make_unique<Trainer>(config_from_args(args, "copy", !setup), datasets::make_task);
  }
  if (setup)
    if (const int status = join_run(*trainer, *setup)) return status;
  if (threads > 0) trainer->use_cpu_threads(threads);
  // --overwrite: the old run's checkpoints go once the new run is set to start (not before: a
  // refused flag leaves them), so that its best one does not stand beside the new run's files.
  if (args.has("overwrite") && !resuming_in_place(args, out)) {
    std::error_code error;
    for (const char* old : {kCheckpointFileName, kBestCheckpointFileName}) fs::remove(out / old, error);
  }
  return run_training(*trainer, out);
}

int cmd_eval(const Args& args) {
  const auto path = args.required("checkpoint");
  const auto batches = args.integer("batches", -1);
  const auto seed = args.integer("seed", -1);
  if (args.has("batches") && batches <= 0) throw UsageError("--batches must be positive");
  if (args.has("seed") && seed < 0) throw UsageError("--seed must be 0 or more");
  const auto context = args.integer("context", 0);
  if (args.has("context") && context <= 0) throw UsageError("--context must be a positive number of context points");
  const auto kernel = args.str("kernel"), device = args.str("device"), split = args.str("split");
  auto trainer = Trainer::load(path, datasets::make_task, [&](Config& c) {
    if (batches > 0) c.eval_batches = batches;
    if (seed >= 0) c.seed = seed;
    if (!kernel.empty()) c.eval_kernel = kernel;
    if (!split.empty()) c.eval_split = split;
    if (context > 0) c.eval_context = context;
    if (!device.empty()) c.device = device;
    auto problems = c.validate();
    if (!problems.empty()) throw UsageError(problems.front());
  });
  auto e = trainer->evaluate();
  const auto& c = trainer->config();
  if (args.has("json")) {
    nlohmann::json j;
    j["task"] = c.task;
    j["model"] = c.model;
    j["metric"] = e.metric;
    j[e.metric] = e.value;
    if (e.metric == "log_likelihood") j["log_likelihood_per_point"] = e.per_point;
    j["tokens_per_query"] = e.tokens_per_query;
    j["context_size"] = e.context_size;
    j["tokens_fraction"] = e.tokens_fraction();
    j["step"] = trainer->steps_done();
    if (!e.per_target.empty()) j["per_target"] = e.per_target;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s %s at step %lld: %s, %.1f tokens per query of %.1f (%.1f%%)\n", c.model.c_str(),
                c.task.c_str(), (long long)trainer->steps_done(), metric_text(e).c_str(),
                e.tokens_per_query, e.context_size, 100 * e.tokens_fraction());
    // Positions the model gets wrong most often: a policy stuck on a wrong branch shows here.
    std::vector<std::size_t> order(e.per_target.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return e.per_target[a] < e.per_target[b]; });
    std::string weakest;
    for (std::size_t i = 0; i < order.size() && i < 8 && e.per_target[order[i]] < 0.99; ++i)
      weakest += " " + std::to_string(order[i]) + " (" + std::to_string(int(std::lround(100 * e.per_target[order[i]]))) + "%)";
    if (!weakest.empty())
      std::printf("weakest target positions (inspect them with 'retreever inspect --query J'):%s\n", weakest.c_str());
  }
  return 0;
}

int cmd_inspect(const Args& args) {
  const auto path = args.required("checkpoint");
  const auto seed = args.integer("seed", -1);
  if (args.has("seed") && seed < 0) throw UsageError("--seed must be 0 or more");
  auto inspector = Inspector::from_checkpoint(path, datasets::make_task, seed);
  auto r = inspector->inspect(args.integer("sample", 0), args.integer("query", 0));
  if (args.has("json")) {
    std::printf("%s\n", r.to_json().c_str());
    return 0;
  }
  std::printf("sample %lld, query %lld: context of %lld tokens, %lld read per query\n",
              (long long)r.sample, (long long)r.query, (long long)r.context_size,
              (long long)r.tokens_per_query);
  if (r.predicted_class >= 0)
    std::printf("prediction: class %lld (p = %.3f), target class %lld\n", (long long)r.predicted_class,
                r.prediction[r.predicted_class], (long long)r.target[0]);
  else
    std::printf("prediction: mean %.4f std %.4f, target %.4f\n", r.prediction[0], r.prediction[1],
                r.target[0]);
  if (!r.has_tree) return std::printf("(no tree: this model reads every token or its latents)\n"), 0;
  std::printf("tree: branch factor %lld, depth %lld, %lld leaves per group, %zu nodes\npath:",
              (long long)r.shape.b, (long long)r.shape.k, (long long)r.shape.p, r.nodes.size());
  for (auto id : r.trace.path) std::printf(" %lld", (long long)id);
  std::printf("\nselected:");
  for (auto id : r.trace.selected) {
    std::printf(" %lld[", (long long)id);
    // The context tokens the node covers: their range, or their count where they are not
    // consecutive (--json lists them).
    const auto& node = r.nodes[id];
    const auto range = node.leaf_range();
    if (node.leaves.empty()) std::printf("padding");
    else if (!range.empty()) std::printf("%s", range.c_str());
    else std::printf("%zu tokens", node.leaves.size());
    std::printf("]");
  }
  std::printf("\n");
  for (size_t l = 0; l < r.trace.probabilities.size(); ++l) {
    std::printf("level %zu policy:", l + 1);
    for (double p : r.trace.probabilities[l]) std::printf(" %.3f", p);
    std::printf("\n");
  }
  return 0;
}

int cmd_study(const Args& args, const ChartWriter& charts) {
  if (args.positionals().size() != 1)
    throw UsageError("name one study: retreever study reward|ordering|models --out DIR");
  const std::string kind = args.positionals()[0];
  // A study trains several models from this base: no single model's unread flags to warn about.
  const Config base = config_from_args(args, kind == "ordering" ? "image" : "copy", false);
  ReportJob job;
  job.title = "retreever study " + kind;
  job.stem = "study";
  job.options.out = args.required("out");
  job.options.device = base.device;
  job.options.data_dir = base.data_dir;
  job.parallel = args.str("parallel");
  job.devices = args.str("devices");
  job.options.threads = threads_value(args);
  report::Budget budget;
  try {
    budget = report::study_budget(kind, base);
  } catch (const std::invalid_argument& e) {  // an unknown study, or one the task cannot have
    throw UsageError(e.what());
  }
  return run_report(budget, job, args, charts);
}

int cmd_convert(const Args& args) {
  const auto& paths = args.positionals();
  const bool trust = args.has("trust");
  if (paths.size() != 2) throw UsageError("convert needs two paths: retreever convert --trust OLD.pt NEW.safetensors");
  if (!is_legacy_checkpoint(paths[0]))
    throw UsageError("'" + paths[0] + "' is not a checkpoint of the old format (a torch archive); nothing to convert");
  if (!trust)
    throw UsageError("reading '" + paths[0] + "' runs code that the file carries; if you trust where it came from, "
                     "add --trust: retreever convert --trust " + paths[0] + " " + paths[1]);
  if (fs::exists(paths[1])) throw UsageError("'" + paths[1] + "' exists already; name a new file");
  auto trainer = Trainer::load(paths[0], datasets::make_task, [](Config& c) { c.device = "cpu"; }, /*trust_legacy=*/true);
  trainer->save(paths[1]);
  std::printf("wrote %s (step %lld, %s on %s)\n", paths[1].c_str(), (long long)trainer->steps_done(),
              trainer->config().model.c_str(), trainer->config().task.c_str());
  return 0;
}

struct Command {
  CommandSpec spec;
  std::function<int(const Args&)> run;
};

std::vector<Command> commands() {
#ifdef RETREEVER_HAVE_CHARTS
  const ChartWriter charts = ui::save_chart_png;
#else
  const ChartWriter charts;
#endif
  return {{train_spec(), cmd_train},
          {eval_spec(), cmd_eval},
          {inspect_spec(), cmd_inspect},
          {bench_spec(), cmd_bench},
          {study_spec(), [charts](const Args& a) { return cmd_study(a, charts); }},
          {report_spec(), [charts](const Args& a) { return cmd_report(a, charts); }},
          {convert_spec(), cmd_convert}};
}

std::string usage(const std::vector<Command>& list) {
  std::string s = "usage: retreever COMMAND [options]\n\ncommands:\n";
  for (const auto& c : list)
    s += "  " + c.spec.name + std::string(10 - std::min<std::size_t>(9, c.spec.name.size()), ' ') + c.spec.summary + "\n";
  return s + "\n'retreever COMMAND --help' lists a command's options; 'retreever --version' names this build.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    const auto list = commands();
    for (const auto& c : list) {
      if (c.spec.name != command) continue;
      if (Args::wants_help(rest)) return std::printf("%s", Args::help(c.spec).c_str()), 0;
      return c.run(Args(c.spec, rest));
    }
    if (command == "--help" || command == "-h" || command == "help") return std::printf("%s", usage(list).c_str()), 0;
    if (command == "--version" || command == "version") return std::printf("%s\n", build_summary().c_str()), 0;
    std::fprintf(stderr, "error: %s\n%s",
                 command.empty() ? "no command given" : ("unknown command '" + command + "'").c_str(), usage(list).c_str());
    return kExitUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    // Library errors can span lines (config problems); stderr gets the first, which names the fix.
    std::string msg = e.what();
    std::fprintf(stderr, "error: %s\n", msg.substr(0, msg.find('\n')).c_str());
    return kExitError;
  }
}
