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
#include <filesystem>
#include <set>
#include <sstream>

#include "app/cli/parallel_runs.h"
#include "app/cli/report_budget.h"
#include "app/cli/report_runs.h"
#include "app/cli/report_sections.h"
#include "core/config.h"
#include "core/devices.h"
#include "core/table.h"

namespace retreever::cli {

using namespace report;

CommandSpec report_spec() {
  return {"report",
          "reproduce the paper's comparisons: Markdown tables, CSV and charts",
          "",
          {{"out", "DIR", "the report's folder (required)", {}},
           {"config", "BUDGET", "the budget: laptop (default, about an hour on 2 CPU cores), gpu (the paper's lengths) "
                                "or FILE.json (resources/report/*.json show the format)", {}},
           {"only", "SECTIONS", "comma-separated sections to run", {kSections.begin(), kSections.end()}},
           {"no-train", "", "only assemble the report from runs already in DIR (missing runs are listed as missing)", {}},
           {"device", "D", "where to train", Config::choices("device")},
           {"data", "DIR", "image task: folder of IDX files", {}},
           {"parallel", "N", "train the runs that do not exist yet N processes at a time, then write the report", {}},
           {"devices", "LIST", "the same, one run per device of LIST at a time, e.g. cuda:0,cuda:1", {}},
           threads_option()},
          "Runs go to DIR/SECTION/...; a run folder holding the same experiment is reused or resumed, so\n"
          "running the command again continues an interrupted report. The charts (plots/*.png) are drawn\n"
          "with Qt: a retreever built without it (GUI off) writes the tables and CSV, and --no-train on\n"
          "the same folder with a Qt build adds the charts."};
}

int cmd_report(const Args& args, const ChartWriter& charts) {
  ReportJob job;
  job.options.out = args.required("out");
  job.options.no_train = args.has("no-train");
  job.options.device = args.str("device", "auto");
  job.options.data_dir = args.str("data");
  job.parallel = args.str("parallel");
  job.devices = args.str("devices");
  job.options.threads = threads_value(args);
  check_choice("--device", job.options.device, {"auto", "cpu", "cuda"});
  if (args.has("only")) {
    std::stringstream ss(args.str("only"));
    for (std::string part; std::getline(ss, part, ',');) {
      if (std::find(kSections.begin(), kSections.end(), part) == kSections.end())
        throw UsageError("--only: unknown section '" + part + "'; use copy, reward, gp, image or ordering");
      job.only.insert(part);
    }
  }
  return run_report(load_budget(args.str("config")), job, args, charts);
}

int run_report(const Budget& budget, const ReportJob& job, const Args& args, const ChartWriter& charts) {
  const Options& opt = job.options;
  auto wanted = [&](const std::string& s) { return budget.sections.count(s) && (job.only.empty() || job.only.count(s)); };
  bool any = false;
  for (const auto& s : kSections) any = any || wanted(s);
  if (!any) throw UsageError("the budget '" + budget.name + "' has none of the sections --only names");
  const bool parallel = !job.parallel.empty() || !job.devices.empty();
  if (parallel && opt.no_train) throw UsageError("--parallel and --devices train runs; --no-train trains none: drop one");
  if (parallel) parallel_options(job.parallel, job.devices);  // refused before any run is planned

  std::error_code ec;
  fs::create_directories(opt.out, ec);
  if (ec) throw std::runtime_error("cannot create folder '" + opt.out.string() + "': " + ec.message());
  const auto t0 = std::chrono::steady_clock::now();
  if (parallel) {
    // A planning pass lists the runs the sections need; they train side by side as child
    // processes (train_runs_in_parallel); the pass below then reuses them and writes the report.
    Runner planner(opt);
    planner.plan_only();
    write_report(budget, wanted, planner, opt.out, job.stem, ChartWriter(), [](const Runner&) { return std::string(); },
                 nullptr);
    if (!planner.planned().empty())
      if (const int status = train_runs_in_parallel(planner.planned(), opt.out, job.parallel, job.devices, opt.threads))
        return status;
  }
  Runner runner(opt);
  std::size_t rows = 0;
  auto header = [&](const Runner& done) {
    const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60;
    return "# " + job.title + "\n\nBudget **" + budget.name + "**: " + budget.description + ". Seed " +
           std::to_string(budget.seed) + ". Written " + now_text() + " by an invocation of " +
           format_number("%.1f", minutes) + " minutes on " +
           (opt.threads > 0 ? cpu_threads_text(opt.threads) + " a step (--threads)"
                            : cpu_threads_text(default_cpu_threads())) +
           " (device " + opt.device + "): " + done.tally() + ".\n\nReproduce: `" + args.command_line() +
           "`. Each run's folder holds its config.json, metrics.csv and checkpoint.safetensors "
           "(open them in ReTreever Studio or with `retreever eval/inspect`). The status column of " +
           job.stem + ".csv says how each run came: trained / resumed now, reused from an earlier invocation, "
           "missing or unfinished (with --no-train); a table shows a run without a value by its status.\n\n";
  };
  const int status = write_report(budget, wanted, runner, opt.out, job.stem, charts, header, &rows);
  // Where the charts went: plots/, or why there are none.
  const std::string plots = std::filesystem::exists(opt.out / "plots") ? ", plots/"
                            : charts ? ", no charts (no run to draw)"
                                     : ", no charts (this retreever was built without Qt: '--no-train' on this folder "
                                       "with a build that has the studio draws them)";
  std::printf("%s: %s (%zu rows), %s.csv%s\n", job.stem.c_str(), (opt.out / (job.stem + ".md")).string().c_str(),
              rows, job.stem.c_str(), plots.c_str());
  return status;
}

}  // namespace retreever::cli

