// The CUDA kernels (core/cuda) against the tensor paths on the same GPU: the group attention
// (values and gradients, with masks, all-masked groups and indexed keys), and tree cross attention
// with every kernel on vs off (paths, probabilities, log-probabilities, entropies, encodings and
// every parameter's gradient, greedy and sampled from the same draws, with padding, several
// branch factors and head sizes; inference without autograd too).
// Qt-free, so that it builds on machines without Qt. Exit 77 (ctest: skipped) without a GPU or
// without the kernels; 1 on any failure.
#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "core/cuda/cuda_graph.h"
#include "core/cuda/cuda_ops.h"
#ifdef RETREEVER_CUDA
#include "core/cuda/kernels.h"
#endif
#include "core/decoders/tree_cross_attention.h"
#include "core/nn/blocks.h"
#include "core/nn/paired_linear.h"
#include "core/scaling.h"
#include "core/training/distributed.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"
#include "tests/checks.h"
#include "tests/precision_checks.h"
#include "tests/small_config.h"
#include "tests/tree_checks.h"

using namespace retreever;

namespace {

using retreever::testing::expect;
using retreever::testing::refuses;

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble).cpu() - b.to(torch::kDouble).cpu()).abs().max().item<double>();
}

bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  return a.sizes() == b.sizes() && torch::allclose(a.to(torch::kDouble).cpu(), b.to(torch::kDouble).cpu(), rtol, atol) &&
         !torch::isnan(a).any().item<bool>();
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol, const std::string& what) {
  const bool ok = close(a, b, rtol, atol);
  expect(ok, what + (ok ? "" : " (max |diff| " + std::to_string(a.sizes() == b.sizes() ? max_diff(a, b) : -1) + ")"));
}

// a against exact float64 sums: each element's error at most rel times its sum of absolute terms
// (terms, float64), the scale of a float32 sum's error, which fixed tolerances against a float32
// result miss over long sums and large values.
void expect_within_terms(const torch::Tensor& a, const torch::Tensor& exact, const torch::Tensor& terms, double rel,
                         const std::string& what) {
  const auto ratio = ((a.to(torch::kDouble) - exact).abs() / (terms + 1e-30)).max().item<double>();
  expect(a.sizes() == exact.sizes() && ratio <= rel, what + " (max |diff| / sum |terms| " + std::to_string(ratio) + ")");
}

// softmax over the masked scores, then the mix: the tensor path the group kernel replaces.
// q [G,m,H,d], k/v [G,nk,H,d], mask [G,nk] (undefined: all real) -> [G,m,H,d]
torch::Tensor reference_group(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& mask) {
  auto s = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1);  // [G,m,nk,H]
  if (mask.defined()) s = s.masked_fill(mask.view({mask.size(0), 1, mask.size(1), 1}).logical_not(), masked_score(s.scalar_type()));
  auto p = torch::softmax(s, 2);
  return (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2);
}

// H = 4 and (8, 16) run the backward's warp kernel (rows of 32, 64 or 128 floats: 1, 2 or 4 a lane,
// the last two by vector atomics), H = 3 the other (48 floats at d = 16 is no multiple of a warp);
// d = 64 takes the other too.
void group_attention_matches_the_tensor_path() {
  const auto dev = torch::kCUDA;
  for (auto [d, H] : std::vector<std::pair<int64_t, int64_t>>{{8, 4}, {16, 4}, {32, 4}, {8, 16}, {16, 3}, {64, 2}})
    for (bool indexed : {false, true})
      for (bool masked : {false, true}) {
        const int64_t G = 300, m = indexed ? 1 : 3, nk = 7, B = 3, n = 50;
        auto opts = torch::TensorOptions().device(dev);
        auto q = torch::randn({G, m, H, d}, opts).requires_grad_();
        torch::Tensor k, v, idx, kg, vg;
        if (indexed) {
          k = torch::randn({B, n, H, d}, opts).requires_grad_();
          v = torch::randn({B, n, H, d}, opts).requires_grad_();
          idx = torch::randint(0, n, {G, nk}, opts.dtype(torch::kLong));
          auto base = (torch::arange(G, opts.dtype(torch::kLong)).div(G / B, "floor") * n).unsqueeze(1);
          kg = k.reshape({B * n, H, d}).index_select(0, (idx + base).reshape(-1)).view({G, nk, H, d});
          vg = v.reshape({B * n, H, d}).index_select(0, (idx + base).reshape(-1)).view({G, nk, H, d});
        } else {
          k = torch::randn({G, nk, H, d}, opts).requires_grad_();
          v = torch::randn({G, nk, H, d}, opts).requires_grad_();
          kg = k;
          vg = v;
        }
        torch::Tensor mask;
        if (masked) {
          mask = torch::rand({G, nk}, opts) > 0.4;
          mask.narrow(0, 0, 5).fill_(false);  // groups with every key masked: uniform weights, not NaN
        }
        const auto what = "group attention d=" + std::to_string(d) + " H=" + std::to_string(H) + (indexed ? " indexed" : "") +
                          (masked ? " masked" : "");
        auto w = torch::randn({G, m, H, d}, opts);
        auto out = group_attention_cuda(q, k, v, idx, mask);
        auto ref = reference_group(q, kg, vg, mask);
        expect_close(out, ref, 1e-4, 1e-5, what + ": values");
        auto g = torch::autograd::grad({(out * w).sum()}, {q, k, v});
        auto r = torch::autograd::grad({(ref * w).sum()}, {q, k, v}, {}, true);  // kept: read again below
        expect_close(g[0], r[0], 1e-3, 1e-4, what + ": dq");
        expect_close(g[1], r[1], 1e-3, 1e-4, what + ": dk");
        expect_close(g[2], r[2], 1e-3, 1e-4, what + ": dv");
        // The raw scores (before masking) as a second output, and the gradients of a loss of both.
        auto read = group_attention_scores_cuda(q, k, v, idx, mask, true);
        auto raw = (q.unsqueeze(2) * kg.unsqueeze(1)).sum(-1);  // [G,m,nk,H]
        expect_close(read.scores, raw, 1e-4, 1e-5, what + ": raw scores");
        auto ws = torch::randn(raw.sizes(), opts);
        g = torch::autograd::grad({(read.out * w).sum() + (read.scores * ws).sum()}, {q, k, v});
        r = torch::autograd::grad({(ref * w).sum() + (raw * ws).sum()}, {q, k, v});
        expect_close(g[0], r[0], 1e-3, 1e-4, what + ": dq with the scores' gradient");
        expect_close(g[1], r[1], 1e-3, 1e-4, what + ": dk with the scores' gradient");
        expect_close(g[2], r[2], 1e-3, 1e-4, what + ": dv with the scores' gradient");
        torch::NoGradGuard no_grad;
        expect_close(group_attention_scores_cuda(q, k, v, idx, mask, true).scores, raw, 1e-4, 1e-5,
                     what + ": raw scores without autograd");
        expect_close(group_attention_cuda(q, k, v, idx, mask), ref, 1e-4, 1e-5, what + ": values without autograd");
      }
}

