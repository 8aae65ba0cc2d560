// Config::precision: "bf16" autocasts the forward to bfloat16 (parameters, gradients and the
// optimiser stay float32); "tf32" keeps float32 tensors and lets CUDA's float32 matrix products run
// on TensorFloat-32 tensor cores (a 10-bit mantissa; elsewhere it computes as fp32 does).
// LibTorch's autocast API changed in 2.4 (per-device calls); both forms are handled in
// precision.cpp, so the rest of the code sees one guard.
#pragma once

#include <string>

#include <torch/types.h>

namespace retreever {

// The dtype a precision name stands for: fp32 and tf32 -> float32, bf16 -> bfloat16. Throws
// std::invalid_argument for another name (Config::validate refuses it first).
torch::ScalarType precision_dtype(const std::string& precision);

// Empty when bf16 can run on `device`; otherwise a one-line refusal that names the fix. The CPU
// needs LibTorch 2.4 or newer: 1.13's CPU autocast hands layer norms bfloat16 inputs with float32
// weights, which its CPU kernel refuses (checked: 1.13 refuses, 2.11 runs).
std::string bf16_refusal(const torch::Device& device);

// Autocast to bfloat16 on `device`'s type (CUDA or CPU) for the guard's lifetime when `bf16`;
// nothing otherwise. On CUDA keeps autocast's cache of cast parameters off meanwhile (CUDA graphs
// replay the casts). Restores the previous state (enabled flag, dtype, cache) and clears autocast's cast cache
// when the outermost guard ends.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, bool bf16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  // Whether autocast is on for this device type now (tests).
  static bool enabled(torch::DeviceType type);

 private:
  bool active_ = false;
  torch::DeviceType type_ = torch::kCPU;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
  bool previous_cache_ = true;
};

// While one lives with `tf32`, float32 matrix products may use TensorFloat-32 where the hardware has
// it (LibTorch's float32 matmul precision "high"); nothing otherwise. The outermost scope restores
// "highest", LibTorch's default, which nothing else in this program changes. The setting is
// process-wide: whatever multiplies float32 matrices meanwhile, on any thread, shares it.
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(bool tf32);
  ~MatmulPrecisionScope();
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

  // Whether float32 matrix products may use TensorFloat-32 now (tests).
  static bool tf32_allowed();

 private:
  bool active_ = false;
};

}  // namespace retreever
