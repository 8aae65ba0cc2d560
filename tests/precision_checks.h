// Checks of Config::precision on one device, shared by test_precision (CPU) and test_cuda (GPU):
// tf32's matrix products and training steps against fp32's; for "bf16", the forward autocast to
// bfloat16 against float32 on the same model and batch, training steps, the checkpoint's config,
// and the decoders converted to bfloat16 as `bench --precision bf16` runs them. Qt-free.
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "core/cuda/cuda_ops.h"
#include "core/decoders/decoder.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "core/training/precision.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"
#include "tests/checks.h"
#include "tests/small_config.h"

namespace retreever::testing {

// max |a - ref| / max |ref| over the rows where `rows` is true (all rows when undefined).
inline double relative_error(const torch::Tensor& a, const torch::Tensor& ref, const torch::Tensor& rows = {}) {
  auto x = a.to(torch::kDouble).cpu(), r = ref.to(torch::kDouble).cpu();
  if (rows.defined()) {
    auto keep = rows.cpu();
    x = x.index({keep});
    r = r.index({keep});
  }
  if (r.numel() == 0) return 0;
  return ((x - r).abs().max() / r.abs().max().clamp_min(1e-6)).item<double>();
}

// bfloat16 keeps 8 bits of mantissa: a few layers of it stay within a few percent of float32.
constexpr double kBf16Tolerance = 0.06;

inline void bf16_forward_matches_fp32(const torch::Device& device, const std::string& task, const std::string& model) {
  Config c = small_config(task, model);
  c.device = device.is_cuda() ? "cuda" : "cpu";
  auto t = datasets::make_task(c);
  torch::manual_seed(5);
  ReTreever net(c, t->spec());
  net->to(device);
  net->eval();
  torch::NoGradGuard no_grad;
  auto batch = t->sample(8, 42, true).to(device);
  DecodeRequest r;
  r.all_leaves = model == "tca";
  r.trace = model == "tca";
  auto ref = net->forward(batch, r);
  ModelOutput low;
  {
    AutocastGuard autocast(device, true);
    expect(AutocastGuard::enabled(device.type()), "autocast on inside the guard (" + device.str() + ")");
    low = net->forward(batch, r);
  }
  expect(!AutocastGuard::enabled(device.type()), "autocast off after the guard (" + device.str() + ")");
  const std::string what = " (" + task + ", " + model + ", " + device.str() + ")";
  expect(torch::isfinite(low.prediction.to(torch::kFloat)).all().item<bool>(), "bf16 prediction finite" + what);
  torch::Tensor same;  // TCA: the queries that reached the same leaf group (a near tie may flip in bf16)
  if (model == "tca") {
    same = (low.trace.leaf_group == ref.trace.leaf_group);
    const double share = same.to(torch::kDouble).mean().item<double>();
    std::printf("bf16 vs fp32%s: %.0f%% of the queries walk to the same leaf group\n", what.c_str(), 100 * share);
    expect(share >= 0.5, "bf16 walks mostly as fp32 does" + what);
    const double e = relative_error(low.prediction_all_leaves, ref.prediction_all_leaves);
    expect(e > 0 && e < kBf16Tolerance, "bf16 all-leaves prediction within tolerance of fp32, and not identical" + what +
                                            ": " + std::to_string(e));
  }
  const double e = relative_error(low.prediction, ref.prediction, same);
  std::printf("bf16 vs fp32%s: relative error of the prediction %.4f\n", what.c_str(), e);
  expect(e > 0 && e < kBf16Tolerance, "bf16 prediction within tolerance of fp32, and not identical" + what + ": " +
                                          std::to_string(e));
}

// A run in `precision` beside an fp32 run of the same model and data (same initialisation): the
// first step's losses must pass `near`; four more steps stay finite, `after_steps` checks what the
// precision must have restored, the evaluation is finite, and the checkpoint (and a run resumed
// from it) keeps the precision.
inline void training_steps_in(const torch::Device& device, const std::string& model, const std::string& precision,
                              const std::function<bool(double fp32, double low)>& near, const std::string& near_what,
                              const std::function<bool()>& after_steps, const std::string& after_what) {
  Config c = small_config("copy", model);
  c.device = device.is_cuda() ? "cuda" : "cpu";
  Trainer fp32(c, datasets::make_task);
  c.precision = precision;
  Trainer low(c, datasets::make_task);
  const std::string what = " (" + model + ", " + device.str() + ")";
  const auto a = fp32.step(), b = low.step();
  std::printf("first step%s: loss fp32 %.6f, %s %.6f\n", what.c_str(), a.loss, precision.c_str(), b.loss);
  expect(std::isfinite(b.loss) && near(a.loss, b.loss), near_what + what);
  bool finite = true;
  for (int i = 0; i < 4; ++i) finite = finite && std::isfinite(low.step().loss);
  expect(finite, precision + " training steps stay finite" + what);
  expect(after_steps(), after_what + what);
  expect(std::isfinite(low.evaluate().value), precision + " evaluation finite" + what);
  const auto path = std::filesystem::temp_directory_path() / ("retreever_" + precision + "_" + model + ".safetensors");
  low.save(path.string());
  expect(read_checkpoint_header(path.string()).config.precision == precision,
         "the checkpoint keeps precision " + precision + what);
  auto resumed = Trainer::load(path.string(), datasets::make_task);
  expect(resumed->config().precision == precision && std::isfinite(resumed->step().loss),
         "a resumed " + precision + " run trains in " + precision + what);
  std::filesystem::remove(path);
}

inline void bf16_training_steps(const torch::Device& device, const std::string& model) {
  training_steps_in(
      device, model, "bf16", [](double a, double b) { return std::abs(b - a) <= 0.05 * std::abs(a) + 0.02; },
      "bf16 training step's loss near fp32's (same data, same initialisation)",
      [&] { return !AutocastGuard::enabled(device.type()); }, "autocast off after the training steps");
}

// What `bench --precision bf16` runs: the decoders and their inputs converted to bfloat16.
inline void bf16_decoders_match_fp32(const torch::Device& device) {
  torch::NoGradGuard no_grad;
  Config c;  // bench's: d_model 64, 4 heads, b = 2
  const std::int64_t n = 300, m = 64;
  auto context = torch::randn({1, n, c.d_model}).to(device);
  auto x = torch::linspace(-1, 1, n).view({1, n, 1}).to(device);
  auto q = torch::randn({1, m, c.d_model}).to(device);
  for (const std::string model : {"ca", "tca"}) {
    c.model = model;
    torch::manual_seed(3);
    auto ref = make_decoder(c);
    torch::manual_seed(3);
    auto low = make_decoder(c);
    ref->to(device);
    low->to(device, torch::kBFloat16);
    ref->eval();
    low->eval();
    DecodeRequest r;
    r.trace = model == "tca";
    auto o32 = ref->decode(*ref->prepare(context, x), q, r);
    auto o16 = low->decode(*low->prepare(context.to(torch::kBFloat16), x), q.to(torch::kBFloat16), r);
    const std::string what = " (" + model + " converted to bf16, " + device.str() + ")";
    expect(o16.encoding.scalar_type() == torch::kBFloat16, "the encoding is bfloat16" + what);
    torch::Tensor same;
    if (model == "tca") {
      same = o16.trace.leaf_group == o32.trace.leaf_group;
      const double share = same.to(torch::kDouble).mean().item<double>();
      std::printf("decoders in bf16 vs fp32%s: %.0f%% of the queries walk to the same leaf group\n", what.c_str(),
                  100 * share);
      expect(share >= 0.5, "bf16 walks mostly as fp32 does" + what);
    }
    const double e = relative_error(o16.encoding, o32.encoding, same);
    std::printf("decoders in bf16 vs fp32%s: relative error %.4f\n", what.c_str(), e);
    expect(e > 0 && e < kBf16Tolerance, "bf16 encoding within tolerance of fp32" + what + ": " + std::to_string(e));
    if (model == "tca" && device.is_cuda() && cuda_kernels_available() && cuda_kernels_enabled()) {
      // In bf16 the walk and the read of S run in the CUDA kernels too, in float32 (their policy
      // comes out float32), and agree with the tensor paths in bf16.
      expect(o16.trace.probabilities.scalar_type() == torch::kFloat, "bf16 TCA walks in the CUDA kernel" + what);
      set_cuda_kernels_enabled(false);
      auto tensor_path = low->decode(*low->prepare(context.to(torch::kBFloat16), x), q.to(torch::kBFloat16), r);
      set_cuda_kernels_enabled(true);
      expect(tensor_path.trace.probabilities.scalar_type() == torch::kBFloat16, "kernels off: the tensor path" + what);
      const auto agree = o16.trace.leaf_group == tensor_path.trace.leaf_group;
      expect(agree.to(torch::kDouble).mean().item<double>() >= 0.5, "bf16 kernel and tensor walks mostly agree" + what);
      const double k = relative_error(o16.encoding, tensor_path.encoding, agree);
      std::printf("bf16 TCA, kernels against tensor paths%s: relative error %.4f\n", what.c_str(), k);
      expect(k < kBf16Tolerance, "bf16 kernel read within tolerance of the tensor path" + what + ": " + std::to_string(k));
    }
  }
}

// precision tf32: float32 tensors; on a GPU the matrix products round their inputs to TensorFloat-32
// (a 10-bit mantissa), on the CPU it computes as fp32 does. The same model and data as fp32.
inline void tf32_training_steps(const torch::Device& device, const std::string& model) {
  const bool gpu = device.is_cuda();
  training_steps_in(
      device, model, "tf32",
      [gpu](double a, double b) {
        return std::abs(b - a) <= (gpu ? 0.02 * std::abs(a) + 0.01 : 1e-6 * std::abs(a));
      },
      gpu ? "tf32 training step's loss near fp32's" : "tf32 on the CPU trains as fp32 does",
      [] { return !MatmulPrecisionScope::tf32_allowed(); }, "float32 matmuls are exact again after the steps");
}

inline void tf32_checks(const torch::Device& device) {
  auto x = torch::randn({512, 512}, torch::TensorOptions().device(device)), y = torch::randn({512, 512}, x.options());
  const auto exact = torch::matmul(x.to(torch::kDouble), y.to(torch::kDouble));
  const double e32 = relative_error(torch::matmul(x, y), exact);
  double e = 0;
  {
    MatmulPrecisionScope tf32(true);
    e = relative_error(torch::matmul(x, y), exact);
  }
  std::printf("matmul 512x512 on %s: relative error fp32 %.2e, tf32 %.2e\n", device.str().c_str(), e32, e);
  if (device.is_cuda())  // TensorFloat-32 keeps 10 of float32's 23 mantissa bits
    expect(e > 10 * e32 && e < 1e-2, "tf32 matmuls on the GPU round to TensorFloat-32, within 1%");
  else
    expect(e == e32, "tf32 matmuls on the CPU are float32's");
  for (const auto& model : {"ca", "tca"}) tf32_training_steps(device, model);
}

inline void bf16_checks(const torch::Device& device) {
  for (const auto& model : {"ca", "tca"}) bf16_forward_matches_fp32(device, "copy", model);
  bf16_forward_matches_fp32(device, "gp", "tca");
  for (const auto& model : {"ca", "tca"}) bf16_training_steps(device, model);
  bf16_decoders_match_fp32(device);
}

}  // namespace retreever::testing