// Dropout on the weights: the kernel mixes the values by the weights times a keep mask [G,H,m,nk]
// (the tensor path's layout); its gradients against the broadcast products with the same mask. d = 8
// at H = 4 runs the backward's warp kernel, (16, 3) and (64, 2) the other.
void group_attention_with_dropout_matches_the_tensor_path() {
  const auto dev = torch::kCUDA;
  for (auto [d, H] : std::vector<std::pair<int64_t, int64_t>>{{8, 4}, {16, 3}, {64, 2}})
    for (bool masked : {false, true}) {
      const int64_t G = 300, m = 3, nk = 5;
      auto opts = torch::TensorOptions().device(dev);
      auto q = torch::randn({G, m, H, d}, opts).requires_grad_();
      auto k = torch::randn({G, nk, H, d}, opts).requires_grad_();
      auto v = torch::randn({G, nk, H, d}, opts).requires_grad_();
      torch::Tensor mask;
      if (masked) mask = torch::rand({G, nk}, opts) > 0.3;
      auto drop = (torch::rand({G, H, m, nk}, opts) > 0.3).to(torch::kFloat) / 0.7;
      const auto what = "group attention with dropout d=" + std::to_string(d) + " H=" + std::to_string(H) +
                        (masked ? " masked" : "");
      auto s = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1);  // [G,m,nk,H]
      if (masked) s = s.masked_fill(mask.view({G, 1, nk, 1}).logical_not(), masked_score(s.scalar_type()));
      auto p = torch::softmax(s, 2) * drop.permute({0, 2, 3, 1});
      auto ref = (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2);
      auto out = group_attention_cuda(q, k, v, {}, mask, drop);
      expect_close(out, ref, 1e-4, 1e-5, what + ": values");
      expect(max_diff(out, group_attention_cuda(q, k, v, {}, mask)) > 1e-2, what + ": the mask changes the values");
      auto w = torch::randn({G, m, H, d}, opts);
      auto g = torch::autograd::grad({(out * w).sum()}, {q, k, v});
      auto r = torch::autograd::grad({(ref * w).sum()}, {q, k, v});
      expect_close(g[0], r[0], 1e-3, 1e-4, what + ": dq");
      expect_close(g[1], r[1], 1e-3, 1e-4, what + ": dk");
      expect_close(g[2], r[2], 1e-3, 1e-4, what + ": dv");
      torch::NoGradGuard no_grad;
      expect_close(group_attention_cuda(q, k, v, {}, mask, drop), ref, 1e-4, 1e-5, what + ": values without autograd");
    }
}

// An aggregator dropping out draws the same masks with the kernels on and off (the kernel takes the
// mask the tensor path draws): the same parents and parameter gradients from one dropout seed.
void aggregator_dropout_is_the_same_with_and_without_kernels() {
  torch::manual_seed(3);
  auto agg = retreever::testing::dropping_aggregator(torch::kCUDA, 2, 0.3);  // d_model 16, 2 heads of 8
  auto children = torch::randn({500, 2, 16}, torch::TensorOptions().device(torch::kCUDA));
  auto w = torch::randn({500, 16}, children.options());
  torch::Tensor out[2];
  std::vector<torch::Tensor> grads[2];
  for (bool kernels : {false, true}) {
    set_cuda_kernels_enabled(kernels);
    agg->zero_grad();
    DropoutStream stream(9);
    DropoutScope scope(stream);
    out[kernels] = agg->forward(children, {});
    (out[kernels] * w).sum().backward();
    for (const auto& p : agg->parameters()) grads[kernels].push_back(p.grad().clone());
  }
  set_cuda_kernels_enabled(true);
  expect_close(out[1], out[0], 1e-4, 1e-5, "aggregator under dropout, kernels on and off: parents");
  bool same = true;
  for (std::size_t i = 0; i < grads[0].size(); ++i) same = same && close(grads[1][i], grads[0][i], 1e-3, 1e-4);
  expect(same, "aggregator under dropout, kernels on and off: parameter gradients");
}

struct Run {
  DecodeOutput out;
  std::vector<torch::Tensor> grads;
};

void tree_cross_attention_kernels_match_the_tensor_path() {
  const auto dev = torch::Device(torch::kCUDA);
  struct Case {
    int64_t N, b, d_model, heads;
  };
  for (auto cs : {Case{5, 2, 32, 2}, Case{16, 2, 32, 2}, Case{37, 2, 64, 4}, Case{29, 3, 16, 2}, Case{70, 4, 32, 2},
                  Case{1000, 2, 64, 4}, Case{3000, 3, 64, 4}, Case{140, 5, 32, 2}})
    for (bool head_entropy : {false, true})
      // Padding siblings masked, or kept in S as zero vectors (Config::padding_siblings zero, the default).
      for (bool zero_padding : {false, true})
      for (int mode = 0; mode < 3; ++mode) {  // greedy, sampled, sampled exploring
        const auto what = "TCA N=" + std::to_string(cs.N) + " b=" + std::to_string(cs.b) + " D=" +
                          std::to_string(cs.d_model) + " H=" + std::to_string(cs.heads) + " mode=" + std::to_string(mode) +
                          (zero_padding ? " padding-siblings=zero" : " padding-siblings=masked") +
                          (head_entropy ? " head-entropy" : "");
        torch::manual_seed(uint64_t(cs.N * 7 + cs.b));
        auto tca = std::make_shared<TreeCrossAttentionImpl>(cs.d_model, cs.heads, 2 * cs.d_model, cs.b, 1, false, "given",
                                                            false, BlockStyle::v1(), head_entropy);
        tca->zero_padding_siblings(zero_padding);
        tca->to(dev);
        auto opts = torch::TensorOptions().device(dev);
        const int64_t B = 3, M = 11;
        auto context = torch::randn({B, cs.N, cs.d_model}, opts);
        auto queries = torch::randn({B, M, cs.d_model}, opts);
        DecodeRequest r;
        r.trace = true;
        r.all_leaves = true;
        r.retrieval = mode == 0 ? Retrieval::Greedy : Retrieval::Sample;
        r.explore = mode == 2 ? 0.3 : 0;
        auto run = [&](bool kernels) {
          set_cuda_kernels_enabled(kernels);
          tca->use_walk_kernel(kernels);
          torch::manual_seed(99);
          torch::cuda::manual_seed_all(99);
          tca->zero_grad();
          auto memory = tca->prepare(context, torch::zeros({B, cs.N, 1}, opts));
          Run result;
          result.out = tca->decode(*memory, queries, r);
          auto& o = result.out;
          (o.encoding.sum() + o.all_leaves.sum() + o.log_prob.sum() + o.entropy).backward();
          for (const auto& p : tca->parameters())
            result.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
          return result;
        };
        auto a = run(true);
        auto t = run(false);
        expect(torch::equal(a.out.trace.path.cpu(), t.out.trace.path.cpu()), what + ": paths");
        expect(torch::equal(a.out.trace.leaf_group.cpu(), t.out.trace.leaf_group.cpu()), what + ": leaf groups");
        expect_close(a.out.trace.probabilities, t.out.trace.probabilities, 1e-4, 1e-6, what + ": probabilities");
        expect_close(a.out.log_prob, t.out.log_prob, 1e-4, 1e-5, what + ": log-probabilities");
        expect_close(a.out.entropy, t.out.entropy, 1e-4, 1e-5, what + ": entropy");
        expect_close(a.out.encoding, t.out.encoding, 1e-4, 1e-5, what + ": encodings");
        expect_close(a.out.all_leaves, t.out.all_leaves, 1e-4, 1e-5, what + ": all-leaves encodings");
        bool grads_ok = a.grads.size() == t.grads.size();
        double worst = 0;
        for (std::size_t i = 0; grads_ok && i < a.grads.size(); ++i) {
          worst = std::max(worst, max_diff(a.grads[i], t.grads[i]));
          grads_ok = close(a.grads[i], t.grads[i], 1e-3, 1e-4);
        }
        expect(grads_ok, what + ": gradients (max |diff| " + std::to_string(worst) + ")");
        // Inference: no autograd, the walk kernel's own log-probabilities and entropies.
        torch::NoGradGuard no_grad;
        auto infer = [&](bool kernels) {
          set_cuda_kernels_enabled(kernels);
          tca->use_walk_kernel(kernels);
          torch::manual_seed(5);
          torch::cuda::manual_seed_all(5);
          auto memory = tca->prepare(context, torch::zeros({B, cs.N, 1}, opts));
          return tca->decode(*memory, queries, r);
        };
        auto x = infer(true), y = infer(false);
        expect(torch::equal(x.trace.path.cpu(), y.trace.path.cpu()), what + ": inference paths");
        expect_close(x.encoding, y.encoding, 1e-4, 1e-5, what + ": inference encodings");
        expect_close(x.log_prob, y.log_prob, 1e-4, 1e-4, what + ": inference log-probabilities");
        expect_close(x.entropy, y.entropy, 1e-4, 1e-5, what + ": inference entropy");
      }
  set_cuda_kernels_enabled(true);
}

