#include "main_window.h"

#include "core/files.h"
#include "core/devices.h"
#include "core/registry.h"
#include "ui/scaling_panel.h"
#include "ui/session_controller.h"
#include "ui/export_plots_dialog.h"
#include "ui/session_export.h"

#include <QPushButton>

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QDesktopServices>
#include <QDialog>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QInputDialog>
#include <QLabel>
#include <QListWidget>
#include <QLockFile>
#include <QMenuBar>
#include <QMenu>
#include <QMessageBox>
#include <QScreen>
#include <QSettings>
#include <QStandardPaths>
#include <QStatusBar>
#include <QStyle>
#include <QTabWidget>
#include <QTime>
#include <QTimer>
#include <QToolBar>
#include <QUrl>
#include <algorithm>

#include "core/tree/tree_shape.h"
#include "ui/comparison_panel.h"
#include "ui/experiment_panel.h"
#include "ui/inspector_panel.h"
#include "ui/plot_panel.h"
#include "ui/qcp.h"
#include "ui/theme.h"
#include "ui/tree_view.h"

namespace retreever::ui {

namespace {
constexpr int kRefreshMs = 150;   // plots redraw at most this often while training
constexpr int kMaxRecent = 8;

// " · 2 CPU threads" after the status bar's progress; nothing on a GPU (0).
QString threads_suffix(int cpu_threads) {
  return cpu_threads > 0 ? " · " + QString::fromStdString(cpu_threads_text(cpu_threads)) : QString();
}

// A row of the Runs list (Qt::UserRole: the run's index). Its tooltip, the run's settings other
// than its task's preset, is made when asked for, not at every refresh of a training run's row.
class RunItem : public QListWidgetItem {
 public:
  explicit RunItem(const SessionController* runs) : runs_(runs) {}
  QVariant data(int role) const override {
    const int index = QListWidgetItem::data(Qt::UserRole).toInt();
    if (role != Qt::ToolTipRole || index < 0 || index >= runs_->runs().size()) return QListWidgetItem::data(role);
    const auto& c = runs_->runs()[index].config;
    const auto changes = QString::fromStdString(c.changes_from_preset());
    const auto task = QString::fromStdString(c.task);
    return changes.isEmpty() ? MainWindow::tr("The %1 preset's settings.").arg(task)
                             : MainWindow::tr("Other than the %1 preset: %2").arg(task, changes);
  }

 private:
  const SessionController* runs_;
};

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  ensure_resources();
  setWindowTitle(tr("ReTreever Studio"));
  setWindowIcon(QIcon(":/icons/retreever.svg"));
  controller_ = new SessionController(this);
  session_ = controller_->session();
  experiment_ = new ExperimentPanel;
  plots_ = new PlotPanel;
  inspector_ = new InspectorPanel;
  comparison_ = new ComparisonPanel;
  tabs_ = new QTabWidget;
  tabs_->setObjectName("mainTabs");
  tabs_->addTab(plots_, tr("Curves"));
  connect(plots_, &PlotPanel::targetPositionClicked, this, [this](int run_id, qint64 position) {
    const auto& runs = controller_->runs();
    for (int i = 0; i < runs.size(); ++i)
      if (runs[i].id == run_id) {
        selectRun(i);  // shows the run's snapshot in the inspector
        inspector_->selectQuery(position);
        tabs_->setCurrentWidget(inspector_);
        return;
      }
  });
  // The curves are drawn while their tab shows (PlotPanel::setRuns), from the runs as they are now.
  connect(plots_, &PlotPanel::redrawRequested, this, &MainWindow::refreshViews);
  connect(tabs_, &QTabWidget::currentChanged, this, [this] {
    if (tabs_->currentWidget() == plots_) refreshViews();
  });
  tabs_->addTab(inspector_, tr("Tree inspector"));
  tabs_->addTab(comparison_, tr("Comparison"));
  scaling_ = new ScalingPanel;
  tabs_->addTab(scaling_, tr("Scaling"));
  connect(scaling_, &ScalingPanel::failed, this, &MainWindow::showError);
  exports_ = std::make_unique<SessionExport>(
      SessionExport::Sources{plots_, comparison_, scaling_, inspector_, controller_, session_});
  tabs_->setDocumentMode(true);
  setCentralWidget(tabs_);

  createActions();
  createMenus();
  createToolBars();
  createStatusBar();
  createDockWindows();

