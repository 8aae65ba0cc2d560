#pragma once

#include <string>
#include <vector>

namespace retreever::cli {

// 'retreever bench': training-step times and per-query inference times (prints a table).
int cmd_bench(const std::vector<std::string>& argv);

}  // namespace retreever::cli