void greedy_walk_on_the_gpu_matches_the_cpu_kernel() {
  torch::manual_seed(3);
  auto tca = std::make_shared<TreeCrossAttentionImpl>(64, 4, 128, 2, 1, false, "given");
  torch::NoGradGuard no_grad;
  auto context = torch::randn({2, 5000, 64});
  auto queries = torch::randn({2, 64, 64});
  DecodeRequest r;
  r.trace = true;
  auto memory = tca->prepare(context, torch::zeros({2, 5000, 1}));
  auto cpu = tca->decode(*memory, queries, r);
  tca->to(torch::kCUDA);
  auto gmemory = tca->prepare(context.cuda(), torch::zeros({2, 5000, 1}).cuda());
  auto gpu = tca->decode(*gmemory, queries.cuda(), r);
  const auto mismatched = (cpu.trace.path != gpu.trace.path.cpu()).any(-1).sum().item<int64_t>();
  std::printf("greedy walk, GPU kernels vs CPU kernel: %lld of %d queries take another path\n", (long long)mismatched, 128);
  expect(mismatched <= 2, "GPU walk vs CPU walk: paths");  // a near tie may flip in float32
}

// The Scaling view's measurement on a GPU (core/scaling.h, which bench reads too): every point also
// replayed from CUDA graphs, the replayed decode equal to the eager one, and the view's latency the
// replayed time.
void scaling_points_replay_from_cuda_graphs() {
  ScalingOptions o;
  o.device = "cuda";
  o.max_n = 4096;
  o.queries = 256;
  o.graphs = true;
  std::vector<ScalingPoint> points;
  measure_scaling(o, 0, [&](const ScalingPoint& p) { points.push_back(p); });
  expect(points.size() == 6, "scaling: TCA, CA and Perceiver IO at 1k and 4k");
  for (const auto& p : points) {
    const auto what = "scaling, " + p.model + " at " + std::to_string(p.n);
    std::printf("%s: eager %.3f us, replayed %.3f us a query%s\n", what.c_str(), p.us_per_query, p.graph_us_per_query,
                p.graph_error.empty() ? "" : (" (" + p.graph_error + ")").c_str());
    expect(p.graph_us_per_query > 0 && p.graph_prepare_ms > 0 && p.graph_error.empty(), what + ": replayed");
    expect(p.graph_matches_eager, what + ": the replayed decode equals the eager one");
    expect(p.latency_us() == p.graph_us_per_query, what + ": the view plots the replayed time");
  }
  o.graphs = false;
  points.clear();
  o.max_n = 1024;
  measure_scaling(o, 0, [&](const ScalingPoint& p) { points.push_back(p); });
  expect(points.size() == 3 && points[0].graph_us_per_query == -1 && points[0].latency_us() == points[0].us_per_query,
         "scaling without graphs: the eager time");
}

// Training without bptt on a GPU, build_tree runs the levels without autograd and then once more in
// one batched call (tree.cpp): the nodes and the aggregator's gradients equal the CPU's level-by-level
// build, with padding (N = 37, 300: masked children) and without (N = 256), and fan-outs P != b;
// at N = 32768 (batch 2) the leaf level's 65536 child rows run once with autograd, the rest batched.
void batched_tree_on_the_gpu_matches_the_cpu_build() {
  for (auto [N, b, B] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {37, 2, 3}, {256, 2, 3}, {300, 3, 3}, {32768, 2, 2}}) {
    const auto what = "batched tree N=" + std::to_string(N) + " b=" + std::to_string(b);
    torch::manual_seed(uint64_t(N));
    Aggregator agg(1, 32, 2, 64);
    auto context = torch::randn({B, N, 32});
    auto order = context_order(torch::zeros({B, N, 1}), "given", b);
    auto build = [&](const torch::Device& dev) {
      agg->to(dev);
      agg->zero_grad();
      auto tree = build_tree(context.to(dev), order.to(dev), b, agg, false);
      auto w = torch::randn(torch::cat(tree.nodes, 1).sizes()).to(dev);  // the CPU's generator on both
      (torch::cat(tree.nodes, 1) * w).sum().backward();
      std::vector<torch::Tensor> out{torch::cat(tree.nodes, 1).detach().cpu()};
      for (const auto& p : agg->parameters()) out.push_back(p.grad().cpu());
      return out;
    };
    torch::manual_seed(7);
    auto cpu = build(torch::kCPU);
    torch::manual_seed(7);
    auto gpu = build(torch::kCUDA);
    expect_close(gpu[0], cpu[0], 1e-4, 1e-5, what + ": nodes");
    bool ok = gpu.size() == cpu.size();
    for (std::size_t i = 1; ok && i < cpu.size(); ++i) ok = close(gpu[i], cpu[i], 1e-3, 1e-4);
    expect(ok, what + ": the aggregator's gradients");
  }
}

// Under dropout the GPU build keeps the nodes each parent was aggregated from (its batched second
// forward would draw other masks; tree.cpp): the check of test_tree, on the GPU.
void dropout_tree_on_the_gpu_keeps_its_parents() {
  for (auto [N, b] : std::vector<std::pair<int64_t, int64_t>>{{37, 2}, {256, 2}, {300, 3}}) {
    const auto what = "tree under dropout N=" + std::to_string(N) + " b=" + std::to_string(b);
    const auto same = retreever::testing::tree_dropout_mismatch(torch::kCUDA, N, b, 0.3);
    const auto other = retreever::testing::tree_dropout_mismatch(torch::kCUDA, N, b, 0.3, /*replay_seed=*/12);
    std::printf("%s: parents against their children's aggregate %.2e (other masks %.2e)\n", what.c_str(), same, other);
    expect(same < 1e-4, what + ": each parent aggregates the kept children");
    expect(other > 1e-2, what + ": other masks give other parents");
    // The batched second pass (a GPU training step's default) replays the first pass's masks: the
    // same nodes and aggregator gradients as level by level.
    const auto batching = retreever::testing::tree_batching_difference(torch::kCUDA, N, b, 0.3);
    std::printf("%s: batched levels against level by level %.2e\n", what.c_str(), batching);
    expect(batching < 1e-4, what + ": batched levels give the level-by-level nodes and gradients");
  }
}

// A run far beyond the GPU's memory (CA at 131,072 context tokens, batch 1024: each activation of
// the embedder is 34 GB) stops at its first step with an OutOfMemoryError that names the settings
// to lower, and hands the memory back: a small run in the same process trains after it.
void running_out_of_gpu_memory_is_a_clear_error() {
  Config c = retreever::testing::small_config("copy", "ca");
  c.device = "cuda";
  c.seq_len = std::int64_t(1) << 18;
  c.batch = 1024;
  c.d_model = 64;
  c.heads = 4;
  c.ff_dim = 128;
  c.eval_batch = 2;
  std::string what;
  try {
    Trainer t(c, datasets::make_task);
    t.step();
  } catch (const OutOfMemoryError& e) {
    what = e.what();
  }
  std::printf("beyond the GPU's memory: %s\n", what.c_str());
  expect(what.find("out of memory on cuda") == 0, "a run beyond the GPU's memory: OutOfMemoryError");
  expect(what.find("lower batch") != std::string::npos, "out of GPU memory: the settings to lower");
  Config small = retreever::testing::small_config("copy");
  small.device = "cuda";
  Trainer t(small, datasets::make_task);
  t.step();
  expect(t.steps_done() == 1, "a small run after running out of GPU memory");
}

