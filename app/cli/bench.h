#pragma once

#include "app/cli/command_line.h"

namespace retreever::cli {

// 'retreever bench': training-step times and per-query inference times (prints a table).
CommandSpec bench_spec();
int cmd_bench(const Args& args);

}  // namespace retreever::cli
