// A short training run lowers the loss on each task and model; divergence stops cleanly.
#include <QtTest>
#include <cmath>
#include <numeric>

#include "core/training/trainer.h"
#include "datasets/tasks.h"

using namespace retreever;

namespace {
double mean_loss(const std::vector<StepMetrics>& s, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += s[i].tca_loss;  // the task loss (L_RL is no loss to watch fall)
  return sum / double(to - from);
}
}  // namespace

class TestTraining : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void short_run_lowers_the_loss_data() {
    QTest::addColumn<QString>("task");
    QTest::addColumn<QString>("model");
    for (const char* task : {"copy", "gp"})
      for (const char* model : {"tca", "ca", "perceiver", "treeformer"})
        QTest::newRow((std::string(task) + "/" + model).c_str()) << QString(task) << QString(model);
  }

  void short_run_lowers_the_loss() {
    QFETCH(QString, task);
    QFETCH(QString, model);
    Config c = Config::preset(task.toStdString());
    c.model = model.toStdString();
    c.seq_len = 16;
    c.d_model = 32;
    c.heads = 4;
    c.ff_dim = 64;
    c.encoder_layers = task == "gp" ? 1 : 0;
    c.batch = task == "gp" ? 16 : 32;
    c.steps = 160;
    c.lr = 1e-3;
    c.eval_batches = 2;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    std::vector<StepMetrics> s;
    while (!t.finished()) s.push_back(t.step());
    const double first = mean_loss(s, 0, 20), last = mean_loss(s, s.size() - 20, s.size());
    QVERIFY2(last < first - 0.1, qPrintable(QString("task loss %1 -> %2").arg(first).arg(last)));
    for (const auto& m : s) QVERIFY(std::isfinite(m.loss));
    // The schedule decays to zero and metrics are logged every log_every steps.
    QVERIFY(s.back().lr < 0.01 * c.lr);
    QCOMPARE(int64_t(t.history().steps.size()), c.steps / c.log_every);
    auto e = t.evaluate();
    if (task == "copy") {
      QVERIFY(e.value > 0.2);  // chance is 1/10
      QCOMPARE(e.metric, std::string("accuracy"));
    } else {
      QCOMPARE(e.metric, std::string("log_likelihood"));
    }
  }

  void tca_reads_log_many_tokens() {
    Config c = Config::preset("copy");
    c.seq_len = 256;
    c.eval_batches = 1;
    c.batch = 2;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    auto e = t.evaluate();
    QCOMPARE(e.context_size, 128.0);
    QCOMPARE(e.tokens_per_query, 8.0);  // PAPER.md: 8 of 128
    c.model = "ca";
    Trainer ca(c, datasets::make_task);
    QCOMPARE(ca.evaluate().tokens_per_query, 128.0);
  }

  void divergence_stops_without_updating_the_model() {
    Config c = Config::preset("gp");
    c.d_model = 16;
    c.heads = 2;
    c.encoder_layers = 1;
    c.lr = 1e30;  // guaranteed to blow up
    c.grad_clip = 0;
    c.steps = 50;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    bool diverged = false;
    std::int64_t before = 0;
    try {
      while (!t.finished()) {
        before = t.steps_done();
        t.step();
      }
    } catch (const DivergenceError& e) {
      diverged = true;
      QCOMPARE(t.steps_done(), before);  // the failing step did not count
      QVERIFY(std::string(e.what()).find("learning rate") != std::string::npos);
    }
    QVERIFY2(diverged, "a learning rate of 1e30 did not diverge");
  }

  void cosine_schedule_has_the_right_ends() {
    QCOMPARE(cosine_lr(1.0, 0, 100), 1.0);
    QVERIFY(std::abs(cosine_lr(1.0, 50, 100) - 0.5) < 1e-12);
    QVERIFY(std::abs(cosine_lr(1.0, 100, 100)) < 1e-12);
  }
};

QTEST_GUILESS_MAIN(TestTraining)
#include "test_training.moc"
