// The studio driven through its own widgets under QT_QPA_PLATFORM=offscreen: validation, the
// worker's command/event protocol, a real short run updating the plots, a clicked query
// matching 'retreever inspect', exports, and bad files answered with a dialog.
#include <QSlider>
#include <QSpinBox>
#include <QStatusBar>
#include <QAction>
#include <QAbstractItemView>
#include <QComboBox>
#include <QFormLayout>
#include <QElapsedTimer>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineEdit>
#include <QMessageBox>
#include <QProcess>
#include <QPushButton>
#include <QSet>
#include <QScreen>
#include <QSettings>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QLabel>
#include <QMenu>
#include <QScopeGuard>
#include <QListWidget>
#include <QtTest>
#include <algorithm>

#include "ui/axis_range.h"
#include "ui/comparison_panel.h"
#include "ui/experiment_panel.h"
#include "ui/inspector_panel.h"
#include <ATen/Parallel.h>

#include "core/devices.h"
#include "core/registry.h"
#include "core/files.h"
#include "core/training/checkpoint_header.h"
#include "core/training/distributed.h"
#include "core/training/trainer.h"
#include "core/tree/tree_shape.h"
#include "datasets/tasks.h"
#include "ui/main_window.h"
#include "ui/scaling_panel.h"
#include "ui/session_controller.h"
#include "ui/export_plots_dialog.h"
#include "ui/session_export.h"
#include "ui/plot_panel.h"
#include "ui/qcp.h"
#include "ui/task_views.h"
#include "ui/training_session.h"
#include "ui/tree_view.h"

using namespace retreever;
using namespace retreever::ui;

namespace {

Config small_copy(std::int64_t steps) {
  Config c = Config::preset("copy");
  c.seq_len = 16;
  c.batch = 16;
  c.d_model = 32;
  c.heads = 4;
  c.ff_dim = 64;
  c.steps = steps;
  c.eval_every = 20;
  c.eval_batches = 1;
  c.log_every = 5;
  c.device = "cpu";
  return c;
}

// Picks the item whose id (item data) is `id` in the panel's combo box for `key`; false when it has none.
bool choose(ExperimentPanel* panel, const char* key, const char* id) {
  auto* combo = qobject_cast<QComboBox*>(panel->editor(key));
  const int i = combo ? combo->findData(QString(id)) : -1;
  if (i >= 0) combo->setCurrentIndex(i);
  return i >= 0;
}

bool waitForState(TrainingSession* s, TrainingSession::State state, int ms = 120000) {
  QElapsedTimer t;
  t.start();
  while (s->state() != state && t.elapsed() < ms) QTest::qWait(20);
  return s->state() == state;
}

}  // namespace

