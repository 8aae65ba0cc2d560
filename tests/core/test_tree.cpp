// Tree shapes and padding for many N and b, orderings, and an aggregator that ignores padding.
#include <QtTest>
#include <cmath>
#include <torch/torch.h>

#include "core/tree/tree.h"
#include "tests/tree_checks.h"

using namespace retreever;

class TestTree : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { torch::manual_seed(3); }

  void shape_follows_the_paper_for_many_n_and_b() {
    for (int64_t b = 2; b <= 7; ++b)
      for (int64_t n = 2; n <= 600; ++n) {
        auto s = TreeShape::of(n, b);
        // k = floor(log_b(n - 1)): b^k <= n - 1 < b^(k+1)
        int64_t bk = 1;
        for (int64_t i = 0; i < s.k; ++i) bk *= b;
        QVERIFY(bk <= n - 1);
        QVERIFY(bk * b > n - 1);
        QCOMPARE(s.groups(), bk);
        QCOMPARE(s.p, (n + bk - 1) / bk);  // P = ceil(n / b^k)
        QVERIFY(s.padded() >= n);
        QVERIFY(s.padded() - n < bk);  // less than one leaf per group is padding
        QCOMPARE(s.tokens_per_query(), s.k * (b - 1) + s.p);
        QCOMPARE(s.node_count(), s.level_offset(s.k + 1) + s.padded());
      }
    // PAPER.md's example: N = 512, b = 2 -> k = 8, P = 2, |S| = 10.
    auto s = TreeShape::of(512, 2);
    QCOMPARE(s.k, int64_t(8));
    QCOMPARE(s.p, int64_t(2));
    QCOMPARE(s.tokens_per_query(), int64_t(10));
  }

  void shape_refuses_degenerate_trees() {
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, TreeShape::of(1, 2));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, TreeShape::of(10, 1));
  }

  void built_tree_has_the_levels_masks_and_padding_of_its_shape() {
    Aggregator agg(1, 16, 2, 32);
    for (bool balanced : {false, true})
      for (int64_t b : {2, 3, 4})
        for (int64_t n : {2, 3, 5, 9, 16, 33, 100}) {
          auto ctx = torch::randn({2, n, 16});
          auto x = torch::randn({2, n, 1});
          auto tree = build_tree(ctx, context_order(x, "given"), b, agg, false, balanced);
          const auto& s = tree.shape;
          QCOMPARE(s.balanced, balanced);
          QCOMPARE(int64_t(tree.nodes.size()), s.k + 1);
          for (int64_t l = 1; l <= s.k + 1; ++l) {
            QCOMPARE(tree.nodes[l - 1].size(1), s.level_size(l));
            QCOMPARE(tree.masks[l - 1].size(1), s.level_size(l));
            QVERIFY(torch::isfinite(tree.nodes[l - 1]).all().item<bool>());
          }
          auto leaf_mask = tree.leaf_mask()[0];
          QCOMPARE(leaf_mask.sum().item<int64_t>(), n);
          auto per_group = leaf_mask.view({s.groups(), s.p}).sum(1);
          for (int64_t g = 0; g < s.groups(); ++g) {
            // Each group holds real_in_group(g) real leaves, first.
            QCOMPARE(per_group[g].item<int64_t>(), s.real_in_group(g));
            QVERIFY(leaf_mask.slice(0, g * s.p, g * s.p + s.real_in_group(g)).all().item<bool>());
          }
          if (balanced) {
            // Spread evenly: floor or ceil of n / b^k per group, so no node is padding.
            QCOMPARE(per_group.min().item<int64_t>(), n / s.groups());
            QVERIFY(per_group.max().item<int64_t>() <= (n + s.groups() - 1) / s.groups());
            for (int64_t l = 1; l <= s.k; ++l) QVERIFY(tree.masks[l - 1].all().item<bool>());
          } else {
            // Packed (the paper's reading): the padding comes last.
            QVERIFY(leaf_mask.slice(0, 0, n).all().item<bool>());
          }
          // A node is padding exactly when all its children are.
          for (int64_t l = s.k; l >= 1; --l) {
            auto children = tree.masks[l].view({2, s.level_size(l), s.fan_out(l)});
            QVERIFY(torch::equal(tree.masks[l - 1], children.any(-1)));
          }
          // Every real context token is a leaf exactly once, in the given order.
          QVERIFY(torch::equal(tree.order[0].masked_select(leaf_mask), torch::arange(n)));
          // Balanced padding repeats a real leaf of its own group.
          if (balanced) {
            auto slots = tree.order[0].view({s.groups(), s.p});
            for (int64_t g = 0; g < s.groups(); ++g)
              for (int64_t j = 0; j < s.p; ++j) {
                const auto at = slots[g][j].item<int64_t>();
                QVERIFY(at >= s.first_in_group(g) && at < s.first_in_group(g + 1));
              }
          }
        }
  }

  void aggregator_ignores_padding() {
    Aggregator agg(1, 16, 4, 32);
    auto children = torch::randn({5, 3, 16});
    auto mask = torch::tensor({1, 1, 0}, torch::kBool).unsqueeze(0).expand({5, 3});
    auto a = agg->forward(children, mask);
    auto changed = children.clone();
    changed.select(1, 2).mul_(100).add_(3);
    auto b = agg->forward(changed, mask);
    QVERIFY(torch::allclose(a, b, 1e-5, 1e-5));
    // ... while a real child does matter.
    changed = children.clone();
    changed.select(1, 0).add_(1);
    QVERIFY(!torch::allclose(a, agg->forward(changed, mask), 1e-5, 1e-5));
  }

  void orderings_are_permutations_that_sort_as_promised() {
    auto x = torch::rand({3, 37, 2});
    for (const char* o : {"given", "sort_x1", "sort_x2", "kdtree", "random_proj"}) {
      auto order = context_order(x, o);
      for (int64_t b = 0; b < 3; ++b)
        QVERIFY2(torch::equal(std::get<0>(order[b].sort()), torch::arange(37)), o);
    }
    QVERIFY(torch::equal(context_order(x, "given")[1], torch::arange(37)));
    auto by_x2 = x.select(2, 1).gather(1, context_order(x, "sort_x2"));
    QVERIFY((by_x2.slice(1, 1) >= by_x2.slice(1, 0, -1)).all().item<bool>());
    // k-d tree: the first split is at the median of x1; within each half, x2 is split next.
    auto order = context_order(x, "kdtree")[0];
    auto first = x[0].select(1, 0).index_select(0, order);
    QVERIFY(first.slice(0, 0, 19).max().item<float>() <= first.slice(0, 19).min().item<float>());
    // A random projection is a fixed direction: the same order every time, sorted along it.
    QVERIFY(torch::equal(context_order(x, "random_proj"), context_order(x, "random_proj")));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, context_order(torch::rand({1, 5, 1}), "sort_x2"));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, context_order(x, "spiral"));
  }

  void kdtree_splits_line_up_with_the_nodes_of_the_tree() {
    // With the balanced leaf layout, level l's nodes of a tree with branch factor b are cells of a
    // k-d split: in 2-D the two
    // halves (b = 2) or the quadrants (b = 4) of the root are separated by a median line, and
    // so on down; with b = 3 the root's children are thirds along x1.
    for (int64_t b : {2, 3, 4})
      for (int64_t n : {7, 37, 96, 150}) {
        auto x = torch::rand({2, n, 2});
        auto order = context_order(x, "kdtree", b);
        Aggregator agg(1, 8, 2, 16);
        auto tree = build_tree(torch::randn({2, n, 8}), order, b, agg, false, /*balanced=*/true);
        const auto& s = tree.shape;
        for (int64_t r = 0; r < 2; ++r) {
          auto cells_at = [&](int64_t level) {  // real context indices under each node of a level
            std::vector<torch::Tensor> cells;
            const auto per = s.padded() / s.level_size(level);
            for (int64_t i = 0; i < s.level_size(level); ++i) {
              auto slots = tree.order[r].slice(0, i * per, (i + 1) * per);
              cells.push_back(slots.masked_select(tree.leaf_mask()[r].slice(0, i * per, (i + 1) * per)));
            }
            return cells;
          };
          // Root's children (level 1): separated along x1. With b = 4 (two binary splits per
          // level) the pairs {0,1} and {2,3} are separated along x1, and within a pair along x2.
          auto cells = cells_at(1);
          auto coord = [&](const torch::Tensor& idx, int axis) { return x[r].select(1, axis).index_select(0, idx); };
          if (b == 4) {
            auto left = torch::cat({cells[0], cells[1]}), right = torch::cat({cells[2], cells[3]});
            QVERIFY(coord(left, 0).max().item<float>() <= coord(right, 0).min().item<float>());
            QVERIFY(coord(cells[0], 1).max().item<float>() <= coord(cells[1], 1).min().item<float>());
            QVERIFY(coord(cells[2], 1).max().item<float>() <= coord(cells[3], 1).min().item<float>());
          } else {
            for (size_t i = 0; i + 1 < cells.size(); ++i)
              QVERIFY(coord(cells[i], 0).max().item<float>() <= coord(cells[i + 1], 0).min().item<float>());
          }
          // Every node covers some real context tokens.
          for (size_t i = 0; i < cells.size(); ++i) QVERIFY(cells[i].numel() > 0);
          if (b == 2 && s.k >= 2) {
            // Level 2: each half of the root is split along x2.
            auto quarters = cells_at(2);
            QVERIFY(coord(quarters[0], 1).max().item<float>() <= coord(quarters[1], 1).min().item<float>());
            QVERIFY(coord(quarters[2], 1).max().item<float>() <= coord(quarters[3], 1).min().item<float>());
          }
        }
      }
  }

  // Under dropout each kept parent is the aggregate of its kept children (tree_checks.h), with
  // padding (N = 37) and without, at b = 2 and 3; test_cuda runs the same on a GPU.
  void dropout_parents_aggregate_the_kept_children() {
    for (auto [N, b] : std::vector<std::pair<std::int64_t, std::int64_t>>{{37, 2}, {64, 2}, {50, 3}}) {
      const auto same = testing::tree_dropout_mismatch(torch::kCPU, N, b, 0.3);
      const auto other = testing::tree_dropout_mismatch(torch::kCPU, N, b, 0.3, /*replay_seed=*/12);
      QVERIFY2(same < 1e-5, qPrintable(QString("N=%1 b=%2: %3").arg(N).arg(b).arg(same)));
      QVERIFY2(other > 1e-2, qPrintable(QString("N=%1 b=%2, other masks: %3").arg(N).arg(b).arg(other)));
      // The same with the levels run twice, the second pass batched (a GPU training step's way).
      const auto batched = testing::tree_dropout_mismatch(torch::kCPU, N, b, 0.3, 11, LevelBatching::always);
      QVERIFY2(batched < 1e-5, qPrintable(QString("N=%1 b=%2, batched: %3").arg(N).arg(b).arg(batched)));
    }
  }

  // The batched second pass replays the first pass's dropout masks: the same nodes and gradients
  // as level by level (tree_checks.h). Without the replay the nodes differ by their own size.
  void batched_levels_replay_their_dropout_masks() {
    for (auto [N, b] : std::vector<std::pair<std::int64_t, std::int64_t>>{{37, 2}, {64, 2}, {50, 3}}) {
      for (double p : {0.0, 0.3}) {
        const auto d = testing::tree_batching_difference(torch::kCPU, N, b, p);
        QVERIFY2(d < 1e-5, qPrintable(QString("N=%1 b=%2 p=%3: %4").arg(N).arg(b).arg(p).arg(d)));
      }
    }
  }

  void bptt_controls_gradient_through_the_tree() {
    Aggregator agg(1, 16, 2, 32);
    for (bool bptt : {false, true}) {
      auto ctx = torch::randn({1, 8, 16}, torch::requires_grad());
      auto tree = build_tree(ctx, context_order(torch::rand({1, 8, 1}), "given"), 2, agg, bptt);
      // Gradient of the internal nodes only (not the leaves themselves).
      torch::Tensor total = torch::zeros({});
      for (size_t l = 0; l + 1 < tree.nodes.size(); ++l) total = total + tree.nodes[l].sum();
      total.backward();
      const bool reaches = ctx.grad().defined() && ctx.grad().abs().sum().item<double>() > 0;
      QCOMPARE(reaches, bptt);
    }
  }
};

QTEST_GUILESS_MAIN(TestTree)
#include "test_tree.moc"