  connect(controller_, &SessionController::changed, this, [this] { dirty_ = true; });
  connect(controller_, &SessionController::openingStarted, this, [this](const QString& path) {
    cancel_open_->show();
    statusBar()->showMessage(tr("Opening %1 ...").arg(QFileInfo(path).fileName()));
  });
  connect(controller_, &SessionController::opened, this, [this](const QString& path, const Config& config) {
    cancel_open_->hide();
    addRecentFile(path);
    statusBar()->showMessage(tr("Opened %1").arg(QFileInfo(path).fileName()), 5000);
    experiment_->setConfig(config);
  });
  connect(controller_, &SessionController::runStarted, this, [this](const QString& device) {
    cancel_open_->hide();
    device_label_->setText(tr("device: %1").arg(device));
  });
  connect(controller_, &SessionController::stepped, this, [this](const RunRecord& run, const StepMetrics& m) {
    const double rate = controller_->stepsPerSecond();
    const double eta = rate > 0 ? double(run.config.steps - m.step) / rate : 0;
    speed_label_->setText(tr("step %1/%2 · %3 steps/s · ETA %4")
                              .arg(m.step).arg(run.config.steps).arg(rate, 0, 'f', 1)
                              .arg(QTime(0, 0).addSecs(int(eta)).toString(eta >= 3600 ? "h:mm:ss" : "m:ss")) +
                          threads_suffix(m.cpu_threads));
  });
  connect(controller_, &SessionController::snapshotArrived, this, [this](int run, const Snapshot& s) {
    // Follow the training run in the inspector unless the user picked another run.
    if (run_list_->currentRow() < 0 || run_list_->currentRow() == run) inspector_->setSnapshot(s);
  });
  connect(controller_, &SessionController::stateChanged, this, [this](TrainingSession::State s) {
    const bool ended = s == TrainingSession::State::Finished || s == TrainingSession::State::Failed;
    const auto* run = controller_->currentRun();
    // A run that ended: the Runs list's words ("finished", "stopped at step N"; "failed" also for an
    // opening that failed, where the run in hand is still the last one), its step, no speed or ETA.
    state_label_->setText(s == TrainingSession::State::Finished && run ? run->state : state_text(s));
    if (ended) {
      cancel_open_->hide();
      if (run)  // the threads its last step ran on (0 for a run restored from its file: not kept there)
        speed_label_->setText(tr("step %1/%2").arg(run->lastStep()).arg(run->config.steps) +
                              threads_suffix(run->history.steps.empty() ? 0 : run->history.steps.back().cpu_threads));
    }
    updateActions();
  });
  connect(controller_, &SessionController::openingFailed, this, [this](const QString& path) {
    // A file that failed to open leaves the recent list: the next click would fail the same way.
    removeRecentFile(path);
    statusBar()->clearMessage();
  });
  connect(session_, &TrainingSession::failed, this, [this](const QString& message) {
    if (!controller_->discarding()) showError(message);  // not for an opening the user cancelled
  });
  connect(session_, &TrainingSession::checkpointSaved, this, [this](const QString& path) {
    statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
    addRecentFile(path);
  });
  connect(session_, &TrainingSession::learningRateChanged, this, [this](double lr) {
    statusBar()->showMessage(tr("Learning rate for the next step: %1").arg(lr, 0, 'g', 4), 5000);
  });
  connect(experiment_, &ExperimentPanel::validityChanged, this, [this] { updateActions(); });
  connect(inspector_, &InspectorPanel::failed, this, &MainWindow::showError);
  connect(comparison_, &ComparisonPanel::compareRequested, this, [this] { action("compare")->trigger(); });
  connect(comparison_, &ComparisonPanel::rewardStudyRequested, this, [this] { action("rewardStudy")->trigger(); });

  auto* refresh = new QTimer(this);
  refresh->setInterval(kRefreshMs);
  connect(refresh, &QTimer::timeout, this, [this, refresh] {
    if (!dirty_) return;
    QElapsedTimer took;
    took.start();
    refreshViews();
    // The plots replot from the event queue, before this: a refresh that takes long (runs of 100k
    // steps, a slow machine) comes less often, so that the UI thread stays at most a quarter busy.
    QTimer::singleShot(0, this, [refresh, took] {
      refresh->setInterval(std::clamp(int(4 * took.elapsed()), kRefreshMs, 2000));
    });
  });
  refresh->start();

