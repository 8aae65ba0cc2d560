// Looks inside a frozen model: the tree of one evaluation context and the retrieval trace of
// one query (PAPER.md Figure 3), plus the data a task view draws. Torch-free header: both
// 'retreever inspect' and the GUI's tree inspector use it, so they always agree.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/task.h"
#include "core/training/trainer.h"
#include "core/tree/tree_shape.h"

namespace retreever {

struct TreeNodeInfo {
  std::int64_t id = 0;
  std::int64_t level = 0;    // 0 = root
  std::int64_t index = 0;    // position within its level
  std::int64_t parent = -1;  // node id, -1 for the root
  std::vector<std::int64_t> leaves;  // original context indices of the real tokens below
  bool padding = false;

  // The tokens below as a range of indices, "3..9" (or "5" for one), where they are consecutive and
  // ascending; "" otherwise (an ordering such as sort_x2 puts tokens of any index under a node).
  std::string leaf_range() const {
    if (leaves.size() == 1) return std::to_string(leaves[0]);
    for (std::size_t i = 1; i < leaves.size(); ++i)
      if (leaves[i] != leaves[i - 1] + 1) return "";
    return leaves.empty() ? "" : std::to_string(leaves.front()) + ".." + std::to_string(leaves.back());
  }
};

struct RetrievalInfo {
  std::vector<std::int64_t> path;      // node ids from the root to the leaf group reached
  std::vector<std::int64_t> selected;  // node ids of S (rejected siblings, then the P leaves)
  std::vector<std::vector<double>> probabilities;  // per level: the policy over the b children
};

// One evaluation context with the model's predictions for every target, in flat arrays.
struct SampleView {
  std::string task;
  std::int64_t context_size = 0, target_count = 0, x_dim = 0, y_dim = 0, classes = 0;
  std::vector<float> xc, yc;   // [N*x_dim], [N*y_dim] (yc: class ids for the copy task)
  std::vector<float> xt, yt;   // [M*x_dim], [M*y_dim] (yt: class ids for classification)
  std::vector<float> mean;     // [M*y_dim] predicted class id, or predicted mean
  std::vector<float> stddev;   // [M*y_dim] regression only
  double metric = 0;           // accuracy or mean log-likelihood over this sample's targets
  std::int64_t image_height = 0, image_width = 0;  // image tasks: x = (row, column) in [-1, 1]^2
  // Image tasks: the predicted mean at every pixel (row-major, height x width), the model asked at
  // each pixel of the image with this context; empty for other tasks.
  std::vector<float> pixel_mean;
  // One-input regression (GP): the model asked along x, from left of the leftmost point to right of
  // the rightmost, at evenly spaced inputs and at every target's own x (sorted): the predicted
  // function and its band between and beyond the targets; empty for other tasks.
  std::vector<float> curve_x, curve_mean, curve_stddev;
};

struct InspectResult {
  std::int64_t sample = 0, query = 0;
  std::int64_t context_size = 0;
  std::int64_t tokens_per_query = 0;
  bool has_tree = false;  // false for full cross attention and Perceiver IO
  TreeShape shape;
  std::vector<TreeNodeInfo> nodes;  // by id: nodes[id].id == id
  RetrievalInfo trace;
  std::vector<double> prediction;  // class probabilities, or {mean, std} per output dim
  std::int64_t predicted_class = -1;
  std::vector<double> target;      // class id, or the target values
  std::string to_json() const;
};

// One query's walk down an untrained TCA's tree over n random context tokens (width d_model,
// `heads` heads, on `device`): what a query reads at sizes no task reaches (a million tokens and
// more; the studio's Scaling view). The tree is built by the same code as a task's, on every CPU
// core (default_cpu_threads, set on the calling thread). Throws std::invalid_argument for n < 2.
InspectResult inspect_random_context(std::int64_t n, std::int64_t d_model, std::int64_t heads,
                                     const std::string& device = "auto", std::uint64_t seed = 0);

class Inspector {
 public:
  // From a training snapshot: the evaluation set of the snapshot's config (or of eval_seed >= 0).
  Inspector(const Snapshot& snapshot, const TaskFactory& tasks, std::int64_t eval_seed = -1);
  // From a checkpoint file (throws std::runtime_error naming the problem).
  static std::unique_ptr<Inspector> from_checkpoint(const std::string& path, const TaskFactory& tasks,
                                                    std::int64_t eval_seed = -1);
  ~Inspector();

  std::int64_t samples() const;
  std::int64_t queries(std::int64_t sample) const;
  std::int64_t context_size(std::int64_t sample) const;
  // The first sample whose context size is the median of the evaluation set's: where a view
  // opens, rather than on a sample that happened to draw 3 context points (a one-level tree).
  std::int64_t typical_sample() const;
  SampleView view(std::int64_t sample);
  // Throws std::out_of_range with the valid range when sample or query is out of range.
  InspectResult inspect(std::int64_t sample, std::int64_t query);
  const Config& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace retreever
