// 'retreever report': trains and evaluates the paper's comparisons under a budget file and
// writes a Markdown report with tables (ours beside the paper's numbers) and PNG plots.
#pragma once

#include <string>
#include <vector>

namespace retreever::cli {

// argv: the options after "report". Returns the exit status.
int cmd_report(const std::vector<std::string>& argv);

}  // namespace retreever::cli