  readSettings();
  // The runs of the last session come back (SessionController::keepRunsIn). One studio keeps a
  // session at a time: a second one open beside it keeps its own (session-2, ...), so that neither
  // writes over the other's list.
  const auto data = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
  QString unkept = tr("%1 studios are open already").arg(kMaxSessions);
  for (int n = 1; n <= kMaxSessions && !session_lock_; ++n) {
    const QString root = data + (n == 1 ? QString("/session") : QString("/session-%1").arg(n));
    QDir().mkpath(root);
    auto lock = std::make_unique<QLockFile>(root + "/lock");
    lock->setStaleLockTime(0);  // stale only when the studio that took it has gone
    if (!lock->tryLock(0)) {
      if (lock->error() == QLockFile::LockFailedError) continue;  // another studio's
      unkept = tr("%1 cannot be written").arg(root);  // a read-only disk: no other session will do
      break;
    }
    session_lock_ = std::move(lock);
    controller_->keepRunsIn(root);
    if (n > 1) setWindowTitle(tr("ReTreever Studio (session %1: another studio keeps the first)").arg(n));
  }
  if (!session_lock_)
    showError(tr("This studio keeps no session (%1): its runs are not kept. Save the checkpoints you want "
                 "before you close it.").arg(unkept));
  if (const auto problem = controller_->restore(); !problem.isEmpty()) showError(problem);
  if (!controller_->runs().isEmpty())
    statusBar()->showMessage((controller_->runs().size() == 1 ? tr("1 run of the last session restored")
                                                               : tr("%1 runs of the last session restored")
                                                                     .arg(controller_->runs().size())) +
                                 tr("; right-click a run to train it further"),
                             10000);
  updateActions();
  refreshViews();
  // With nothing selected the inspector shows the newest run's model, loaded off the UI thread, and
  // Save checkpoint saves it (chosenRun); a run started later takes over, as in a new session.
  inspectRun(chosenRun());
}

void MainWindow::inspectRun(int row) {
  const auto& runs = controller_->runs();
  if (row < 0 || row >= runs.size()) return;
  if (runs[row].snapshot) inspector_->setSnapshot(*runs[row].snapshot);
  else if (const auto kept = kept_checkpoint(runs[row]); !kept.isEmpty())
    inspector_->setCheckpoint(kept, QString::fromStdString(runs[row].config.task));  // an earlier session's
}

QString MainWindow::dialogFolder(const QString& file) const {
  QString folder = QSettings().value("dialogs/folder").toString();
  if (folder.isEmpty() || !QFileInfo(folder).isDir()) folder = QDir::homePath();
  return file.isEmpty() ? folder : QDir(folder).filePath(file);
}

void MainWindow::rememberDialogFolder(const QString& path) {
  const QFileInfo info(path);
  QSettings().setValue("dialogs/folder", info.isDir() ? info.absoluteFilePath() : info.absolutePath());
}

int MainWindow::chosenRun() const {
  const int row = run_list_ ? run_list_->currentRow() : -1;
  const int count = int(controller_->runs().size());
  if (row >= 0 && row < count) return row;
  if (controller_->currentIndex() >= 0 && controller_->currentIndex() < count) return controller_->currentIndex();
  return count - 1;
}

MainWindow::~MainWindow() = default;

const QList<RunRecord>& MainWindow::runs() const { return controller_->runs(); }
bool MainWindow::opening() const { return controller_->opening(); }
bool MainWindow::queueEmpty() const { return controller_->queueEmpty(); }

QAction* MainWindow::action(const QString& name) const {
  for (auto* a : actions_)
    if (a->objectName() == name) return a;
  return nullptr;
}

void MainWindow::createActions() {
  auto make = [this](const QString& name, const QString& text, const QString& tip, const QKeySequence& key,
                     QStyle::StandardPixmap icon, auto slot) {
    auto* a = new QAction(style()->standardIcon(icon), text, this);
    a->setObjectName(name);
    // The shortcut after the tip's first line; the status bar shows that line alone.
    const auto first = tip.section('\n', 0, 0);
    a->setToolTip(first + (key.isEmpty() ? QString() : QString(" (%1)").arg(key.toString(QKeySequence::NativeText))) +
                  tip.mid(first.size()));
    a->setStatusTip(first);
    if (!key.isEmpty()) a->setShortcut(key);
    connect(a, &QAction::triggered, this, slot);
    actions_ << a;
    return a;
  };
  using SP = QStyle::StandardPixmap;
  make("train", tr("&Train"), tr("Start a new run with the experiment's settings"), QKeySequence(Qt::Key_F5),
       SP::SP_MediaPlay, [this] { startTraining(); });
  auto* pause = make("pause", tr("&Pause"), tr("Pause or resume the run"), QKeySequence(Qt::Key_F6),
                     SP::SP_MediaPause, [this] {
                       if (session_->state() == TrainingSession::State::Running) session_->pause();
                       else session_->resume();
                     });
  pause->setCheckable(true);
  make("stop", tr("S&top"), tr("End the run; the model stays for saving and inspection"),
       QKeySequence(Qt::SHIFT | Qt::Key_F5), SP::SP_MediaStop, [this] {
         controller_->stopAll();
       });
  make("step", tr("Single &step"), tr("Run exactly one training step while paused"), QKeySequence(Qt::Key_F10),
       SP::SP_MediaSkipForward, [this] { session_->stepOnce(); });
  make("setLr", tr("Set &learning rate..."), tr("Change the peak learning rate of the paused run"),
       QKeySequence(Qt::CTRL | Qt::Key_L), SP::SP_FileDialogDetailedView, [this] {
         auto* run = controller_->currentRun();
         if (!run) return;
         bool ok = false;
         const double lr = QInputDialog::getDouble(this, tr("Learning rate"), tr("Peak learning rate (cosine schedule):"),
                                                   run->config.lr, 1e-8, 10.0, 8, &ok, Qt::WindowFlags(), 1e-5);
         if (!ok) return;
         run->config.lr = lr;
         session_->setLearningRate(lr);
       });
  make("compare", tr("&Compare models"), compare_models_tip(),
       QKeySequence(Qt::CTRL | Qt::Key_K), SP::SP_FileDialogListView, [this] {
         if (!experiment_->isValid()) return showError(experiment_->problems().first());
         queueRuns(SessionController::comparisonConfigs(experiment_->config()),
                   tr("comparison %1").arg(controller_->runs().size() + 1));
         tabs_->setCurrentWidget(comparison_);
       });
  make("rewardStudy", tr("&Reward study (accuracy vs NCE)"),
       tr("Queue two TCA copy-task runs that differ only in the RL reward (paper, Table 3)"), QKeySequence(),
       SP::SP_FileDialogContentsView, [this] {
         if (!experiment_->isValid()) return showError(experiment_->problems().first());
         queueRuns(SessionController::rewardStudyConfigs(experiment_->config()),
                   tr("reward study %1").arg(controller_->runs().size() + 1));
         tabs_->setCurrentWidget(comparison_);
       });
  make("open", tr("&Open checkpoint..."), tr("Load a checkpoint: its config, curves and model"), QKeySequence::Open,
       SP::SP_DialogOpenButton, [this] {
         const auto path = QFileDialog::getOpenFileName(this, tr("Open checkpoint"), dialogFolder(),
                                                        tr("Checkpoints (*.safetensors);;All files (*)"));
         if (!path.isEmpty()) rememberDialogFolder(path), openCheckpoint(path);
       });
  make("save", tr("&Save checkpoint..."), tr("Save the selected run's model, optimiser, config and curves"),
       QKeySequence::Save, SP::SP_DialogSaveButton, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Save checkpoint"), dialogFolder(kCheckpointFileName),
                                                        tr("Checkpoints (*.safetensors)"));
         if (!path.isEmpty()) rememberDialogFolder(path), saveCheckpoint(path);
       });
  make("exportPlots", tr("Export &plots..."), tr("Write every plot as PNG and/or PDF at a chosen size"),
       QKeySequence(Qt::CTRL | Qt::Key_E), SP::SP_DriveFDIcon, [this] {
         ExportPlotsDialog dialog(this);
         if (dialog.exec() != QDialog::Accepted) return;
         dialog.remember();
         const auto folder = QFileDialog::getExistingDirectory(this, tr("Export plots to"), dialogFolder());
         if (folder.isEmpty()) return;
         rememberDialogFolder(folder);
         for (const auto& f : dialog.formats()) exportPlots(folder, f, dialog.plotWidth(), dialog.plotHeight());
       });
  make("exportCsv", tr("Export &metrics CSV..."), tr("Write the current run's metrics as CSV (same columns as the CLI)"),
       QKeySequence(), SP::SP_FileIcon, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Export metrics"), dialogFolder("metrics.csv"), tr("CSV (*.csv)"));
         if (!path.isEmpty()) rememberDialogFolder(path), exportMetricsCsv(path);
       });
  make("exportComparison", tr("Export comparison &table..."), tr("Write the comparison table as CSV or Markdown"),
       QKeySequence(), SP::SP_FileIcon, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Export comparison"), dialogFolder("comparison.md"),
                                                        tr("Markdown (*.md);;CSV (*.csv)"));
         if (!path.isEmpty()) rememberDialogFolder(path), exportComparison(path);
       });
  make("exportReport", tr("Export session &report..."), tr("Write a folder with every plot, table, metrics file and a report.md"),
       QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E), SP::SP_DirIcon, [this] {
         const auto folder = QFileDialog::getExistingDirectory(this, tr("Write the report into"), dialogFolder());
         if (!folder.isEmpty()) rememberDialogFolder(folder), exportReport(folder);
       });
  make("newSession", tr("&New session..."), tr("Forget this session's runs and delete their folders"), QKeySequence(),
       SP::SP_TrashIcon, [this] {
         if (controller_->runs().isEmpty()) return;
         const auto answer = QMessageBox::question(
             this, tr("New session"),
             tr("Delete the runs of this session (%1), their curves and their checkpoints in %2? "
                "Save the checkpoints you want to keep first (right-click a run: Show its folder).")
                 .arg(controller_->runs().size())
                 .arg(QDir(controller_->root()).filePath("runs")),
             QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Cancel);
         if (answer != QMessageBox::Discard) return;
         QString error;
         if (!controller_->clearSession(&error)) return showError(error);
         refreshViews();  // the views hold pointers into the list of runs
         inspector_->clear();
       });
  make("quit", tr("&Quit"), tr("Close ReTreever Studio"), QKeySequence::Quit, SP::SP_DialogCloseButton, [this] { close(); });
  auto* dark = make("dark", tr("&Dark theme"), tr("Switch between light and dark palettes"), QKeySequence(Qt::CTRL | Qt::Key_D),
                    SP::SP_DesktopIcon, [this] { setDarkTheme(action("dark")->isChecked()); });
  dark->setCheckable(true);
  make("fitTree", tr("&Fit tree"), tr("Reset the tree inspector's zoom and pan"), QKeySequence(Qt::CTRL | Qt::Key_0),
       SP::SP_BrowserReload, [this] { inspector_->treeView()->fit(); });
  make("about", tr("&About"), tr("About ReTreever Studio"), QKeySequence(), SP::SP_MessageBoxInformation, [this] {
    const QString kept = controller_->root().isEmpty() ? tr("this studio keeps no session")
                                                       : tr("its runs are kept in %1").arg(controller_->root().toHtmlEscaped());
    QMessageBox::about(this, tr("About ReTreever Studio"),
                       tr("<b>ReTreever Studio</b><p>Train, inspect and compare Tree Cross Attention "
                          "(Feng et al., ICLR 2024) against full cross attention, Perceiver IO and a simplified "
                          "Treeformer.</p><p>%1; Qt %2.</p><p>This session: %3.</p>")
                           .arg(QString::fromStdString(build_summary()).toHtmlEscaped(), qVersion(), kept));
  });
}

