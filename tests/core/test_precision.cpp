// Config::precision: the field's JSON round trip and validation, the autocast guard, tf32's matmul
// scope and its training steps (as fp32 on the CPU), and on the CPU
// the forward autocast to bfloat16 against float32, bf16 training steps and checkpoints, and the
// decoders converted to bfloat16 (tests/precision_checks.h; test_cuda runs the same on a GPU). With
// LibTorch before 2.4, whose CPU autocast cannot run this model, the refusal instead.
// Qt-free; exits 1 on any failure.
#include <cstdio>
#include <stdexcept>
#include <string>

#include <torch/torch.h>
#include <torch/version.h>

#include "core/config.h"
#include "core/training/precision.h"
#include "tests/checks.h"
#include "tests/precision_checks.h"

using namespace retreever;
using retreever::testing::expect;
using retreever::testing::refuses;

namespace {

void the_config_field() {
  Config c;
  expect(c.precision == "fp32", "precision defaults to fp32");
  expect(Config::choices("precision") == std::vector<std::string>{"fp32", "tf32", "bf16"},
         "precision's choices: fp32, tf32, bf16");
  c.precision = "bf16";
  expect(c.validate().empty(), "bf16 is valid");
  const Config back = Config::from_json(c.to_json());
  expect(back.precision == "bf16", "precision survives config.json");
  expect(Config::from_json("{\"task\": \"gp\"}").precision == "fp32", "a file without precision (older runs) is fp32");
  expect(Config::legacy().precision == "fp32", "legacy files are fp32");
  c.precision = "fp16";
  const auto problems = c.validate();
  expect(problems.size() == 1 && problems[0] == "precision: unknown value 'fp16'. Use one of fp32|tf32|bf16.",
         "fp16 is refused with the choices: " + (problems.empty() ? std::string("(none)") : problems[0]));
  expect(refuses<std::runtime_error>([] { Config::from_json("{\"precision\": 16}"); }, ""),
         "a precision that is not a string is refused");
  expect(precision_dtype("fp32") == torch::kFloat && precision_dtype("tf32") == torch::kFloat &&
             precision_dtype("bf16") == torch::kBFloat16,
         "precision dtypes");
  expect(refuses<std::invalid_argument>([] { precision_dtype("fp8"); }, ""), "precision_dtype refuses an unknown name");
}

void the_guard() {
  const torch::Device cpu(torch::kCPU);
  expect(!AutocastGuard::enabled(torch::kCPU), "autocast off at the start");
  {
    AutocastGuard off(cpu, false);
    expect(!AutocastGuard::enabled(torch::kCPU), "an fp32 guard changes nothing");
  }
  {
    AutocastGuard outer(cpu, true);
    {
      AutocastGuard inner(cpu, true);
      expect(AutocastGuard::enabled(torch::kCPU), "nested guard on");
    }
    expect(AutocastGuard::enabled(torch::kCPU), "the outer guard stays on after the inner one ends");
    auto y = torch::matmul(torch::randn({4, 4}), torch::randn({4, 4}));
    expect(y.scalar_type() == torch::kBFloat16, "a matmul under the guard runs in bfloat16");
  }
  expect(!AutocastGuard::enabled(torch::kCPU), "autocast off after the guards");
  expect(torch::matmul(torch::randn({4, 4}), torch::randn({4, 4})).scalar_type() == torch::kFloat,
         "a matmul after the guard runs in float32 again");
}

// tf32's scope: LibTorch's float32 matmul precision "high" while the outermost one lives.
void the_matmul_scope() {
  expect(!MatmulPrecisionScope::tf32_allowed(), "float32 matmuls exact at the start");
  {
    MatmulPrecisionScope off(false);
    expect(!MatmulPrecisionScope::tf32_allowed(), "an fp32 scope changes nothing");
  }
  {
    MatmulPrecisionScope outer(true);
    expect(MatmulPrecisionScope::tf32_allowed(), "a tf32 scope allows TensorFloat-32");
    {
      MatmulPrecisionScope inner(true);
      MatmulPrecisionScope off(false);
    }
    expect(MatmulPrecisionScope::tf32_allowed(), "the outer scope stays on after the inner ones end");
  }
  expect(!MatmulPrecisionScope::tf32_allowed(), "float32 matmuls exact after the scopes");
}

// Where the CPU cannot run bf16 (LibTorch before 2.4), training and bench refuse it with the fix.
void refused_where_the_cpu_cannot() {
  const auto refusal = bf16_refusal(torch::Device(torch::kCPU));
  std::printf("this LibTorch is %d.%d: bf16 on the CPU %s\n", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
              refusal.empty() ? "runs (CPU autocast)" : "is refused");
  expect(bf16_refusal(torch::Device(torch::kCUDA)).empty(), "CUDA runs bf16");
  expect(refusal.empty() == (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)),
         "the CPU runs bf16 from LibTorch 2.4 on");
  if (refusal.empty()) return;
  expect(refusal.find('\n') == std::string::npos && refusal.find("--precision fp32") != std::string::npos,
         "the refusal is one line naming the fix: " + refusal);
  Config c = retreever::testing::small_config("copy", "tca");
  c.precision = "bf16";
  std::string what;
  try {
    Trainer t(c, datasets::make_task);
  } catch (const std::invalid_argument& e) {
    what = e.what();
  }
  expect(what == refusal, "a bf16 trainer on this CPU is refused before it starts: " + what);
}

}  // namespace

int main() {
  the_config_field();
  the_guard();
  the_matmul_scope();
  retreever::testing::tf32_checks(torch::Device(torch::kCPU));
  refused_where_the_cpu_cannot();
  if (bf16_refusal(torch::Device(torch::kCPU)).empty()) retreever::testing::bf16_checks(torch::Device(torch::kCPU));
  return retreever::testing::checks().summary();
}
