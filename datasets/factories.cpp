// One factory per task of core/registry.h, which holds what the rest of the project knows about
// each task; test_datasets checks that every registered task has one here.
#include <map>
#include <stdexcept>

#include "core/registry.h"
#include "datasets/tasks.h"

namespace retreever::datasets {
namespace {

using Factory = std::unique_ptr<Task> (*)(const Config&);

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table = {
      {"copy", [](const Config& c) -> std::unique_ptr<Task> { return std::make_unique<CopyTask>(c.seq_len); }},
      {"gp", [](const Config& c) -> std::unique_ptr<Task> {
         return std::make_unique<GPTask>(c.kernel, c.eval_kernel, c.eval_context);
       }},
      {"image", [](const Config& c) -> std::unique_ptr<Task> {
         return std::make_unique<ImageTask>(c.data_dir, c.eval_split, c.eval_context);
       }},
  };
  return table;
}

}  // namespace

bool has_factory(const std::string& task) { return factories().count(task) > 0; }

std::unique_ptr<Task> make_task(const Config& config) {
  task_info(config.task);  // throws naming the registered tasks
  auto it = factories().find(config.task);
  if (it == factories().end())
    throw std::invalid_argument("task '" + config.task + "' is registered but has no factory in datasets/factories.cpp");
  return it->second(config);
}

}  // namespace retreever::datasets