void MainWindow::createMenus() {
  auto* file = menuBar()->addMenu(tr("&File"));
  file->addAction(action("open"));
  recent_menu_ = file->addMenu(tr("Open &recent"));
  file->addAction(action("save"));
  file->addSeparator();
  file->addAction(action("exportPlots"));
  file->addAction(action("exportCsv"));
  file->addAction(action("exportComparison"));
  file->addAction(action("exportReport"));
  file->addSeparator();
  file->addAction(action("newSession"));
  file->addAction(action("quit"));
  auto* train = menuBar()->addMenu(tr("&Train"));
  for (const char* a : {"train", "pause", "stop", "step", "setLr"}) train->addAction(action(a));
  threads_menu_ = train->addMenu(tr("CPU t&hreads"));
  threads_menu_->setObjectName("cpuThreadsMenu");
  threads_menu_->setToolTipsVisible(true);
  auto* threads = new QActionGroup(this);
  QList<int> counts{0};
  for (int n = 1; n < default_cpu_threads(); n *= 2) counts << n;
  if (default_cpu_threads() > 1) counts << default_cpu_threads();
  // Under OMP_NUM_THREADS the tuner is off (core/training/trainer.h): its count is the default.
  const bool omp = qEnvironmentVariableIsSet("OMP_NUM_THREADS");
  for (const int n : counts) {
    auto* a = threads_menu_->addAction(n > 0  ? QString::number(n)
                                       : omp ? tr("&As OMP_NUM_THREADS sets (%1)").arg(default_cpu_threads())
                                             : tr("&Tuned to the steps' speed"));
    a->setToolTip(n == 0 ? (omp ? tr("Every step on the count OMP_NUM_THREADS gave this session")
                                : tr("Each run tries one thread and every core from time to time and keeps the faster"))
                         : tr("Every step on %1, the same from run to run (a fixed count repeats a run bit for bit)")
                               .arg(n == 1 ? tr("one thread") : tr("%1 threads").arg(n)));
    a->setCheckable(true);
    a->setData(n);
    threads->addAction(a);
    connect(a, &QAction::triggered, this, [this, n] { setCpuThreads(n); });
  }
  train->addSeparator();
  train->addAction(action("compare"));
  train->addAction(action("rewardStudy"));
  auto* view = menuBar()->addMenu(tr("&View"));
  view->setObjectName("viewMenu");
  view->addAction(action("dark"));
  view->addAction(action("fitTree"));
  view->addSeparator();
  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(action("about"));
}

