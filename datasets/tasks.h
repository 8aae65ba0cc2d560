// The task generators of PAPER.md "Tasks", behind core's Task interface.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/task.h"

namespace retreever::datasets {

// Copy (palindrome) task: a sequence of length L = seq_len, [BOS] d_1 .. d_{L-2} [EOS] with the
// digits a palindrome; the context is the first ceil(L/2) tokens, the targets the rest.
// Tokens are one-hot over 12 values: BOS = 0, EOS = 1, digits 2..11.
class CopyTask : public Task {
 public:
  static constexpr std::int64_t kBos = 0, kEos = 1, kDigits = 10, kVocabulary = 12;
  explicit CopyTask(std::int64_t seq_len);
  TaskSpec spec() const override;
  Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const override;
  std::int64_t context_size() const { return (seq_len_ + 1) / 2; }

 private:
  std::int64_t seq_len_;
};

// 1-D Gaussian-process regression: per batch 3..46 context points and 3..(49 - Nc) targets (the
// reference's sampler; the bounds live in core/registry.cpp),
// x ~ U[-2, 2] (context sorted by x), y from a GP whose kernel hyperparameters vary per task.
class GPTask : public Task {
 public:
  // eval_context > 0: every evaluation task has exactly that many context points (3..46).
  GPTask(std::string train_kernel, std::string eval_kernel, std::int64_t eval_context = 0);
  TaskSpec spec() const override;
  Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const override;

 private:
  std::string train_kernel_, eval_kernel_;
  std::int64_t eval_context_;
};

// Image completion on IDX image files (PAPER.md "Tasks"): each task is one image; a random
// 3..196 of its pixels are the context and up to 199 points in all are given (the reference's
// img_to_task; the bounds live in core/registry.cpp), x = (row, column)
// in [-1, 1]^2, y = intensity - 0.5. Trains on classes 0-4; evaluates on 0-4 ("seen") or on
// the unseen classes 5-9 ("unseen"). Files: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
class ImageTask : public Task {
 public:
  static const char* kDefaultFolder;  // Debian's dataset-fashion-mnist
  // eval_context > 0: every evaluation task has exactly that many context pixels (3..196).
  ImageTask(const std::string& folder, const std::string& eval_split, std::int64_t eval_context = 0);
  TaskSpec spec() const override;
  Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const override;

 private:
  bool eval_unseen_;
  std::int64_t eval_context_;
  std::int64_t height_ = 0, width_ = 0;
  torch::Tensor train_, eval_seen_, eval_unseen_images_;  // [n, pixels] uint8
};

// Covariance matrices [B,n,n] for inputs x [B,n,1] with per-task hyperparameters drawn from
// the generator: "rbf", "matern" (5/2) or "periodic". Adds the observation noise.
torch::Tensor gp_covariance(const torch::Tensor& x, const std::string& kernel, at::Generator& gen);

// Builds the task the config names; throws std::invalid_argument with the fix when it cannot.
// The task a config names, built by its factory in datasets/factories.cpp (one line per task of
// core/registry.h). Throws std::invalid_argument naming the known tasks.
std::unique_ptr<Task> make_task(const Config& config);
// Whether make_task can build the task (the registry's contract test asks).
bool has_factory(const std::string& task);

}  // namespace retreever::datasets
