// The report's budget: which comparisons it runs, at which sizes and with which training
// settings (resources/report/*.json; laptop and gpu are compiled in).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace retreever {
struct Config;
}

namespace retreever::cli::report {

using nlohmann::json;


struct Section {
  bool present = false;
  std::vector<std::int64_t> seq_lens;
  std::vector<std::string> models;
  std::vector<std::string> variants;  // eval kernels (gp), eval splits (image), orderings
  std::int64_t seeds = 1;             // gp, image: train each model with this many seeds
  std::int64_t eval_context = 0;      // gp, image: also evaluate at this many context points (0: not)
  std::string task = "image";         // ordering: the task its runs train on
  json config = json::object();       // Config fields for every run of the section
};

struct Budget {
  std::string name, description;
  std::int64_t seed = 0;
  std::map<std::string, Section> sections;  // copy, reward, gp, image, ordering
};

// The sections a budget may hold, in the report's order.
extern const std::vector<std::string> kSections;

// Throws std::runtime_error "WHERE: unknown value ...; use one of ..." unless allowed holds value.
void check_choice(const std::string& where, const std::string& value, const std::set<std::string>& allowed);
// Parses a budget's JSON text; throws std::runtime_error naming the field and the fix.
Budget parse_budget(const std::string& text, const std::string& name);
// "laptop" (or empty), "gpu" or a file name.
Budget load_budget(const std::string& which);

// The budget of 'retreever study KIND' (reward, ordering or models): one section whose runs
// train with `base`'s settings (its task, sequence length, evaluation kernel or split, seed).
// Throws std::invalid_argument naming the fix when the kind or the task does not fit.
Budget study_budget(const std::string& kind, const Config& base);
extern const std::vector<std::string> kStudies;

}  // namespace retreever::cli::report
