// The tasks' presets: resources/presets/*.json, compiled in by CMake (generated/core/presets.inc),
// so the command line and the studio read the same files and no preset lives in code.
#include <stdexcept>
#include <string>
#include <utility>

#include "core/config.h"

namespace retreever {
namespace {

const std::pair<const char*, const char*> kPresets[] = {
#include "core/presets.inc"
};

}  // namespace

Config Config::preset(const std::string& task) {
  std::string known;
  for (const auto& [name, text] : kPresets) {
    if (task != name) {
      known += (known.empty() ? "" : "|") + std::string(name);
      continue;
    }
    Config c;
    try {
      c = Config::from_json(text);
    } catch (const std::exception& e) {
      throw std::runtime_error("resources/presets/" + task + ".json: " + e.what());
    }
    if (c.task != task)
      throw std::runtime_error("resources/presets/" + task + ".json: its task is '" + c.task + "', not '" + task + "'");
    return c;
  }
  throw std::invalid_argument("no preset for task '" + task + "'; presets exist for " + known);
}

}  // namespace retreever