void MainWindow::createToolBars() {
  auto* bar = addToolBar(tr("Training"));
  bar->setObjectName("trainingToolbar");
  bar->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  for (const char* a : {"train", "pause", "stop", "step"}) bar->addAction(action(a));
  bar->addSeparator();
  for (const char* a : {"compare", "open", "save", "exportPlots"}) bar->addAction(action(a));
}

void MainWindow::createStatusBar() {
  state_label_ = new QLabel(tr("idle"));
  speed_label_ = new QLabel;
  device_label_ = new QLabel;
  state_label_->setObjectName("stateLabel");
  speed_label_->setObjectName("speedLabel");
  speed_label_->setContentsMargins(12, 0, 0, 0);  // apart from a status tip cut at its left
  cancel_open_ = new QPushButton(tr("Cancel opening"));
  cancel_open_->setObjectName("cancelOpening");
  cancel_open_->setToolTip(tr("Stop opening the checkpoint; what has been read is discarded"));
  cancel_open_->hide();
  connect(cancel_open_, &QPushButton::clicked, this, [this] { cancelOpening(); });
  statusBar()->addPermanentWidget(cancel_open_);
  statusBar()->addPermanentWidget(speed_label_);
  statusBar()->addPermanentWidget(device_label_);
  statusBar()->addPermanentWidget(state_label_);
}

