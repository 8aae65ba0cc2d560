#include "precision.h"

#include <atomic>
#include <stdexcept>

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

// LibTorch 2.4 replaced the per-device functions (set_enabled for CUDA, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) by ones that take the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define RETREEVER_AUTOCAST_BY_DEVICE 1
#endif

namespace retreever {
namespace {

bool autocast_enabled(torch::DeviceType type) {
#ifdef RETREEVER_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(torch::DeviceType type, bool on) {
#ifdef RETREEVER_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(type, on);
#else
  if (type == torch::kCUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
#endif
}

torch::ScalarType autocast_dtype(torch::DeviceType type) {
#ifdef RETREEVER_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(torch::DeviceType type, torch::ScalarType dtype) {
#ifdef RETREEVER_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace

torch::ScalarType precision_dtype(const std::string& precision) {
  if (precision == "fp32" || precision == "tf32") return torch::kFloat;
  if (precision == "bf16") return torch::kBFloat16;
  throw std::invalid_argument("precision: unknown value '" + precision + "'. Use one of fp32|tf32|bf16.");
}

std::string bf16_refusal(const torch::Device& device) {
  if (device.is_cuda()) return "";
  if (!device.is_cpu()) return "precision bf16 runs on CUDA or the CPU, not on " + device.str() + "; use --precision fp32";
#ifdef RETREEVER_AUTOCAST_BY_DEVICE
  return "";
#else
  return "precision bf16 on the CPU needs LibTorch 2.4 or newer (this build has " + std::to_string(TORCH_VERSION_MAJOR) +
         "." + std::to_string(TORCH_VERSION_MINOR) +
         ", whose CPU autocast cannot run layer norms in bfloat16); use --precision fp32, or --device cuda";
#endif
}

AutocastGuard::AutocastGuard(const torch::Device& device, bool bf16) {
  if (!bf16) return;
  if (!device.is_cuda() && !device.is_cpu())
    throw std::invalid_argument("precision bf16: autocast runs on CUDA or the CPU, not on " + device.str() +
                                "; use --precision fp32");
  active_ = true;
  type_ = device.is_cuda() ? torch::kCUDA : torch::kCPU;
  previous_enabled_ = autocast_enabled(type_);
  previous_dtype_ = autocast_dtype(type_);
  set_autocast_enabled(type_, true);
  set_autocast_dtype(type_, torch::kBFloat16);
  // On a GPU, no cache of the parameters' bfloat16 copies: a training step replayed from a CUDA graph
  // must cast the parameters the optimiser has just changed (PyTorch asks the same of autocast inside
  // graphs). Each use of a weight then casts it again, a small kernel. The CPU keeps its cache.
  previous_cache_ = at::autocast::is_autocast_cache_enabled();
  if (type_ == torch::kCUDA) at::autocast::set_autocast_cache_enabled(false);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The cast copies of the float32 parameters are cached while autocast is on; drop them at the
  // outermost exit, as torch.autocast does, so an optimiser step is never hidden behind a stale copy.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_cache_enabled(previous_cache_);
  set_autocast_enabled(type_, previous_enabled_);
  set_autocast_dtype(type_, previous_dtype_);
}

bool AutocastGuard::enabled(torch::DeviceType type) { return autocast_enabled(type); }

namespace {
std::atomic<int> g_tf32_scopes{0};
}  // namespace

MatmulPrecisionScope::MatmulPrecisionScope(bool tf32) : active_(tf32) {
  if (active_ && g_tf32_scopes.fetch_add(1) == 0) at::globalContext().setFloat32MatmulPrecision("high");
}

MatmulPrecisionScope::~MatmulPrecisionScope() {
  if (active_ && g_tf32_scopes.fetch_sub(1) == 1) at::globalContext().setFloat32MatmulPrecision("highest");
}

bool MatmulPrecisionScope::tf32_allowed() { return at::globalContext().allowTF32CuBLAS(); }

}  // namespace retreever
