// The report's run store: each run in its folder under the report, trained, resumed or reused
// (a folder holding another experiment is refused), and evaluated.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"

namespace retreever::cli::report {

namespace fs = std::filesystem;
using nlohmann::json;

// Thrown to unwind out of the sections when a run was interrupted or diverged.
struct StopReport {
  int status;
};


struct Options {
  fs::path out;
  bool no_train = false;
  std::string device = "auto", data_dir;
  int threads = 0;  // --threads: CPU threads for every step of every run (0: the tuner chooses)
};

struct Run {
  std::string dir;  // relative to the report folder
  Config config;
  std::string status = "missing";  // trained, resumed, reused, missing, unfinished
  MetricsHistory history;
  std::optional<EvalMetrics> final_eval;
  bool available() const { return final_eval.has_value(); }
};

// The fields that define the experiment: not where it runs, where its data lives or logging, and
// not the settings of a decoder or a task the run does not use (a CA run is the same whatever its
// tree ordering or REINFORCE baseline says, a GP run whatever the copy task's sequence length).
json experiment_json(const Config& c);
// The first experiment field in which a and b differ, as "field A there, B here"; empty if none.
std::string first_difference(const Config& a, const Config& b);

class Runner {
 public:
  Runner(Options opt) : opt_(std::move(opt)) {}

  Config make_config(const std::string& task, const json& overrides, std::int64_t seed) const;

  // Trains (or reuses, or resumes) the run in `dir`.
  Run ensure(const std::string& dir, const Config& wanted);

  // The finished run in `run.dir`, evaluated under changed evaluation settings.
  std::optional<EvalMetrics> evaluate(const Run& run, const std::function<void(Config&)>& adjust);

  // "3 trained, 5 reused" for the report's header.
  std::string tally() const;

  // Planning (report --parallel): ensure() trains nothing; it lists the runs that have no folder yet
  // (planned()) so that they can train side by side before the report's real pass reuses them.
  void plan_only() { planning_ = true; }
  bool planning() const { return planning_; }
  const std::vector<std::pair<std::string, Config>>& planned() const { return planned_; }

 private:
  void local(Config& c) const;
  void announce(const Run& run, const std::string& extra);

  Options opt_;
  bool planning_ = false;
  std::vector<std::pair<std::string, Config>> planned_;
  int index_ = 0;
  std::map<std::string, int> counts_;
};


}  // namespace retreever::cli::report