void MainWindow::createDockWindows() {
  auto* dock = new QDockWidget(tr("Experiment"), this);
  dock->setObjectName("experimentDock");
  dock->setWidget(experiment_);
  dock->setMinimumWidth(300);
  addDockWidget(Qt::LeftDockWidgetArea, dock);
  auto* runs = new QDockWidget(tr("Runs"), this);
  runs->setObjectName("runsDock");
  run_list_ = new QListWidget;
  run_list_->setObjectName("runList");
  run_list_->setToolTip(tr("Every run of this session. Untick to hide its curves; select to inspect its model; "
                           "right-click to train the next run from its settings."));
  run_list_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(run_list_, &QListWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    const int row = run_list_->row(run_list_->itemAt(at));
    if (row < 0) return;
    QMenu menu;
    menu.addAction(tr("Use its settings for the next run"), this, [this, row] { useRunSettings(row); });
    menu.addAction(tr("Train it further..."), this, [this, row] {
      // A run short of its steps goes on to them; a finished one trains until the step asked for.
      const auto& run = controller_->runs()[row];
      qint64 until = 0;
      if (!kept_checkpoint(run).isEmpty() && run.lastStep() >= run.config.steps) {
        bool ok = false;
        until = QInputDialog::getInt(this, tr("Train it further"),
                                     tr("%1 has trained %2 steps. Train until step:").arg(run.name).arg(run.lastStep()),
                                     int(run.lastStep() + std::max<qint64>(1, run.config.steps / 2)),
                                     int(run.lastStep() + 1), 100000000, 100, &ok);
        if (!ok) return;
      }
      QString error;
      if (!controller_->continueRun(row, &error, until)) showError(error);
    });
    const QString folder = controller_->runs()[row].folder;
    if (QFileInfo(folder).isDir())
      menu.addAction(tr("Show its folder"), this, [folder] { QDesktopServices::openUrl(QUrl::fromLocalFile(folder)); });
    menu.addSeparator();
    menu.addAction(tr("Remove from the session..."), this, [this, row] {
      const auto& run = controller_->runs()[row];
      if (QMessageBox::question(this, tr("Remove run"),
                                tr("Remove %1 from the session and delete its curves and checkpoints?").arg(run.name),
                                QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Cancel) != QMessageBox::Discard)
        return;
      const bool shown = run_list_->currentRow() == row;
      QString error;
      if (!controller_->removeRun(row, &error)) return showError(error);
      refreshViews();  // the views hold pointers into the list of runs
      if (shown) inspector_->clear();
    });
    menu.exec(run_list_->viewport()->mapToGlobal(at));
  });
  runs->setWidget(run_list_);
  addDockWidget(Qt::LeftDockWidgetArea, runs);
  auto* view = menuBar()->findChild<QMenu*>("viewMenu");
  view->addAction(dock->toggleViewAction());
  view->addAction(runs->toggleViewAction());
  connect(run_list_, &QListWidget::itemChanged, this, [this](QListWidgetItem* item) {
    controller_->setVisible(item->data(Qt::UserRole).toInt(), item->checkState() == Qt::Checked);
  });
  connect(run_list_, &QListWidget::currentRowChanged, this, [this](int row) {
    updateActions();  // Save follows the selection
    inspectRun(row);
  });
}

