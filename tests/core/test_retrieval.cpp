// Retrieval (Algorithm 1): the selected set covers every real token exactly once with
// k(b-1)+P nodes, the decoder attends exactly to it, greedy retrieval is deterministic, a
// one-group tree equals its all-leaves path, L_RL's gradients go where they should, and the CPU's
// walk kernel chooses what the tensor walk chooses.
#include <QtTest>
#include <set>
#include <torch/torch.h>

#include "core/decoders/tree_cross_attention.h"
#include "core/decoders/tree_walk.h"
#include "core/decoders/treeformer.h"
#include "core/inspection.h"
#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/training/checkpoint.h"
#include "datasets/tasks.h"

#include "tests/small_config.h"

using namespace retreever;

namespace {

Config small_config(int64_t seq_len, int64_t b) {
  Config c = retreever::testing::small_config("copy");
  c.seq_len = seq_len;
  c.branch_factor = b;
  c.batch = 4;
  c.eval_batch = 3;
  return c;
}

Snapshot untrained(const Config& c, uint64_t seed) {
  torch::manual_seed(seed);
  auto task = datasets::make_task(c);
  ReTreever model(c, task->spec());
  return Snapshot{c, serialize_parameters(*model), 0};
}

std::shared_ptr<CrossAttentionBlockImpl> block_of(TreeCrossAttentionImpl& tca) {
  return std::dynamic_pointer_cast<CrossAttentionBlockImpl>(tca.named_children()["block"]);
}

}  // namespace

