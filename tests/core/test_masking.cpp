// Masked attention in low precision, on the CPU: the masked score is half each dtype's lowest
// finite value (a fixed -1e9 is -inf in float16, and a row with every key masked then turned into NaN),
// so masked keys get weight 0, a row with every key masked reads its keys uniformly, and the
// policy's log-probabilities and entropies stay finite, in float32, bfloat16 and float16.
// Qt-free (it builds where Qt is missing too); exits 1 on any failure.
#include <cstdio>
#include <string>

#include <torch/torch.h>

#include "core/nn/blocks.h"
#include "tests/checks.h"

using namespace retreever;

namespace {

using retreever::testing::expect;

const char* name(torch::ScalarType t) { return c10::toString(t); }

void masked_score_is_finite_in_every_dtype() {
  for (auto t : {torch::kHalf, torch::kBFloat16, torch::kFloat, torch::kDouble}) {
    auto v = torch::full({1}, masked_score(t), torch::TensorOptions().dtype(t));
    expect(torch::isfinite(v).all().item<bool>(), std::string("masked score finite in ") + name(t));
    expect(v.item<double>() <= -32752, std::string("masked score far below any score in ") + name(t));
  }
  // What the fixed score did: -1e9 overflows float16.
  // (converted from a float32 tensor: filling a float16 tensor with -1e9 directly throws on some LibTorch versions)
  expect(!torch::isfinite(torch::full({1}, -1e9, torch::kFloat).to(torch::kHalf)).all().item<bool>(),
         "-1e9 is -inf in float16");
}

// scores [1,2,4,3] (B, M, S children, H heads); query 0 has two of its four keys masked, query 1 all.
void weights_in(torch::ScalarType t) {
  torch::manual_seed(11);
  auto scores = (3 * torch::randn({1, 2, 4, 3})).to(t);
  auto mask = torch::tensor({true, false, true, false, false, false, false, false}, torch::kBool).view({1, 2, 4});
  const std::string what = std::string(" (") + name(t) + ")";
  torch::Tensor w, lw, lh;
  try {
    w = MultiHeadAttentionImpl::head_averaged_weights(scores, mask).to(torch::kFloat);
    lw = MultiHeadAttentionImpl::head_averaged_log_weights(scores, mask).to(torch::kFloat);
    lh = MultiHeadAttentionImpl::head_log_weights(scores, mask).to(torch::kFloat);
  } catch (const c10::Error& e) {
    // LibTorch 1.13's CPU softmax has no float16 kernel; newer ones have.
    std::printf("note: softmax in %s is not available on this CPU build; skipped that dtype\n", name(t));
    return;
  }
  const double tol = t == torch::kFloat ? 1e-6 : 1e-2;
  expect(!torch::isnan(w).any().item<bool>(), "weights without NaN" + what);
  expect(std::abs(w[0][0][1].item<float>()) == 0 && std::abs(w[0][0][3].item<float>()) == 0,
         "masked keys get weight 0" + what);
  expect(torch::allclose(w[0][0].sum(), torch::ones({}), tol, tol), "weights of a row sum to 1" + what);
  expect(torch::allclose(w[0][1], torch::full({4}, 0.25), tol, tol), "a row with every key masked is uniform" + what);
  expect(torch::isfinite(lw).all().item<bool>(), "log-probabilities finite" + what);
  expect(torch::isfinite(lh).all().item<bool>(), "each head's log-probabilities finite" + what);
  // The policy's entropy, as the decoder computes it: 0 * log 0 must not become NaN.
  auto entropy = -(lw.exp() * lw).sum(2).mean();
  auto head_entropy = -(lh.exp() * lh).sum(2).mean();
  expect(torch::isfinite(entropy).item<bool>() && torch::isfinite(head_entropy).item<bool>(), "entropies finite" + what);
  // The masked probabilities are exactly 0, never a finite log of 0 leaking into a sample.
  expect(lw[0][0][1].item<float>() < -1e4, "a masked child's log-probability is far below any other" + what);
}

void all_masked_row_in_shared_attention_is_uniform() {
  torch::manual_seed(5);
  MultiHeadAttention attn(16, 2);
  auto q = attn->project_query(torch::randn({2, 3, 16}));
  auto [k, v] = attn->project_key_value(torch::randn({2, 40, 16}));
  auto keep = torch::rand({2, 40}) > 0.5;
  keep[1].fill_(false);
  auto r = attn->attend_shared(q, k, v, keep, true);  // 120 pairs per row: the group kernels
  expect(!torch::isnan(r.out).any().item<bool>(), "shared attention without NaN");
  expect(torch::allclose(r.weights[1], torch::full({3, 40}, 1.0 / 40), 1e-6, 1e-6), "every key masked: uniform weights");
  auto big = attn->attend_shared(q, torch::cat({k, k, k}, 1), torch::cat({v, v, v}, 1), torch::cat({keep, keep, keep}, 1), true);
  expect(torch::allclose(big.weights[1], torch::full({3, 120}, 1.0 / 120), 1e-6, 1e-6),
         "every key masked, batched matmul path: uniform weights");
}

}  // namespace

int main() {
  masked_score_is_finite_in_every_dtype();
  for (auto t : {torch::kFloat, torch::kBFloat16, torch::kHalf}) weights_in(t);
  all_masked_row_in_shared_attention_is_uniform();
  return retreever::testing::checks().summary();
}
