// The reproduction report: the paper's comparisons (copy task with TCA / CA / Perceiver IO,
// the reward ablation, GP regression, image completion, orderings) trained under a budget file,
// evaluated, and written as DIR/report.md, DIR/report.csv and DIR/plots/*.png.
//
// Every run lives in its own folder as 'train' writes it. A folder that already holds a
// checkpoint of the same experiment is reused (finished) or resumed (unfinished), so an
// interrupted report continues where it stopped, and runs trained elsewhere (a GPU machine)
// can be assembled here with --no-train.
#include "app/cli/report.h"

#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <thread>

#include "app/cli/parallel_runs.h"
#include "app/cli/report_budget.h"
#include "app/cli/report_runs.h"
#include "app/cli/report_sections.h"
#include "core/config.h"
#include "core/table.h"

namespace retreever::cli {

using namespace report;

CommandSpec report_spec() {
  return {"report",
          "reproduce the paper's comparisons: Markdown tables, CSV and charts",
          "",
          {{"out", "DIR", "the report's folder (required)", {}},
           {"config", "BUDGET", "the budget: laptop (default, 30-45 min on 2 CPU cores), gpu (the paper's lengths) "
                                "or FILE.json (resources/report/*.json show the format)", {}},
           {"only", "SECTIONS", "comma-separated sections to run", {kSections.begin(), kSections.end()}},
           {"no-train", "", "only assemble the report from runs already in DIR (missing runs are listed as missing)", {}},
           {"device", "D", "where to train", Config::choices("device")},
           {"data", "DIR", "image task: folder of IDX files", {}},
           {"parallel", "N", "train the runs that do not exist yet N processes at a time, then write the report", {}},
           {"devices", "LIST", "the same, one run per device of LIST at a time, e.g. cuda:0,cuda:1", {}}},
          "Runs go to DIR/SECTION/...; a run folder holding the same experiment is reused or resumed, so\n"
          "running the command again continues an interrupted report. The charts (plots/*.png) are drawn\n"
          "with Qt: a retreever built without it (GUI off) writes the tables and CSV, and --no-train on\n"
          "the same folder with a Qt build adds the charts."};
}

int cmd_report(const Args& args, const ChartWriter& charts) {
  Options opt;
  opt.out = args.required("out");
  opt.no_train = args.has("no-train");
  opt.device = args.str("device", "auto");
  opt.data_dir = args.str("data");
  check_choice("--device", opt.device, {"auto", "cpu", "cuda"});
  const Budget budget = load_budget(args.str("config"));
  std::set<std::string> only;
  if (args.has("only")) {
    std::stringstream ss(args.str("only"));
    for (std::string part; std::getline(ss, part, ',');) {
      if (std::find(kSections.begin(), kSections.end(), part) == kSections.end())
        throw UsageError("--only: unknown section '" + part + "'; use copy, reward, gp, image or ordering");
      only.insert(part);
    }
  }
  auto wanted = [&](const std::string& s) { return budget.sections.count(s) && (only.empty() || only.count(s)); };
  bool any = false;
  for (const auto& s : kSections) any = any || wanted(s);
  if (!any) throw UsageError("the budget '" + budget.name + "' has none of the sections --only names");

  std::error_code ec;
  fs::create_directories(opt.out, ec);
  if (ec) throw std::runtime_error("cannot create report folder '" + opt.out.string() + "': " + ec.message());
  const auto t0 = std::chrono::steady_clock::now();
  if (args.has("parallel") || args.has("devices")) {
    // A planning pass lists the runs the sections need; they train side by side as child
    // processes (train_runs_in_parallel); the pass below then reuses them and writes the report.
    if (opt.no_train) throw UsageError("--parallel and --devices train runs; --no-train trains none: drop one");
    Runner planner(opt);
    planner.plan_only();
    write_report(budget, wanted, planner, opt.out, ChartWriter(), [](const Runner&) { return std::string(); }, nullptr);
    if (!planner.planned().empty())
      if (const int status = train_runs_in_parallel(planner.planned(), opt.out, args.str("parallel"), args.str("devices")))
        return status;
  }
  Runner runner(opt);
  std::size_t rows = 0;
  auto header = [&](const Runner& done) {
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60;
  std::string command = "retreever report --out " + opt.out.string() +
                        (args.has("config") ? " --config " + args.str("config") : "") +
                        (args.has("only") ? " --only " + args.str("only") : "");
  std::string header = "# ReTreever reproduction report\n\nBudget **" + budget.name + "**: " + budget.description +
                       ". Seed " + std::to_string(budget.seed) + ". Written " + now_text() + " by an invocation of " +
                       format_number("%.1f", minutes) + " minutes on " + std::to_string(std::thread::hardware_concurrency()) +
                       " CPU threads (device " + opt.device + "): " + done.tally() + ".\n\nReproduce: `" + command +
                       "`. Each run's folder holds its config.json, metrics.csv and checkpoint.safetensors "
                       "(open them in ReTreever Studio or with `retreever eval/inspect`). Status column: "
                       "trained / resumed now, reused from an earlier invocation, missing or unfinished "
                       "(with --no-train).\n\n";
  return header;
  };
  const int status = write_report(budget, wanted, runner, opt.out, charts, header, &rows);
  std::printf("report: %s (%zu rows), report.csv, plots/\n", (opt.out / "report.md").string().c_str(), rows);
  return status;
}

}  // namespace retreever::cli