// The layer norm kernels against PyTorch's, values and the input's, weight's and bias's gradients,
// over rows of every supported width, few rows and many (the backward's warps then take several);
// widths the kernels do not take (48) fall back to the module.
void layer_norm_kernels_match_torch() {
  for (auto [D, R] : std::vector<std::pair<int64_t, int64_t>>{{32, 7}, {64, 5000}, {128, 3}, {256, 300}, {1024, 40}, {48, 9}}) {
    const auto what = "layer norm D=" + std::to_string(D) + " rows=" + std::to_string(R);
    torch::manual_seed(uint64_t(D + R));
    torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({D}));
    norm->to(torch::kCUDA);
    {
      torch::NoGradGuard no_grad;
      norm->weight.normal_();
      norm->bias.normal_();
    }
    auto x = (3 * torch::randn({R, 1, D}, torch::kCUDA) + 2).requires_grad_();
    auto w = torch::randn({R, 1, D}, torch::kCUDA);
    expect(use_cuda_layer_norm(x, norm->weight, norm->bias) == (D != 48), what + ": the kernel takes this width");
    auto ours = layer_norm(norm, x);
    auto g = torch::autograd::grad({(ours * w).sum()}, {x, norm->weight, norm->bias});
    auto ref = norm->forward(x);
    auto r = torch::autograd::grad({(ref * w).sum()}, {x, norm->weight, norm->bias});
    expect_close(ours, ref, 1e-4, 1e-5, what + ": values");
    expect_close(g[0], r[0], 1e-3, 1e-4, what + ": dx");
    expect_close(g[1], r[1], 1e-3, 1e-3, what + ": dweight");
    expect_close(g[2], r[2], 1e-3, 1e-3, what + ": dbias");
  }
}

// The softmax whose backward is one pass, for row widths from 1 to 1024 (ragged ones leave lanes
// idle), against torch::softmax; 1025 is refused.
void softmax_kernel_matches_torch() {
  for (auto [D, R] : std::vector<std::pair<int64_t, int64_t>>{{1, 9}, {7, 300}, {32, 5}, {100, 77}, {512, 2000}, {1024, 33}}) {
    const auto what = "softmax D=" + std::to_string(D) + " rows=" + std::to_string(R);
    torch::manual_seed(uint64_t(D * 7 + R));
    auto x = (4 * torch::randn({R, 1, D}, torch::kCUDA)).requires_grad_();
    auto w = torch::randn({R, 1, D}, torch::kCUDA);
    expect(use_cuda_softmax(x), what + ": the kernel takes this width");
    auto ours = softmax_cuda(x);
    auto g = torch::autograd::grad({(ours * w).sum()}, {x})[0];
    auto ref = torch::softmax(x, -1);
    auto r = torch::autograd::grad({(ref * w).sum()}, {x})[0];
    expect_close(ours, ref, 1e-5, 1e-6, what + ": values");
    expect_close(g, r, 1e-4, 1e-5, what + ": dx");
  }
  expect(!use_cuda_softmax(torch::zeros({2, 1025}, torch::kCUDA)), "softmax: rows of 1025 take torch::softmax");
  expect(!use_cuda_softmax(torch::zeros({2, 8}, torch::kCUDA).to(torch::kBFloat16)), "softmax: bfloat16 takes torch::softmax");
}

// The fused dense attention against the tensor path's arithmetic (scores, masked fill, softmax,
// mix) in float64: values and the gradients of q, k and v, without and with dropout drawn inside
// the kernels; queries shared over the batch (stride 0), masks with a row whose every key is masked,
// sizes off the kernels' tiles, head dimensions 16 and 32. Then the hook's test, and a multi-head attention above its threshold with the kernels on
// against off (output and every parameter's gradient).
void dense_attention_kernels_match_the_tensor_path() {
  const bool tensor_cores = dense_tensor_passes() != 0;  // outside a tf32 scope: 3 where the GPU has them
  std::printf("dense attention: tensor cores %s\n", tensor_cores ? "yes" : "no");
  struct Case {
    int64_t B, M, N, H, d;
    bool shared;
    int mask;  // 0: none, 1: random keys masked, 2: and row 0's every key masked
    bool odd = false;  // rows at strides that are not multiples of 4 floats (the 4-byte copies)
  };
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  for (const auto& c : std::vector<Case>{{2, 300, 70, 4, 16, false, 0}, {3, 257, 129, 2, 32, true, 2}, {1, 1000, 64, 4, 16, false, 1},
                                         {2, 5, 1, 4, 16, false, 0}, {4, 129, 200, 3, 16, true, 1}, {2, 64, 300, 2, 32, false, 2},
                                         {3, 70, 90, 2, 16, false, 1, true}, {2, 33, 65, 3, 32, true, 0, true}}) {
    const auto what = "dense B=" + std::to_string(c.B) + " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                      " H=" + std::to_string(c.H) + " d=" + std::to_string(c.d) + (c.shared ? " shared" : "") +
                      " mask=" + std::to_string(c.mask) + (c.odd ? " odd strides" : "");
    torch::manual_seed(uint64_t(c.B * 1000 + c.M + c.N));
    // With odd strides each row is a narrow view of a row one float wider.
    const auto row = [&](std::vector<int64_t> shape, double scale) {
      shape.back() += c.odd ? 1 : 0;
      auto t = scale * torch::randn(shape, opts);
      return (c.odd ? t.narrow(3, 0, c.d) : t).requires_grad_();
    };
    auto q0 = row({c.shared ? 1 : c.B, c.M, c.H, c.d}, 0.5);
    auto k = row({c.B, c.N, c.H, c.d}, 0.5);
    auto v = row({c.B, c.N, c.H, c.d}, 1.0);
    if (c.odd) expect(q0.stride(2) % 4 != 0 && k.stride(2) % 4 != 0, what + ": the strides are odd");
    auto q = c.shared ? q0.expand({c.B, c.M, c.H, c.d}) : q0;
    torch::Tensor mask;
    if (c.mask > 0) {
      mask = torch::rand({c.B, c.N}, opts) > 0.3;
      mask.select(1, 0).fill_(true);
      if (c.mask == 2) mask.select(0, 0).fill_(false);
    }
    auto w = torch::randn({c.B, c.M, c.H, c.d}, opts);
    torch::Tensor undropped;
    // Without dropout, then with dropout 0.3 drawn inside the kernels: the reference's weights times
    // the mask keep_mask_cuda writes for the same key.
    for (bool dropping : {false, true}) {
      const auto drop = dropping ? draw_kernel_dropout(0.3, torch::kCUDA, {}) : KernelDropout{};
      auto qd = q0.to(torch::kDouble), kd = k.to(torch::kDouble), vd = v.to(torch::kDouble);
      auto s = torch::einsum("bmhe,bnhe->bhmn", {qd.expand({c.B, c.M, c.H, c.d}), kd});
      if (mask.defined()) s = s.masked_fill(mask.view({c.B, 1, 1, c.N}).logical_not(), masked_score(torch::kFloat));
      auto weights = torch::softmax(s, -1);
      if (dropping) weights = weights * keep_mask_cuda({c.B, c.H, c.M, c.N}, drop).to(torch::kDouble);
      auto ref = torch::einsum("bhmn,bnhe->bmhe", {weights, vd});
      auto r = torch::autograd::grad({(ref * w.to(torch::kDouble)).sum()}, {qd, kd, vd});
      if (!dropping) undropped = ref.detach();
      // The FMA kernels, and on the tensor cores the split (float32's tolerances) and TensorFloat-32
      // (10-bit mantissas: a thousandth of the values' scale).
      for (int passes : tensor_cores ? std::vector<int>{0, 3, 1} : std::vector<int>{0}) {
        const auto kind = what + (dropping ? " dropout" : "") + " passes=" + std::to_string(passes);
        auto ours = dense_attention_cuda(q, k, v, mask, passes, drop);
        auto g = torch::autograd::grad({(ours * w).sum()}, {q0, k, v});
        const double vr = passes == 1 ? 5e-3 : 1e-4, va = passes == 1 ? 5e-3 : 1e-5;
        const double gr = passes == 1 ? 2e-2 : 1e-3, ga = passes == 1 ? 2e-2 : 1e-4;
        expect_close(ours, ref, vr, va, kind + ": values");
        expect_close(g[0], r[0], gr, ga, kind + ": dq");
        expect_close(g[1], r[1], gr, ga, kind + ": dk");
        expect_close(g[2], r[2], gr, ga, kind + ": dv");
        if (passes == 1) expect(!close(ours, ref, 1e-6, 1e-7), kind + ": differs from float32 (TensorFloat-32 ran)");
        if (dropping) expect(!close(ours, undropped, 1e-2, 1e-2), kind + ": differs from the output without dropout");
      }
    }
  }
  if (tensor_cores) {
    expect(dense_tensor_passes() == 3, "dense: float32 precision takes the split products");
    {
      MatmulPrecisionScope tf32(true);
      expect(dense_tensor_passes() == 1, "dense: under --precision tf32, TensorFloat-32");
    }
    expect(dense_tensor_passes() == 3, "dense: and the split again after the tf32 scope");
  }
  const auto zeros = torch::zeros({1, 4, 1, 16}, opts);
  expect(refuses<std::invalid_argument>([&] { dense_attention_cuda(zeros, zeros, zeros, {}, 2); }, "passes"),
         "dense: 2 tensor-core passes are refused with a message");
  auto q = torch::zeros({16, 300, 4, 16}, opts), kv = torch::zeros({16, 40, 4, 16}, opts);
  expect(use_cuda_dense_attention(q, kv, kv, {}), "dense: the kernels take 16 x 300 queries of 4 heads");
  expect(use_cuda_dense_attention(q, kv, kv, torch::ones({16, 40}, opts.dtype(torch::kBool))), "dense: and a [B,N] mask");
  expect(!use_cuda_dense_attention(q.narrow(1, 0, 100), kv, kv, {}), "dense: too few queries take the matmuls");
  expect(!use_cuda_dense_attention(q, kv, kv, torch::ones({16, 300, 40}, opts.dtype(torch::kBool))),
         "dense: a per-query mask takes the matmuls");
  expect(!use_cuda_dense_attention(q.view({16, 300, 8, 8}), kv.view({16, 40, 8, 8}), kv.view({16, 40, 8, 8}), {}),
         "dense: head dimension 8 takes the matmuls");
  expect(!use_cuda_dense_attention(q.to(torch::kBFloat16), kv.to(torch::kBFloat16), kv.to(torch::kBFloat16), {}),
         "dense: bfloat16 takes the matmuls");
  auto wide = torch::zeros({65536, 1, 1, 16}, opts);
  expect(!use_cuda_dense_attention(wide, wide, wide, {}), "dense: more than 65535 (row, head) pairs take the matmuls");

  // Through MultiHeadAttention::forward (attend_shared's hook), kernels on against off.
  torch::manual_seed(17);
  MultiHeadAttention mha(64, 4);
  mha->to(torch::kCUDA);
  auto query = torch::randn({16, 300, 64}, opts), context = torch::randn({16, 90, 64}, opts);
  auto keep = torch::rand({16, 90}, opts) > 0.2;
  keep.select(1, 0).fill_(true);
  auto run = [&](bool kernels) {
    set_cuda_kernels_enabled(kernels);
    mha->zero_grad();
    auto out = mha->forward(query, context, keep).out;
    (out * out).sum().backward();
    std::vector<torch::Tensor> grads{out.detach().clone()};
    for (const auto& p : mha->parameters()) grads.push_back(p.grad().clone());
    return grads;
  };
  auto on = run(true), off = run(false);
  set_cuda_kernels_enabled(true);
  expect_close(on[0], off[0], 1e-4, 1e-5, "dense through attend_shared: output");
  bool same = on.size() == off.size();
  for (std::size_t i = 1; same && i < on.size(); ++i) same = close(on[i], off[i], 1e-3, 1e-4);
  expect(same, "dense through attend_shared: every parameter's gradient");
}

