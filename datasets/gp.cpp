#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/registry.h"
#include "datasets/tasks.h"

namespace retreever::datasets {
namespace {
constexpr double kXMin = -2.0, kXMax = 2.0;  // input range
constexpr std::int64_t kMinTargets = 3;
constexpr double kNoise = 0.02;              // observation noise std
const TaskInfo& info() { return task_info("gp"); }  // the context sizes (core/registry.cpp)

torch::Tensor uniform(at::Generator& gen, std::int64_t batch, double lo, double hi) {
  return torch::rand({batch, 1, 1}, gen, torch::kDouble) * (hi - lo) + lo;
}

std::int64_t uniform_int(at::Generator& gen, std::int64_t lo, std::int64_t hi) {  // [lo, hi]
  return torch::randint(lo, hi + 1, {1}, gen, torch::kLong).item<std::int64_t>();
}
}  // namespace

torch::Tensor gp_covariance(const torch::Tensor& x, const std::string& kernel, at::Generator& gen) {
  const auto B = x.size(0), n = x.size(1);
  auto d = (x - x.transpose(1, 2)).abs();  // [B,n,n]
  auto scale = uniform(gen, B, 0.1, 1.0);
  auto length = uniform(gen, B, 0.1, 0.6);
  torch::Tensor k;
  if (kernel == "rbf") {
    k = scale.pow(2) * torch::exp(-0.5 * (d / length).pow(2));
  } else if (kernel == "matern") {
    auto r = std::sqrt(5.0) * d / length;
    k = scale.pow(2) * (1 + r + r.pow(2) / 3.0) * torch::exp(-r);
  } else if (kernel == "periodic") {
    auto period = uniform(gen, B, 0.1, 0.5);
    k = scale.pow(2) * torch::exp(-2.0 * torch::sin(M_PI * d / period).pow(2) / length.pow(2));
  } else {
    throw std::invalid_argument("unknown GP kernel '" + kernel + "'; use rbf|matern|periodic");
  }
  return k + kNoise * kNoise * torch::eye(n, torch::kDouble).unsqueeze(0);
}

GPTask::GPTask(std::string train_kernel, std::string eval_kernel, std::int64_t eval_context)
    : train_kernel_(std::move(train_kernel)), eval_kernel_(std::move(eval_kernel)), eval_context_(eval_context) {
  if (eval_context != 0 && (eval_context < info().min_context || eval_context > info().max_context))
    throw std::invalid_argument("gp task: evaluation contexts hold " + info().context_range() + " points, got " +
                                std::to_string(eval_context));
}

TaskSpec GPTask::spec() const {
  TaskSpec s;
  s.name = "gp";
  s.x_dim = 1;
  s.y_dim = 1;
  s.metalearning = true;
  return s;
}

Batch GPTask::sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto nc = uniform_int(gen, info().min_context, info().max_context);
  if (evaluation && eval_context_ > 0) nc = eval_context_;  // drawn first all the same: same stream
  const auto nt = uniform_int(gen, kMinTargets, info().max_points - nc);
  const auto n = nc + nt;
  auto x = torch::rand({batch, n, 1}, gen, torch::kDouble) * (kXMax - kXMin) + kXMin;
  auto cov = gp_covariance(x, evaluation ? eval_kernel_ : train_kernel_, gen);
  auto chol = at::linalg_cholesky(cov);
  auto y = torch::matmul(chol, torch::randn({batch, n, 1}, gen, torch::kDouble));
  // Context sorted by x: the "given" order is then the tree order for 1-D inputs.
  auto xc = x.slice(1, 0, nc), yc = y.slice(1, 0, nc);
  auto order = std::get<1>(xc.squeeze(-1).sort(1)).unsqueeze(-1);
  Batch b;
  b.xc = xc.gather(1, order).to(torch::kFloat32);
  b.yc = yc.gather(1, order).to(torch::kFloat32);
  b.xt = x.slice(1, nc, n).to(torch::kFloat32).contiguous();
  b.yt = y.slice(1, nc, n).to(torch::kFloat32).contiguous();
  return b;
}

}  // namespace retreever::datasets
