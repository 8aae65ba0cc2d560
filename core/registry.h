// The decoders and tasks ReTreever knows, each declared once: the command line's choices, config
// validation, the studio's editors and views, equal-token comparisons, bench and the report all
// read these tables instead of testing names. Torch-free.
//
// Adding a decoder: one file in core/decoders/ that defines the module and its
// `DecoderInfo NAME_decoder()`, plus its line in core/decoders/decoder_list.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace retreever {

struct Config;
class DecoderImpl;

struct DecoderInfo {
  std::string name;     // the config's `model` value, e.g. "tca"
  std::string title;    // in tables and legends, e.g. "ReTreever (TCA)"
  std::string summary;  // one line for menus and --help
  // Config fields only this decoder reads: the studio greys them out for other models, the
  // report leaves them out of other runs' experiment.json.
  std::vector<std::string> fields;
  bool policy = false;           // a learned retrieval policy: L_RL, L_CA, entropy, tree inspection
  bool reference_block = false;  // honours Config::block (the reference code has this model)
  bool encoder = true;           // runs ReTreever's context encoder (Perceiver IO has its own)
  // Sizes `c` to read about `tokens` tokens per query (the paper compares at equal tokens); null
  // when what the decoder reads follows from the context alone (TCA, full cross attention).
  void (*size_for_tokens)(Config& c, std::int64_t tokens) = nullptr;
  // Whether it is sized so: in a chart of tokens read, its points may lie on TCA's (drawn as rings).
  bool sized() const { return size_for_tokens != nullptr; }
  // The size setting in a short label, e.g. "(L=8)"; null: none.
  std::string (*size_label)(const Config& c) = nullptr;
  // Builds the module (core/decoders, torch).
  std::shared_ptr<DecoderImpl> (*make)(const Config& c) = nullptr;
};

struct TaskInfo {
  std::string name;     // the config's `task` value, e.g. "copy"
  std::string title;    // e.g. "Copy task"
  std::string summary;  // one line for menus and --help
  std::vector<std::string> fields;  // config fields only this task reads
  bool classification = false;      // accuracy (classification) or log-likelihood (regression)
  // gp, image: a task draws min_context..max_context context points and at most max_points points
  // in all (datasets/); the evaluation context size may be fixed to min_context..max_context.
  // 0: drawn otherwise (copy).
  std::int64_t min_context = 0, max_context = 0, max_points = 0;
  std::string context_range() const;  // "3..46", for messages and summaries
  // The studio's inspector view of a sample: "sequence", "function" or "image".
  std::string view;
  // Input and output numbers per point (gp: x, y; image: two coordinates, the pixel).
  double point_numbers = 0;
  // The largest batch row a config draws, for memory estimates before anything is built.
  struct Row {
    double context = 0, targets = 0;  // context tokens and target points
    double numbers = 0;               // input and output numbers per point
  };
  // Where the bounds above do not give it (copy); null: they do.
  Row (*largest_row)(const Config& c) = nullptr;
  // largest_row, or from the bounds: max_context context points, max_points - min_context
  // targets, point_numbers each.
  Row largest(const Config& c) const;
  // The context size of a typical task (its mean), for sizing an equal-token comparison before
  // TCA has run.
  std::int64_t (*typical_context)(const Config& c) = nullptr;
  // Sets in `c` the training settings where the reference code's script for this task departs
  // from Config's defaults (copy: Adam beta1 0.1, dropout 0.1); null where it does not.
  void (*reference_settings)(Config& c) = nullptr;
  std::string metric() const { return classification ? "accuracy" : "log_likelihood"; }
};

// In the order menus and comparisons list them (TCA first).
const std::vector<DecoderInfo>& decoders();
const std::vector<TaskInfo>& tasks();
// Throws std::invalid_argument naming the registered choices.
const DecoderInfo& decoder_info(const std::string& name);
const TaskInfo& task_info(const std::string& name);
const DecoderInfo* find_decoder(const std::string& name);  // null when unknown
const TaskInfo* find_task(const std::string& name);

// Why a run of `model` on `task` leaves the config field `field` unread, e.g. "only the perceiver
// model reads it"; empty when the run reads it (or the field belongs to every run). The studio
// greys such fields out, and the command line warns about a flag that sets one.
std::string unread_field_reason(const std::string& field, const std::string& task, const std::string& model);

// The paper's recipe for `task`: Config's defaults with the task's reference_settings. The report
// names what a run changes from it and trains TCA with it beside.
Config paper_recipe_for(const std::string& task);
// The config keys a recipe fixes (the objective, the optimiser's settings, dropout, the block and
// the leaf layout); the rest of a config (sizes, steps, batch, seed) is a run's budget.
const std::vector<std::string>& recipe_settings();
// The recipe settings where `c` differs from its task's recipe, in recipe_settings' order.
std::vector<std::string> recipe_departures(const Config& c);
// `c` with every recipe setting its task's recipe's.
Config with_recipe(const Config& c);
// `base` as `model`, sized to read about `tca_tokens` tokens per query when that decoder has a
// size (the paper compares at equal tokens; tca_tokens <= 0 leaves the size as it is).
Config sized_like(const Config& base, const std::string& model, std::int64_t tca_tokens);
// "#3 perceiver(L=8) copy-64" style label pieces: the model with its size, the task with its length.
std::string model_label(const Config& c);
std::string task_label(const Config& c);

}  // namespace retreever