// maybe_dropout's kernel (dropout_cuda): x times the mask keep_mask_cuda writes for the key, for a
// transposed x too, and its gradient through the same bits; maybe_dropout under one DropoutStream
// seed gives what keep_mask's mask gives (a tape's path), so runs with and without a tape agree; a
// float64 x is refused with a message.
void dropout_kernel_applies_the_keep_mask() {
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  const double p = 0.25;
  const auto drop = draw_kernel_dropout(p, torch::kCUDA, {});
  const auto base = torch::randn({70, 33, 64}, opts);
  for (bool transposed : {false, true}) {
    auto x = (transposed ? base.transpose(0, 1) : base).detach().requires_grad_();
    const auto what = std::string("dropout kernel") + (transposed ? ", a transposed input" : "");
    const auto mask = keep_mask_cuda(x.sizes(), drop);
    auto out = dropout_cuda(x, drop);
    expect(torch::equal(out, x.detach() * mask), what + ": x times the key's keep mask");
    expect((out == 0).to(torch::kDouble).mean().item<double>() > 0.2, what + ": about p of x dropped");
    auto w = torch::randn(x.sizes(), opts);
    auto g = torch::autograd::grad({(out * w).sum()}, {x})[0];
    expect(torch::equal(g, w * mask), what + ": the gradient through the same bits");
  }
  expect(use_cuda_dropout(base) && !use_cuda_dropout(base.to(torch::kDouble)) && !use_cuda_dropout(base.cpu()),
         "dropout kernel: taken for float32 CUDA tensors only");
  torch::Tensor fused, masked;
  {
    DropoutStream stream(5);
    DropoutScope scope(stream);
    fused = maybe_dropout(base, p);
  }
  {
    DropoutStream stream(5);
    DropoutScope scope(stream);
    masked = base * keep_mask(base.sizes(), p, base.options());
  }
  expect(torch::equal(fused, masked), "dropout kernel: maybe_dropout's kernel and keep_mask's mask agree for a seed");
  expect(refuses<std::invalid_argument>([&] { dropout_cuda(base.to(torch::kDouble), drop); }, "float32"),
         "dropout kernel: a float64 tensor is refused with a message");
}

// Dropout drawn inside the dense kernels (their arithmetic: dense_attention_kernels_match_the_tensor_path):
// the mask keep_mask_cuda writes for a key is the CPU's keep_mask_for_key for it (the same hash) and
// keeps about 1 - p; a key that is not one int64 is refused; through attend_shared, one
// DropoutStream seed gives one output twice, another seed another.
void dense_attention_dropout_draws_from_its_key() {
  auto opts = torch::TensorOptions().device(torch::kCUDA);
  const double p = 0.3;
  {
    auto drop = draw_kernel_dropout(p, torch::kCUDA, {});
    const auto key = std::uint64_t(drop.key.item<std::int64_t>());
    auto gpu = keep_mask_cuda({3, 5, 70, 131}, drop);
    auto cpu = keep_mask_for_key({3, 5, 70, 131}, key, p);
    expect(torch::equal(gpu.cpu(), cpu), "kernel dropout: the GPU's mask for a key is the CPU's");
    const double kept = (gpu > 0).to(torch::kDouble).mean().item<double>();
    std::printf("kernel dropout: key %llx keeps %.4f of 137550 (1 - p = %.2f)\n", (unsigned long long)key, kept, 1 - p);
    expect(std::abs(kept - (1 - p)) < 0.01, "kernel dropout: the mask keeps about 1 - p");
    auto other = draw_kernel_dropout(p, torch::kCUDA, {});
    expect(!torch::equal(keep_mask_cuda({3, 5, 70, 131}, other), gpu), "kernel dropout: a second key, another mask");
  }
  const auto z = torch::zeros({1, 4, 1, 16}, opts);
  expect(refuses<std::invalid_argument>(
             [&] { dense_attention_cuda(z, z, z, {}, 0, KernelDropout{torch::zeros({1}, opts), 0.1}); }, "int64"),
         "kernel dropout: a float key is refused with a message");

  // Through MultiHeadAttention::forward in training: the kernels draw from the DropoutStream.
  torch::manual_seed(23);
  MultiHeadAttention mha(64, 4);
  mha->dropout = 0.2;
  mha->to(torch::kCUDA);
  mha->train();
  auto query = torch::randn({16, 300, 64}, opts), context = torch::randn({16, 90, 64}, opts);
  expect(use_cuda_dense_attention(query.view({16, 300, 4, 16}), context.view({16, 90, 4, 16}),
                                  context.view({16, 90, 4, 16}), {}),
         "kernel dropout: the attention below takes the dense kernels");
  auto run = [&](std::uint64_t seed) {
    DropoutStream stream(seed);
    DropoutScope scope(stream);
    return mha->forward(query, context).out.detach().clone();
  };
  auto a = run(5), b = run(5), other = run(6);
  expect(torch::equal(a, b), "kernel dropout through attend_shared: one seed, one output");
  expect(!close(a, other, 1e-3, 1e-3), "kernel dropout through attend_shared: another seed, another output");
}

