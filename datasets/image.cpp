#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/registry.h"
#include "datasets/idx.h"
#include "datasets/tasks.h"

namespace retreever::datasets {
namespace {
constexpr std::int64_t kMinTargets = 3;
const TaskInfo& info() { return task_info("image"); }  // the context sizes (core/registry.cpp)
constexpr int kSeenClasses = 5;  // classes 0-4 train; 5-9 are unseen
}  // namespace

const char* ImageTask::kDefaultFolder = "/usr/share/datasets/fashion-mnist";

ImageTask::ImageTask(const std::string& folder, const std::string& eval_split, std::int64_t eval_context)
    : eval_unseen_(eval_split == "unseen"), eval_context_(eval_context) {
  const auto dir = folder.empty() ? std::string(kDefaultFolder) : folder;
  auto load = [&](const char* images_name, const char* labels_name, bool train) {
    auto images = read_idx_images(find_idx_file(dir, images_name));
    auto labels = read_idx_labels(find_idx_file(dir, labels_name));
    if (std::int64_t(labels.size()) != images.count)
      throw std::runtime_error(std::string("image data: '") + images_name + "' holds " + std::to_string(images.count) +
                               " images but '" + labels_name + "' " + std::to_string(labels.size()) + " labels");
    if (!train && (images.height != height_ || images.width != width_))
      throw std::runtime_error(std::string("image data: '") + images_name + "' holds " + std::to_string(images.height) + "x" +
                               std::to_string(images.width) + " images but the training images are " +
                               std::to_string(height_) + "x" + std::to_string(width_));
    height_ = images.height;
    width_ = images.width;
    const auto pixels = images.height * images.width;
    auto all = torch::from_blob(images.pixels.data(), {images.count, pixels}, torch::kUInt8).clone();
    std::vector<std::int64_t> seen, unseen;
    for (std::int64_t i = 0; i < images.count; ++i) (labels[i] < kSeenClasses ? seen : unseen).push_back(i);
    auto pick = [&](const std::vector<std::int64_t>& idx) {
      return idx.empty() ? torch::Tensor() : all.index_select(0, torch::tensor(idx, torch::kLong));
    };
    if (train) {
      train_ = pick(seen);
    } else {
      eval_seen_ = pick(seen);
      eval_unseen_images_ = pick(unseen);
    }
  };
  load("train-images-idx3-ubyte", "train-labels-idx1-ubyte", true);
  load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", false);
  if (!train_.defined()) throw std::runtime_error("image data: no training images of classes 0-4 in '" + dir + "'");
  if (eval_unseen_ && !eval_unseen_images_.defined())
    throw std::runtime_error("image data: no evaluation images of the unseen classes 5-9 in '" + dir + "'");
  if (!eval_unseen_ && !eval_seen_.defined())
    throw std::runtime_error("image data: no evaluation images of classes 0-4 in '" + dir + "'");
  const auto max_context = std::min(info().max_context, height_ * width_ - kMinTargets);
  if (eval_context_ != 0 && (eval_context_ < info().min_context || eval_context_ > max_context))
    throw std::invalid_argument("image task: evaluation contexts hold " + std::to_string(info().min_context) + ".." +
                                std::to_string(max_context) + " pixels of these " + std::to_string(height_) + "x" +
                                std::to_string(width_) + " images, got " + std::to_string(eval_context_));
}

TaskSpec ImageTask::spec() const {
  TaskSpec s;
  s.name = "image";
  s.x_dim = 2;
  s.y_dim = 1;
  s.metalearning = true;
  s.image_height = height_;
  s.image_width = width_;
  return s;
}

Batch ImageTask::sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto& pool = evaluation ? (eval_unseen_ ? eval_unseen_images_ : eval_seen_) : train_;
  const auto pixels = height_ * width_;
  const auto max_context = std::min(info().max_context, pixels - kMinTargets);
  auto nc = torch::randint(info().min_context, max_context + 1, {1}, gen, torch::kLong).item<std::int64_t>();
  if (evaluation && eval_context_ > 0) nc = eval_context_;  // drawn first all the same: the rest of the stream is unchanged
  const auto max_points = std::min(info().max_points, pixels);
  const auto nt = torch::randint(kMinTargets, max_points - nc + 1, {1}, gen, torch::kLong).item<std::int64_t>();
  auto which = torch::randint(0, pool.size(0), {batch}, gen, torch::kLong);
  auto images = pool.index_select(0, which).to(torch::kFloat32) / 255.0 - 0.5;  // [B, pixels]
  // A random subset of pixels per image: the first nc are the context, the next nt the targets.
  auto chosen = std::get<1>(torch::rand({batch, pixels}, gen).sort(1)).slice(1, 0, nc + nt);
  auto x = pixel_coordinates(torch::div(chosen, width_, "floor"), chosen % width_, height_, width_);
  auto y = images.gather(1, chosen).unsqueeze(-1);
  Batch b;
  b.xc = x.slice(1, 0, nc).contiguous();
  b.yc = y.slice(1, 0, nc).contiguous();
  b.xt = x.slice(1, nc).contiguous();
  b.yt = y.slice(1, nc).contiguous();
  return b;
}

}  // namespace retreever::datasets