class TestRetrieval : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  // The copy task's targets: from_zero (the reference code) encodes target j at position j whatever
  // the context's length; after_context at position N + j, after the N context tokens.
  void query_positions_count_from_zero_or_after_the_context() {
    auto c = small_config(8, 2);  // 4 context tokens, 4 targets
    auto task = datasets::make_task(c);
    const auto batch = task->sample(2, 5, true);
    auto longer = batch;  // the same targets after a context twice as long
    longer.xc = torch::cat({batch.xc, batch.xc}, 1);
    auto eight = batch;  // 8 targets: positions 0..7 from zero
    eight.xt = torch::cat({batch.xt, batch.xt}, 1);
    auto model_with = [&](const std::string& positions) {
      Config m = c;
      m.query_positions = positions;
      torch::manual_seed(3);
      ReTreever model(m, task->spec());
      model->eval();
      return model;
    };
    torch::NoGradGuard no_grad;
    auto from_zero = model_with("from_zero"), after = model_with("after_context");
    const auto q = from_zero->embed_queries(batch);
    QVERIFY(torch::equal(q, from_zero->embed_queries(longer)));
    QVERIFY(torch::allclose(after->embed_queries(batch), from_zero->embed_queries(eight).narrow(1, 4, 4), 1e-6, 1e-6));
    QVERIFY(!torch::allclose(after->embed_queries(batch), q, 1e-3, 1e-3));
    QVERIFY(!torch::allclose(after->embed_queries(batch), after->embed_queries(longer), 1e-3, 1e-3));
  }

  // The copy task's rows ask the same queries, so the query embedder runs on one row; under dropout
  // each row still draws its own mask before the position MLP. The shared path gives what embedding
  // every row does (values and the embedder's gradients), and its rows differ.
  void shared_queries_embed_once_and_drop_per_row() {
    auto c = small_config(8, 2);
    c.dropout = 0.3;
    auto task = datasets::make_task(c);
    const auto shared = task->sample(3, 5, true);
    QVERIFY(shared.shared_targets);
    auto each = shared;
    each.shared_targets = false;
    torch::manual_seed(3);
    ReTreever model(c, task->spec());
    model->train();
    auto embed = [&](const Batch& batch) {
      DropoutStream stream(11);
      DropoutScope scope(stream);
      model->zero_grad();
      auto q = model->embed_queries(batch);
      q.pow(2).sum().backward();
      std::vector<torch::Tensor> grads;
      for (const auto& p : model->named_parameters())
        if (p.key().rfind("query_", 0) == 0) grads.push_back(p.value().grad().clone());
      return std::make_pair(q.detach(), grads);
    };
    const auto [q_shared, g_shared] = embed(shared);
    const auto [q_each, g_each] = embed(each);
    QVERIFY(torch::allclose(q_shared, q_each, 1e-6, 1e-6));
    QCOMPARE(g_shared.size(), g_each.size());
    QVERIFY(!g_shared.empty());
    for (std::size_t i = 0; i < g_shared.size(); ++i)
      QVERIFY(torch::allclose(g_shared[i], g_each[i], 1e-5, 1e-5));
    QVERIFY(!torch::allclose(q_shared[0], q_shared[1], 1e-3, 1e-3));  // a mask a row
    model->eval();
    torch::NoGradGuard no_grad;
    const auto q = model->embed_queries(shared);
    QVERIFY(torch::equal(q[0], q[1]));
    QCOMPARE(q.stride(0), std::int64_t(0));  // one row, shared
  }

  // N = 5, b = 2: leaf groups {0,1} {2,3} {4,pad} {pad,pad}. A query led to group 2 has the all-padding
  // group 3 beside it: "zero" keeps it in S (a zero key: score 0, a zero value), "masked" leaves it
  // out. Every other query reads the same S either way, and both walks agree.
  void padding_siblings_stay_in_s_as_zero_vectors_or_are_masked() {
    torch::manual_seed(11);
    auto tca = std::make_shared<TreeCrossAttentionImpl>(16, 2, 32, 2, 1, false, "given", false,
                                                        BlockStyle::reference(true), true);
    tca->eval();
    torch::NoGradGuard no_grad;
    auto memory = tca->prepare(torch::randn({1, 5, 16}), torch::randn({1, 5, 1}));
    const auto queries = torch::randn({1, 256, 16});
    DecodeRequest request;
    request.trace = true;
    tca->zero_padding_siblings(false);
    auto masked = tca->decode(*memory, queries, request);
    tca->zero_padding_siblings(true);
    auto zero = tca->decode(*memory, queries, request);
    tca->use_walk_kernel(false);
    auto zero_tensor_walk = tca->decode(*memory, queries, request);
    QVERIFY(torch::allclose(zero.encoding, zero_tensor_walk.encoding, 1e-5, 1e-6));
    QVERIFY(torch::equal(zero.trace.path, masked.trace.path));
    auto beside_padding = masked.trace.path.select(2, 1).eq(2);  // level 2's node 2: group 2
    const auto n = beside_padding.sum().item<int64_t>();
    QVERIFY2(n > 0 && n < 256, "the queries reach group 2 and other groups");
    auto change = (zero.encoding - masked.encoding).abs().amax(-1);
    QVERIFY(change.masked_select(beside_padding).min().item<double>() > 1e-4);
    QCOMPARE(change.masked_select(beside_padding.logical_not()).max().item<double>(), 0.0);
  }

  void selected_set_covers_every_real_token_once() {
    for (int64_t b : {2, 3, 4})
      for (int64_t len : {5, 8, 13, 40, 67}) {
        auto c = small_config(len, b);
        Inspector inspector(untrained(c, uint64_t(len * 10 + b)), datasets::make_task);
        for (int64_t sample = 0; sample < inspector.samples(); ++sample)
          for (int64_t q = 0; q < inspector.queries(sample); ++q) {
            auto r = inspector.inspect(sample, q);
            QVERIFY(r.has_tree);
            QCOMPARE(int64_t(r.trace.selected.size()), r.shape.k * (b - 1) + r.shape.p);
            QCOMPARE(int64_t(r.trace.selected.size()), r.tokens_per_query);
            std::multiset<int64_t> covered;
            for (auto id : r.trace.selected)
              for (auto leaf : r.nodes.at(id).leaves) covered.insert(leaf);
            QCOMPARE(int64_t(covered.size()), r.context_size);
            for (int64_t i = 0; i < r.context_size; ++i) QCOMPARE(int64_t(covered.count(i)), int64_t(1));
            // The path walks from the root, one level at a time, parent to child.
            QCOMPARE(int64_t(r.trace.path.size()), r.shape.k + 1);
            QCOMPARE(r.trace.path.front(), int64_t(0));
            for (size_t i = 1; i < r.trace.path.size(); ++i)
              QCOMPARE(r.nodes[r.trace.path[i]].parent, r.trace.path[i - 1]);
            for (const auto& p : r.trace.probabilities) {
              double sum = 0;
              for (double x : p) sum += x;
              QVERIFY(std::abs(sum - 1) < 1e-5);
            }
          }
      }
  }

  void decoder_attends_exactly_to_the_selected_set() {
    torch::manual_seed(11);
    for (int64_t b : {2, 3}) {
      TreeCrossAttentionImpl tca(16, 2, 32, b, 1, false, "given");
      tca.eval();
      torch::NoGradGuard no_grad;
      const int64_t B = 2, N = 21, M = 6;
      auto context = torch::randn({B, N, 16});
      auto queries = torch::randn({B, M, 16});
      auto memory = tca.prepare(context, torch::zeros({B, N, 1}));
      DecodeRequest request;
      request.trace = true;
      auto out = tca.decode(*memory, queries, request);
      const auto& tree = static_cast<const TreeMemory&>(*memory).tree;
      const auto& s = tree.shape;
      auto block = block_of(tca);
      for (int64_t r = 0; r < B; ++r)
        for (int64_t m = 0; m < M; ++m) {
          std::vector<torch::Tensor> nodes, keep;
          int64_t parent = 0;
          for (int64_t l = 1; l <= s.k; ++l) {
            const auto chosen = out.trace.path[r][m][l - 1].item<int64_t>();
            for (int64_t c = parent * b; c < parent * b + b; ++c)
              if (c != chosen) {
                nodes.push_back(tree.nodes[l - 1][r][c]);
                keep.push_back(tree.masks[l - 1][r][c]);
              }
            parent = chosen;
          }
          for (int64_t j = parent * s.p; j < parent * s.p + s.p; ++j) {
            nodes.push_back(tree.leaves()[r][j]);
            keep.push_back(tree.leaf_mask()[r][j]);
          }
          QCOMPARE(int64_t(nodes.size()), s.tokens_per_query());
          auto expected = block->forward(queries[r][m].view({1, 1, 16}), torch::stack(nodes).unsqueeze(0),
                                         torch::stack(keep).unsqueeze(0));
          QVERIFY(torch::allclose(expected[0][0], out.encoding[r][m], 1e-5, 1e-5));
        }
    }
  }

  void greedy_retrieval_is_deterministic() {
    auto c = small_config(40, 2);
    Inspector a(untrained(c, 5), datasets::make_task), b(untrained(c, 5), datasets::make_task);
    for (int64_t q = 0; q < a.queries(0); ++q) {
      auto x = a.inspect(0, q), y = b.inspect(0, q), z = a.inspect(0, q);
      QCOMPARE(x.to_json(), y.to_json());
      QCOMPARE(x.to_json(), z.to_json());
    }
    // Sampling differs from greedy for some query when the policy is uncertain (it is at init).
    torch::manual_seed(1);
    TreeCrossAttentionImpl tca(16, 2, 32, 2, 1, false, "given");
    auto memory = tca.prepare(torch::randn({1, 64, 16}), torch::zeros({1, 64, 1}));
    auto queries = torch::randn({1, 256, 16});
    DecodeRequest greedy, sample;
    greedy.trace = sample.trace = true;
    sample.retrieval = Retrieval::Sample;
    auto g1 = tca.decode(*memory, queries, greedy), g2 = tca.decode(*memory, queries, greedy);
    QVERIFY(torch::equal(g1.trace.path, g2.trace.path));
    QVERIFY(!torch::equal(g1.trace.path, tca.decode(*memory, queries, sample).trace.path));
    // A draw seed of the request's own draws what torch's global generator draws after
    // torch::manual_seed of the same seed, whatever the global generator did meanwhile.
    torch::manual_seed(1234);
    const auto global = tca.decode(*memory, queries, sample).trace.path;
    DecodeRequest seeded = sample;
    seeded.draw_seed = 1234;
    torch::manual_seed(99);
    QVERIFY(torch::equal(tca.decode(*memory, queries, seeded).trace.path, global));
    seeded.draw_seed = 1235;
    const auto other = tca.decode(*memory, queries, seeded).trace.path;
    QVERIFY(!torch::equal(other, global));
    // A draw buffer (what a CUDA graph of the training step reads): the first walk fills it with the
    // seed's draws, [k, B*M] as policy_draws makes them; later walks read it as it stands.
    DecodeRequest buffered = sample;
    buffered.draw_seed = 1234;
    buffered.draw_buffer = std::make_shared<torch::Tensor>();
    QVERIFY(torch::equal(tca.decode(*memory, queries, buffered).trace.path, global));
    QVERIFY(buffered.draw_buffer->defined());
    const auto k = buffered.draw_buffer->size(0);
    QCOMPARE(buffered.draw_buffer->size(1), int64_t(256));
    QVERIFY(torch::equal(*buffered.draw_buffer, policy_draws(1234, k, 256)));
    buffered.draw_buffer->copy_(policy_draws(1235, k, 256));  // refilled: the seed field no longer counts
    QVERIFY(torch::equal(tca.decode(*memory, queries, buffered).trace.path, other));
    *buffered.draw_buffer = torch::rand({k + 1, 256});  // a buffer of another shape is a bug, said as one
    QVERIFY_THROWS_EXCEPTION(std::logic_error, tca.decode(*memory, queries, buffered));
  }

  void walk_kernel_equals_the_tensor_walk() {
    // On the CPU the walk is one kernel; on a GPU it is tensor operations. Both must choose the
    // same nodes with the same probabilities, greedy and sampled (from the same draws), with
    // padding, for several branch factors, and give the same outputs and gradients; with dropout
    // (mode 3: the aggregator's and the feed-forward's, drawn alike on both paths).
    for (auto [N, b] : {std::pair<int64_t, int64_t>{5, 2}, {16, 2}, {37, 2}, {29, 3}, {70, 4}})
      for (int mode = 0; mode < 4; ++mode) {
        torch::manual_seed(uint64_t(N * 7 + b));
        auto tca = std::make_shared<TreeCrossAttentionImpl>(16, 2, 32, b, 1, false, "given");
        set_dropout(*tca, mode == 3 ? 0.3 : 0.0);
        auto context = torch::randn({3, N, 16});
        auto queries = torch::randn({3, 11, 16});
        DecodeRequest r;
        r.trace = true;
        r.all_leaves = true;
        r.retrieval = mode == 0 ? Retrieval::Greedy : Retrieval::Sample;
        r.explore = mode == 2 ? 0.3 : 0;
        auto run = [&](bool kernel) {
          tca->use_walk_kernel(kernel);
          torch::manual_seed(99);
          tca->zero_grad();
          auto memory = tca->prepare(context, torch::zeros({3, N, 1}));
          auto out = tca->decode(*memory, queries, r);
          (out.encoding.sum() + out.all_leaves.sum() + out.log_prob.sum() + out.entropy).backward();
          std::vector<torch::Tensor> grads;
          for (const auto& p : tca->parameters())
            if (p.grad().defined()) grads.push_back(p.grad().clone());
          return std::make_pair(out, grads);
        };
        auto [a, ga] = run(true);
        auto [t, gt] = run(false);
        const auto what = QString("N=%1 b=%2 mode=%3").arg(N).arg(b).arg(mode);
        QVERIFY2(torch::equal(a.trace.path, t.trace.path), qPrintable("paths differ: " + what));
        QVERIFY2(torch::equal(a.trace.leaf_group, t.trace.leaf_group), qPrintable("leaf groups differ: " + what));
        QVERIFY2(torch::allclose(a.trace.probabilities, t.trace.probabilities, 1e-5, 1e-6),
                 qPrintable("probabilities differ: " + what));
        QVERIFY2(torch::allclose(a.log_prob, t.log_prob, 1e-5, 1e-5), qPrintable("log-probabilities differ: " + what));
        QVERIFY2(torch::allclose(a.encoding, t.encoding, 1e-5, 1e-5), qPrintable("encodings differ: " + what));
        QCOMPARE(ga.size(), gt.size());
        for (std::size_t i = 0; i < ga.size(); ++i)
          QVERIFY2(torch::allclose(ga[i], gt[i], 1e-4, 1e-5), qPrintable("gradients differ: " + what));
        if (mode == 3) {  // dropout reaches the feed-forward, not the walk: on one tree, training and evaluation walk alike
          torch::NoGradGuard no_grad;
          auto memory = tca->prepare(context, torch::zeros({3, N, 1}));
          DecodeRequest greedy;
          greedy.trace = true;
          auto trained = tca->decode(*memory, queries, greedy);
          tca->eval();  // evaluation below has no dropout either way
          auto evaluated = tca->decode(*memory, queries, greedy);
          QVERIFY2(torch::equal(trained.trace.path, evaluated.trace.path), qPrintable("dropout moved the walk: " + what));
          QVERIFY2(torch::allclose(trained.trace.probabilities, evaluated.trace.probabilities, 1e-6, 1e-7),
                   qPrintable("dropout moved the policy: " + what));
          QVERIFY2(!torch::allclose(trained.encoding, evaluated.encoding, 1e-3, 1e-3),
                   qPrintable("the feed-forward's dropout changed nothing: " + what));
        }
        // Inference reuses the walk's scores: the same prediction without autograd.
        torch::NoGradGuard no_grad;
        auto memory = tca->prepare(context, torch::zeros({3, N, 1}));
        DecodeRequest greedy;
        tca->use_walk_kernel(true);
        auto x = tca->decode(*memory, queries, greedy).encoding;
        tca->use_walk_kernel(false);
        QVERIFY2(torch::allclose(x, tca->decode(*memory, queries, greedy).encoding, 1e-5, 1e-5),
                 qPrintable("inference differs: " + what));
      }
  }

  void reinforce_estimator_is_unbiased_under_exploration() {
    // Paths are drawn from mu = (1 - eps) pi + eps * uniform(real children). The score-function
    // estimate R * grad log mu(path), averaged over many draws, must equal the exact gradient of
    // E_mu[R] = sum over every path of mu(path) R(path) (enumerated), within its standard error;
    // with log pi instead of log mu it must not (eps > 0). Tiny trees with padding children.
    for (auto [N, b] : {std::pair<int64_t, int64_t>{5, 2}, {10, 3}})
      for (double eps : {0.0, 0.5})
        for (bool kernel : {true, false}) {
          const auto what = QString("N=%1 b=%2 eps=%3 kernel=%4").arg(N).arg(b).arg(eps).arg(kernel);
          torch::manual_seed(uint64_t(17 * N + b));
          auto tca = std::make_shared<TreeCrossAttentionImpl>(8, 2, 16, b, 1, false, "given");
          tca->use_walk_kernel(kernel);
          {
            torch::NoGradGuard no_grad;
            for (auto& p : tca->named_parameters()) {
              if (p.key().rfind("aggregator.", 0) == 0) p.value().normal_(0, 0.5);  // distinct nodes
              if (p.key().rfind("block.", 0) == 0) p.value().mul_(2.5);             // a policy far from uniform
            }
          }
          std::shared_ptr<Memory> base;
          {
            torch::NoGradGuard no_grad;
            base = tca->prepare(torch::randn({1, N, 8}), torch::zeros({1, N, 1}));
          }
          const auto& memory = static_cast<const TreeMemory&>(*base);
          const auto shape = memory.tree.shape;
          QCOMPARE(shape.k, int64_t(2));
          const auto groups = shape.level_size(2);
          auto group_real = memory.tree.masks[1][0];                 // level 2, the leaf groups: false = padding
          QVERIFY2(!group_real.all().item<bool>(), qPrintable("no padding group: " + what));
          auto reward = torch::randn({groups}) + 1.0;                // a fixed reward per leaf group
          auto block = block_of(*tca);
          auto q0 = torch::randn({8});

          // log pi of the children of node `parent` on level `level` (0 = root), for queries [1,S,8].
          auto children_log_pi = [&](const torch::Tensor& queries, int64_t level, const torch::Tensor& parent) {
            const auto S = queries.size(1);
            auto q = block->queries(queries).q;                                      // [1,S,H,dh]
            auto rows = parent.view({S, 1}) * b + torch::arange(b).view({1, b}) + memory.offsets[level];
            auto keys = memory.all_keys[0].index_select(0, rows.reshape(-1)).view({S, b, q.size(2), q.size(3)});
            auto scores = (q[0].unsqueeze(1) * keys).sum(-1).unsqueeze(0);          // [1,S,b,H]
            auto real = memory.all_masks[0].index_select(0, rows.reshape(-1)).view({1, S, b});
            return std::make_pair(MultiHeadAttentionImpl::head_averaged_log_weights(scores, real), real);
          };
          auto mu_of = [&](const torch::Tensor& log_pi, const torch::Tensor& real) {
            auto r = real.to(torch::kFloat);
            return (1 - eps) * log_pi.exp() + eps * r / r.sum(-1, true).clamp_min(1);
          };

          // The exact gradient: every path enumerated.
          auto q_exact = q0.clone().view({1, 1, 8}).requires_grad_();
          auto [lp1, real1] = children_log_pi(q_exact, 0, torch::zeros({1}, torch::kLong));
          auto mu1 = mu_of(lp1, real1)[0][0];
          torch::Tensor expected = torch::zeros({});
          for (int64_t c1 = 0; c1 < b; ++c1) {
            auto [lp2, real2] = children_log_pi(q_exact, 1, torch::full({1}, c1, torch::kLong));
            auto mu2 = mu_of(lp2, real2)[0][0];
            for (int64_t c2 = 0; c2 < b; ++c2)
              if (group_real[c1 * b + c2].item<bool>()) expected = expected + mu1[c1] * mu2[c2] * reward[c1 * b + c2];
          }
          expected.backward();
          auto exact = q_exact.grad().view({8});

          // The estimator, over S draws: per-draw gradients give the mean and its standard error.
          const int64_t S = 100000;
          auto queries = q0.view({1, 1, 8}).expand({1, S, 8}).clone().requires_grad_();
          DecodeRequest r;
          r.retrieval = Retrieval::Sample;
          r.explore = eps;
          r.trace = true;
          torch::manual_seed(5);
          auto out = tca->decode(memory, queries, r);
          auto leaf_group = out.trace.leaf_group[0];                     // [S]
          QVERIFY2(group_real.index_select(0, leaf_group).all().item<bool>(),
                   qPrintable("a draw reached a padding group: " + what));
          auto R = reward.index_select(0, leaf_group);
          (R * out.log_prob[0]).sum().backward();
          auto per_draw = queries.grad()[0];                             // [S,8]
          auto mean = per_draw.mean(0), se = per_draw.std(0) / std::sqrt(double(S));
          auto z = ((mean - exact).abs() / (se + 1e-8)).max().item<double>();
          QVERIFY2(z < 5.0, qPrintable(QString("log mu estimator off by %1 standard errors: ").arg(z) + what));

          // log pi along the same paths: biased as soon as eps > 0.
          auto queries_pi = q0.view({1, 1, 8}).expand({1, S, 8}).clone().requires_grad_();
          auto path = out.trace.path[0];                                 // [S,k]
          auto [l1, m1] = children_log_pi(queries_pi, 0, torch::zeros({S}, torch::kLong));
          auto parent = path.select(1, 0);
          auto [l2, m2] = children_log_pi(queries_pi, 1, parent);
          auto a2 = path.select(1, 1) - parent * b;
          auto log_pi = l1[0].gather(1, parent.view({S, 1})).squeeze(1) + l2[0].gather(1, a2.view({S, 1})).squeeze(1);
          QVERIFY2(torch::allclose(log_pi.detach(), eps == 0 ? out.log_prob[0].detach() : log_pi.detach(), 1e-5, 1e-5),
                   qPrintable("log pi recomputed differs: " + what));
          (R * log_pi).sum().backward();
          auto per_draw_pi = queries_pi.grad()[0];
          auto z_pi = ((per_draw_pi.mean(0) - exact).abs() / (per_draw_pi.std(0) / std::sqrt(double(S)) + 1e-8)).max().item<double>();
          if (eps > 0) QVERIFY2(z_pi > 8.0, qPrintable(QString("log pi looked unbiased (%1 se): ").arg(z_pi) + what));
          else QVERIFY2(z_pi < 5.0, qPrintable(QString("log pi off without exploration (%1 se): ").arg(z_pi) + what));
        }
  }

  void sampling_never_picks_a_padding_child() {
    // A draw just below 1 passes the CDF of the real children whenever rounding leaves their sum
    // below 1; the last child is padding here, and neither walk may take it.
    const float below_one = std::nextafter(1.0f, 0.0f);
    for (float u : {1.0f - 1e-7f, below_one}) {
      // The tensor walk's draw, with probabilities whose real children sum to just under 1.
      auto probs = torch::tensor({0.3f, 0.7f - 1e-6f, 0.0f}).view({1, 1, 3});
      auto real = torch::tensor({true, true, false}).view({1, 1, 3});
      auto pick = draw_children(probs, real, torch::full({1, 1, 1}, u));
      QCOMPARE(pick.item<int64_t>(), int64_t(1));
      // A padding child in the middle is skipped too: the draw lands on a real one.
      auto mid = draw_children(torch::tensor({0.5f, 0.0f, 0.5f - 1e-6f}).view({1, 1, 3}),
                               torch::tensor({true, false, true}).view({1, 1, 3}), torch::full({1, 1, 1}, u));
      QCOMPARE(mid.item<int64_t>(), int64_t(2));

      // The CPU kernel, over many random policies (their rounded sums land on both sides of u).
      torch::manual_seed(11);
      const int64_t Q = 4096, b = 3, H = 4, dh = 8;
      WalkInput in;
      in.queries = torch::randn({Q, H, dh}) * 3;
      in.keys = torch::randn({1, 1 + b, H, dh});  // level 1: the root's three children (rows 0..2), row 3 unused
      in.masks = torch::tensor({true, true, false, true}).view({1, 1 + b});
      in.offsets = {0};
      in.b = b;
      in.k = 1;
      for (double explore : {0.0, 0.2}) {
        in.explore = explore;
        in.uniform = torch::full({1, Q}, u);
        auto walk = walk_cpu(in);
        QVERIFY2(walk.actions.lt(2).all().item<bool>(),
                 qPrintable(QString("the kernel drew the padding child (u = %1, explore %2)").arg(u, 0, 'g', 9).arg(explore)));
      }
      // And with tensor operations through the decoder: every draw near 1 still lands on real nodes.
      torch::manual_seed(4);
      auto tca = std::make_shared<TreeCrossAttentionImpl>(8, 2, 16, 3, 1, false, "given");
      auto memory = tca->prepare(torch::randn({2, 10, 8}), torch::zeros({2, 10, 1}));
      const auto& tree = static_cast<const TreeMemory&>(*memory).tree;
      for (bool kernel : {true, false}) {
        tca->use_walk_kernel(kernel);
        DecodeRequest r;
        r.retrieval = Retrieval::Sample;
        r.trace = true;
        auto out = tca->decode(*memory, torch::randn({2, 300, 8}), r);
        for (int64_t level = 1; level <= tree.shape.k; ++level) {
          auto nodes = out.trace.path.select(2, level - 1);  // [B,M] index within the level
          QVERIFY(tree.masks[level - 1].gather(1, nodes).all().item<bool>());
        }
      }
    }
  }

  void single_leaf_group_predicts_what_all_leaves_predict() {
    // N <= b gives k = 0: the whole context is one leaf group, so S = all leaves.
    for (auto [len, b] : {std::pair<int64_t, int64_t>{4, 2}, {5, 3}, {8, 4}}) {
      auto c = small_config(len, b);
      auto task = datasets::make_task(c);
      torch::manual_seed(2);
      ReTreever model(c, task->spec());
      model->eval();
      auto batch = task->sample(3, 9, true);
      QCOMPARE(TreeShape::of(batch.xc.size(1), b).k, int64_t(0));
      DecodeRequest r;
      r.all_leaves = true;
      auto out = model->forward(batch, r);
      QVERIFY(torch::allclose(out.prediction, out.prediction_all_leaves, 1e-6, 1e-6));
    }
  }

  void saturated_policy_keeps_its_gradient_and_exploration_revisits_it() {
    // The log-policy is exact: a child whose probability underflows to 0 in float keeps a
    // finite log-probability with a gradient, so REINFORCE can still move it.
    auto scores = torch::tensor({0.f, 0.f, 200.f, 150.f}).view({1, 1, 2, 2}).requires_grad_();  // [B,M,S,H]
    auto log_pi = MultiHeadAttentionImpl::head_averaged_log_weights(scores, {});
    auto pi = MultiHeadAttentionImpl::head_averaged_weights(scores.detach(), {});
    QCOMPARE(pi[0][0][0].item<float>(), 0.f);
    QVERIFY(std::abs(log_pi[0][0][0].item<float>() - float(-150 - std::log(2.0))) < 1e-3);
    log_pi[0][0][0].backward();
    QVERIFY(scores.grad().abs().sum().item<float>() > 0.5);
    // Where nothing underflows it is the log of the head-averaged weights, masks included.
    auto s2 = torch::randn({2, 3, 4, 2});
    auto mask = torch::rand({2, 3, 4}) > 0.3;
    mask.select(2, 0).fill_(true);
    QVERIFY(torch::allclose(MultiHeadAttentionImpl::head_averaged_log_weights(s2, mask).exp(),
                            MultiHeadAttentionImpl::head_averaged_weights(s2, mask), 1e-5, 1e-6));

    // A policy made saturated by large weights (one head, so no two heads can disagree):
    // sampling follows greedy; with explore = 1 the first choice is uniform over the children.
    torch::manual_seed(3);
    TreeCrossAttentionImpl tca(16, 1, 32, 2, 1, false, "given");
    {
      torch::NoGradGuard no_grad;
      for (auto& p : tca.named_parameters()) {
        if (p.key().rfind("aggregator.", 0) == 0) p.value().normal_(0, 0.5);  // distinct nodes
        if (p.key().rfind("block.", 0) == 0) p.value().mul_(20);               // sharp scores
      }
    }
    auto memory = tca.prepare(torch::randn({1, 64, 16}), torch::zeros({1, 64, 1}));
    auto queries = torch::randn({1, 512, 16});
    DecodeRequest greedy, sample, explore;
    greedy.trace = sample.trace = explore.trace = true;
    sample.retrieval = explore.retrieval = Retrieval::Sample;
    explore.explore = 1.0;
    auto g = tca.decode(*memory, queries, greedy).trace.path;
    const double same = g.eq(tca.decode(*memory, queries, sample).trace.path).to(torch::kFloat).mean().item<double>();
    QVERIFY2(same > 0.99, qPrintable(QString::number(same)));
    // Exploring, the first choice ignores the policy: it differs from greedy's for about half.
    auto first = tca.decode(*memory, queries, explore).trace.path.select(2, 0);
    const double differs = first.ne(g.select(2, 0)).to(torch::kFloat).mean().item<double>();
    QVERIFY2(differs > 0.4 && differs < 0.6, qPrintable(QString::number(differs)));
  }

  void dropout_spares_the_tree_attention() {
    // Config::dropout on TCA reaches the aggregator (attention and feed-forward) and the decoder
    // block's feed-forward, not the block's attention (walk, read of S, all-leaves read), as in the
    // reference code: training outputs move with the dropout draws and stay finite
    // (log-probabilities, entropy, gradients); evaluation is what it is without dropout.
    auto c = small_config(16, 2);
    c.block = "reference";
    c.dropout = 0.4;
    auto task = datasets::make_task(c);
    torch::manual_seed(3);
    ReTreever model(c, task->spec());
    auto batch = task->sample(4, 5, false);
    DecodeRequest request;
    request.retrieval = Retrieval::Sample;
    request.all_leaves = true;
    request.draw_seed = 9;  // the walk's own draws: the same in every run below
    auto run = [&](bool train, double p, uint64_t seed) {
      model->set_dropout(p);
      model->train(train);
      torch::manual_seed(seed);
      return model->forward(batch, request);
    };
    int spared = 0, dropping = 0;
    for (const auto& item : model->named_modules()) {
      const auto& name = item.key();
      const auto* a = dynamic_cast<const MultiHeadAttentionImpl*>(item.value().get());
      if (!a) continue;
      const bool block = name.rfind("decoder.block", 0) == 0;  // the rest: aggregator, encoder
      QVERIFY2(a->dropout == (block ? 0.0 : 0.4), name.c_str());
      (block ? spared : dropping) += 1;
    }
    QVERIFY(spared == 1 && dropping >= 1);
    QVERIFY(torch::equal(run(false, 0.4, 1).prediction, run(false, 0, 1).prediction));
    auto plain = run(true, 0, 1), dropped = run(true, 0.4, 1);
    QVERIFY(torch::equal(run(true, 0, 2).prediction, plain.prediction));  // without dropout the seed does not matter
    QVERIFY(torch::equal(run(true, 0.4, 1).prediction, dropped.prediction));
    QVERIFY(!torch::allclose(dropped.prediction, plain.prediction, 1e-3, 1e-3));
    QVERIFY(!torch::allclose(run(true, 0.4, 2).log_prob, dropped.log_prob, 1e-4, 1e-4));
    QVERIFY(torch::isfinite(dropped.log_prob).all().item<bool>());
    QVERIFY((dropped.log_prob <= 1e-6).all().item<bool>());  // log-probabilities of normalised draws
    QVERIFY(std::isfinite(dropped.entropy.item<double>()));
    auto loss = dropped.prediction.square().mean() + dropped.log_prob.mean() + dropped.entropy;
    loss.backward();
    for (const auto& p : model->parameters())
      if (p.grad().defined()) QVERIFY(torch::isfinite(p.grad()).all().item<bool>());
  }

  void reinforce_term_has_the_textbook_gradient() {
    // L_RL = -mean((R - baseline) * log pi) - alpha * H. R is detached: no gradient to the
    // prediction; d/dlog_pi = -(R - baseline) / n; d/dH = -alpha.
    auto c = small_config(8, 2);
    c.entropy_bonus = 0.3;
    auto spec = datasets::make_task(c)->spec();
    for (const char* reward : {"acc", "nce"})
      for (const char* baseline : {"fixed", "mean"}) {
      c.reward = reward;
      c.rl_baseline = baseline;
      ModelOutput out;
      out.prediction = torch::randn({2, 4, 12}, torch::requires_grad());
      out.log_prob = (torch::rand({2, 4}) - 2).requires_grad_();
      out.entropy = torch::tensor(0.5).requires_grad_();
      Batch batch;
      batch.yt = torch::randint(0, 12, {2, 4});
      auto terms = compute_losses(out, batch, spec, c);
      terms.rl.backward();
      QVERIFY(!out.prediction.grad().defined() || out.prediction.grad().abs().sum().item<double>() == 0);
      // The rewards by hand: 1/0 correctness, or minus the cross entropy of the 12 classes.
      auto p = out.prediction.detach();
      auto R = std::string(reward) == "acc" ? p.argmax(-1).eq(batch.yt).to(torch::kFloat)
                                            : torch::log_softmax(p, -1).gather(-1, batch.yt.unsqueeze(-1)).squeeze(-1);
      auto b = std::string(baseline) == "mean" ? R.mean() : torch::tensor(std::string(reward) == "acc" ? 0.0 : -std::log(12.0));
      QVERIFY(torch::allclose(out.log_prob.grad(), -(R - b) / 8.0, 1e-5, 1e-6));
      QVERIFY(std::abs(out.entropy.grad().item<double>() + 0.3) < 1e-6);
    }
  }

  void a_node_names_a_range_only_for_consecutive_tokens() {
    TreeNodeInfo n;
    QCOMPARE(n.leaf_range(), std::string());
    n.leaves = {5};
    QCOMPARE(n.leaf_range(), std::string("5"));
    n.leaves = {3, 4, 5, 6};
    QCOMPARE(n.leaf_range(), std::string("3..6"));
    n.leaves = {97, 40, 118};  // sort_x2's order: not the range 97..118
    QCOMPARE(n.leaf_range(), std::string());
    n.leaves = {6, 5, 4};
    QCOMPARE(n.leaf_range(), std::string());
  }

  void warm_up_trains_the_all_leaves_prediction_alone() {
    // ca_only (Config::ca_warmup): the total is lambda_CA L_CA; the read of S and the policy get no
    // gradient, yet every term is still computed for the metrics.
    auto c = small_config(8, 2);
    c.lambda_ca = 0.5;
    auto spec = datasets::make_task(c)->spec();
    for (bool ca_only : {true, false}) {
      torch::manual_seed(4);
      ModelOutput out;
      out.prediction = torch::randn({2, 4, 12}, torch::requires_grad());
      out.prediction_all_leaves = torch::randn({2, 4, 12}, torch::requires_grad());
      out.log_prob = (torch::rand({2, 4}) - 2).requires_grad_();
      out.entropy = torch::tensor(0.5).requires_grad_();
      Batch batch;
      batch.yt = out.prediction.argmax(-1);  // every answer right: reward 1, so L_RL has a gradient
      auto terms = compute_losses(out, batch, spec, c, ca_only);
      QVERIFY(terms.tca.defined() && terms.ca.defined() && terms.rl.defined() && terms.entropy.defined());
      auto expected = ca_only ? 0.5 * terms.ca : terms.tca + 0.5 * terms.ca + terms.rl;
      QVERIFY(torch::allclose(terms.total, expected));
      terms.total.backward();
      auto norm = [](const torch::Tensor& t) { return t.grad().defined() ? t.grad().abs().sum().item<double>() : 0.0; };
      QVERIFY(norm(out.prediction_all_leaves) > 0);
      QCOMPARE(norm(out.prediction) > 0, !ca_only);
      QCOMPARE(norm(out.log_prob) > 0, !ca_only);
      QCOMPARE(norm(out.entropy) > 0, !ca_only);
    }
  }

  void treeformer_routes_every_token_to_one_leaf_and_reads_the_summaries() {
    torch::manual_seed(3);
    TreeformerImpl tf(16, 2, 32, 3);
    auto context = torch::randn({2, 40, 16});
    for (bool hard : {false, true}) {
      auto w = tf.routing(context, hard);
      QCOMPARE(w.size(2), int64_t(8));
      QVERIFY(torch::allclose(w.sum(-1), torch::ones({2, 40}), 1e-5, 1e-5));  // a distribution per token
      if (hard) QVERIFY(((w == 0) | (w == 1)).all().item<bool>());
    }
    QCOMPARE(tf.tokens_per_query(40), int64_t(8));
    // At inference (hard routing) each summary is the mean of exactly the tokens routed to it.
    tf.eval();
    torch::NoGradGuard no_grad;
    auto w = tf.routing(context, true);
    auto leaf = w[0].argmax(-1);
    auto memory = tf.prepare(context, torch::zeros({2, 40, 1}));
    const auto& occupied = static_cast<const TreeformerMemory&>(*memory).occupied;
    for (int64_t l = 0; l < 8; ++l) QCOMPARE(occupied[0][l].item<bool>(), (leaf == l).any().item<bool>());
    // Gradients reach the split hyperplanes through soft routing in training.
    torch::GradMode::set_enabled(true);
    tf.train();
    auto out = tf.decode(*tf.prepare(context, torch::zeros({2, 40, 1})), torch::randn({2, 3, 16}), DecodeRequest{});
    out.encoding.sum().backward();
    QVERIFY(tf.named_parameters()["splits.weight"].grad().abs().sum().item<double>() > 0);
  }

  void rl_loss_trains_the_policy_and_not_the_head() {
    auto c = small_config(32, 2);
    auto task = datasets::make_task(c);
    torch::manual_seed(4);
    ReTreever model(c, task->spec());
    model->train();
    DecodeRequest r;
    r.retrieval = Retrieval::Sample;
    r.all_leaves = true;
    auto batch = task->sample(8, 3, false);
    c.reward = "nce";  // a dense reward so that the test does not depend on luck
    auto terms = compute_losses(model->forward(batch, r), batch, task->spec(), c);
    terms.rl.backward();
    auto grads = model->named_parameters();
    auto norm = [&](const std::string& name) {
      auto g = grads[name].grad();
      return g.defined() ? g.abs().sum().item<double>() : 0.0;
    };
    QCOMPARE(norm("head.layers.0.weight"), 0.0);     // the reward is not differentiated
    QCOMPARE(norm("decoder.block.ff.expand.weight"), 0.0);  // the prediction's feed-forward neither
    QVERIFY(norm("decoder.block.attention.to_q.weight") > 0);  // the policy's query
    QVERIFY(norm("decoder.aggregator.encoder.layers.0.ff.expand.weight") > 0);  // internal nodes
  }
};

QTEST_GUILESS_MAIN(TestRetrieval)
#include "test_retrieval.moc"