// The linear layer whose bias gradient is one kernel, against torch::linear: contiguous and
// transposed inputs, widths that are and are not multiples of a warp; few rows are refused.
void linear_kernel_matches_torch() {
  struct Case {
    int64_t rows, in, out;
    bool transposed;
  };
  // 4100 rows: the weight gradient's last part and its last 32 rows are short (weight_grad, kernels.h).
  for (const auto& c : std::vector<Case>{{4096, 64, 256, false}, {5000, 48, 96, true}, {70 * 64, 64, 10, false}, {131072, 64, 64, false}, {8192, 32, 300, true}, {4100, 128, 64, false}}) {
    const auto what = "linear rows=" + std::to_string(c.rows) + " " + std::to_string(c.in) + "->" + std::to_string(c.out) +
                      (c.transposed ? " (transposed input)" : "");
    torch::manual_seed(uint64_t(c.rows + c.in + c.out));
    auto x = c.transposed       ? torch::randn({c.in, 64, c.rows / 64}, torch::kCUDA).permute({2, 1, 0})
             : c.rows % 64 == 0 ? torch::randn({c.rows / 64, 64, c.in}, torch::kCUDA)
                                : torch::randn({c.rows, c.in}, torch::kCUDA);
    x.requires_grad_();
    auto weight = (0.1 * torch::randn({c.out, c.in}, torch::kCUDA)).requires_grad_();
    auto bias = torch::randn({c.out}, torch::kCUDA).requires_grad_();
    auto out_sizes = x.sizes().vec();
    out_sizes.back() = c.out;
    auto w = torch::randn(out_sizes, torch::kCUDA);
    expect(use_cuda_linear(x, weight, bias), what + ": the kernel takes it");
    auto ours = linear_cuda(x, weight, bias);
    auto g = torch::autograd::grad({(ours * w).sum()}, {x, weight, bias});
    auto ref = torch::linear(x, weight, bias);
    auto r = torch::autograd::grad({(ref * w).sum()}, {x, weight, bias});
    expect_close(ours, ref, 1e-5, 1e-5, what + ": values");
    expect_close(g[0], r[0], 1e-4, 1e-4, what + ": dx");
    expect_close(g[1], r[1], 1e-3, 1e-2, what + ": dweight");
    expect_close(g[2], r[2], 1e-3, 1e-2, what + ": dbias");
  }
  // paired_linear's backward on the GPU (its weight and bias halves by weight_grad above
  // kCudaLinearMinRows rows, by cuBLAS and PyTorch's sum below), against two torch::linear on the
  // weight's row blocks.
  for (int64_t rows : {int64_t(8192), int64_t(640)}) {
    const auto what = "paired linear rows=" + std::to_string(rows);
    torch::manual_seed(uint64_t(rows));
    auto x = torch::randn({rows / 64, 64, 64}, torch::kCUDA).requires_grad_();
    auto weight = (0.1 * torch::randn({256, 64}, torch::kCUDA)).requires_grad_();
    auto bias = torch::randn({256}, torch::kCUDA).requires_grad_();
    auto c0 = torch::randn({rows / 64, 64, 128}, torch::kCUDA), c1 = torch::randn({rows / 64, 64, 128}, torch::kCUDA);
    auto [y0, y1] = paired_linear(x, weight, bias);
    auto g = torch::autograd::grad({(y0 * c0).sum() + (y1 * c1).sum()}, {x, weight, bias});
    auto r0 = torch::linear(x, weight.narrow(0, 0, 128), bias.narrow(0, 0, 128));
    auto r1 = torch::linear(x, weight.narrow(0, 128, 128), bias.narrow(0, 128, 128));
    auto r = torch::autograd::grad({(r0 * c0).sum() + (r1 * c1).sum()}, {x, weight, bias});
    expect_close(y0, r0, 1e-5, 1e-5, what + ": first half");
    expect_close(y1, r1, 1e-5, 1e-5, what + ": second half");
    expect_close(g[0], r[0], 1e-4, 1e-4, what + ": dx");
    expect_close(g[1], r[1], 1e-3, 1e-2, what + ": dweight");
    expect_close(g[2], r[2], 1e-3, 1e-2, what + ": dbias");
  }
  auto few = torch::randn({100, 64}, torch::kCUDA), weight = torch::randn({8, 64}, torch::kCUDA);
  expect(!use_cuda_linear(few, weight, torch::randn({8}, torch::kCUDA)), "linear: 100 rows take torch::linear");
  auto many = torch::randn({kCudaLinearMinRows, 64}, torch::kCUDA);
  expect(!use_cuda_linear(many, weight, torch::Tensor()), "linear: no bias takes torch::linear");
}

// rows_product (rows_matmul, three TensorFloat-32 passes on the tensor cores) against exact (float64)
// products, each element within 4e-6 of its sum of absolute terms (the kernel's worst on an H100,
// December 7: 1.0e-6 at K = 256; a wrong element is off by about its whole size): a linear layer's
// forward (w [N,K]) with and without a bias, its input gradient (w [K,N]), added into an output,
// rows that end inside a tile (4100; 70001, where a block streams over several tiles), and widths the
// kernel does not take (torch's product then).
void rows_product_matches_torch() {
  constexpr double kRel = 4e-6;
  struct Case {
    int64_t rows, k, n;
  };
  const auto f64 = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
  const std::vector<Case> cases{{4096, 64, 64}, {4100, 128, 64}, {131072, 64, 128}, {70001, 64, 64},
                                {8192, 256, 256}, {5000, 32, 192}, {4096, 48, 64}, {4096, 64, 10}};
#ifdef RETREEVER_CUDA
  // The cases reach both of rows_matmul's kernels (kernels.cu, rows_matmul_choice) in both layouts of w.
  for (const bool transposed : {true, false}) {
    std::set<cuda::RowsMatmulKernel> chosen;
    for (const auto& c : cases) {
      cuda::RowsMatmulArgs a;
      a.R = c.rows, a.K = c.k, a.N = c.n, a.transposed_w = transposed;
      chosen.insert(cuda::rows_matmul_choice(a));
    }
    expect(chosen.size() == 2, std::string("rows product: the cases reach both kernels, w ") +
                                   (transposed ? "[N,K]" : "[K,N]"));
  }
#endif
  for (const auto& c : cases) {
    const auto what = "rows product rows=" + std::to_string(c.rows) + " " + std::to_string(c.k) + "->" + std::to_string(c.n);
    torch::manual_seed(uint64_t(c.rows + 7 * c.k + c.n));
    auto x = torch::randn({c.rows, c.k}, torch::kCUDA);
    auto w = 0.1 * torch::randn({c.n, c.k}, torch::kCUDA), bias = torch::randn({c.n}, torch::kCUDA);
    auto wkn = w.t().contiguous();
    const auto ref = torch::mm(f64(x), f64(wkn)), terms = torch::mm(f64(x).abs(), f64(wkn).abs());
    expect_within_terms(rows_product(x, w, bias, true), ref + f64(bias), terms + f64(bias).abs(), kRel, what + ": x w^T + bias");
    expect_within_terms(rows_product(x, w, {}, true), ref, terms, kRel, what + ": x w^T");
    expect_within_terms(rows_product(x, wkn, {}, false), ref, terms, kRel, what + ": x w");
    auto into = torch::randn({c.rows, c.n}, torch::kCUDA);
    const auto before = f64(into);
    auto added = rows_product(x, wkn, {}, false, into);
    expect(added.data_ptr() == into.data_ptr(), what + ": added into the given output");
    expect_within_terms(into, before + ref, terms + before.abs(), kRel, what + ": x w added");
  }
  // A batch of rows (x [B, M, K]) keeps its leading sizes.
  auto x = torch::randn({64, 128, 64}, torch::kCUDA), w = torch::randn({64, 64}, torch::kCUDA);
  auto y = rows_product(x, w, {}, true);
  expect(y.sizes() == torch::IntArrayRef({64, 128, 64}), "rows product: [B, M, K] in, [B, M, N] out");
  expect_within_terms(y, torch::matmul(f64(x), f64(w).t()), torch::matmul(f64(x).abs(), f64(w).abs().t()), kRel,
                      "rows product: batched rows");
}

