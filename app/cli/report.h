// 'retreever report': trains and evaluates the paper's comparisons under a budget file and
// writes a Markdown report with tables (ours beside the paper's numbers) and PNG plots.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "app/cli/command_line.h"
#include "ui/chart.h"

namespace retreever::cli {

// Draws a chart to a PNG file (ui::save_chart_png where the build has Qt); throws on failure.
using ChartWriter = std::function<void(const ChartSpec& spec, const std::string& path)>;

// Returns the exit status. Without a chart writer the report says where each chart would be and
// how to draw it.
CommandSpec report_spec();
int cmd_report(const Args& args, const ChartWriter& charts = {});

}  // namespace retreever::cli
