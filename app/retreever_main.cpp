// retreever: train, evaluate, inspect and benchmark ReTreever from the command line
// (DESIGN.md "Command line contract").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/bench.h"
#include "app/cli/data_parallel.h"
#include "app/cli/parallel_runs.h"
#include "app/cli/report.h"
#include "app/cli/training_run.h"
#include "core/inspection.h"
#include "core/training/checkpoint.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

namespace fs = std::filesystem;
using namespace retreever;
using namespace retreever::cli;

namespace {

const char* kUsage =
    "usage: retreever COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  train    train a model and write DIR/config.json, metrics.csv, checkpoint.safetensors\n"
    "  eval     evaluate a checkpoint on a fixed evaluation set\n"
    "  inspect  show the tree of one context and the retrieval path of one query\n"
    "  bench    measure training-step and inference speed\n"
    "  study    train and compare several runs: reward, ordering or models\n"
    "  report   reproduce the paper's comparisons: Markdown tables and PNG plots\n"
    "  convert  rewrite an old checkpoint.pt as a checkpoint.safetensors (--trust: runs code from it)\n"
    "\n"
    "'retreever COMMAND --help' lists a command's options.\n";

const char* kTrainUsage =
    "usage: retreever train --task copy|gp|image --model tca|ca|perceiver|treeformer --out DIR [options]\n"
    "  --config FILE.json     start from a config file (flags override it)\n"
    "  --resume FILE          continue training from a checkpoint, with its config; --steps, --lr,\n"
    "                         --reward, --rl-baseline, --explore, --ca-warmup, --eval-every, --log-every,\n"
    "                         --data and --device change it from there on, the other flags are refused\n"
    "  --seq-len N            copy task: sequence length (context = first half), >= 4\n"
    "  --batch B --steps S --lr X --seed K\n"
    "  --branch-factor b      children per tree node, >= 2\n"
    "  --latents L            Perceiver IO latents\n"
    "  --treeformer-depth d   Treeformer TC attention: 2^d leaf summaries per query\n"
    "  --reward acc|nce       REINFORCE reward for classification\n"
    "  --rl-baseline fixed|mean  subtracted from the reward: the paper's constant (default),\n"
    "                         or the reward's mean over the batch\n"
    "  --explore E            share of uniformly drawn policy choices in training (default 0)\n"
    "  --ca-warmup N          TCA: train the first N steps on L_CA alone, then on the whole\n"
    "                         objective (default 0 = the paper's objective from the start)\n"
    "  --encoder-layers E     Transformer layers over the context (0 = embedder only)\n"
    "  --ordering given|sort_x1|sort_x2|kdtree|random_proj\n"
    "  --leaf-layout packed|balanced  padding after the real leaves (paper; copy, gp) or spread\n"
    "                         evenly over the leaf groups (image preset)\n"
    "  --eval-every N --log-every N\n"
    "  --data DIR             image task: folder of IDX files (default /usr/share/datasets/fashion-mnist)\n"
    "  --device auto|cpu|cuda\n"
    "  --nproc N              data-parallel over N local processes (CPU: Gloo; cuda: a GPU each, NCCL),\n"
    "                         the same steps as one process; under torchrun or srun leave it out\n";

const char* kEvalUsage =
    "usage: retreever eval --checkpoint FILE [--batches N] [--seed K] [--kernel rbf|matern|periodic]\n"
    "                      [--split seen|unseen] [--context N] [--device auto|cpu|cuda] [--json]\n"
    "  --kernel   GP: the kernel of the evaluation functions\n"
    "  --split    image: evaluate on the training classes (seen) or the unseen ones\n"
    "  --context  gp, image: every evaluation task has N context points (gp 3..47, image 3..197;\n"
    "             default: drawn as in training)\n";

const char* kInspectUsage =
    "usage: retreever inspect --checkpoint FILE [--sample I] [--query J] [--seed K] [--json]\n";

bool is_help(const std::vector<std::string>& a) {
  for (const auto& s : a)
    if (s == "--help" || s == "-h") return true;
  return false;
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
  c.eval_every = args.integer("eval-every", c.eval_every);
  c.log_every = args.integer("log-every", c.log_every);
  c.data_dir = args.str("data", c.data_dir);
  c.device = args.str("device", c.device);
  auto problems = c.validate();
  if (!problems.empty()) throw UsageError(problems.front());
}

Config config_from_args(const Args& args, const std::string& default_task = "copy") {
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
  return c;
}

int cmd_train(const std::vector<std::string>& argv) {
  if (is_help(argv)) return std::printf("%s", kTrainUsage), 0;
  Args args("train", argv,
            {"task", "model", "config", "resume", "seq-len", "batch", "steps", "lr", "seed",
             "branch-factor", "latents", "treeformer-depth", "reward", "encoder-layers", "ordering",
             "leaf-layout", "rl-baseline", "eval-every", "log-every", "data", "device", "out", "explore", "ca-warmup",
             "nproc"},
            {});
  const fs::path out = args.required("out");
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
    trainer = std::make_unique<Trainer>(config_from_args(args), datasets::make_task);
  }
  if (setup)
    if (const int status = join_run(*trainer, *setup)) return status;
  return run_training(*trainer, out);
}

