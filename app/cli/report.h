// 'retreever report': trains and evaluates the paper's comparisons under a budget file and
// writes a Markdown report with tables (ours beside the paper's numbers) and PNG plots.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "app/cli/command_line.h"
#include "app/cli/report_runs.h"
#include "ui/chart.h"

namespace retreever::cli {

// Draws a chart to a PNG file (ui::save_chart_png where the build has Qt); throws on failure.
using ChartWriter = std::function<void(const ChartSpec& spec, const std::string& path)>;

// Returns the exit status. Without a chart writer the report says where each chart would be and
// how to draw it.
CommandSpec report_spec();
int cmd_report(const Args& args, const ChartWriter& charts = {});

namespace report {
struct Budget;
}  // namespace report

// What 'report' and 'study' (a built-in budget of one section, report_budget.h's study_budget)
// share: trains the budget's runs into options.out (side by side with `parallel` / `devices`) and
// writes OUT/STEM.md, STEM.csv and plots/. `args` is quoted in the header as the command that
// reproduces it.
struct ReportJob {
  std::string title = "ReTreever reproduction report";
  std::string stem = "report";
  std::set<std::string> only;  // sections to run; empty: every section of the budget
  report::Options options;     // the folder, --no-train, the device and the data folder of the runs
  std::string parallel, devices;
};
int run_report(const report::Budget& budget, const ReportJob& job, const Args& args, const ChartWriter& charts);

}  // namespace retreever::cli
