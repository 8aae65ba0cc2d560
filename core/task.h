// What a task hands the model: batches of contexts and targets, and the shape of its data.
// Tasks live in datasets/ (which depends on core); core only knows this interface.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace retreever {

struct Config;

// One batch: B tasks, each with N context points and M targets, all rows the same size.
struct Batch {
  torch::Tensor xc;  // [B,N,dx] context inputs
  torch::Tensor yc;  // [B,N,dy] context outputs (meta-learning tasks), undefined otherwise
  torch::Tensor xt;  // [B,M,dx] target inputs
  torch::Tensor yt;  // [B,M] long class ids (classification) or [B,M,dy] values (regression)
  // Every row asks the same target inputs (the copy task): the model embeds them once.
  // Set by the task, so that no device-to-host check is needed per step.
  bool shared_targets = false;

  // The batch with f applied to each of its defined tensors.
  template <typename F>
  Batch map(F&& f) const {
    auto apply = [&](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
    return {apply(xc), apply(yc), apply(xt), apply(yt), shared_targets};
  }
  // non_blocking: an asynchronous copy (from page-locked memory; see pinned()).
  Batch to(const torch::Device& device, bool non_blocking = false) const {
    return map([&](const torch::Tensor& t) { return t.to(device, non_blocking); });
  }
  // The batch in page-locked host memory (needs CUDA): copies to a GPU from there are fast DMA.
  Batch pinned() const {
    return map([](const torch::Tensor& t) { return t.pin_memory(); });
  }
  // Rows [from, to) of the batch.
  Batch rows(std::int64_t from, std::int64_t to) const {
    return map([&](const torch::Tensor& t) { return t.slice(0, from, to); });
  }
  std::int64_t size() const { return xc.size(0); }
};

struct TaskSpec {
  std::string name;
  std::int64_t x_dim = 1;    // input coordinates per point
  std::int64_t y_dim = 1;    // outputs per point (regression)
  std::int64_t classes = 0;  // > 0: classification over this many classes
  bool sequential = false;   // positions matter: add positional encodings
  bool metalearning = false;  // the context carries (x, y) pairs
  std::int64_t image_height = 0, image_width = 0;  // image tasks: the pixel grid
  bool classification() const { return classes > 0; }
};

class Task {
 public:
  virtual ~Task() = default;
  virtual TaskSpec spec() const = 0;
  // Deterministic: the same (batch, seed, evaluation) gives the same batch, on the CPU.
  // evaluation selects the evaluation distribution (e.g. another kernel or unseen classes).
  virtual Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const = 0;
};

using TaskFactory = std::function<std::unique_ptr<Task>(const Config&)>;

// Image tasks: the input point of pixel (row, column) of a height x width image, in [-1, 1]^2
// (x1 = row, x2 = column): [..., 2] float for long (or float) rows and columns of one shape.
torch::Tensor pixel_coordinates(const torch::Tensor& rows, const torch::Tensor& columns, std::int64_t height,
                                std::int64_t width);
// Its inverse for one point x = (x1, x2): the (row, column) of the nearest pixel.
inline std::pair<std::int64_t, std::int64_t> pixel_of(const float* x, std::int64_t height, std::int64_t width) {
  return {std::llround((x[0] + 1) / 2 * double(height - 1)), std::llround((x[1] + 1) / 2 * double(width - 1))};
}

// Mixes a seed with a stream and an index (splitmix64), so that step t of seed s and batch j
// of the evaluation set never share a random stream.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// The fixed evaluation set of a config (eval_batches batches of eval_batch rows, or batch rows
// when eval_batch is 0), drawn from `seed`'s evaluation stream, on the CPU. The Trainer evaluates
// on it and the Inspector shows it, so both see the same contexts.
std::vector<Batch> evaluation_set(const Task& task, const Config& config, std::uint64_t seed);

}  // namespace retreever