void MainWindow::readSettings() {
  QSettings s;
  restoreGeometry(s.value("window/geometry").toByteArray());
  if (!restoreState(s.value("window/state").toByteArray())) {
    // The first start: 1500 x 950, or on a smaller screen (a 1366 x 768 laptop) its free area,
    // maximized where a window manager does that, so the status bar and every plot are on screen.
    const QSize wanted(1500, 950);
    const QRect free = screen()->availableGeometry();
    resize(wanted.boundedTo(free.size()));
    if (wanted.width() > free.width() || wanted.height() > free.height()) {
      move(free.topLeft());
      setWindowState(windowState() | Qt::WindowMaximized);
    }
  }
  const auto last = s.value("experiment/config").toString();
  if (!last.isEmpty()) {
    try {
      experiment_->setConfig(Config::from_json(last.toStdString()));
    } catch (const std::exception&) {
      // A config from an older version: keep the preset.
    }
  }
  plots_->setSmoothing(s.value("plots/smoothing", 0.6).toDouble());
  setDarkTheme(s.value("view/dark", false).toBool());
  setCpuThreads(s.value("training/cpuThreads", 0).toInt());
  updateRecentMenu();
}

void MainWindow::writeSettings() {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("experiment/config", QString::fromStdString(experiment_->config().to_json()));
  s.setValue("plots/smoothing", plots_->smoothing());
  s.setValue("view/dark", dark_);
  s.setValue("training/cpuThreads", cpu_threads_);
}

void MainWindow::setCpuThreads(int threads) {
  // A count this machine lacks (settings from another machine) is its core count.
  cpu_threads_ = std::clamp(threads, 0, default_cpu_threads());
  session_->setCpuThreads(cpu_threads_);
  for (auto* a : threads_menu_->actions()) a->setChecked(a->data().toInt() == cpu_threads_);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  writeSettings();
  controller_->keepAll();  // nothing the user made is lost: the next start brings every run back
  event->accept();
}

void MainWindow::setDarkTheme(bool dark) {
  dark_ = dark;
  action("dark")->setChecked(dark);
  apply_theme(dark);
  for (auto* plot : plots_->plots()) style_plot(plot, dark);
  style_plot(comparison_->plot(), dark);
  for (auto* plot : scaling_->plots()) style_plot(plot, dark);
  dirty_ = true;
}

void MainWindow::selectRun(int index) {
  if (index >= 0 && index < run_list_->count()) run_list_->setCurrentRow(index);
}

void MainWindow::useRunSettings(int index) {
  const auto& runs = controller_->runs();
  if (index < 0 || index >= runs.size()) return;
  experiment_->setConfig(runs[index].config);
  statusBar()->showMessage(tr("The experiment panel holds the settings of %1").arg(runs[index].name), 5000);
}