int cmd_eval(const std::vector<std::string>& argv) {
  if (is_help(argv)) return std::printf("%s", kEvalUsage), 0;
  Args args("eval", argv, {"checkpoint", "batches", "seed", "kernel", "split", "context", "device"}, {"json"});
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

int cmd_inspect(const std::vector<std::string>& argv) {
  if (is_help(argv)) return std::printf("%s", kInspectUsage), 0;
  Args args("inspect", argv, {"checkpoint", "sample", "query", "seed"}, {"json"});
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
    const auto& leaves = r.nodes[id].leaves;
    if (leaves.empty()) std::printf("padding");
    else if (leaves.size() == 1) std::printf("%lld", (long long)leaves[0]);
    else std::printf("%lld..%lld", (long long)leaves.front(), (long long)leaves.back());
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

const char* kStudyUsage =
    "usage: retreever study reward|ordering|models --out DIR [--task copy|gp|image] [--config FILE.json]\n"
    "                       [--seq-len N] [--steps S] [--batch B] [--seed K] [--device auto|cpu|cuda]\n"
    "                       [--parallel N | --devices cuda:0,cuda:1]\n"
    "  reward    TCA on the copy task with the accuracy and the negative cross-entropy reward\n"
    "            (the paper's Table 3)\n"
    "  ordering  TCA with each tree ordering (given, sort_x1, sort_x2, kdtree, random_proj);\n"
    "            the default task is image completion\n"
    "  models    TCA, full cross attention, Perceiver IO with as many latents as TCA reads and\n"
    "            Treeformer TC attention with about as many leaf summaries\n"
    "Each run goes to DIR/NAME/ (as 'train' writes it); DIR/study.md and DIR/study.csv hold the\n"
    "final evaluation of every run. --config sets the budget (steps, batch, ...) for all runs.\n"
    "--parallel N trains the runs as N processes at a time, --devices L one per device of L at a time;\n"
    "each run's output then goes to DIR/NAME/train.log.\n";

int cmd_study(const std::vector<std::string>& argv) {
  if (is_help(argv) || argv.empty()) return std::printf("%s", kStudyUsage), argv.empty() ? kExitUsage : 0;
  const std::string kind = argv[0];
  if (kind != "reward" && kind != "ordering" && kind != "models")
    throw UsageError("unknown study '" + kind + "'; use reward, ordering or models");
  Args args("study", std::vector<std::string>(argv.begin() + 1, argv.end()),
            {"task", "config", "seq-len", "steps", "batch", "seed", "device", "data", "out", "eval-every", "parallel",
             "devices"},
            {});
  const fs::path out = args.required("out");
  if (kind == "reward" && args.has("task") && args.str("task") != "copy")
    throw UsageError("the reward study runs on the copy task (classification)");
  Config base = config_from_args(args, kind == "reward" ? "copy" : kind == "ordering" ? "image" : "copy");
  base.model = "tca";
  std::vector<std::pair<std::string, Config>> runs;
  if (kind == "reward") {
    for (const auto& r : Config::choices("reward")) {
      Config c = base;
      c.reward = r;
      runs.emplace_back("tca_" + r, c);
    }
  } else if (kind == "ordering") {
    for (const auto& o : Config::choices("ordering")) {
      Config c = base;
      c.ordering = o;
      if (c.task != "image" && o == "sort_x2") continue;  // 1-D inputs have no x2
      runs.emplace_back("tca_" + o, c);
    }
  } else {
    for (const auto& m : Config::models()) runs.emplace_back(m, base);
  }
  struct Row {
    std::string name, model, metric;
    double value, tokens, context;
  };
  std::vector<Row> rows;
  std::int64_t tca_tokens = 0;
  // --parallel / --devices (app/cli/parallel_runs.h): the runs train as child processes first, and the
  // loop reads their results. An untrained TCA reads as many tokens as a trained one.
  const bool parallel = args.has("parallel") || args.has("devices");
  if (parallel && kind == "models") tca_tokens = std::lround(Trainer(base, datasets::make_task).evaluate().tokens_per_query);
  for (auto& [name, config] : runs)
    if (parallel && kind == "models") config.model = name, config.match_tca_tokens(tca_tokens);
  if (parallel)
    if (const int status = train_runs_in_parallel(runs, out, args.str("parallel"), args.str("devices"))) return status;
  for (auto& [name, config] : runs) {
    if (kind == "models") {
      config.model = name;
      config.match_tca_tokens(tca_tokens);  // Perceiver IO and Treeformer read as many as TCA
    }
    auto trainer = parallel ? Trainer::load((out / name / "checkpoint.safetensors").string(), datasets::make_task)
                            : std::make_unique<Trainer>(config, datasets::make_task);
    const int status = parallel ? 0 : run_training(*trainer, out / name);
    if (status != 0) return status;
    const auto& e = trainer->history().evals.back();
    if (name == "tca") tca_tokens = std::int64_t(std::lround(e.tokens_per_query));
    rows.push_back({name, config.model, e.metric, e.value, e.tokens_per_query, e.context_size});
  }
  std::string md = "# retreever study " + kind + "\n\ntask " + base.task + ", " + std::to_string(base.steps) +
                   " steps, batch " + std::to_string(base.batch) + ", seed " + std::to_string(base.seed) +
                   "\n\n| run | model | metric | value | tokens/query | context N | tokens % |\n|---|---|---|---|---|---|---|\n";
  std::string csv = "run,model,metric,value,tokens_per_query,context_size\n";
  for (const auto& r : rows) {
    char line[400];
    const double shown = r.metric == "accuracy" ? 100 * r.value : r.value;
    std::snprintf(line, sizeof line, "| %s | %s | %s | %.3f | %.1f | %.1f | %.1f |\n", r.name.c_str(), r.model.c_str(),
                  r.metric == "accuracy" ? "accuracy %" : r.metric.c_str(), shown, r.tokens, r.context,
                  100 * r.tokens / r.context);
    md += line;
    std::snprintf(line, sizeof line, "%s,%s,%s,%.6g,%.6g,%.6g\n", r.name.c_str(), r.model.c_str(), r.metric.c_str(),
                  r.value, r.tokens, r.context);
    csv += line;
  }
  write_text_file_atomic((out / "study.md").string(), md);
  write_text_file_atomic((out / "study.csv").string(), csv);
  std::printf("%s", md.c_str());
  return 0;
}

const char* kConvertUsage =
    "usage: retreever convert --trust OLD.pt NEW.safetensors\n"
    "  Rewrites a checkpoint of the old format (a torch archive, written before version 2) in the\n"
    "  safetensors format every other command reads. Reading the old format runs TorchScript code\n"
    "  that the file carries: --trust says you trust where the file came from. This is the only\n"
    "  command that reads it.\n";

int cmd_convert(const std::vector<std::string>& argv) {
  if (is_help(argv)) return std::printf("%s", kConvertUsage), 0;
  std::vector<std::string> paths;
  bool trust = false;
  for (const auto& a : argv) {
    if (a == "--trust") trust = true;
    else if (a.rfind("--", 0) == 0) throw UsageError("convert: unknown option '" + a + "'; see 'retreever convert --help'");
    else paths.push_back(a);
  }
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "train") return cmd_train(rest);
    if (command == "eval") return cmd_eval(rest);
    if (command == "inspect") return cmd_inspect(rest);
    if (command == "bench") return cli::cmd_bench(rest);
    if (command == "study") return cmd_study(rest);
    if (command == "report") return cli::cmd_report(rest);
    if (command == "convert") return cmd_convert(rest);
    if (command == "--help" || command == "-h" || command == "help") return std::printf("%s", kUsage), 0;
    std::fprintf(stderr, "error: %s\n%s",
                 command.empty() ? "no command given" : ("unknown command '" + command + "'").c_str(), kUsage);
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