// The GEGLU kernels (four floats a thread, or one where the size or an address does not allow it)
// against value * gelu(gate) by PyTorch's operations.
void geglu_kernels_match_torch() {
  struct Case {
    int64_t n;
    int64_t offset;  // of the inputs within their storage: 1 misaligns them
  };
  for (const auto& c : std::vector<Case>{{4096 * 128, 0}, {1003, 0}, {4096, 1}, {4, 0}}) {
    const auto what = "geglu n=" + std::to_string(c.n) + (c.offset ? " misaligned" : "");
    torch::manual_seed(uint64_t(c.n + c.offset));
    auto value = torch::randn({c.n + c.offset}, torch::kCUDA).narrow(0, c.offset, c.n).detach().requires_grad_();
    auto gate = (4 * torch::randn({c.n + c.offset}, torch::kCUDA)).narrow(0, c.offset, c.n).detach().requires_grad_();
    auto w = torch::randn({c.n}, torch::kCUDA);
    expect(use_cuda_geglu(value, gate), what + ": the kernel takes it");
    auto ours = geglu_cuda(value, gate);
    auto g = torch::autograd::grad({(ours * w).sum()}, {value, gate});
    auto ref = value * torch::gelu(gate);
    auto r = torch::autograd::grad({(ref * w).sum()}, {value, gate});
    expect_close(ours, ref, 1e-5, 1e-6, what + ": values");
    expect_close(g[0], r[0], 1e-5, 1e-6, what + ": d_value");
    expect_close(g[1], r[1], 1e-4, 1e-5, what + ": d_gate");
  }
  auto a = torch::randn({8, 8}, torch::kCUDA);
  expect(!use_cuda_geglu(a, a.t()), "geglu: a transposed gate takes PyTorch's operations");
  expect(!use_cuda_geglu(a, torch::randn({8, 2}, torch::kCUDA)), "geglu: two shapes take PyTorch's operations");
}

void low_precision_masks_stay_finite_on_the_gpu() {
  // float16 and bfloat16 scores with masked keys and a row with every key masked (blocks.h:
  // masked_score): no NaN, uniform over an all-masked row, finite log-probabilities.
  for (auto t : {torch::kHalf, torch::kBFloat16}) {
    auto scores = (3 * torch::randn({4, 5, 6, 2}, torch::kCUDA)).to(t);
    auto mask = torch::rand({4, 5, 6}, torch::kCUDA) > 0.5;
    mask[0][0].fill_(false);
    auto w = MultiHeadAttentionImpl::head_averaged_weights(scores, mask).to(torch::kFloat);
    auto lw = MultiHeadAttentionImpl::head_averaged_log_weights(scores, mask).to(torch::kFloat);
    const std::string what = std::string("masked weights in ") + c10::toString(t);
    expect(!torch::isnan(w).any().item<bool>(), what + ": no NaN");
    expect(torch::allclose(w[0][0], torch::full({6}, 1.0 / 6, w.options()), 1e-2, 1e-2), what + ": all-masked row uniform");
    expect(torch::isfinite(lw).all().item<bool>(), what + ": finite log-probabilities");
    expect(torch::isfinite(-(lw.exp() * lw).sum()).item<bool>(), what + ": finite entropy");
  }
}

}  // namespace

// Data parallel over NCCL (without Gloo, as in a PyTorch wheel): a group of one on this GPU joins
// through a store file, and its collectives run on the GPU. NCCL refuses two ranks on one GPU, so a
// run of several ranks needs a machine with several.
void nccl_group_joins_and_reduces_on_the_gpu() {
  auto& c = retreever::testing::checks();
  const auto why = retreever::distributed_unsupported_reason("nccl");
  c.expect(why.empty(), "this build has NCCL support (" + why + ")");
  if (!why.empty()) return;
  retreever::DistributedSetup s;
  s.backend = "nccl";
  s.store_file = "/tmp/retreever-test-nccl-" + std::to_string(::getpid());
  s.timeout_seconds = 60;
  try {
    auto group = retreever::join_process_group(s);
    auto t = torch::arange(6, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32));
    const auto before = t.clone();
    group->all_reduce_sum(t);
    c.expect(torch::equal(t, before), "NCCL all-reduce over one rank keeps the tensor");
    c.expect(group->any(true) && !group->any(false), "NCCL any()");
  } catch (const std::exception& e) {
    c.expect(false, std::string("NCCL group of one: ") + e.what());
  }
  std::remove(s.store_file.c_str());
}

// GP's batches with their context cut to one of three sizes in turn: a task whose shapes come back,
// so that several graphs are captured into the shared pool and replayed interleaved.
class ThreeShapes : public Task {
 public:
  explicit ThreeShapes(const Config& c) : gp_(datasets::make_task(c)) {}
  TaskSpec spec() const override { return gp_->spec(); }
  Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const override {
    auto b = gp_->sample(batch, seed, evaluation);
    if (evaluation) return b;
    const std::int64_t keep = std::min<std::int64_t>(b.xc.size(1), 3 + std::int64_t(seed % 3));
    b.xc = b.xc.narrow(1, 0, keep).contiguous();
    b.yc = b.yc.narrow(1, 0, keep).contiguous();
    b.xt = b.xt.narrow(1, 0, 3).contiguous();
    b.yt = b.yt.narrow(1, 0, 3).contiguous();
    return b;
  }

 private:
  std::unique_ptr<Task> gp_;
};