class TestStudio : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

 private Q_SLOTS:
  void scaling_view_measures_every_size_off_the_ui_thread() {
    // The view measures on every core, whatever count a worker thread would start from: here the
    // one a training run's tuner leaves (LibTorch's last count, which a new thread takes).
    const QByteArray omp = qgetenv("OMP_NUM_THREADS");  // ctest sets it: one core
    qunsetenv("OMP_NUM_THREADS");
    const int before = at::get_num_threads();
    const auto restore = qScopeGuard([&] {
      if (!omp.isNull()) qputenv("OMP_NUM_THREADS", omp);
      at::set_num_threads(before);
    });
    const int cores = default_cpu_threads();  // LibTorch's start-up (prepare_cpu_runtime) done here, first
    at::set_num_threads(1);
    ScalingPanel panel;
    QSignalSpy done(&panel, &ScalingPanel::finished);
    QVERIFY(panel.run(16384, 64, "cpu"));
    QVERIFY(!panel.run(16384, 64, "cpu"));  // one measurement at a time
    QVERIFY(!panel.walk(1024, "cpu"));       // nor a walk beside it
    QVERIFY(!panel.findChild<QPushButton*>("scalingWalk")->isEnabled());
    QVERIFY(done.wait(120000));
    QVERIFY(!panel.running());
    QVERIFY(panel.findChild<QPushButton*>("scalingWalk")->isEnabled());
    // 1k, 4k, 16k for TCA, CA and Perceiver IO.
    QCOMPARE(panel.points().size(), qsizetype(9));
    for (const auto& p : panel.points()) {
      QVERIFY(p.us_per_query > 0 && p.prepare_ms >= 0);
      QCOMPARE(p.graph_us_per_query, -1.0);  // CUDA graphs only on a GPU: the eager time is plotted
      QCOMPARE(p.latency_us(), p.us_per_query);
      QCOMPARE(p.cpu_threads, cores);
      if (p.model == "ca") QCOMPARE(p.tokens_per_query, double(p.n));
      if (p.model == "tca") QVERIFY(p.tokens_per_query < 2 * std::log2(double(p.n)) + 2);
    }
    const auto tca = std::find_if(panel.points().begin(), panel.points().end(),
                                  [](const ScalingPoint& p) { return p.model == "tca"; });
    const auto perceiver = std::find_if(panel.points().begin(), panel.points().end(),
                                        [](const ScalingPoint& p) { return p.model == "perceiver" && p.n == 1024; });
    QCOMPARE(perceiver->tokens_per_query, tca->tokens_per_query);  // as many latents as TCA reads
    for (auto* plot : panel.plots()) {
      QCOMPARE(plot->graphCount(), 3);
      QCOMPARE(plot->xAxis->scaleType(), QCPAxis::stLogarithmic);
      QCOMPARE(plot->yAxis->scaleType(), QCPAxis::stLogarithmic);
    }
    // Perceiver IO's tokens lie on TCA's: its line there is dashed, so that TCA's stays visible.
    const auto* tokens = panel.plots().at(1);
    QCOMPARE(tokens->graph(0)->pen().style(), Qt::SolidLine);  // TCA
    QCOMPARE(tokens->graph(2)->pen().style(), Qt::DashLine);   // Perceiver IO
    QCOMPARE(tokens->graph(2)->scatterStyle().shape(), QCPScatterStyle::ssCircle);  // rings around TCA's discs
    QCOMPARE(tokens->graph(0)->scatterStyle().shape(), QCPScatterStyle::ssDisc);
    QVERIFY(tokens->graph(2)->name().contains("sized to TCA"));
    QCOMPARE(panel.plots().at(0)->graph(2)->pen().style(), Qt::SolidLine);  // its latency is its own
    // Each context's preparation (TCA's tree, CA's keys, Perceiver IO's latents), exported by name.
    const auto* preparation = panel.plots().at(2);
    QCOMPARE(panel.plotNames().size(), panel.plots().size());
    QCOMPARE(panel.plotNames().at(2), QString("scaling_preparation"));
    for (int g = 0; g < 3; ++g) QCOMPARE(preparation->graph(g)->dataCount(), 3);  // 1k, 4k, 16k
    QCOMPARE(preparation->graph(0)->data()->at(0)->value, tca->preparation_ms());
    QCOMPARE(tca->preparation_ms(), tca->prepare_ms);  // no replays on the CPU
    // A size that cannot fit is not attempted: the memory bound stops the sizes before it.
    ScalingOptions huge;
    huge.max_n = std::int64_t(1) << 40;
    QVERIFY(scaling_bytes(huge, huge.max_n) > 1e12);
    QCOMPARE(largest_fitting_n(huge, 0), huge.max_n);  // no bound: max_n itself (1024 * 4^15)
    QCOMPARE(largest_fitting_n(huge, 1), std::int64_t(0));  // not even 1024 tokens fit
    const double at_64k = scaling_bytes(huge, 65536);
    QCOMPARE(largest_fitting_n(huge, at_64k / 0.7 * 1.01), std::int64_t(65536));
    QCOMPARE(largest_fitting_n(huge, at_64k / 0.7 * 0.99), std::int64_t(16384));
    // CA's scores come in chunks on the CPU: a million tokens need a few GB, not the 32 GB of whole scores.
    ScalingOptions cpu;
    cpu.device = "cpu";
    QVERIFY2(scaling_bytes(cpu, 1 << 20) < 4e9, qPrintable(QString::number(scaling_bytes(cpu, 1 << 20))));
    QVERIFY(scaling_bytes(cpu, 1 << 20) > 4.0 * (1 << 20) * 64 * 4);  // the context and its node tables
  }

  // SessionController: the session without widgets.
  // A query's walk at a million tokens: the tree view draws what the screen shows (the path, S,
  // one band per dense level), not the two million nodes; a small tree is drawn node by node.
  void a_walk_at_a_million_tokens_draws_the_path_not_the_tree() {
    ScalingPanel panel;
    panel.resize(1200, 900);
    panel.show();
    QSignalSpy walked(&panel, &ScalingPanel::walked);
    const std::int64_t n = std::int64_t(1) << 20;
    QVERIFY(panel.walk(n, "cpu"));
    QVERIFY(!panel.walk(n, "cpu"));  // one at a time
    QVERIFY(walked.wait(180000));
    auto* tree = panel.tree();
    const auto shape = TreeShape::of(n, 2);
    QCOMPARE(tree->levels(), int(shape.levels()));
    QVERIFY2(walked.first().at(0).toString().contains(QString("read %1 tokens").arg(shape.tokens_per_query())),
             qPrintable(walked.first().at(0).toString()));
    // The summary in the controls' row wraps rather than asking for its one-line width (at 1M
    // tokens that widened the window to 1528 pixels, past a 1366-pixel laptop screen).
    const auto* status = panel.findChild<QLabel*>("scalingStatus");
    const int line = status->fontMetrics().horizontalAdvance(status->text());
    QVERIFY2(status->minimumSizeHint().width() < line / 4,
             qPrintable(QString("%1 of %2 pixels").arg(status->minimumSizeHint().width()).arg(line)));
    tree->repaint();
    qInfo() << "1M-leaf tree: frame of" << tree->lastFrameItems() << "items in" << tree->lastFrameMs() << "ms";
    QVERIFY2(tree->lastFrameItems() < 5000, qPrintable(QString::number(tree->lastFrameItems())));
    QVERIFY(tree->lastFrameItems() >= int(shape.levels()));  // at least the walk
    // 21 levels on a few hundred pixels: each node of the walk keeps clear of its parent's circle.
    const auto* walk = tree->current();
    QVERIFY(walk);
    for (std::size_t l = 1; l < walk->trace.path.size(); ++l) {
      const auto parent = walk->trace.path[l - 1], child = walk->trace.path[l];
      const double gap = tree->nodePos(child).y() - tree->nodePos(parent).y();
      QVERIFY2(gap >= tree->nodeRadius(parent) + tree->nodeRadius(child),
               qPrintable(QString("level %1: rows %2 px apart, radii %3 + %4").arg(l).arg(gap)
                              .arg(tree->nodeRadius(parent)).arg(tree->nodeRadius(child))));
    }
    // Small contexts are drawn whole: every node and, under the node count, the edges.
    QVERIFY(panel.walk(64, "cpu"));
    QVERIFY(walked.wait(60000));
    tree->repaint();
    const auto small = TreeShape::of(64, 2);
    std::int64_t nodes = 0;
    for (std::int64_t l = 0; l < small.levels(); ++l) nodes += small.level_size(l);
    QVERIFY2(tree->lastFrameItems() >= nodes, qPrintable(QString::number(tree->lastFrameItems())));
    QVERIFY(tree->lastFrameItems() < 2 * nodes + 200);
  }

  void controller_compares_every_decoder_at_equal_tokens() {
    Config base = small_copy(10);
    const auto configs = SessionController::comparisonConfigs(base);
    QCOMPARE(configs.size(), qsizetype(decoders().size()));
    const auto tca_tokens = TreeShape::of(8, base.branch_factor).tokens_per_query();  // seq 16: 8 context tokens
    for (int i = 0; i < configs.size(); ++i) {
      QCOMPARE(configs[i].model, decoders()[std::size_t(i)].name);
      QCOMPARE(configs[i].seq_len, base.seq_len);
    }
    const auto perceiver = std::find_if(configs.begin(), configs.end(), [](const Config& c) { return c.model == "perceiver"; });
    QVERIFY(perceiver != configs.end());
    QCOMPARE(perceiver->latents, tca_tokens);
    // What the button and the toolbar say it queues comes from the same registry: one line a decoder.
    MainWindow w;
    const auto tip = w.action("compare")->toolTip();
    QCOMPARE(tip.count(QChar(0x2022)), qsizetype(decoders().size()));
    for (const auto& d : decoders()) QVERIFY2(tip.contains(QString::fromStdString(d.title + ": " + d.summary)), qPrintable(tip));
    QVERIFY2(tip.section('\n', 0, 0).endsWith("(Ctrl+K)"), qPrintable(tip));
    QVERIFY(!w.action("compare")->statusTip().contains('\n'));
    // The reward study moves a regression experiment to the classification task, with TCA.
    const auto reward = SessionController::rewardStudyConfigs(Config::preset("gp"));
    QCOMPARE(reward.size(), qsizetype(Config::choices("reward").size()));
    for (const auto& c : reward) {
      QVERIFY(c.is_classification());
      QVERIFY(decoder_info(c.model).policy);
    }
    QVERIFY(reward[0].reward != reward[1].reward);
  }

  void controller_trains_the_queue_in_order_and_refuses_missing_files() {
    SessionController controller;
    QSignalSpy changed(&controller, &SessionController::changed);
    controller.queueRuns({small_copy(6), small_copy(4)}, "pair");
    QCOMPARE(controller.runs().size(), qsizetype(2));
    QCOMPARE(controller.runs()[0].group, QString("pair"));
    QTRY_VERIFY_WITH_TIMEOUT(controller.queueEmpty() && !controller.session()->busy() &&
                                 controller.runs()[1].state == state_text(TrainingSession::State::Finished),
                             120000);
    QCOMPARE(controller.runs()[0].state, state_text(TrainingSession::State::Finished));
    QCOMPARE(controller.runs()[0].history.steps.back().step, std::int64_t(6));
    QCOMPARE(controller.runs()[1].history.steps.back().step, std::int64_t(4));
    QVERIFY(controller.runs()[1].snapshot.has_value());
    QVERIFY(changed.count() > 2);
    QString error;
    QVERIFY(!controller.openCheckpoint(dir_.filePath("absent.safetensors"), &error));
    QVERIFY(error.contains("absent.safetensors") && error.contains("does not exist"));
    QVERIFY(!controller.openCheckpoint(dir_.path(), &error));
    QVERIFY2(error.contains("is a folder, not a file; pass a .safetensors file"), qPrintable(error));
    QVERIFY(!controller.opening());
    controller.setVisible(0, false);
    QVERIFY(!controller.runs()[0].visible);
    // Stop ends the run and cancels the queue behind it; the cancelled runs say so and never start.
    controller.queueRuns({small_copy(100000), small_copy(4), small_copy(4)}, "stopped");
    QTRY_VERIFY_WITH_TIMEOUT(!controller.runs()[2].history.steps.empty(), 30000);
    controller.stopAll();
    QVERIFY(controller.queueEmpty());
    QCOMPARE(controller.runs()[3].state, QString("cancelled"));
    QCOMPARE(controller.runs()[4].state, QString("cancelled"));
    QTRY_VERIFY_WITH_TIMEOUT(!controller.session()->busy(), 60000);
    QTest::qWait(100);
    const auto& stopped = controller.runs()[2];
    QVERIFY(!stopped.history.steps.empty());
    QCOMPARE(stopped.state, QString("stopped at step %1").arg(stopped.history.steps.back().step));
    QCOMPARE(controller.runs()[1].state, state_text(TrainingSession::State::Finished));  // ran to its end
    QCOMPARE(controller.runs()[3].state, QString("cancelled"));
    QVERIFY(controller.runs()[3].history.steps.empty());
  }

  void initTestCase() {
    QCoreApplication::setOrganizationName("ReTreeverTest");
    QCoreApplication::setApplicationName("StudioTest");
    QSettings().clear();
  }

  // Every test's windows keep their session in a folder of their own (the studio restores the
  // session it finds there).
  void init() {
    static int test = 0;
    qputenv("XDG_DATA_HOME", dir_.filePath(QString("data-%1").arg(++test)).toUtf8());
  }

  void controller_keeps_every_run_in_its_folder_and_the_next_start_restores_them() {
    QTemporaryDir root;
    const auto header_step = [](const QString& folder) {
      return read_checkpoint_header(QDir(folder).filePath(kCheckpointFileName).toStdString()).step;
    };
    std::int64_t stopped_at = 0;
    QStringList names;
    {
      SessionController a;
      a.keepRunsIn(root.path());
      QCOMPARE(a.restore(), QString());  // nothing kept yet
      a.queueRuns({small_copy(6), small_copy(100000)}, "kept");
      QTRY_VERIFY_WITH_TIMEOUT(a.runs()[1].lastStep() >= 25, 120000);  // past its first evaluation (step 20)
      a.queueRuns({small_copy(4)}, "never started");
      a.keepAll();  // what the window does when it closes: the run in hand stops and is kept
      const auto& runs = a.runs();
      QCOMPARE(runs.size(), qsizetype(3));
      for (const auto& r : runs) names << r.name;
      // The finished run: its folder as `train --out` writes it, its checkpoint at its last step.
      for (const char* file : {"config.json", "metrics.csv", kCheckpointFileName, kBestCheckpointFileName})
        QVERIFY2(QFileInfo(QDir(runs[0].folder).filePath(file)).isFile(), file);
      QCOMPARE(header_step(runs[0].folder), std::int64_t(6));
      // The run in hand: kept where it stopped, not at its last evaluation.
      stopped_at = header_step(runs[1].folder);
      QVERIFY(stopped_at >= 25);
      QCOMPARE(runs[1].lastStep(), stopped_at);
      QCOMPARE(runs[1].state, QString("stopped at step %1").arg(stopped_at));
      QVERIFY(kept_checkpoint(runs[2]).isEmpty());
      QVERIFY(runs[0].folder.startsWith(root.path() + "/runs/") && runs[0].folder != runs[1].folder);
      QTest::qWait(200);  // the queue is held: nothing starts after keepAll
      QVERIFY(!a.session()->busy());
    }
    SessionController b;
    b.keepRunsIn(root.path());
    QCOMPARE(b.restore(), QString());
    QCOMPARE(b.runs().size(), qsizetype(3));
    for (int i = 0; i < 3; ++i) QCOMPARE(b.runs()[i].name, names[i]);
    QCOMPARE(b.runs()[0].state, state_text(TrainingSession::State::Finished));
    QCOMPARE(b.runs()[0].history.steps.back().step, std::int64_t(6));
    QVERIFY(!b.runs()[0].history.evals.empty());
    QCOMPARE(b.runs()[1].state, QString("stopped at step %1").arg(stopped_at));
    QCOMPARE(b.runs()[1].steps_done, stopped_at);
    QCOMPARE(b.runs()[2].state, QString("not started"));
    QCOMPARE(b.runs()[0].group, QString("kept"));
    QVERIFY(b.runs()[0].color != b.runs()[1].color);
    // A finished run has nothing left to train; a stopped one goes on in its own folder.
    QString error;
    QVERIFY(!b.continueRun(0, &error));
    QVERIFY2(error.contains("has trained 6 steps; ask for more"), qPrintable(error));
    QVERIFY(b.continueRun(1, &error));
    QTRY_VERIFY_WITH_TIMEOUT(b.runs()[1].lastStep() >= stopped_at + 5, 60000);
    QCOMPARE(b.runs().size(), qsizetype(3));  // the same run, not a new one
    QVERIFY(!b.continueRun(2, &error));
    QVERIFY2(error.contains("in progress"), qPrintable(error));
    b.stopAll();
    QTRY_VERIFY_WITH_TIMEOUT(!b.session()->busy(), 60000);
    QTest::qWait(100);
    QVERIFY(header_step(b.runs()[1].folder) > stopped_at);
    // The run never started trains from its first step when asked; new runs number on.
    QVERIFY(b.continueRun(2, &error));
    QTRY_VERIFY_WITH_TIMEOUT(b.runs()[2].state == state_text(TrainingSession::State::Finished), 60000);
    QCOMPARE(header_step(b.runs()[2].folder), std::int64_t(4));
    // A finished run trains further when asked for more steps, in its own run and folder.
    QVERIFY(b.continueRun(0, &error, 10));
    QTRY_VERIFY_WITH_TIMEOUT(b.runs()[0].state == state_text(TrainingSession::State::Finished) &&
                                 b.runs()[0].lastStep() == 10,
                             60000);
    QCOMPARE(header_step(b.runs()[0].folder), std::int64_t(10));
    QCOMPARE(b.runs()[0].config.steps, std::int64_t(10));
    b.queueRuns({small_copy(2)}, "more");
    QCOMPARE(b.runs()[3].id, 4);
    QTRY_VERIFY_WITH_TIMEOUT(!b.session()->busy() && b.queueEmpty(), 60000);
    // One run removed: its folder goes, the others stay, and so does the list on disk.
    const QString removed = b.runs()[1].folder;
    QVERIFY(QFileInfo(removed).isDir());
    QVERIFY(b.removeRun(1, &error));
    QVERIFY(!QFileInfo::exists(removed));
    QCOMPARE(b.runs().size(), qsizetype(3));
    QCOMPARE(b.runs()[1].name, names[2]);
    {
      SessionController d;
      d.keepRunsIn(root.path());
      QCOMPARE(d.restore(), QString());
      QCOMPARE(d.runs().size(), qsizetype(3));
      QCOMPARE(d.runs()[1].name, names[2]);
    }
    // A new session forgets the runs and deletes the folders it made.
    QTest::qWait(100);
    QVERIFY(b.clearSession(&error));
    QVERIFY(b.runs().isEmpty());
    QVERIFY(QDir(root.filePath("runs")).entryList(QDir::Dirs | QDir::NoDotAndDotDot).isEmpty());
    SessionController c;
    c.keepRunsIn(root.path());
    QCOMPARE(c.restore(), QString());
    QVERIFY(c.runs().isEmpty());
  }

  void a_session_list_naming_a_folder_outside_the_session_is_not_followed() {
    QTemporaryDir root, outside;
    QFile f(root.filePath("session.json"));
    QVERIFY(f.open(QIODevice::WriteOnly));
    const auto entry = [](int id, const QString& name, const QString& folder) {
      return QJsonObject{{"id", id}, {"name", name}, {"state", "queued"}, {"folder", folder}, {"config", QJsonObject{}}};
    };
    const QJsonObject list{{"format", "retreever-studio-session"},
                           {"version", 1},
                           {"runs", QJsonArray{entry(1, "#1 elsewhere", outside.path()), entry(2, "#2 up", "runs/../../x")}}};
    f.write(QJsonDocument(list).toJson());
    f.close();
    SessionController controller;
    controller.keepRunsIn(root.path());
    const auto message = controller.restore();
    QVERIFY2(message.contains("#1 elsewhere: its folder") && message.contains("#2 up: its folder"), qPrintable(message));
    QCOMPARE(controller.runs().size(), qsizetype(2));
    for (const auto& r : controller.runs()) QVERIFY(r.folder.isEmpty());
    QCOMPARE(controller.runs()[1].state, QString("not started"));
    QString error;
    QVERIFY(controller.clearSession(&error));
    QVERIFY(QFileInfo(outside.path()).isDir());  // not deleted
  }

  void an_unreadable_session_list_is_moved_aside_not_overwritten() {
    QTemporaryDir root;
    for (const QByteArray& bad : {QByteArray("{\"format\": \"retreever-studio-session\", \"runs\": [ {"),
                                  QByteArray("[1, 2, 3]")}) {
      QFile f(root.filePath("session.json"));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(bad);
      f.close();
      SessionController controller;
      controller.keepRunsIn(root.path());
      const auto message = controller.restore();
      QVERIFY2(message.contains("could not be read") && message.contains("session.json.unreadable-"), qPrintable(message));
      QVERIFY(controller.runs().isEmpty());
      QVERIFY(!QFileInfo::exists(root.filePath("session.json")));
      const auto aside = QDir(root.path()).entryList({"session.json.unreadable-*"});
      QVERIFY(!aside.isEmpty());
      QFile kept(root.filePath(aside.first()));
      QVERIFY(kept.open(QIODevice::ReadOnly));
      QCOMPARE(kept.readAll(), bad);
      QDir(root.path()).remove(aside.first());
    }
  }

  void two_studios_open_at_once_keep_a_session_each() {
    QString first_root;
    {
      MainWindow a;
      MainWindow b;
      first_root = a.controller()->root();
      QVERIFY(first_root.endsWith("/session"));
      QVERIFY2(b.controller()->root().endsWith("/session-2"), qPrintable(b.controller()->root()));
      QVERIFY(b.windowTitle().contains("session 2") && !a.windowTitle().contains("session"));
    }
    MainWindow c;  // both closed: the first session is free again
    QCOMPARE(c.controller()->root(), first_root);
  }

  void a_studio_that_cannot_write_its_session_says_so_and_trains_anyway() {
    QFile blocker(dir_.filePath("a-file-not-a-folder"));
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    qputenv("XDG_DATA_HOME", blocker.fileName().toUtf8() + "/data");  // under a file: nothing can be made
    MainWindow w;
    QVERIFY(w.controller()->root().isEmpty());
    auto* dialog = w.findChild<QMessageBox*>("errorDialog");
    QVERIFY(dialog);
    QVERIFY2(dialog->text().contains("keeps no session") && dialog->text().contains("cannot be written"),
             qPrintable(dialog->text()));
    w.queueRuns({small_copy(4)}, "unkept");
    QTRY_VERIFY_WITH_TIMEOUT(w.runs()[0].state == state_text(TrainingSession::State::Finished), 60000);
    QVERIFY(w.runs()[0].folder.isEmpty());
  }

  void the_studio_brings_back_its_runs_when_it_starts_again() {
    QString name;
    {
      MainWindow w;
      QVERIFY(w.runs().isEmpty());
      w.queueRuns({small_copy(4)}, "first window");
      QTRY_VERIFY_WITH_TIMEOUT(!w.runs().isEmpty() && w.runs()[0].state == state_text(TrainingSession::State::Finished),
                               60000);
      name = w.runs()[0].name;
      w.close();
    }
    MainWindow again;
    QCOMPARE(again.runs().size(), qsizetype(1));
    QCOMPARE(again.runs()[0].name, name);
    QCOMPARE(again.runs()[0].lastStep(), std::int64_t(4));
    // Nothing is selected, so that a run started next is followed; the inspector loads the newest
    // run's model from its folder, Save saves it, and its copy task's accuracy per target position
    // (from its checkpoint) is plotted again.
    auto* list = again.findChild<QListWidget*>("runList");
    QVERIFY(list);
    QCOMPARE(list->currentRow(), -1);
    QCOMPARE(again.runs()[0].lastEval()->per_target.size(), std::size_t(again.runs()[0].config.seq_len / 2));
    auto* positions = again.findChild<QCustomPlot*>("Accuracy per target position (click to inspect)");
    QVERIFY(positions);
    QVERIFY(positions->isVisibleTo(&again));
    auto* inspector = again.findChild<InspectorPanel*>();
    QVERIFY(inspector);
    QTRY_VERIFY_WITH_TIMEOUT(inspector->hasModel() && !inspector->loading(), 60000);
    // Save checkpoint saves that run from its folder (no trainer holds it now).
    QVERIFY(again.action("save")->isEnabled());
    const auto saved = dir_.filePath("restored-run.safetensors");
    again.saveCheckpoint(saved);
    QCOMPARE(read_checkpoint_header(saved.toStdString()).step, std::int64_t(4));
    // A session report holds the restored run's model too, copied from its folder.
    QVERIFY(again.exportReport(dir_.filePath("restored-report")));
    const auto bundled = dir_.filePath(QString("restored-report/checkpoint_run%1.safetensors").arg(again.runs()[0].id));
    QCOMPARE(read_checkpoint_header(bundled.toStdString()).step, std::int64_t(4));
    // A run trained next is the one Save saves while nothing is selected.
    again.queueRuns({small_copy(6)}, "after the restore");
    QTRY_VERIFY_WITH_TIMEOUT(again.runs().size() == 2 && again.runs()[1].state == state_text(TrainingSession::State::Finished),
                             60000);
    QCOMPARE(list->currentRow(), -1);
    const auto newest = dir_.filePath("newest-run.safetensors");
    again.saveCheckpoint(newest);
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(newest), 30000);
    QCOMPARE(read_checkpoint_header(newest.toStdString()).step, std::int64_t(6));
  }

  void settings_of_other_decoders_are_disabled_and_the_new_choices_reach_the_config() {
    MainWindow w;
    auto* panel = w.experiment();
    auto* model = qobject_cast<QComboBox*>(panel->editor("model"));
    QVERIFY(model);
    // The items show the registry's titles and summaries; the config gets the id.
    const int perceiver = model->findData("perceiver");
    QVERIFY(perceiver >= 0);
    QCOMPARE(model->itemText(perceiver), QString::fromStdString(decoder_info("perceiver").title));
    QCOMPARE(model->itemData(perceiver, Qt::ToolTipRole).toString(),
             QString::fromStdString(decoder_info("perceiver").summary) + "\n(--model perceiver)");
    // The longest title does not widen the dock; the list it drops down shows every title whole.
    int longest = 0;
    for (int i = 0; i < model->count(); ++i) longest = std::max(longest, model->fontMetrics().horizontalAdvance(model->itemText(i)));
    // The box asks for the width of a box of short ids (leaf layout: packed, balanced).
    QCOMPARE(model->sizeHint().width(), qobject_cast<QComboBox*>(panel->editor("leaf_layout"))->sizeHint().width());
    QVERIFY2(model->view()->minimumWidth() >= longest, qPrintable(QString("%1 vs %2").arg(model->view()->minimumWidth()).arg(longest)));
    model->setCurrentIndex(perceiver);
    QCOMPARE(panel->config().model, std::string("perceiver"));
    // The closed box's tooltip gives the chosen entry's words too (an elided title is read there).
    QVERIFY2(model->toolTip().contains(QString::fromStdString(decoder_info("perceiver").title + ": " +
                                                              decoder_info("perceiver").summary)),
             qPrintable(model->toolTip()));
    for (const char* m : {"ca", "tca"}) {
      QVERIFY(choose(panel, "model", m));
      for (const auto& k : decoder_info("tca").fields) {
        if (k == "reward") continue;  // also needs the copy task
        auto* editor = panel->editor(QString::fromStdString(k));
        QVERIFY2(editor, k.c_str());
        QCOMPARE(editor->isEnabled(), std::string(m) == "tca");
        // A disabled setting's tooltip says why (core/registry.h's unread_field_reason).
        QCOMPARE(editor->toolTip().contains("Not used by this run: only the tca model reads it."), std::string(m) != "tca");
        auto* form = qobject_cast<QFormLayout*>(editor->parentWidget()->layout());
        QVERIFY(form && form->labelForField(editor));
        QCOMPARE(form->labelForField(editor)->toolTip(), editor->toolTip());  // the label says it too
      }
    }
    QVERIFY(choose(panel, "leaf_layout", "balanced"));
    QVERIFY(choose(panel, "rl_baseline", "mean"));
    QCOMPARE(panel->config().leaf_layout, std::string("balanced"));
    QCOMPARE(panel->config().rl_baseline, std::string("mean"));
  }

  void exploration_on_regression_is_a_warning_that_leaves_train_enabled() {
    MainWindow w;
    auto* panel = w.experiment();
    auto* status = panel->findChild<QLabel*>("validationStatus");
    QVERIFY(status);
    QVERIFY(choose(panel, "task", "gp"));
    QVERIFY(choose(panel, "model", "tca"));
    qobject_cast<QLineEdit*>(panel->editor("explore"))->setText("0.05");
    QVERIFY(panel->isValid());
    QVERIFY(w.action("train")->isEnabled());
    QVERIFY2(status->text().contains("Ready to train, but") && status->text().contains("explore"),
             qPrintable(status->text()));
    qobject_cast<QLineEdit*>(panel->editor("explore"))->setText("0");
    QVERIFY2(status->text().startsWith("Ready to train. Needs about "), qPrintable(status->text()));
  }

  void dropout_field_shows_the_copy_preset_and_reaches_the_config() {
    // The copy preset trains with the reference copy script's dropout: the panel shows it, an edit
    // reaches the config, and a value out of its bounds disables Train with the field named.
    MainWindow w;
    auto* panel = w.experiment();
    panel->setConfig(Config::preset("copy"));
    auto* edit = qobject_cast<QLineEdit*>(panel->editor("dropout"));
    QVERIFY(edit);
    QCOMPARE(edit->text().toDouble(), 0.1);
    edit->setText("0.2");
    QCOMPARE(panel->config().dropout, 0.2);
    QVERIFY(panel->isValid());
    edit->setText("0.95");
    QVERIFY(!panel->isValid());
    QVERIFY(!w.action("train")->isEnabled());
    auto* status = panel->findChild<QLabel*>("validationStatus");
    QVERIFY2(status && status->text().contains("dropout"), qPrintable(status ? status->text() : QString()));
  }

  void a_constant_series_and_a_single_point_get_a_range_around_them() {
    // "Tokens read per query" is constant over a run, and a comparison of one run is one point:
    // each axis must contain the values with a margin (not 1e-50 .. 1e50 or +-1e28).
    QCustomPlot curve;
    curve.addGraph()->setData({0, 10, 20, 30}, {6, 6, 6, 6});
    fit_axes(&curve);
    QVERIFY(curve.yAxis->range().lower < 6 && curve.yAxis->range().upper > 6);
    QVERIFY(curve.yAxis->range().size() < 10);
    QVERIFY(curve.xAxis->range().lower < 0 && curve.xAxis->range().upper > 30 && curve.xAxis->range().size() < 40);
    QCustomPlot scatter;
    scatter.xAxis->setScaleType(QCPAxis::stLogarithmic);
    scatter.addGraph()->setData({6}, {99.99});
    fit_axes(&scatter);
    QVERIFY(scatter.xAxis->range().lower < 6 && scatter.xAxis->range().upper > 6);
    QVERIFY(scatter.xAxis->range().lower > 1 && scatter.xAxis->range().upper < 20);
    QVERIFY(scatter.yAxis->range().lower < 99.99 && scatter.yAxis->range().upper > 99.99);
    QVERIFY(scatter.yAxis->range().size() < 30);
    // A zero value still gets a visible range.
    const auto zero = padded_range(0, 0, false);
    QVERIFY(zero.lower < 0 && zero.upper > 0);
  }

  void evaluation_of_accuracy_and_log_likelihood_runs_uses_two_axes() {
    // A copy run (accuracy, %) and a GP run (log-likelihood) shown together: each in its own unit.
    RunRecord copy, gp;
    copy.id = 1, gp.id = 2;
    copy.name = "#1 copy", gp.name = "#2 gp";
    copy.config = Config::preset("copy");
    gp.config = Config::preset("gp");
    copy.color = run_color(0), gp.color = run_color(1);
    for (int step : {10, 20}) {
      EvalMetrics e;
      e.step = step;
      e.metric = "accuracy";
      e.value = 0.5 + step / 100.0;
      e.tokens_per_query = 6;
      copy.history.evals.push_back(e);
      e.metric = "log_likelihood";
      e.value = -1.0 + step / 100.0;
      gp.history.evals.push_back(e);
    }
    PlotPanel panel;
    panel.setRuns({&copy, &gp});
    auto* eval = panel.plots()[2];
    QCOMPARE(eval->graphCount(), 2);
    QCOMPARE(eval->graph(0)->valueAxis(), eval->yAxis);
    QCOMPARE(eval->graph(1)->valueAxis(), eval->yAxis2);
    QVERIFY(eval->yAxis2->visible());
    QVERIFY(eval->yAxis->label().contains("accuracy"));
    QVERIFY(eval->yAxis2->label().contains("log-likelihood"));
    QVERIFY(eval->yAxis2->range().contains(-0.9) && eval->yAxis2->range().size() < 5);
    // The comparison's scatter (last evaluations) the same way.
    ComparisonPanel comparison;
    comparison.setRuns({&copy, &gp});
    auto* scatter = comparison.plot();
    QCOMPARE(scatter->graph(0)->valueAxis(), scatter->yAxis);
    QCOMPARE(scatter->graph(1)->valueAxis(), scatter->yAxis2);
    const auto left = scatter->yAxis->range(), right = scatter->yAxis2->range();
    QVERIFY2(right.contains(-0.8) && left.contains(70), qPrintable(QString("left %1..%2, right %3..%4")
                                                                       .arg(left.lower).arg(left.upper)
                                                                       .arg(right.lower).arg(right.upper)));
    // A Perceiver IO run sized to TCA's tokens with TCA's accuracy lies on its point: drawn as a ring.
    RunRecord perceiver = copy;
    perceiver.id = 3, perceiver.name = "#3 perceiver";
    perceiver.config.model = "perceiver";
    comparison.setRuns({&copy, &gp, &perceiver});
    QCOMPARE(scatter->graph(2)->scatterStyle().shape(), QCPScatterStyle::ssCircle);
    QCOMPARE(scatter->graph(0)->scatterStyle().shape(), QCPScatterStyle::ssDisc);
    QVERIFY(scatter->graph(2)->scatterStyle().size() > scatter->graph(0)->scatterStyle().size());
    // The GP run alone: one axis, named by its metric.
    copy.visible = false;
    panel.setRuns({&copy, &gp});
    QCOMPARE(eval->graph(0)->valueAxis(), eval->yAxis);
    QVERIFY(!eval->yAxis2->visible());
    QCOMPARE(eval->yAxis->label(), QString("log-likelihood"));
  }

  // The comparison's paper column: the copy tables, EMNIST for images (seen classes), the GP figures
  // others quote (RBF evaluation); nothing where the paper has no such setting.
  void paper_column_names_its_source() {
    Config c = Config::preset("copy");
    c.seq_len = 512;
    QCOMPARE(paper_result(c), QString("100.0 ± 0.0"));
    c.seq_len = 64;
    QVERIFY(paper_result(c).isEmpty());
    Config g = Config::preset("gp");
    g.model = "tca";
    QVERIFY2(paper_result(g).startsWith("1.25") && paper_result(g).contains("quoted"), qPrintable(paper_result(g)));
    g.eval_kernel = "matern";
    QVERIFY(paper_result(g).isEmpty());
    Config im = Config::preset("image");
    im.model = "ca";
    QVERIFY(paper_result(im).startsWith("1.41") && paper_result(im).contains("EMNIST"));
    im.eval_context = 100;  // a fixed context size is not the paper's setting (nor the report's paper column)
    QVERIFY(paper_result(im).isEmpty());
    im.eval_context = 0;
    im.eval_split = "unseen";
    QVERIFY(paper_result(im).isEmpty());
    im.eval_split = "seen";
    im.model = "treeformer";
    QVERIFY(paper_result(im).isEmpty());
  }

  void loss_terms_of_many_runs_keep_a_legend_of_runs_and_dashes() {
    // Four lines a TCA run: five runs would need 20 legend entries, two runs 8 (which took the
    // chart's height). The legend lists each run once and a key of the dashes instead; one run
    // keeps its four entries, each term a colour.
    std::vector<RunRecord> runs(8);
    QList<const RunRecord*> shown;
    for (int i = 0; i < 8; ++i) {
      runs[i].id = i + 1;
      runs[i].name = QString("#%1").arg(i + 1);
      runs[i].config = Config::preset("copy");
      runs[i].color = run_color(i);
      for (int step : {1, 2, 3}) {
        StepMetrics m;
        m.step = step;
        m.loss = m.tca_loss = m.ca_loss = 1.0 / step;
        m.rl_loss = -0.1 * step;
        m.entropy = 0.5;
        runs[i].history.steps.push_back(m);
      }
      shown << &runs[i];
    }
    runs[7].config.model = "ca";  // one term, its prediction loss, named by the run alone
    PlotPanel panel;
    panel.setRuns(shown.mid(0, 5));
    auto* terms = panel.plots()[1];
    QCOMPARE(terms->graphCount(), 5 * 4 + 3);
    QVERIFY(terms->legend->visible());
    auto legend_names = [terms] {  // a wrapped legend's grid may hold empty cells
      QStringList names;
      for (int i = 0; i < terms->legend->itemCount(); ++i)
        if (auto* item = qobject_cast<QCPPlottableLegendItem*>(terms->legend->item(i))) names << item->plottable()->name();
      return names;
    };
    const auto names = legend_names();
    QCOMPARE(names.size(), 5 + 3);
    QVERIFY2(names.contains("#1 TCA") && names.contains("CA (dashed)") && names.contains("RL (dotted)") &&
                 names.contains("entropy (dash-dot)") && !names.contains("#1 CA"),
             qPrintable(names.join(", ")));
    // The lines keep their names (the readout under the pointer shows them).
    QCOMPARE(terms->graph(1)->name(), QString("#1 CA"));
    // Training loss is each run's prediction loss (L_TCA for TCA), not the whole objective, whose
    // REINFORCE surrogate follows the rewards: comparable across models.
    runs[0].history.steps.back().loss = 7.0;
    panel.setRuns(shown.mid(0, 5));
    const auto* loss = panel.plots()[0]->graph(0)->data().data();
    const auto* tca = terms->graph(0)->data().data();
    QCOMPARE(loss->size(), 3);
    QCOMPARE(loss->at(2)->value, tca->at(2)->value);  // the same smoothing of the same values
    QVERIFY(loss->at(2)->value < 1.0);                 // not pulled towards the objective's 7
    panel.setRuns({shown[0], shown[1]});
    QCOMPARE(terms->graphCount(), 8 + 3);
    QCOMPARE(legend_names().size(), 2 + 3);
    QVERIFY(legend_names().contains("#2 TCA") && !legend_names().contains("#2 RL"));
    // Two runs: a colour a run, the terms told apart by their dashes.
    QCOMPARE(terms->graph(1)->pen().color(), runs[0].color);
    QCOMPARE(terms->graph(5)->pen().color(), runs[1].color);
    // One run: each term a colour of its own, the TCA term the run's.
    panel.setRuns({shown[0]});
    QCOMPARE(terms->graphCount(), 4);
    QCOMPARE(legend_names().size(), 4);
    QCOMPARE(terms->graph(0)->pen().color(), runs[0].color);
    QSet<QRgb> colours;
    for (int g = 0; g < 4; ++g) colours.insert(terms->graph(g)->pen().color().rgb());
    QCOMPARE(colours.size(), 4);
    // Eight runs: the Runs list is the colours' key. No legend lists runs (ten runs' names took most
    // of each chart's height); Loss terms keeps the key of its dashes, the solid line's included.
    panel.setRuns(shown);
    QCOMPARE(terms->graphCount(), 7 * 4 + 1 + 4);
    QVERIFY(terms->legend->visible());
    QCOMPARE(legend_names(), QStringList({"prediction (solid)", "CA (dashed)", "RL (dotted)", "entropy (dash-dot)"}));
    QCOMPARE(terms->graph(7 * 4)->name(), QString("#8"));
    for (int p : {0, 4}) QVERIFY(!panel.plots()[p]->legend->visible());
    // At a laptop's width (the Curves tab beside the docks on a 1366-pixel screen) the two columns
    // are one width: the one whose legends sat below its axes took the extra space before, and the
    // other lost its legends and clipped its title.
    panel.setRuns(shown.mid(0, 4));
    panel.resize(1200, 650);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    for (int width : {1200, 990, 800, 700}) {
      panel.resize(width, 650);
      QTRY_VERIFY2(std::abs(panel.plots()[0]->width() - panel.plots()[1]->width()) <= 2,
                   qPrintable(QString("at %1: %2 and %3").arg(width).arg(panel.plots()[0]->width()).arg(panel.plots()[1]->width())));
      QVERIFY(std::abs(panel.plots()[2]->width() - panel.plots()[3]->width()) <= 2);
    }
  }

  void a_run_that_cannot_fit_in_memory_disables_train_as_you_type() {
    MainWindow w;
    auto* panel = w.experiment();
    auto* status = panel->findChild<QLabel*>("validationStatus");
    QVERIFY(choose(panel, "task", "copy"));
    QVERIFY(choose(panel, "device", "cpu"));
    QVERIFY(panel->isValid());
    QVERIFY2(status->text().contains("Needs about") && status->text().contains("available"), qPrintable(status->text()));
    // Every field within its bound, the whole far beyond this machine.
    qobject_cast<QLineEdit*>(panel->editor("seq_len"))->setText("1048576");
    qobject_cast<QLineEdit*>(panel->editor("batch"))->setText("65536");
    QVERIFY(!panel->isValid());
    QVERIFY(!w.action("train")->isEnabled());
    QVERIFY2(panel->problems().first().startsWith("memory: this run needs about"), qPrintable(panel->problems().first()));
    QVERIFY(panel->problems().first().contains("lower batch"));
    // On a GPU the estimate does not hold (no N x N scores there): the same run is not refused,
    // and the status says how a run that does not fit ends instead of quoting this machine's memory.
    QVERIFY(choose(panel, "device", "cuda"));
    QVERIFY(panel->isValid());
    QVERIFY2(status->text().contains("not estimated") && !status->text().contains("available"), qPrintable(status->text()));
    QVERIFY(choose(panel, "device", "cpu"));
    qobject_cast<QLineEdit*>(panel->editor("batch"))->setText("8");
    qobject_cast<QLineEdit*>(panel->editor("seq_len"))->setText("64");
    QVERIFY(panel->isValid());
    QVERIFY(w.action("train")->isEnabled());
  }

  void validation_marks_bad_values_and_disables_train() {
    MainWindow w;
    auto* panel = w.experiment();
    QVERIFY(panel->isValid());
    QVERIFY(w.action("train")->isEnabled());
    // Real-valued fields take fractions even where the default is integral (lambda_ca = 1).
    for (const char* field : {"lambda_ca", "explore", "grad_clip"}) {
      auto* line = qobject_cast<QLineEdit*>(panel->editor(field));
      QVERIFY2(line, field);
      line->setText("0.25");
      QVERIFY2(panel->isValid(), qPrintable(QString(field) + " refused 0.25: " + panel->problems().join("; ")));
    }
    QCOMPARE(panel->config().lambda_ca, 0.25);
    QCOMPARE(panel->config().explore, 0.25);
    auto* batch = qobject_cast<QLineEdit*>(panel->editor("batch"));
    QSignalSpy validity(panel, &ExperimentPanel::validityChanged);
    batch->setText("0");
    QVERIFY(!panel->isValid());
    QVERIFY(!w.action("train")->isEnabled());
    QVERIFY(w.action("train")->toolTip().contains("batch"));
    QVERIFY(!batch->styleSheet().isEmpty());  // marked
    QVERIFY(validity.count() > 0);
    QCOMPARE(validity.last().at(0).toBool(), false);
    batch->setText("abc");
    QVERIFY(panel->problems().first().contains("not a number"));
    batch->setText("32");
    QVERIFY(panel->isValid());
    QVERIFY(batch->styleSheet().isEmpty());
    QVERIFY(w.action("train")->isEnabled());
    qobject_cast<QLineEdit*>(panel->editor("branch_factor"))->setText("1");
    QVERIFY(panel->problems().first().startsWith("branch_factor"));
    qobject_cast<QLineEdit*>(panel->editor("lr"))->setText("-1");
    QVERIFY(!panel->isValid());
    // Every editor explains itself.
    for (const char* key : {"task", "model", "seq_len", "branch_factor", "lr", "batch", "steps", "seed", "device"})
      QVERIFY2(!panel->editor(key)->toolTip().isEmpty(), key);
    // A preset chosen in the panel is the file's, the same the command line reads.
    QVERIFY(choose(panel, "task", "image"));
    QCOMPARE(panel->config().encoder_layers, Config::preset("image").encoder_layers);
    QCOMPARE(panel->config().ordering, std::string("sort_x2"));
  }

  void worker_follows_the_command_protocol() {
    TrainingSession session;
    QSignalSpy states(&session, &TrainingSession::stateChanged);
    QSignalSpy steps(&session, &TrainingSession::stepped);
    QSignalSpy evals(&session, &TrainingSession::evaluated);
    QSignalSpy lr(&session, &TrainingSession::learningRateChanged);
    session.start(small_copy(100000));
    QVERIFY(waitForState(&session, TrainingSession::State::Running));
    QTRY_VERIFY_WITH_TIMEOUT(steps.count() >= 3, 60000);

    // The GUI thread stays responsive while the worker trains.
    std::vector<qint64> gaps;
    QElapsedTimer clock;
    clock.start();
    qint64 last = 0;
    QTimer probe;
    probe.setInterval(5);
    connect(&probe, &QTimer::timeout, [&] {
      const auto now = clock.elapsed();
      gaps.push_back(now - last);
      last = now;
    });
    probe.start();
    QTest::qWait(1500);
    probe.stop();
    std::sort(gaps.begin(), gaps.end());
    const auto p95 = gaps[gaps.size() * 95 / 100];
    qInfo() << "event-loop gap while training: median" << gaps[gaps.size() / 2] << "ms, p95" << p95 << "ms, max"
            << gaps.back() << "ms";
    QVERIFY2(p95 < 50, qPrintable(QString("event loop blocked: p95 gap %1 ms").arg(p95)));

    session.pause();
    QVERIFY(waitForState(&session, TrainingSession::State::Paused));
    QTest::qWait(100);
    const int paused_at = steps.count();
    QTest::qWait(500);
    QCOMPARE(steps.count(), paused_at);  // nothing moves while paused
    session.stepOnce();
    QTRY_COMPARE_WITH_TIMEOUT(steps.count(), paused_at + 1, 30000);
    QTest::qWait(300);
    QCOMPARE(steps.count(), paused_at + 1);  // exactly one step
    QCOMPARE(session.state(), TrainingSession::State::Paused);
    session.setLearningRate(1e-3);
    QTRY_COMPARE_WITH_TIMEOUT(lr.count(), 1, 10000);
    QVERIFY(lr.first().at(0).toDouble() > 0 && lr.first().at(0).toDouble() <= 1e-3);
    session.resume();
    QVERIFY(waitForState(&session, TrainingSession::State::Running));
    QTRY_VERIFY_WITH_TIMEOUT(steps.count() > paused_at + 2, 30000);
    session.stop();
    QVERIFY(waitForState(&session, TrainingSession::State::Finished));
    // Step numbers arrive in order with no gaps.
    for (int i = 1; i < steps.count(); ++i)
      QCOMPARE(steps.at(i).at(0).value<StepMetrics>().step, steps.at(i - 1).at(0).value<StepMetrics>().step + 1);
  }

  // "All GPUs": the device menu offers it where there are two GPUs or more, and a run queued with
  // it trains data parallel on the worker (here over two CPU devices): the same losses as alone.
  void all_gpus_trains_data_parallel_with_the_losses_of_one_device() {
    ExperimentPanel none(nullptr, 1), four(nullptr, 4);
    auto* menu = qobject_cast<QComboBox*>(none.editor("device"));
    QVERIFY(menu && menu->findText(kAllGpus) < 0);
    QVERIFY(none.parallelDevices().isEmpty());
    menu = qobject_cast<QComboBox*>(four.editor("device"));
    QVERIFY(menu->findText("cuda:3") >= 0);
    menu->setCurrentIndex(menu->findText(kAllGpus));
    QCOMPARE(four.parallelDevices(), QStringList({"cuda:0", "cuda:1", "cuda:2", "cuda:3"}));
    QCOMPARE(four.config().device, std::string("cuda:0"));

    if (!distributed_unsupported_reason("gloo").empty()) QSKIP("this build has no Gloo");
    Config c = small_copy(6);
    c.dropout = 0;  // with dropout each device draws its own slice's masks: not one device's
    QList<double> losses[2];
    for (int k = 0; k < 2; ++k) {
      SessionController controller;
      QSignalSpy started(&controller, &SessionController::runStarted);
      connect(controller.session(), &TrainingSession::stepped, this,
              [&losses, k](const StepMetrics& m) { losses[k] << m.loss; });
      controller.queueRuns({c}, QString(), k == 0 ? QStringList() : QStringList({"cpu", "cpu"}));
      QVERIFY(waitForState(controller.session(), TrainingSession::State::Finished));
      QCOMPARE(started.count(), 1);
      QCOMPARE(started.first().at(0).toString().contains("data parallel on 2 devices"), k == 1);
    }
    QCOMPARE(losses[1].size(), 6);
    QCOMPARE(losses[0].size(), losses[1].size());
    for (int i = 0; i < losses[0].size(); ++i)
      QVERIFY2(std::abs(losses[0][i] - losses[1][i]) <= 1e-3 * std::max(1.0, std::abs(losses[0][i])),
               qPrintable(QString("step %1: %2 alone, %3 data parallel").arg(i).arg(losses[0][i]).arg(losses[1][i])));
  }

  void bad_config_fails_with_a_message() {
    TrainingSession session;
    QSignalSpy failed(&session, &TrainingSession::failed);
    Config c = small_copy(10);
    c.batch = 0;
    session.start(c);
    QVERIFY(waitForState(&session, TrainingSession::State::Failed));
    QCOMPARE(failed.count(), 1);
    QVERIFY(failed.first().at(0).toString().contains("batch"));
  }

  void cpu_threads_setting_reaches_the_run_and_the_settings() {
    // Train > CPU threads: tuned by default; a fixed count trains the next run's steps on that many
    // threads (the status bar says what each step ran on), and is there again at the next start.
    const QByteArray omp = qgetenv("OMP_NUM_THREADS");  // ctest sets it: the menu would offer one thread
    qunsetenv("OMP_NUM_THREADS");
    const auto restore = qScopeGuard([&] {
      if (!omp.isNull()) qputenv("OMP_NUM_THREADS", omp);
    });
    if (default_cpu_threads() < 2) QSKIP("needs two cores");
    int fixed = 0;
    {
      MainWindow w;
      auto* menu = w.findChild<QMenu*>("cpuThreadsMenu");
      QVERIFY(menu);
      const auto choices = menu->actions();
      QCOMPARE(choices.first()->data().toInt(), 0);  // tuned, first and checked
      QVERIFY(choices.first()->isChecked());
      QCOMPARE(choices.last()->data().toInt(), default_cpu_threads());  // up to every core
      choices.at(1)->trigger();  // one thread
      fixed = w.cpuThreads();
      QCOMPARE(fixed, 1);
      QVERIFY(choices.at(1)->isChecked() && !choices.first()->isChecked());
      w.experiment()->setConfig(small_copy(12));
      QSignalSpy steps(w.session(), &TrainingSession::stepped);
      w.action("train")->trigger();
      QVERIFY(waitForState(w.session(), TrainingSession::State::Finished));
      QCOMPARE(steps.count(), 12);
      for (const auto& step : steps)  // every step ran on it (a tuner's trial would try every core)
        QCOMPARE(step.at(0).value<StepMetrics>().cpu_threads, 1);
      QVERIFY2(w.findChild<QLabel*>("speedLabel")->text().endsWith(" · 1 CPU thread"),
               qPrintable(w.findChild<QLabel*>("speedLabel")->text()));
      choices.first()->trigger();  // tuned again
      QVERIFY(choices.first()->isChecked() && !choices.at(1)->isChecked());
      choices.at(1)->trigger();
      w.close();  // writes the settings
    }
    MainWindow again;
    QCOMPARE(again.cpuThreads(), fixed);
    again.setCpuThreads(100000);  // a count from a larger machine's settings: this one's cores
    QCOMPARE(again.cpuThreads(), default_cpu_threads());
    again.setCpuThreads(0);
    again.close();
  }

  void the_first_window_fits_a_small_screen() {
    // A first start (no saved layout) on a screen smaller than the default 1500 x 950 (the
    // offscreen platform's is 800 x 600; a 1366 x 768 laptop's is another): the window fits the
    // screen's free area and asks to be maximized, so the status bar and every plot are on screen.
    QSettings().remove("window");
    {
      MainWindow w;
      const QRect free = w.screen()->availableGeometry();
      QVERIFY2(free.width() < 1500 || free.height() < 950, "the test needs a screen smaller than the default window");
      QVERIFY2(w.width() <= free.width() && w.height() <= free.height(),
               qPrintable(QString("%1 x %2 on a screen of %3 x %4").arg(w.width()).arg(w.height()).arg(free.width()).arg(free.height())));
      QVERIFY(w.windowState() & Qt::WindowMaximized);
    }
    QSettings().remove("window");  // the other tests' windows start at their own size
  }

  void file_dialogs_open_in_the_folder_last_chosen() {
    QSettings().remove("dialogs/folder");
    MainWindow w;
    QCOMPARE(w.dialogFolder(), QDir::homePath());  // not the working directory
    QCOMPARE(w.dialogFolder("metrics.csv"), QDir(QDir::homePath()).filePath("metrics.csv"));
    QVERIFY(QDir().mkpath(dir_.filePath("exports/plots")));
    w.rememberDialogFolder(dir_.filePath("exports/run.safetensors"));  // a file: its folder
    QCOMPARE(w.dialogFolder(), QFileInfo(dir_.filePath("exports")).absoluteFilePath());
    w.rememberDialogFolder(dir_.filePath("exports/plots"));  // a folder: itself
    QCOMPARE(w.dialogFolder("report"), QDir(QFileInfo(dir_.filePath("exports/plots")).absoluteFilePath()).filePath("report"));
    QVERIFY(QDir(dir_.filePath("exports")).removeRecursively());  // gone since: home again
    QCOMPARE(w.dialogFolder(), QDir::homePath());
  }

  void curves_behind_another_tab_are_drawn_when_their_tab_comes_back() {
    MainWindow w;
    w.resize(1200, 800);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.tabs()->setCurrentWidget(w.inspector());
    auto* loss = w.plots()->plots()[0];
    w.experiment()->setConfig(small_copy(30));
    w.action("train")->trigger();
    w.tabs()->setCurrentWidget(w.inspector());  // a run that starts shows the curves: back again
    const auto drawn = [loss] { return loss->graphCount() > 0 ? loss->graph(0)->dataCount() : 0; };
    QCOMPARE(drawn(), 0);  // drawn when the run started, before its first step
    QVERIFY(waitForState(w.session(), TrainingSession::State::Finished));
    QTest::qWait(400);  // refreshes came and went: none drew the hidden curves
    QCOMPARE(drawn(), 0);
    w.tabs()->setCurrentWidget(w.plots());
    QCOMPARE(loss->graphCount(), 1);
    QCOMPARE(drawn(), 30);
    // Smoothing redraws from the runs as they are now (the panel keeps no pointers to them).
    const double before = loss->graph(0)->data()->at(29)->value;
    w.plots()->setSmoothing(0);
    QVERIFY(loss->graph(0)->data()->at(29)->value != before);
    QCOMPARE(loss->graph(0)->data()->at(29)->value, w.runs()[0].history.steps.back().tca_loss);
    // Exports draw the curves first: a second run, trained behind the inspector, is in the files.
    w.experiment()->setConfig(small_copy(6));
    w.action("train")->trigger();
    w.tabs()->setCurrentWidget(w.inspector());
    QTRY_VERIFY_WITH_TIMEOUT(w.runs().size() == 2 && w.runs()[1].state == state_text(TrainingSession::State::Finished),
                             60000);
    QCOMPARE(drawn(), 30);
    QCOMPARE(loss->graphCount(), 1);
    QVERIFY(w.exportPlots(dir_.filePath("behind"), "png", 400, 300));
    QCOMPARE(loss->graphCount(), 2);
    QCOMPARE(loss->graph(1)->dataCount(), 6);
  }

  void a_run_queued_behind_a_paused_run_says_what_holds_it() {
    MainWindow w;
    w.experiment()->setConfig(small_copy(100000));
    w.action("train")->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(w.session()->state() == TrainingSession::State::Running, 30000);
    w.action("pause")->trigger();
    QVERIFY(waitForState(w.session(), TrainingSession::State::Paused));
    const auto paused = w.runs()[0].name;
    // Train's tooltip and the status message name the paused run and what lets the queue go on.
    const auto tip = w.action("train")->toolTip();
    QVERIFY2(tip.contains(paused) && tip.contains("paused") && tip.contains("resumed"), qPrintable(tip));
    Config second = small_copy(4);
    second.model = "ca";
    w.experiment()->setConfig(second);
    w.action("train")->trigger();
    QCOMPARE(w.runs().size(), qsizetype(2));
    const auto message = w.statusBar()->currentMessage();
    QVERIFY2(message.contains(w.runs()[1].name) && message.contains(paused + ", now paused"), qPrintable(message));
    QCOMPARE(w.runs()[1].state, QString("queued"));
    // Stop ends the paused run and cancels the queue.
    w.action("stop")->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(!w.session()->busy(), 30000);
    QVERIFY(w.runs()[1].state != state_text(TrainingSession::State::Finished));
    // The status bar says what the Runs list says, and no longer counts down to the end.
    QTRY_VERIFY_WITH_TIMEOUT(w.findChild<QLabel*>("stateLabel")->text().startsWith("stopped at step"), 5000);
    const auto speed = w.findChild<QLabel*>("speedLabel")->text();
    QVERIFY2(speed.startsWith(QString("step %1/100000").arg(w.runs()[0].lastStep())) && !speed.contains("ETA"),
             qPrintable(speed));
  }

  void train_while_a_run_trains_queues_the_next() {
    MainWindow w;
    w.experiment()->setConfig(small_copy(400));
    w.action("train")->trigger();
    QTRY_VERIFY_WITH_TIMEOUT(w.session()->busy(), 30000);
    // Train stays available and says it queues; a second run with other settings waits its turn.
    QVERIFY(w.action("train")->isEnabled());
    QVERIFY2(w.action("train")->toolTip().contains("Queue"), qPrintable(w.action("train")->toolTip()));
    Config second = small_copy(6);
    second.model = "ca";
    w.experiment()->setConfig(second);
    auto* tabs = w.findChild<QTabWidget*>("mainTabs");
    QVERIFY(tabs);
    tabs->setCurrentIndex(1);  // watching the inspector
    w.action("train")->trigger();
    QCOMPARE(tabs->currentIndex(), 1);  // queueing does not take the user elsewhere
    QCOMPARE(w.runs().size(), qsizetype(2));
    QCOMPARE(w.runs()[1].state, QString("queued"));
    QCOMPARE(w.runs()[1].config.model, std::string("ca"));
    QTRY_VERIFY_WITH_TIMEOUT(w.runs()[1].state == state_text(TrainingSession::State::Finished), 120000);
    QCOMPARE(w.runs()[0].lastStep(), std::int64_t(400));  // the first ran to its end, undisturbed
    QCOMPARE(w.runs()[1].lastStep(), std::int64_t(6));
    // The inspector follows the run in hand, here CA: no walk, so the level controls are off and
    // the tree view says why. The TCA run, selected, has a walk: they come back.
    auto* levels = w.inspector()->findChild<QWidget*>("levelControls");
    QVERIFY(levels);
    QTRY_VERIFY_WITH_TIMEOUT(w.inspector()->current() && !w.inspector()->current()->has_tree, 30000);
    QVERIFY(!levels->isEnabled());
    w.selectRun(0);
    QTRY_VERIFY_WITH_TIMEOUT(w.inspector()->current() && w.inspector()->current()->has_tree, 30000);
    QVERIFY(levels->isEnabled());
  }

  void short_run_updates_plots_inspector_and_matches_cli_inspect() {
    MainWindow w;
    w.experiment()->setConfig(small_copy(60));
    QSignalSpy refreshed(&w, &MainWindow::refreshed);
    w.action("train")->trigger();
    QVERIFY(waitForState(w.session(), TrainingSession::State::Finished));
    QTRY_VERIFY_WITH_TIMEOUT(w.runs().size() == 1 && w.runs()[0].snapshot.has_value(), 30000);
    QTRY_VERIFY_WITH_TIMEOUT(refreshed.count() > 0, 5000);
    QTest::qWait(400);
    auto* loss = w.plots()->plots()[0];
    QVERIFY(loss->graphCount() >= 1);
    QCOMPARE(loss->graph(0)->dataCount(), 60);  // one point per step
    auto* eval = w.plots()->plots()[2];
    QCOMPARE(eval->graph(0)->dataCount(), 3);  // steps 20, 40, 60
    QCOMPARE(w.comparison()->table()->rowCount(), 1);

    // Click target 3 in the copy-task view (once the inspector has loaded off the UI thread).
    QTRY_VERIFY_WITH_TIMEOUT(w.inspector()->hasModel() && !w.inspector()->loading(), 30000);
    auto* view = qobject_cast<CopyTaskView*>(w.inspector()->taskView());
    QVERIFY(view);
    w.tabs()->setCurrentWidget(w.inspector());
    w.resize(1400, 900);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    // The copy task's three rows of tokens do not take the image view's 300 px: the tree has the room.
    QVERIFY2(view->height() < 250 && w.inspector()->treeView()->height() > 2 * view->height(),
             qPrintable(QString("view %1 px, tree %2 px").arg(view->height()).arg(w.inspector()->treeView()->height())));
    QTest::mouseClick(view, Qt::LeftButton, {}, view->targetCell(3).center().toPoint());
    QCOMPARE(w.inspector()->query(), std::int64_t(3));
    {
      // The click gave the inspector the focus: Left and Right step through the queries, no further
      // than the first and the last; Up and Down hide and reveal the walk's levels.
      QTRY_VERIFY_WITH_TIMEOUT(QApplication::focusWidget() == w.inspector(), 5000);
      QTest::keyClick(QApplication::focusWidget(), Qt::Key_Right);
      QCOMPARE(w.inspector()->query(), std::int64_t(4));
      for (int i = 0; i < 6; ++i) QTest::keyClick(QApplication::focusWidget(), Qt::Key_Left);
      QCOMPARE(w.inspector()->query(), std::int64_t(0));
      auto* slider = w.inspector()->findChild<QSlider*>("revealLevel");
      const int deepest = slider->value();
      QVERIFY(deepest > 0);
      QTest::keyClick(QApplication::focusWidget(), Qt::Key_Up);
      QCOMPARE(slider->value(), deepest - 1);
      QTest::keyClick(QApplication::focusWidget(), Qt::Key_Down);
      QCOMPARE(slider->value(), deepest);
      // A focused spin box keeps its own Up: the next sample, not a level.
      auto* spin = w.inspector()->findChild<QSpinBox*>("sample");
      spin->setFocus();
      QCOMPARE(spin->value(), 0);
      QTest::keyClick(spin, Qt::Key_Up);
      QCOMPARE(spin->value(), 1);
      spin->setValue(0);
      QTest::mouseClick(view, Qt::LeftButton, {}, view->targetCell(3).center().toPoint());
      QCOMPARE(w.inspector()->query(), std::int64_t(3));
    }
    const auto* result = w.inspector()->current();
    QVERIFY(result && result->has_tree);
    // Every node of S has one colour in the tree and over its tokens in the task view: the leaves
    // read in S's green, each summary node in a shade of its own.
    auto* tree = w.inspector()->treeView();
    const auto& lit = view->highlight();
    QSet<QRgb> summary_shades;
    int summaries = 0;
    for (auto id : result->trace.selected) {
      const auto& node = result->nodes[id];
      const QColor fill = tree->fillOf(id);
      QCOMPARE(lit.nodes.value(id), fill);
      for (auto i : node.leaves) QCOMPARE(lit.context.value(i), fill);
      if (node.level == result->shape.k + 1) {
        QCOMPARE(fill, TreeView::colorOf(TreeView::Role::Selected));
      } else {
        QVERIFY(fill != TreeView::colorOf(TreeView::Role::Selected));
        summary_shades.insert(fill.rgb());
        ++summaries;
      }
    }
    QVERIFY(summaries > 0);
    QCOMPARE(summary_shades.size(), std::min(summaries, 5));

    // The same snapshot, saved, inspected by the command line.
    const auto path = dir_.filePath("studio.pt");
    w.saveCheckpoint(path);
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(path), 30000);
    QProcess cli;
    cli.start(RETREEVER_BINARY, {"inspect", "--checkpoint", path, "--sample", "0", "--query", "3", "--json"});
    QVERIFY(cli.waitForFinished(120000));
    QVERIFY2(cli.exitCode() == 0, cli.readAllStandardError().constData());
    auto expected = QJsonDocument::fromJson(cli.readAllStandardOutput()).object();
    auto actual = QJsonDocument::fromJson(QByteArray::fromStdString(result->to_json())).object();
    QCOMPARE(actual["trace"].toObject()["path"], expected["trace"].toObject()["path"]);
    QCOMPARE(actual["trace"].toObject()["selected"], expected["trace"].toObject()["selected"]);
    QCOMPARE(actual["prediction"].toObject()["class"], expected["prediction"].toObject()["class"]);
    QCOMPARE(actual["tree"].toObject()["nodes"], expected["tree"].toObject()["nodes"]);

    // Accuracy per target position: one point per target (seq 16 -> 8); clicking one inspects
    // that query in the tree inspector.
    w.tabs()->setCurrentWidget(w.plots());
    auto* positions = w.plots()->plots()[5];
    QCOMPARE(positions->graphCount(), 1);
    QCOMPARE(positions->graph(0)->dataCount(), 8);
    positions->replot();
    QTest::qWait(100);
    const auto point = positions->graph(0)->data()->at(5);
    const QPoint at(int(positions->xAxis->coordToPixel(point->key)), int(positions->yAxis->coordToPixel(point->value)));
    QTest::mouseClick(positions, Qt::LeftButton, {}, at);
    QTRY_COMPARE_WITH_TIMEOUT(w.inspector()->query(), std::int64_t(5), 5000);
    QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.inspector()));

    // Exports: PNG and PDF plots at the chosen size, CSV metrics, Markdown comparison.
    const auto out = dir_.filePath("export");
    QVERIFY(w.exportPlots(out, "png", 640, 480));
    QVERIFY(w.exportPlots(out, "pdf", 640, 480));
    for (const auto& name : w.plots()->plotNames() + QStringList{"comparison"}) {
      QImage image(out + "/" + name + ".png");
      QVERIFY2(!image.isNull(), qPrintable(name));
      QCOMPARE(image.size(), QSize(640, 480));
      QFile pdf(out + "/" + name + ".pdf");
      QVERIFY(pdf.open(QIODevice::ReadOnly));
      QVERIFY(pdf.read(5) == "%PDF-");
      QVERIFY(!QFile::exists(out + "/" + name + ".png.part"));
    }
    QVERIFY(w.exportMetricsCsv(out + "/metrics.csv"));
    QFile csv(out + "/metrics.csv");
    QVERIFY(csv.open(QIODevice::ReadOnly));
    const auto lines = QString::fromUtf8(csv.readAll()).trimmed().split('\n');
    QCOMPARE(lines.first(), QString(MetricsHistory::csv_header()));
    QCOMPARE(lines.size(), 61);
    QVERIFY(w.exportComparison(out + "/comparison.md"));
    QFile md(out + "/comparison.md");
    QVERIFY(md.open(QIODevice::ReadOnly));
    QVERIFY(md.readAll().startsWith("| run | model |"));
    QVERIFY(w.exportReport(dir_.filePath("report")));
    QVERIFY(QFile::exists(dir_.filePath("report/report.md")));
    // Every run's model, linked from its line: this window trained one run.
    const auto checkpoint = QString("checkpoint_run%1.safetensors").arg(w.runs()[0].id);
    QCOMPARE(read_checkpoint_header(dir_.filePath("report/" + checkpoint).toStdString()).step,
             w.runs()[0].lastStep());
    QFile report(dir_.filePath("report/report.md"));
    QVERIFY(report.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(report.readAll());
    QVERIFY2(text.contains(QString("[%1](%1)").arg(checkpoint)), qPrintable(text.left(2000)));
    // Each run says what sets it apart from its preset before its whole config.
    const auto changes = QString::fromStdString(w.runs()[0].config.changes_from(Config::preset("copy")));
    QVERIFY(!changes.isEmpty());
    QVERIFY2(text.contains("other than the copy preset: " + changes), qPrintable(text.left(2000)));
    QVERIFY(text.contains("![loss](plots/loss.png)"));
    // A checkpoint that cannot be written is not linked, even where something of its name is there
    // (a folder in its place makes the save fail): the report says only what it holds.
    QVERIFY(QDir().mkpath(dir_.filePath("report-2/" + checkpoint)));
    QSignalSpy errors(&w, &MainWindow::errorReported);
    QVERIFY(w.exportReport(dir_.filePath("report-2")));
    QTRY_VERIFY_WITH_TIMEOUT(!errors.isEmpty(), 10000);
    QFile second(dir_.filePath("report-2/report.md"));
    QVERIFY(second.open(QIODevice::ReadOnly));
    QVERIFY(!QString::fromUtf8(second.readAll()).contains(QString("[%1](%1)").arg(checkpoint)));
    // The exporter itself, without the window: what it wrote and what it could not, no dialog.
    const SessionExport exports({w.plots(), w.comparison(), w.scaling(), w.inspector(), w.controller(), w.session()});
    // The run in hand's model is saved by its session, which reports a failure itself (failed()).
    QVERIFY(QDir().mkpath(dir_.filePath("report-3/" + checkpoint)));
    QSignalSpy session_failed(w.session(), &TrainingSession::failed);
    const auto written = exports.report(dir_.filePath("report-3"));
    QVERIFY(written.ok);
    QVERIFY2(written.problems.isEmpty(), qPrintable(written.problems.join(" | ")));
    QTRY_COMPARE_WITH_TIMEOUT(session_failed.count(), 1, 10000);
    QVERIFY(written.files.contains(dir_.filePath("report-3/report.md")));
    QVERIFY(written.files.contains(dir_.filePath("report-3/plots/loss.pdf")));
    QVERIFY(written.files.contains(dir_.filePath("report-3/plots/loss.png")));  // both formats, one drawing
    QVERIFY(!written.files.contains(dir_.filePath("report-3/" + checkpoint)));
    for (const auto& file : written.files) QVERIFY2(QFileInfo(file).isFile(), qPrintable(file));
    const auto refused = exports.comparison("/proc/nonexistent/dir/table.md");
    QVERIFY(!refused.ok);
    QVERIFY(refused.files.isEmpty());
    QVERIFY2(refused.problems.value(0).contains("/proc/nonexistent/dir/table.md"), qPrintable(refused.problems.value(0)));
  }

  void export_plots_dialog_remembers_the_last_choice() {
    // File > Export plots opens on the size and format of the last export, and refuses sizes
    // outside its bounds by clamping them.
    QSettings settings;
    settings.setValue("export/width", 640);
    settings.setValue("export/height", 99999);
    settings.setValue("export/format", "png+pdf");
    {
      ExportPlotsDialog dialog;
      QCOMPARE(dialog.plotWidth(), 640);
      QCOMPARE(dialog.plotHeight(), 8000);
      QCOMPARE(dialog.formats(), (QStringList{"png", "pdf"}));
      auto spins = dialog.findChildren<QSpinBox*>();
      QCOMPARE(spins.size(), 2);
      spins[0]->setValue(1000);
      dialog.findChild<QComboBox*>()->setCurrentText("pdf");
      dialog.remember();
    }
    ExportPlotsDialog again;
    QCOMPARE(again.plotWidth(), 1000);
    QCOMPARE(again.formats(), QStringList{"pdf"});
    for (const auto* key : {"export/width", "export/height", "export/format"}) settings.remove(key);
  }

  void bad_files_give_a_dialog_not_a_crash() {
    MainWindow w;
    QSignalSpy errors(&w, &MainWindow::errorReported);
    QFile junk(dir_.filePath("junk.pt"));
    QVERIFY(junk.open(QIODevice::WriteOnly));
    junk.write("definitely not a checkpoint");
    junk.close();
    QSettings().setValue("recentFiles", QStringList{dir_.filePath("junk.pt")});  // as if it had opened before
    QVERIFY(w.openCheckpoint(dir_.filePath("junk.pt")));  // accepted for loading ...
    QTRY_COMPARE_WITH_TIMEOUT(errors.count(), 1, 30000);  // ... and refused with a message
    QVERIFY(errors.first().at(0).toString().contains("not a valid safetensors file"));
    // A file that failed to open is not offered again under Open recent.
    QVERIFY(!QSettings().value("recentFiles").toStringList().contains(dir_.filePath("junk.pt")));
    QVERIFY(w.findChild<QMessageBox*>("errorDialog") != nullptr);
    QVERIFY(!w.openCheckpoint(dir_.filePath("missing.pt")));
    QCOMPARE(errors.count(), 2);
    QVERIFY(errors.last().at(0).toString().contains("does not exist"));
    QVERIFY(w.runs().isEmpty());
    // Writing into a folder that cannot exist is an error dialog, not a crash.
    QVERIFY(!w.exportComparison("/proc/nonexistent/dir/table.csv"));
    QCOMPARE(errors.count(), 3);
  }

  // Several checkpoints opened at once (retreever-studio A B C) each become a run, in order; a run
  // opened before another, not finished, is stopped where its file left it; the last stays paused.
  void checkpoints_opened_together_open_one_after_another() {
    auto saved = [&](const QString& name, std::int64_t steps, int done) {
      Trainer t(small_copy(steps), datasets::make_task);
      for (int i = 0; i < done; ++i) t.step();
      const auto path = dir_.filePath(name);
      t.save(path.toStdString());
      return path;
    };
    const auto unfinished = saved("unfinished.safetensors", 1000, 2), done = saved("done.safetensors", 3, 3);
    SessionController controller;
    QSignalSpy opened(&controller, &SessionController::opened);
    QString error;
    for (const auto& path : {unfinished, done, unfinished}) QVERIFY2(controller.openCheckpoint(path, &error), qPrintable(error));
    QTRY_VERIFY_WITH_TIMEOUT(opened.count() == 3 && !controller.opening() &&
                                 controller.session()->state() == TrainingSession::State::Paused,
                             60000);
    QCOMPARE(controller.runs().size(), qsizetype(3));
    QCOMPARE(opened.at(1).at(0).toString(), done);
    QCOMPARE(controller.runs()[0].state, QString("stopped at step 2"));
    QCOMPARE(controller.runs()[1].state, state_text(TrainingSession::State::Finished));
    QCOMPARE(controller.runs()[2].state, state_text(TrainingSession::State::Paused));
    QCOMPARE(controller.currentIndex(), 2);
    QVERIFY2(controller.runs()[1].name.endsWith("(done.safetensors)"), qPrintable(controller.runs()[1].name));
    // The files train writes are named by their run's folder.
    QCOMPARE(checkpoint_label("/runs/gp-seed1/checkpoint.safetensors"), QString("gp-seed1"));
    QCOMPARE(checkpoint_label("/runs/gp-seed1/checkpoint_best.safetensors"), QString("gp-seed1 best"));
    QCOMPARE(checkpoint_label("/runs/mine.safetensors"), QString("mine.safetensors"));
    // Opened alone while that run is paused: refused, as before (its training may not be saved).
    QVERIFY(!controller.openCheckpoint(done, &error));
    QVERIFY(error.contains("stop it before opening"));
  }

  void opening_can_be_cancelled_and_leaves_nothing_behind() {
    const auto path = dir_.filePath("studio.pt");
    QVERIFY(QFile::exists(path));
    MainWindow w;
    QSignalSpy errors(&w, &MainWindow::errorReported);
    QVERIFY(!w.cancelOpening());  // nothing to cancel
    QVERIFY(w.openCheckpoint(path));
    QVERIFY(w.opening());
    auto* cancel = w.findChild<QPushButton*>("cancelOpening");
    QVERIFY(cancel && !cancel->isHidden());
    QVERIFY(w.cancelOpening());
    QVERIFY(!w.opening());
    QVERIFY(cancel->isHidden());
    QVERIFY(waitForState(w.session(), TrainingSession::State::Finished));
    QTest::qWait(200);  // let every queued event of the abandoned load arrive
    QVERIFY(w.runs().isEmpty());
    QCOMPARE(errors.count(), 0);
    QVERIFY(!w.inspector()->hasModel());
    const QDir kept(w.controller()->root() + "/runs");  // no folder of the abandoned run stays
    QVERIFY2(kept.entryList(QDir::Dirs | QDir::NoDotAndDotDot).isEmpty(), qPrintable(kept.entryList().join(" ")));
    // The window is usable again: the same file opens normally, into a folder of the session.
    QVERIFY(w.openCheckpoint(path));
    QTRY_VERIFY_WITH_TIMEOUT(w.runs().size() == 1, 30000);
    QTRY_COMPARE_WITH_TIMEOUT(kept.entryList(QDir::Dirs | QDir::NoDotAndDotDot).size(), 1, 30000);
  }

  void opening_a_checkpoint_restores_config_curves_and_model() {
    const auto path = dir_.filePath("studio.pt");
    QVERIFY(QFile::exists(path));
    MainWindow w;
    QVERIFY(w.openCheckpoint(path));
    QVERIFY(waitForState(w.session(), TrainingSession::State::Finished));
    QTRY_VERIFY_WITH_TIMEOUT(w.runs().size() == 1 && w.runs()[0].snapshot.has_value(), 30000);
    QCOMPARE(w.runs()[0].config.seq_len, std::int64_t(16));
    QCOMPARE(w.runs()[0].history.evals.size(), size_t(3));
    QCOMPARE(w.experiment()->config().seq_len, std::int64_t(16));
    QTRY_VERIFY_WITH_TIMEOUT(w.inspector()->hasModel(), 30000);
    // The run's tooltip names what sets it apart from its preset; its settings come back on request.
    auto* list = w.findChild<QListWidget*>("runList");
    QTRY_COMPARE_WITH_TIMEOUT(list->count(), 1, 5000);
    QVERIFY2(list->item(0)->toolTip().contains("seq_len 16"), qPrintable(list->item(0)->toolTip()));
    Config other = Config::preset("gp");
    w.experiment()->setConfig(other);
    QCOMPARE(w.experiment()->config().task, std::string("gp"));
    w.useRunSettings(0);
    QCOMPARE(w.experiment()->config().task, std::string("copy"));
    QCOMPARE(w.experiment()->config().seq_len, std::int64_t(16));
  }
};

QTEST_MAIN(TestStudio)
#include "test_studio.moc"
