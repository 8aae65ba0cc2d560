// A checkpoint round trip gives identical predictions and identical continued training;
// missing, truncated and foreign files are refused with a message that names the problem.
#include <QTemporaryDir>
#include <QtTest>
#include <fstream>
#include <torch/torch.h>

#include "core/inspection.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

using namespace retreever;

namespace {
Config tiny(const std::string& task, const std::string& model) {
  Config c = Config::preset(task);
  c.model = model;
  c.seq_len = 16;
  c.d_model = 16;
  c.heads = 2;
  c.ff_dim = 32;
  c.embed_depth = 2;
  c.encoder_layers = task == "gp" ? 1 : 0;
  c.batch = 8;
  c.steps = 20;
  c.eval_batches = 2;
  c.eval_batch = 4;
  c.device = "cpu";
  return c;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

class TestCheckpoint : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  std::string path(const char* name) { return dir_.filePath(name).toStdString(); }

 private Q_SLOTS:
  void round_trip_gives_identical_predictions_and_training() {
    for (const char* model : {"tca", "ca", "perceiver", "treeformer"})
      for (const char* task : {"copy", "gp"}) {
        Trainer a(tiny(task, model), datasets::make_task);
        for (int i = 0; i < 3; ++i) a.step();
        const auto e1 = a.evaluate();
        a.save(path("ck.pt"));
        auto b = Trainer::load(path("ck.pt"), datasets::make_task);
        QCOMPARE(b->steps_done(), a.steps_done());
        QCOMPARE(b->config().to_json(), a.config().to_json());
        QCOMPARE(int64_t(b->history().evals.size()), int64_t(1));
        const auto e2 = b->evaluate();
        QCOMPARE(e2.value, e1.value);
        // The optimiser state and the data stream continue exactly.
        auto s1 = a.step(), s2 = b->step();
        QCOMPARE(s2.loss, s1.loss);
        auto s3 = a.step(), s4 = b->step();
        QCOMPARE(s4.loss, s3.loss);
        // Inspection of the checkpoint sees the same predictions as a snapshot of the trainer.
        a.save(path("ck2.pt"));
        auto from_file = Inspector::from_checkpoint(path("ck2.pt"), datasets::make_task);
        Inspector from_snapshot(a.snapshot(), datasets::make_task);
        QCOMPARE(from_file->view(1).mean, from_snapshot.view(1).mean);
      }
  }

  void writes_leave_no_temporary_file() {
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.save(path("clean.pt"));
    QVERIFY(QFile::exists(QString::fromStdString(path("clean.pt"))));
    QVERIFY(!QFile::exists(QString::fromStdString(path("clean.pt.tmp"))));
  }

  void missing_truncated_and_foreign_files_are_refused_clearly() {
    auto load = [&](const std::string& p) { return message_of([&] { Trainer::load(p, datasets::make_task); }); };
    QVERIFY(load(path("nope.pt")).find("does not exist") != std::string::npos);

    Trainer a(tiny("copy", "tca"), datasets::make_task);
    a.save(path("full.pt"));
    std::ifstream in(path("full.pt"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(path("half.pt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    auto truncated = load(path("half.pt"));
    QVERIFY2(truncated.find("not a readable checkpoint") != std::string::npos, truncated.c_str());

    std::ofstream(path("text.pt")) << "hello, I am not a checkpoint\n";
    QVERIFY(load(path("text.pt")).find("not a readable checkpoint") != std::string::npos);

    torch::save(torch::ones({3}), path("tensor.pt"));  // a torch file, but not ours
    auto foreign = load(path("tensor.pt"));
    QVERIFY2(foreign.find("not a ReTreever checkpoint") != std::string::npos, foreign.c_str());
  }

  void parameters_of_another_shape_are_refused() {
    // A snapshot whose parameters come from another configuration must not load silently.
    Trainer a(tiny("copy", "tca"), datasets::make_task);
    auto snap = a.snapshot();
    snap.config.d_model = 32;
    auto msg = message_of([&] { Inspector(snap, datasets::make_task); });
    QVERIFY2(!msg.empty(), "a mismatched snapshot loaded silently");
  }
};

QTEST_GUILESS_MAIN(TestCheckpoint)
#include "test_checkpoint.moc"
