// The task generators: deterministic for a seed, and the data they promise.
#include <QtTest>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "datasets/tasks.h"

using namespace retreever;
using namespace retreever::datasets;

class TestDatasets : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void copy_task_targets_mirror_the_context() {
    for (int64_t L : {4, 5, 8, 9, 64, 257}) {
      CopyTask task(L);
      auto b = task.sample(6, 123, false);
      const auto C = (L + 1) / 2, M = L - C;
      QCOMPARE(b.xc.size(1), C);
      QCOMPARE(b.xt.size(1), M);
      QCOMPARE(b.yt.size(1), M);
      QCOMPARE(b.xc.size(2), CopyTask::kVocabulary);
      QVERIFY(torch::equal(b.xc.sum(-1), torch::ones({6, C})));  // one-hot
      QVERIFY((b.xt == 0).all().item<bool>());                    // queries differ only by position
      auto tokens = b.xc.argmax(-1);
      auto seq = torch::cat({tokens, b.yt}, 1);  // the whole sequence s_0 .. s_{L-1}
      QVERIFY((seq.select(1, 0) == CopyTask::kBos).all().item<bool>());
      QVERIFY((seq.select(1, L - 1) == CopyTask::kEos).all().item<bool>());
      for (int64_t i = 1; i <= L - 2; ++i) {
        QVERIFY(torch::equal(seq.select(1, i), seq.select(1, L - 1 - i)));
        QVERIFY((seq.select(1, i) >= 2).all().item<bool>());
      }
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, CopyTask(3));
  }

  void same_seed_same_batch_other_seed_other_batch() {
    CopyTask copy(32);
    QVERIFY(torch::equal(copy.sample(4, 9, false).xc, copy.sample(4, 9, false).xc));
    QVERIFY(!torch::equal(copy.sample(4, 9, false).xc, copy.sample(4, 10, false).xc));
    GPTask gp("rbf", "matern");
    auto a = gp.sample(4, 9, false), b = gp.sample(4, 9, false);
    QVERIFY(torch::equal(a.yc, b.yc) && torch::equal(a.yt, b.yt));
    QVERIFY(!torch::equal(a.yt, gp.sample(4, 9, true).yt));  // evaluation uses its own kernel
  }

  void gp_batches_have_the_paper_sizes_and_sorted_contexts() {
    GPTask gp("rbf", "rbf");
    for (uint64_t seed = 0; seed < 40; ++seed) {
      auto b = gp.sample(3, seed, false);
      const auto nc = b.xc.size(1), nt = b.xt.size(1);
      QVERIFY(nc >= 3 && nc <= 47);
      QVERIFY(nt >= 3 && nc + nt <= 50);
      QVERIFY((b.xc.abs() <= 2).all().item<bool>());
      QVERIFY((b.xc.slice(1, 1) >= b.xc.slice(1, 0, -1)).all().item<bool>());
      QVERIFY(torch::isfinite(b.yc).all().item<bool>() && torch::isfinite(b.yt).all().item<bool>());
    }
  }

  void gp_kernels_give_positive_definite_covariances() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    auto x = torch::rand({4, 30, 1}, torch::kDouble) * 4 - 2;
    for (const char* k : {"rbf", "matern", "periodic"}) {
      auto cov = gp_covariance(x, k, gen);
      QVERIFY(torch::allclose(cov, cov.transpose(1, 2)));
      QVERIFY((torch::linalg_eigvalsh(cov) > 0).all().item<bool>());
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, gp_covariance(x, "cubic", gen));
  }

  void make_task_names_unknown_tasks() {
    Config c;
    c.task = "chess";
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, make_task(c));
  }
};

QTEST_GUILESS_MAIN(TestDatasets)
#include "test_datasets.moc"