// Training steps replayed from CUDA graphs against the same steps run eagerly: the same losses,
// gradient norms and evaluation step for step, on the copy task (one batch shape: every step after
// the first replays), on GP (context sizes vary: shapes met twice are captured, the rest eager) and
// on three shapes in turn (three graphs in one pool, replayed interleaved), with the policy's
// draws, L_CA and clipping, and TCA and CA; and in bf16 (autocast inside the graph, its weight cache
// off), where bfloat16's rounding turns the atomic sums' order into differences of a few 1e-3.
void training_steps_replay_from_cuda_graphs() {
  struct Case {
    std::string task, model, precision;
  };
  for (const auto& [task, model, precision] : {Case{"copy", "tca", "fp32"}, Case{"copy", "ca", "fp32"},
                                               Case{"gp", "tca", "fp32"}, Case{"three shapes", "tca", "fp32"},
                                               Case{"copy", "tca", "bf16"}, Case{"gp", "tca", "bf16"}}) {
    auto c = retreever::testing::small_config(task == "copy" ? "copy" : "gp", model);
    c.device = "cuda";
    c.precision = precision;
    c.dropout = 0;  // dropout's masks under graphs: dropout_on_the_gpu_is_reproducible
    c.steps = 12;
    c.grad_clip = 0.5;  // clipping inside the graph takes part
    TaskFactory tasks = datasets::make_task;
    if (task == "three shapes") tasks = [](const Config& cfg) -> std::unique_ptr<Task> { return std::make_unique<ThreeShapes>(cfg); };
    std::vector<StepMetrics> runs[2];
    EvalMetrics evals[2];
    std::string summary;
    for (int graphs = 0; graphs < 2; ++graphs) {
      set_cuda_graphs_enabled(graphs == 1);
      Trainer t(c, tasks);
      for (int i = 0; i < 12; ++i) runs[graphs].push_back(t.step());
      evals[graphs] = t.evaluate();
      summary = t.graph_summary();
    }
    set_cuda_graphs_enabled(true);
    const std::string what = task + "/" + model + " " + precision + " graphs vs eager";
    const double tolerance = precision == "bf16" ? 2e-2 : 1e-3;
    std::printf("%s: %s\n", what.c_str(), summary.c_str());
    double worst = 0;
    for (int i = 0; i < 12; ++i)
      for (auto f : {&StepMetrics::loss, &StepMetrics::grad_norm, &StepMetrics::tca_loss, &StepMetrics::train_metric}) {
        const double a = runs[0][i].*f, b = runs[1][i].*f;
        worst = std::max(worst, std::abs(a - b) / std::max(1e-3, std::abs(a)));
      }
    std::printf("  largest relative difference over 12 steps: %.2e\n", worst);
    expect(worst < tolerance, what + ": losses and gradient norms step for step");
    expect(std::abs(evals[0].value - evals[1].value) <= tolerance * std::max(1.0, std::abs(evals[0].value)),
           what + ": the evaluation after 12 steps");
    if (task == "copy") expect(summary.rfind("11 steps replayed from 1 CUDA graph, 1 eager", 0) == 0, what + ": " + summary);
    // Seeds fall on the three sizes in no set order: at least two shapes come back within 12 steps.
    if (task == "three shapes") expect(summary.find("CUDA graphs,") != std::string::npos && summary.rfind("0 ", 0) != 0, what + ": " + summary);
    expect(summary.find("failed") == std::string::npos, what + ": no capture failed (" + summary + ")");
  }
}

// The copy preset trains with dropout: on the GPU its masks come from the trainer's DropoutStream (a
// clone of the CUDA generator, registered with the step's CUDA graph), so steps replayed from a
// graph equal eager steps, two runs of one seed are equal step for step (up to the order of the
// atomic sums in the read of S's backward kernel), resuming from a checkpoint continues them and
// another seed differs.
// CA's run is large enough for the dense kernels (B H M >= kCudaDenseMinQueries), which draw their
// masks inside the kernel from a key drawn in the graph.
void dropout_on_the_gpu_is_reproducible(const std::string& model) {
  auto c = retreever::testing::small_config("copy", model);
  c.device = "cuda";
  if (model == "ca") {
    c.d_model = 32;  // heads of 16: the dense kernels' head dimension
    c.seq_len = 128;
    c.batch = 128;  // 128 rows, 2 heads, 64 queries: 16384
  }
  c.steps = 8;
  expect(c.dropout > 0, "the copy preset trains with dropout");
  auto losses = [&](const Config& cfg, int n) {
    Trainer t(cfg, datasets::make_task);
    std::vector<double> l;
    for (int i = 0; i < n; ++i) l.push_back(t.step().loss);
    return std::make_pair(l, t.graph_summary());
  };
  const auto [a, summary] = losses(c, 6);
  std::printf("dropout on the GPU (%s), graphs on: %s\n", model.c_str(), summary.c_str());
  expect(summary.rfind("5 steps replayed from 1 CUDA graph, 1 eager", 0) == 0, "dropout steps replay from a graph: " + summary);
  auto difference = [&](const std::vector<double>& x) {  // the largest relative difference from a
    double worst = 0;
    for (int i = 0; i < 6; ++i) worst = std::max(worst, std::abs(a[i] - x[i]) / std::max(1e-3, std::abs(x[i])));
    return worst;
  };
  const double again = difference(losses(c, 6).first);
  std::printf("  dropout, one seed twice: largest relative difference over 6 steps %.2e\n", again);
  expect(again < 1e-4, "dropout on the GPU: one seed, the same losses step for step");
  set_cuda_graphs_enabled(false);
  const double eager = difference(losses(c, 6).first);
  set_cuda_graphs_enabled(true);
  std::printf("  dropout, graphs vs eager: largest relative difference over 6 steps %.2e\n", eager);
  expect(eager < 1e-4, "dropout on the GPU: replayed steps draw the eager steps' masks");
  Config other = c;
  other.seed = c.seed + 1;
  expect(difference(losses(other, 6).first) > 1e-3, "dropout on the GPU: another seed, other losses");
  Trainer first(c, datasets::make_task);
  for (int i = 0; i < 3; ++i) first.step();
  const auto path = std::filesystem::temp_directory_path() / "retreever_dropout_cuda.safetensors";
  first.save(path.string());
  auto resumed = Trainer::load(path.string(), datasets::make_task);
  const double x = first.step().loss, y = resumed->step().loss;
  expect(std::abs(x - a[3]) <= 1e-4 * std::abs(a[3]) && std::abs(y - a[3]) <= 1e-4 * std::abs(a[3]),
         "dropout on the GPU: a resumed run draws the uninterrupted run's masks");
  std::filesystem::remove(path);
}

int main() {
  if (!torch::cuda::is_available()) {
    std::printf("SKIPPED: no CUDA device (the CUDA kernel tests need a GPU)\n");
    return 77;
  }
  if (!cuda_kernels_available()) {
    std::printf("SKIPPED: built without the CUDA kernels (RETREEVER_CUDA off: no nvcc or a CPU LibTorch)\n");
    return 77;
  }
  group_attention_matches_the_tensor_path();
  group_attention_with_dropout_matches_the_tensor_path();
  aggregator_dropout_is_the_same_with_and_without_kernels();
  tree_cross_attention_kernels_match_the_tensor_path();
  greedy_walk_on_the_gpu_matches_the_cpu_kernel();
  scaling_points_replay_from_cuda_graphs();
  batched_tree_on_the_gpu_matches_the_cpu_build();
  dropout_tree_on_the_gpu_keeps_its_parents();
  layer_norm_kernels_match_torch();
  softmax_kernel_matches_torch();
  dense_attention_kernels_match_the_tensor_path();
  dense_attention_dropout_draws_from_its_key();
  dropout_kernel_applies_the_keep_mask();
  linear_kernel_matches_torch();
  rows_product_matches_torch();
  geglu_kernels_match_torch();
  low_precision_masks_stay_finite_on_the_gpu();
  nccl_group_joins_and_reduces_on_the_gpu();
  training_steps_replay_from_cuda_graphs();
  dropout_on_the_gpu_is_reproducible("tca");
  dropout_on_the_gpu_is_reproducible("ca");
  // --precision bf16 on the GPU: autocast against float32, training steps, the decoders converted to
  // bfloat16 (the kernels are float32 only: TCA takes the tensor paths there).
  retreever::testing::bf16_checks(torch::Device(torch::kCUDA));
  // --precision tf32: matrix products on TensorFloat-32 tensor cores, training steps against fp32.
  retreever::testing::tf32_checks(torch::Device(torch::kCUDA));
  running_out_of_gpu_memory_is_a_clear_error();  // last: it leaves the allocator's cache empty
  return retreever::testing::checks().summary();
}
