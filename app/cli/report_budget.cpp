#include "app/cli/report_budget.h"

#include <algorithm>
#include <stdexcept>

#include "app/cli/command_line.h"
#include "app/cli/report_budgets.h"  // generated from resources/report/*.json
#include "core/config.h"
#include "core/files.h"
#include "core/registry.h"

namespace retreever::cli::report {


const std::vector<std::string> kSections = {"copy", "reward", "gp", "image", "ordering"};

namespace {
std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }
bool count(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }
// The orderings that apply to a task's inputs: sorting by x2 needs 2-D inputs (images).
std::vector<std::string> orderings_for(const std::string& task) {
  std::vector<std::string> out;
  for (const auto& o : Config::choices("ordering"))
    if (o != "sort_x2" || task_info(task).view == "image") out.push_back(o);
  return out;
}
}  // namespace


void check_choice(const std::string& where, const std::string& value,
                  const std::set<std::string>& allowed) {
  if (allowed.count(value)) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw std::runtime_error(where + ": unknown value '" + value + "'; use one of " + list);
}


std::vector<std::string> string_list(const json& j, const std::string& where,
                                     const std::set<std::string>& allowed) {
  if (!j.is_array() || j.empty())
    throw std::runtime_error(where + ": expected a non-empty list of strings");
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) throw std::runtime_error(where + ": expected strings, got " + v.dump());
    check_choice(where, v.get<std::string>(), allowed);
    out.push_back(v.get<std::string>());
  }
  return out;
}

Budget parse_budget(const std::string& text, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error("report budget '" + name + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("report budget '" + name + "': expected a JSON object");
  Budget b;
  b.name = name;
  const auto models = as_set(Config::choices("model"));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = it.key(), where = "report budget '" + name + "', " + key;
    if (key == "description") {
      b.description = it->is_string() ? it->get<std::string>() : it->dump();
    } else if (key == "seed") {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
        throw std::runtime_error(where + ": expected an integer >= 0");
      b.seed = it->get<std::int64_t>();
    } else if (std::find(kSections.begin(), kSections.end(), key) != kSections.end()) {
      if (!it->is_object()) throw std::runtime_error(where + ": expected an object");
      Section s;
      s.present = true;
      for (auto f = it->begin(); f != it->end(); ++f) {
        const std::string field = f.key(), at = where + "." + field;
        if (field == "config") {
          if (!f->is_object()) throw std::runtime_error(at + ": expected an object of config fields");
          s.config = *f;
        } else if (field == "seq_lens" && (key == "copy" || key == "reward")) {
          if (!f->is_array() || f->empty()) throw std::runtime_error(at + ": expected a non-empty list");
          for (const auto& v : *f) {
            if (!v.is_number_integer() || v.get<std::int64_t>() < 4)
              throw std::runtime_error(at + ": sequence lengths must be integers >= 4, got " + v.dump());
            s.seq_lens.push_back(v.get<std::int64_t>());
          }
        } else if (field == "models" && (key == "copy" || key == "gp" || key == "image")) {
          s.models = string_list(*f, at, models);
        } else if (field == "eval_kernels" && key == "gp") {
          s.variants = string_list(*f, at, as_set(Config::choices("eval_kernel")));
        } else if (field == "eval_splits" && key == "image") {
          s.variants = string_list(*f, at, as_set(Config::choices("eval_split")));
        } else if (field == "seeds" && (key == "gp" || key == "image")) {
          if (!f->is_number_integer() || f->get<std::int64_t>() < 1 || f->get<std::int64_t>() > 20)
            throw std::runtime_error(at + ": expected the number of seeds, an integer from 1 to 20");
          s.seeds = f->get<std::int64_t>();
        } else if (field == "eval_context" && (key == "gp" || key == "image")) {
          const std::int64_t most = Config::max_eval_context(key);
          if (!f->is_number_integer() || f->get<std::int64_t>() < 3 || f->get<std::int64_t>() > most)
            throw std::runtime_error(at + ": expected a number of context points from 3 to " + std::to_string(most));
          s.eval_context = f->get<std::int64_t>();
        } else if (field == "orderings" && key == "ordering") {
          s.variants = string_list(*f, at, as_set(Config::choices("ordering")));
        } else if (field == "task" && key == "ordering") {
          if (!f->is_string()) throw std::runtime_error(at + ": expected a task name");
          check_choice(at, f->get<std::string>(), as_set(Config::choices("task")));
          s.task = f->get<std::string>();
        } else {
          throw std::runtime_error(at + ": unknown field (see resources/report/laptop.json for the format)");
        }
      }
      if ((key == "copy" || key == "reward") && s.seq_lens.empty())
        throw std::runtime_error(where + ": needs \"seq_lens\"");
      if (s.models.empty()) s.models = {"tca", "ca", "perceiver"};
      if (s.variants.empty())
        s.variants = key == "gp"      ? std::vector<std::string>{"rbf", "matern"}
                     : key == "image" ? std::vector<std::string>{"seen", "unseen"}
                                      : orderings_for(s.task);
      if (key == "ordering")
        for (const auto& o : s.variants)
          if (!count(orderings_for(s.task), o))
            throw std::runtime_error(where + ".orderings: '" + o + "' needs 2-D inputs; the " + s.task +
                                     " task's are 1-D: drop it");
      // TCA runs first: Perceiver IO and Treeformer take their sizes from what TCA reads.
      std::stable_partition(s.models.begin(), s.models.end(), [](const std::string& m) { return m == "tca"; });
      b.sections[key] = s;
    } else {
      throw std::runtime_error(where + ": unknown field; expected description, seed, copy, reward, gp, image or ordering");
    }
  }
  if (b.sections.empty()) throw std::runtime_error("report budget '" + name + "' names no section to run");
  return b;
}

Budget load_budget(const std::string& which) {
  if (which.empty() || which == "laptop") return parse_budget(kLaptopBudget, "laptop");
  if (which == "gpu") return parse_budget(kGpuBudget, "gpu");
  return parse_budget(read_text_file(which), which);
}


const std::vector<std::string> kStudies = {"reward", "ordering", "models"};

Budget study_budget(const std::string& kind, const Config& base) {
  if (!count(kStudies, kind)) throw std::invalid_argument("unknown study '" + kind + "'; use " + join_choices(kStudies));
  Budget b;
  b.name = "study " + kind;
  b.seed = base.seed;
  Section s;
  s.present = true;
  s.config = json::parse(base.to_json());
  for (const char* k : {"task", "model", "seed", "device", "data_dir"}) s.config.erase(k);
  const std::string& task = base.task;
  const std::string on = " (" + task_info(task).title + ", " + std::to_string(base.steps) + " steps, batch " +
                         std::to_string(base.batch) + ")";
  if (kind == "reward") {
    if (!task_info(task).classification)
      throw std::invalid_argument("the reward study runs on the copy task (classification): drop --task or use --task copy");
    s.seq_lens = {base.seq_len};
    b.description = "TCA with the accuracy reward and with the negative cross-entropy reward" + on;
  } else if (kind == "ordering") {
    s.task = task;
    s.variants = orderings_for(task);
    b.description = "TCA with each tree ordering" + on;
  } else {
    for (const auto& d : decoders()) s.models.push_back(d.name);  // TCA first
    if (task == "copy") s.seq_lens = {base.seq_len};
    else s.variants = {task == "gp" ? base.eval_kernel : base.eval_split};
    b.description = "every decoder" + on + ", the sized ones reading as many tokens as TCA";
  }
  b.sections[kind == "reward" ? "reward" : kind == "ordering" ? "ordering" : task] = s;
  return b;
}

}  // namespace retreever::cli::report
