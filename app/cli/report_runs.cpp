#include "app/cli/report_runs.h"

#include <algorithm>
#include <cstdio>

#include "app/cli/training_run.h"
#include "core/files.h"
#include "core/registry.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

namespace retreever::cli::report {

namespace {
// Erases from j the fields that some entry of `all` reads and `own` does not.
template <typename Info>
void erase_fields_of_others(json& j, const std::vector<Info>& all, const Info& own) {
  for (const auto& other : all)
    for (const auto& k : other.fields)
      if (std::find(own.fields.begin(), own.fields.end(), k) == own.fields.end()) j.erase(k);
}
}  // namespace

json experiment_json(const Config& c) {
  json j = json::parse(c.to_json());
  for (const char* k : {"device", "data_dir", "log_every"}) j.erase(k);
  const auto& own = decoder_info(c.model);
  erase_fields_of_others(j, decoders(), own);
  if (!own.reference_block) j.erase("block");  // Perceiver IO and Treeformer are v1 throughout
  // Likewise other tasks' settings (a GP run does not read the copy task's query positions).
  if (const auto* task = find_task(c.task)) erase_fields_of_others(j, tasks(), *task);
  return j;
}

std::string first_difference(const Config& a, const Config& b) {
  const json ja = experiment_json(a), jb = experiment_json(b);
  for (auto it = ja.begin(); it != ja.end(); ++it)
    if (!jb.contains(it.key()) || jb[it.key()] != *it)
      return it.key() + " " + it->dump() + " there, " + (jb.contains(it.key()) ? jb[it.key()].dump() : "absent") + " here";
  return "";
}

Config Runner::make_config(const std::string& task, const json& overrides, std::int64_t seed) const {
  Config c = Config::preset(task);
  c = Config::from_json(overrides.dump(), c);
  c.task = task;
  c.seed = seed;
  c.device = opt_.device;
  if (!opt_.data_dir.empty()) c.data_dir = opt_.data_dir;
  return c;
}

Run Runner::ensure(const std::string& dir, const Config& wanted) {
  auto problems = wanted.validate();
  if (!problems.empty()) throw std::runtime_error("report run " + dir + ": " + problems.front());
  Run run;
  run.dir = dir;
  run.config = wanted;
  const fs::path folder = opt_.out / dir, checkpoint = folder / kCheckpointFileName;
  ++index_;
  std::unique_ptr<Trainer> trainer;
  if (fs::exists(checkpoint)) {
    trainer = Trainer::load(checkpoint.string(), datasets::make_task, [&](Config& c) { local(c); });
    const auto diff = first_difference(trainer->config(), wanted);
    if (!diff.empty())
      throw std::runtime_error(folder.string() + " holds a different experiment (" + diff +
                               "); move it away or choose another --out");
    if (trainer->finished()) {
      run.status = "reused";
    } else if (opt_.no_train || planning_) {  // planning: the second pass resumes it
      run.status = "unfinished";
      run.history = trainer->history();
      announce(run, " (step " + std::to_string(trainer->steps_done()) + " of " + std::to_string(wanted.steps) + ")");
      return run;
    } else {
      run.status = "resumed";
    }
  } else if (opt_.no_train) {
    announce(run, "");
    return run;
  } else if (planning_) {
    // Listed for the parallel pass. An untrained model reads as many tokens as a trained one, so
    // the baselines sized from this run are the ones the second pass will ask for.
    planned_.emplace_back(dir, wanted);
    run.status = "planned";
    announce(run, "");
    run.final_eval = Trainer(wanted, datasets::make_task).evaluate();
    return run;
  } else {
    trainer = std::make_unique<Trainer>(wanted, datasets::make_task);
    run.status = "trained";
  }
  announce(run, "");
  if (run.status != "reused") {
    if (opt_.threads > 0) trainer->use_cpu_threads(opt_.threads);
    const int status = run_training(*trainer, folder);
    if (status != 0) throw StopReport{status};
  }
  run.history = trainer->history();
  if (run.history.evals.empty() || run.history.evals.back().step != trainer->steps_done())
    run.final_eval = trainer->evaluate();
  else
    run.final_eval = run.history.evals.back();
  return run;
}

std::optional<EvalMetrics> Runner::evaluate(const Run& run, const std::function<void(Config&)>& adjust) {
  if (!run.available() || run.status == "planned") return std::nullopt;
  auto trainer = Trainer::load((opt_.out / run.dir / kCheckpointFileName).string(), datasets::make_task,
                               [&](Config& c) {
                                 local(c);
                                 adjust(c);
                               });
  return trainer->evaluate();
}

std::string Runner::tally() const {
  std::string t;
  for (const auto& [status, n] : counts_) t += (t.empty() ? "" : ", ") + std::to_string(n) + " " + status;
  return t.empty() ? "no runs" : t;
}

void Runner::local(Config& c) const {
  c.device = opt_.device;
  if (!opt_.data_dir.empty()) c.data_dir = opt_.data_dir;
  else if (!c.data_dir.empty() && !fs::exists(c.data_dir)) c.data_dir.clear();
}

void Runner::announce(const Run& run, const std::string& extra) {
  ++counts_[run.status];
  std::fprintf(stderr, "[report %d] %s: %s%s\n", index_, run.dir.c_str(), run.status.c_str(), extra.c_str());
}

}  // namespace retreever::cli::report
