// The report's sections (copy, reward, gp, image, ordering): which runs each trains, its tables,
// charts and checks against the paper, written as report.md, report.csv and plots/.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "app/cli/report.h"
#include "app/cli/report_budget.h"
#include "app/cli/report_runs.h"

namespace retreever::cli::report {

// Runs the sections `wanted` names, in the report's order, and writes the report into `out`
// (STEM.md, STEM.csv, plots/) with
// `header(runner)` at its top (called after the runs, so it can count them). Returns the exit
// status: 0, or the status of a run that stopped the report (what was done is written). A planning
// runner (Runner::plan_only) only lists the runs: nothing is written.
int write_report(const Budget& budget, const std::function<bool(const std::string&)>& wanted, Runner& runner,
                 const fs::path& out, const std::string& stem, const ChartWriter& charts,
                 const std::function<std::string(const Runner&)>& header, std::size_t* rows);

std::string now_text();  // "2026-12-02 07:00 UTC"

}  // namespace retreever::cli::report