void MainWindow::showError(const QString& message) {
  Q_EMIT errorReported(message);
  statusBar()->showMessage(message.section('\n', 0, 0), 10000);
  // Non-blocking: training goes on behind the dialog, and tests can observe it.
  auto* box = new QMessageBox(QMessageBox::Warning, tr("ReTreever Studio"), message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->setObjectName("errorDialog");
  box->open();
}


void MainWindow::updateActions() {
  const auto s = session_->state();
  const bool busy = session_->busy();
  const bool valid = experiment_->isValid();
  auto* train = action("train");
  // While a run trains (or waits, paused), Train queues the next one, as Compare queues four.
  train->setEnabled(valid);
  train->setToolTip(!valid ? tr("Cannot train: %1").arg(experiment_->problems().value(0))
                    : busy ? tr("Queue a run with the experiment's settings: %1 (F5)").arg(queueWait())
                           : tr("Start a new run with the experiment's settings (F5)"));
  action("compare")->setEnabled(valid);
  action("rewardStudy")->setEnabled(valid);
  action("pause")->setEnabled(s == TrainingSession::State::Running || s == TrainingSession::State::Paused);
  action("pause")->setChecked(s == TrainingSession::State::Paused);
  action("pause")->setText(s == TrainingSession::State::Paused ? tr("&Resume") : tr("&Pause"));
  action("stop")->setEnabled(busy);
  action("step")->setEnabled(s == TrainingSession::State::Paused || s == TrainingSession::State::Finished);
  action("setLr")->setEnabled(s == TrainingSession::State::Paused);
  const int row = chosenRun();
  const bool kept = row >= 0 && row != controller_->currentIndex() && !kept_checkpoint(controller_->runs()[row]).isEmpty();
  action("save")->setEnabled(kept || (controller_->currentRun() != nullptr && s != TrainingSession::State::Preparing));
}

QString MainWindow::queueWait() const {
  const auto* run = controller_->currentRun();
  // A paused run (an opened checkpoint opens paused) holds the queue until it is resumed and ends
  // (Stop ends it and cancels the queue).
  if (run && session_->state() == TrainingSession::State::Paused)
    return tr("it starts once %1, now paused, is resumed and ends").arg(run->name);
  return tr("it starts when the runs before it end");
}

void MainWindow::queueRuns(const QList<Config>& configs, const QString& group) {
  controller_->queueRuns(configs, group, experiment_->parallelDevices());  // "all GPUs": every run data parallel
}

void MainWindow::startTraining() {
  if (!experiment_->isValid()) return showError(tr("Cannot train: %1").arg(experiment_->problems().value(0)));
  const bool busy = session_->busy();
  queueRuns({experiment_->config()}, QString());
  if (busy)  // the user stays where they are: the run in hand is still the one to watch
    return statusBar()->showMessage(tr("%1 is queued: %2 (Stop cancels the queue)")
                                        .arg(controller_->runs().last().name, queueWait()), 8000);
  tabs_->setCurrentWidget(plots_);
}

bool MainWindow::openCheckpoint(const QString& path) {
  QString error;
  if (!controller_->openCheckpoint(path, &error)) {
    if (!QFileInfo(path).exists()) removeRecentFile(path);
    showError(error);
    return false;
  }
  return true;
}

bool MainWindow::cancelOpening() {
  if (!controller_->cancelOpening()) return false;
  cancel_open_->hide();
  statusBar()->showMessage(tr("Opening cancelled"), 5000);
  return true;
}

void MainWindow::saveCheckpoint(const QString& path) {
  // The run chosen in Runs: the one in hand (its model as it is now) or another, from its folder.
  const int row = chosenRun();
  const auto& runs = controller_->runs();
  if (row >= 0 && row != controller_->currentIndex()) {
    if (const auto why = copy_kept_checkpoint(runs[row], path); !why.isEmpty()) return showError(why);
    statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
    return addRecentFile(path);
  }
  if (!controller_->currentRun()) return showError(tr("There is no run to save yet: train or open one first."));
  session_->saveCheckpoint(path);
}

void MainWindow::refreshViews() {
  dirty_ = false;
  auto runs = controller_->runPointers();
  plots_->setRuns(runs);
  comparison_->setRuns(runs);
  run_list_->blockSignals(true);
  const auto& runs_ = controller_->runs();
  while (run_list_->count() > runs_.size()) delete run_list_->takeItem(run_list_->count() - 1);
  for (int i = 0; i < runs_.size(); ++i) {
    if (i >= run_list_->count()) {
      auto* item = new RunItem(controller_);
      item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
      run_list_->addItem(item);
    }
    auto* item = run_list_->item(i);
    const auto& r = runs_[i];
    QString text = r.name + " — " + r.state;
    if (const auto* e = r.lastEval())
      text += e->metric == "accuracy" ? tr(", acc %1%").arg(100 * e->value, 0, 'f', 1)
                                      : tr(", ll %1").arg(e->value, 0, 'f', 3);
    item->setText(text);
    item->setForeground(r.color);
    item->setData(Qt::UserRole, i);
    item->setCheckState(r.visible ? Qt::Checked : Qt::Unchecked);
  }
  run_list_->blockSignals(false);
  Q_EMIT refreshed();
}

void MainWindow::addRecentFile(const QString& path) {
  QSettings s;
  auto files = s.value("recentFiles").toStringList();
  files.removeAll(path);
  files.prepend(path);
  while (files.size() > kMaxRecent) files.removeLast();
  s.setValue("recentFiles", files);
  updateRecentMenu();
}

void MainWindow::removeRecentFile(const QString& path) {
  QSettings s;
  auto files = s.value("recentFiles").toStringList();
  files.removeAll(path);
  s.setValue("recentFiles", files);
  updateRecentMenu();
}

void MainWindow::updateRecentMenu() {
  if (!recent_menu_) return;
  recent_menu_->clear();
  const auto files = QSettings().value("recentFiles").toStringList();
  for (const auto& f : files)
    recent_menu_->addAction(QFileInfo(f).fileName() + "  —  " + QFileInfo(f).absolutePath(), this,
                            [this, f] { openCheckpoint(f); });
  recent_menu_->setEnabled(!files.isEmpty());
}

bool MainWindow::finishExport(const ExportResult& result, const QString& done) {
  for (const auto& problem : result.problems) showError(problem);
  if (result.ok) statusBar()->showMessage(done, 5000);
  return result.ok;
}

bool MainWindow::exportPlots(const QString& folder, const QString& format, int width, int height) {
  const auto r = exports_->plots(folder, format, width, height);
  return finishExport(r, tr("Wrote %1 plots to %2").arg(r.files.size()).arg(folder));
}

bool MainWindow::exportMetricsCsv(const QString& path) {
  return finishExport(exports_->metricsCsv(path), tr("Wrote %1").arg(path));
}

bool MainWindow::exportComparison(const QString& path) {
  return finishExport(exports_->comparison(path), tr("Wrote %1").arg(path));
}

bool MainWindow::exportReport(const QString& folder) {
  refreshViews();
  return finishExport(exports_->report(folder), tr("Report written to %1").arg(folder));
}

}  // namespace retreever::ui
