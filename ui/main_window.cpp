#include "main_window.h"

#include <QPushButton>

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDateTime>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QInputDialog>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QMessageBox>
#include <QSaveFile>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QStatusBar>
#include <QStyle>
#include <QTabWidget>
#include <QTime>
#include <QTimer>
#include <QToolBar>

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

QString state_text(TrainingSession::State s) {
  switch (s) {
    case TrainingSession::State::Idle: return QObject::tr("idle");
    case TrainingSession::State::Preparing: return QObject::tr("preparing");
    case TrainingSession::State::Running: return QObject::tr("running");
    case TrainingSession::State::Paused: return QObject::tr("paused");
    case TrainingSession::State::Finished: return QObject::tr("finished");
    case TrainingSession::State::Failed: return QObject::tr("failed");
  }
  return {};
}
}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  ensure_resources();
  setWindowTitle(tr("ReTreever Studio"));
  setWindowIcon(QIcon(":/icons/retreever.svg"));
  session_ = new TrainingSession(this);
  experiment_ = new ExperimentPanel;
  plots_ = new PlotPanel;
  inspector_ = new InspectorPanel;
  comparison_ = new ComparisonPanel;
  tabs_ = new QTabWidget;
  tabs_->addTab(plots_, tr("Curves"));
  connect(plots_, &PlotPanel::targetPositionClicked, this, [this](int run_id, qint64 position) {
    for (int i = 0; i < runs_.size(); ++i)
      if (runs_[i].id == run_id) {
        selectRun(i);  // shows the run's snapshot in the inspector
        inspector_->selectQuery(position);
        tabs_->setCurrentWidget(inspector_);
        return;
      }
  });
  tabs_->addTab(inspector_, tr("Tree inspector"));
  tabs_->addTab(comparison_, tr("Comparison"));
  tabs_->setDocumentMode(true);
  setCentralWidget(tabs_);

  createActions();
  createMenus();
  createToolBars();
  createStatusBar();
  createDockWindows();

  connect(session_, &TrainingSession::runStarted, this, &MainWindow::onRunStarted);
  connect(session_, &TrainingSession::stepped, this, &MainWindow::onStepped);
  connect(session_, &TrainingSession::evaluated, this, &MainWindow::onEvaluated);
  connect(session_, &TrainingSession::snapshotReady, this, &MainWindow::onSnapshot);
  connect(session_, &TrainingSession::stateChanged, this, &MainWindow::onStateChanged);
  connect(session_, &TrainingSession::failed, this, [this](const QString& message) {
    if (discarding_) return;  // the user cancelled this opening
    // A file that failed to open leaves the recent list: the next click would fail the same way.
    if (!pending_load_.isEmpty()) {
      removeRecentFile(pending_load_);
      pending_load_.clear();
      statusBar()->clearMessage();
    }
    showError(message);
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
  connect(refresh, &QTimer::timeout, this, [this] {
    if (dirty_) refreshViews();
  });
  refresh->start();
  rate_clock_.start();

  readSettings();
  updateActions();
  refreshViews();
}

MainWindow::~MainWindow() = default;

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
    a->setToolTip(tip + (key.isEmpty() ? QString() : QString(" (%1)").arg(key.toString(QKeySequence::NativeText))));
    a->setStatusTip(tip);
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
         queue_.clear();
         session_->stop();
       });
  make("step", tr("Single &step"), tr("Run exactly one training step while paused"), QKeySequence(Qt::Key_F10),
       SP::SP_MediaSkipForward, [this] { session_->stepOnce(); });
  make("setLr", tr("Set &learning rate..."), tr("Change the peak learning rate of the paused run"),
       QKeySequence(Qt::CTRL | Qt::Key_L), SP::SP_FileDialogDetailedView, [this] {
         auto* run = currentRun();
         if (!run) return;
         bool ok = false;
         const double lr = QInputDialog::getDouble(this, tr("Learning rate"), tr("Peak learning rate (cosine schedule):"),
                                                   run->config.lr, 1e-8, 10.0, 8, &ok, Qt::WindowFlags(), 1e-5);
         if (!ok) return;
         run->config.lr = lr;
         session_->setLearningRate(lr);
       });
  make("compare", tr("&Compare models"),
       tr("Queue the experiment four times: TCA, full cross attention, Perceiver IO with as many latents as TCA reads, "
          "and a simplified Treeformer TC attention with about as many leaf summaries"),
       QKeySequence(Qt::CTRL | Qt::Key_K), SP::SP_FileDialogListView, [this] {
         if (!experiment_->isValid()) return showError(experiment_->problems().first());
         Config base = experiment_->config();
         QList<Config> configs;
         // The baselines read as many tokens as TCA reads nodes at this context size.
         const std::int64_t n = base.task == "copy" ? (base.seq_len + 1) / 2 : base.task == "image" ? 100 : 25;
         const auto tca_tokens = TreeShape::of(std::max<std::int64_t>(2, n), base.branch_factor).tokens_per_query();
         for (const auto& m : Config::models()) {
           Config c = base;
           c.model = m;
           c.match_tca_tokens(tca_tokens);
           configs << c;
         }
         queueRuns(configs, tr("comparison %1").arg(next_id_));
         tabs_->setCurrentWidget(comparison_);
       });
  make("rewardStudy", tr("&Reward study (accuracy vs NCE)"),
       tr("Queue two TCA copy-task runs that differ only in the RL reward (paper, Table 3)"), QKeySequence(),
       SP::SP_FileDialogContentsView, [this] {
         if (!experiment_->isValid()) return showError(experiment_->problems().first());
         Config base = experiment_->config();
         base.task = base.task == "copy" ? base.task : "copy";
         base.model = "tca";
         QList<Config> configs;
         for (const auto& r : Config::choices("reward")) {
           Config c = base;
           c.reward = r;
           configs << c;
         }
         queueRuns(configs, tr("reward study %1").arg(next_id_));
         tabs_->setCurrentWidget(comparison_);
       });
  make("open", tr("&Open checkpoint..."), tr("Load a checkpoint: its config, curves and model"), QKeySequence::Open,
       SP::SP_DialogOpenButton, [this] {
         const auto path = QFileDialog::getOpenFileName(this, tr("Open checkpoint"), QString(), tr("Checkpoints (*.safetensors);;All files (*)"));
         if (!path.isEmpty()) openCheckpoint(path);
       });
  make("save", tr("&Save checkpoint..."), tr("Save the current run's model, optimiser, config and curves"),
       QKeySequence::Save, SP::SP_DialogSaveButton, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Save checkpoint"), "checkpoint.safetensors", tr("Checkpoints (*.safetensors)"));
         if (!path.isEmpty()) saveCheckpoint(path);
       });
  make("exportPlots", tr("Export &plots..."), tr("Write every plot as PNG and/or PDF at a chosen size"),
       QKeySequence(Qt::CTRL | Qt::Key_E), SP::SP_DriveFDIcon, [this] {
         QDialog dialog(this);
         dialog.setWindowTitle(tr("Export plots"));
         auto* form = new QFormLayout(&dialog);
         auto* w = new QSpinBox;
         auto* h = new QSpinBox;
         w->setRange(200, 8000);
         h->setRange(150, 8000);
         w->setValue(1200);
         h->setValue(800);
         auto* format = new QComboBox;
         format->addItems({"png", "pdf", "png+pdf"});
         form->addRow(tr("Width (px)"), w);
         form->addRow(tr("Height (px)"), h);
         form->addRow(tr("Format"), format);
         auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
         form->addRow(buttons);
         connect(buttons, &QDialogButtonBox::accepted, &dialog, &QDialog::accept);
         connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
         if (dialog.exec() != QDialog::Accepted) return;
         const auto folder = QFileDialog::getExistingDirectory(this, tr("Export plots to"));
         if (folder.isEmpty()) return;
         for (const auto& f : format->currentText().split('+')) exportPlots(folder, f, w->value(), h->value());
       });
  make("exportCsv", tr("Export &metrics CSV..."), tr("Write the current run's metrics as CSV (same columns as the CLI)"),
       QKeySequence(), SP::SP_FileIcon, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Export metrics"), "metrics.csv", tr("CSV (*.csv)"));
         if (!path.isEmpty()) exportMetricsCsv(path);
       });
  make("exportComparison", tr("Export comparison &table..."), tr("Write the comparison table as CSV or Markdown"),
       QKeySequence(), SP::SP_FileIcon, [this] {
         const auto path = QFileDialog::getSaveFileName(this, tr("Export comparison"), "comparison.md",
                                                        tr("Markdown (*.md);;CSV (*.csv)"));
         if (!path.isEmpty()) exportComparison(path);
       });
  make("exportReport", tr("Export session &report..."), tr("Write a folder with every plot, table, metrics file and a report.md"),
       QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E), SP::SP_DirIcon, [this] {
         const auto folder = QFileDialog::getExistingDirectory(this, tr("Write the report into"));
         if (!folder.isEmpty()) exportReport(folder);
       });
  make("quit", tr("&Quit"), tr("Close ReTreever Studio"), QKeySequence::Quit, SP::SP_DialogCloseButton, [this] { close(); });
  auto* dark = make("dark", tr("&Dark theme"), tr("Switch between light and dark palettes"), QKeySequence(Qt::CTRL | Qt::Key_D),
                    SP::SP_DesktopIcon, [this] { setDarkTheme(action("dark")->isChecked()); });
  dark->setCheckable(true);
  make("fitTree", tr("&Fit tree"), tr("Reset the tree inspector's zoom and pan"), QKeySequence(Qt::CTRL | Qt::Key_0),
       SP::SP_BrowserReload, [this] { inspector_->treeView()->fit(); });
  make("about", tr("&About"), tr("About ReTreever Studio"), QKeySequence(), SP::SP_MessageBoxInformation, [this] {
    QMessageBox::about(this, tr("About ReTreever Studio"),
                       tr("<b>ReTreever Studio</b><p>Train, inspect and compare Tree Cross Attention "
                          "(Feng et al., ICLR 2024) against full cross attention and Perceiver IO.</p>"));
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
  file->addAction(action("quit"));
  auto* train = menuBar()->addMenu(tr("&Train"));
  for (const char* a : {"train", "pause", "stop", "step", "setLr"}) train->addAction(action(a));
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
  run_list_->setToolTip(tr("Every run of this session. Untick to hide its curves; select to inspect its model."));
  runs->setWidget(run_list_);
  addDockWidget(Qt::LeftDockWidgetArea, runs);
  auto* view = menuBar()->findChild<QMenu*>("viewMenu");
  view->addAction(dock->toggleViewAction());
  view->addAction(runs->toggleViewAction());
  connect(run_list_, &QListWidget::itemChanged, this, [this](QListWidgetItem* item) {
    const int i = item->data(Qt::UserRole).toInt();
    if (i >= 0 && i < runs_.size()) runs_[i].visible = item->checkState() == Qt::Checked;
    dirty_ = true;
  });
  connect(run_list_, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row < 0 || row >= runs_.size()) return;
    if (runs_[row].snapshot) inspector_->setSnapshot(*runs_[row].snapshot);
  });
}

void MainWindow::readSettings() {
  QSettings s;
  restoreGeometry(s.value("window/geometry").toByteArray());
  if (!restoreState(s.value("window/state").toByteArray())) resize(1500, 950);
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
  updateRecentMenu();
}

void MainWindow::writeSettings() {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("experiment/config", QString::fromStdString(experiment_->config().to_json()));
  s.setValue("plots/smoothing", plots_->smoothing());
  s.setValue("view/dark", dark_);
}

void MainWindow::closeEvent(QCloseEvent* event) {
  writeSettings();
  // Nothing the user made is lost: the run in hand is saved where the next start finds it.
  if (currentRun() && session_->state() != TrainingSession::State::Idle &&
      session_->state() != TrainingSession::State::Failed) {
    const auto dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QDir().mkpath(dir);
    session_->stop();
    session_->saveCheckpointNow(dir + "/last-session.safetensors");
    addRecentFile(dir + "/last-session.safetensors");
  }
  event->accept();
}

void MainWindow::setDarkTheme(bool dark) {
  dark_ = dark;
  action("dark")->setChecked(dark);
  apply_theme(dark);
  for (auto* plot : plots_->plots()) style_plot(plot, dark);
  style_plot(comparison_->plot(), dark);
  dirty_ = true;
}

void MainWindow::selectRun(int index) {
  if (index >= 0 && index < run_list_->count()) run_list_->setCurrentRow(index);
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

RunRecord* MainWindow::currentRun() { return current_ >= 0 && current_ < runs_.size() ? &runs_[current_] : nullptr; }

QList<const RunRecord*> MainWindow::runPointers() const {
  QList<const RunRecord*> out;
  for (const auto& r : runs_) out << &r;
  return out;
}

void MainWindow::updateActions() {
  const auto s = session_->state();
  const bool busy = session_->busy();
  const bool valid = experiment_->isValid();
  auto* train = action("train");
  train->setEnabled(valid && !busy);
  train->setToolTip(valid ? tr("Start a new run with the experiment's settings (F5)")
                          : tr("Cannot train: %1").arg(experiment_->problems().value(0)));
  action("compare")->setEnabled(valid);
  action("rewardStudy")->setEnabled(valid);
  action("pause")->setEnabled(s == TrainingSession::State::Running || s == TrainingSession::State::Paused);
  action("pause")->setChecked(s == TrainingSession::State::Paused);
  action("pause")->setText(s == TrainingSession::State::Paused ? tr("&Resume") : tr("&Pause"));
  action("stop")->setEnabled(busy);
  action("step")->setEnabled(s == TrainingSession::State::Paused || s == TrainingSession::State::Finished);
  action("setLr")->setEnabled(s == TrainingSession::State::Paused);
  action("save")->setEnabled(currentRun() != nullptr && s != TrainingSession::State::Preparing);
}

void MainWindow::queueRuns(const QList<Config>& configs, const QString& group) {
  for (const auto& c : configs) {
    RunRecord r;
    r.id = next_id_++;
    r.config = c;
    r.name = run_name(r.id, c);
    r.color = run_color(r.id - 1);
    r.state = tr("queued");
    r.group = group;
    runs_ << r;
    queue_ << runs_.size() - 1;
  }
  dirty_ = true;
  startNextQueued();
}

void MainWindow::startTraining() {
  if (!experiment_->isValid()) return showError(tr("Cannot train: %1").arg(experiment_->problems().value(0)));
  if (session_->busy()) return showError(tr("A run is in progress: stop it first or queue a comparison."));
  queueRuns({experiment_->config()}, QString());
  tabs_->setCurrentWidget(plots_);
}

void MainWindow::startNextQueued() {
  if (session_->busy() || queue_.isEmpty()) return;
  current_ = queue_.takeFirst();
  runs_[current_].state = tr("starting");
  rate_steps_ = 0;
  rate_clock_.restart();
  session_->start(runs_[current_].config);
  dirty_ = true;
}

bool MainWindow::openCheckpoint(const QString& path) {
  if (session_->busy()) {
    showError(tr("A run is in progress: stop it before opening a checkpoint."));
    return false;
  }
  QFileInfo info(path);
  if (!info.exists() || !info.isReadable()) {
    removeRecentFile(path);
    showError(tr("Cannot open '%1': the file does not exist or is not readable.").arg(path));
    return false;
  }
  pending_load_ = path;
  cancel_open_->show();
  statusBar()->showMessage(tr("Opening %1 ...").arg(QFileInfo(path).fileName()));
  session_->resumeFrom(path, true);  // errors arrive through failed() as a dialog
  return true;
}

bool MainWindow::cancelOpening() {
  if (pending_load_.isEmpty()) return false;
  discarding_ = true;
  pending_load_.clear();
  cancel_open_->hide();
  session_->stop();  // queued behind the load: the worker ends the run it yields
  statusBar()->showMessage(tr("Opening cancelled"), 5000);
  return true;
}

void MainWindow::saveCheckpoint(const QString& path) {
  if (!currentRun()) return showError(tr("There is no run to save yet: train or open one first."));
  session_->saveCheckpoint(path);
}

void MainWindow::onRunStarted(const Config& config, qint64, const MetricsHistory& history, const QString& device) {
  if (discarding_) return;  // a cancelled opening
  cancel_open_->hide();
  if (!pending_load_.isEmpty()) {
    RunRecord r;
    r.id = next_id_++;
    r.config = config;
    r.name = run_name(r.id, config) + " (" + QFileInfo(pending_load_).fileName() + ")";
    r.color = run_color(r.id - 1);
    r.history = history;
    runs_ << r;
    current_ = runs_.size() - 1;
    addRecentFile(pending_load_);
    statusBar()->showMessage(tr("Opened %1").arg(QFileInfo(pending_load_).fileName()), 5000);
    pending_load_.clear();
    experiment_->setConfig(config);
  } else if (auto* run = currentRun()) {
    run->config = config;
    run->history = history;
  }
  device_label_->setText(tr("device: %1").arg(device));
  dirty_ = true;
}

void MainWindow::onStepped(const StepMetrics& m) {
  auto* run = currentRun();
  if (!run) return;
  run->history.steps.push_back(m);  // every step: the live curves (the CSV keeps the same columns)
  ++rate_steps_;
  const double elapsed = rate_clock_.elapsed() / 1000.0;
  if (elapsed > 1.0) {
    steps_per_second_ = rate_steps_ / elapsed;
    rate_steps_ = 0;
    rate_clock_.restart();
  }
  const double eta = steps_per_second_ > 0 ? double(run->config.steps - m.step) / steps_per_second_ : 0;
  speed_label_->setText(tr("step %1/%2 · %3 steps/s · ETA %4")
                            .arg(m.step).arg(run->config.steps).arg(steps_per_second_, 0, 'f', 1)
                            .arg(QTime(0, 0).addSecs(int(eta)).toString(eta >= 3600 ? "h:mm:ss" : "m:ss")));
  dirty_ = true;
}

void MainWindow::onEvaluated(const EvalMetrics& e) {
  if (auto* run = currentRun()) run->history.evals.push_back(e);
  dirty_ = true;
}

void MainWindow::onSnapshot(const Snapshot& s) {
  if (discarding_) return;
  auto* run = currentRun();
  if (!run) return;
  run->snapshot = s;
  // Follow the training run in the inspector unless the user picked another run.
  if (run_list_->currentRow() < 0 || run_list_->currentRow() == current_) inspector_->setSnapshot(s);
}

void MainWindow::onStateChanged(TrainingSession::State s) {
  const bool ended = s == TrainingSession::State::Finished || s == TrainingSession::State::Failed;
  if (discarding_) {  // the cancelled opening's run: not the current run's state
    if (ended) discarding_ = false;
    state_label_->setText(ended ? state_text(TrainingSession::State::Idle) : state_text(s));
    updateActions();
    return;
  }
  state_label_->setText(state_text(s));
  if (auto* run = currentRun()) run->state = state_text(s);
  if (s == TrainingSession::State::Failed && !pending_load_.isEmpty()) pending_load_.clear();
  if (ended) cancel_open_->hide();
  updateActions();
  dirty_ = true;
  if (s == TrainingSession::State::Finished || s == TrainingSession::State::Failed)
    QTimer::singleShot(0, this, &MainWindow::startNextQueued);
}

void MainWindow::refreshViews() {
  dirty_ = false;
  auto runs = runPointers();
  plots_->setRuns(runs);
  comparison_->setRuns(runs);
  run_list_->blockSignals(true);
  while (run_list_->count() > runs_.size()) delete run_list_->takeItem(run_list_->count() - 1);
  for (int i = 0; i < runs_.size(); ++i) {
    if (i >= run_list_->count()) {
      auto* item = new QListWidgetItem;
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

bool MainWindow::writeFileAtomically(const QString& path, const QByteArray& bytes) {
  QSaveFile file(path);  // writes a temporary file and renames it on commit
  if (!file.open(QIODevice::WriteOnly) || file.write(bytes) != bytes.size() || !file.commit()) {
    showError(tr("Could not write '%1': %2").arg(path, file.errorString()));
    return false;
  }
  return true;
}

bool MainWindow::exportPlots(const QString& folder, const QString& format, int width, int height) {
  QDir().mkpath(folder);
  const auto names = plots_->plotNames();
  auto all = plots_->plots();
  QStringList files;
  QList<QCustomPlot*> targets(all.begin(), all.end());
  QStringList target_names = names;
  targets << comparison_->plot();
  target_names << "comparison";
  for (int i = 0; i < targets.size(); ++i) {
    const auto path = QDir(folder).filePath(target_names[i] + "." + format);
    const auto tmp = path + ".part";
    const bool ok = format == "pdf" ? targets[i]->savePdf(tmp, width, height)
                                    : targets[i]->savePng(tmp, width, height);
    if (!ok || (QFile::exists(path) && !QFile::remove(path)) || !QFile::rename(tmp, path)) {
      QFile::remove(tmp);
      showError(tr("Could not write '%1' (is the disk full or the folder read-only?)").arg(path));
      return false;
    }
    files << path;
  }
  statusBar()->showMessage(tr("Wrote %1 plots to %2").arg(files.size()).arg(folder), 5000);
  return true;
}

bool MainWindow::exportMetricsCsv(const QString& path) {
  auto* run = currentRun();
  if (!run) {
    showError(tr("There are no metrics yet: train or open a run first."));
    return false;
  }
  return writeFileAtomically(path, QByteArray::fromStdString(run->history.to_csv()));
}

bool MainWindow::exportComparison(const QString& path) {
  const bool markdown = path.endsWith(".md", Qt::CaseInsensitive);
  return writeFileAtomically(path, (markdown ? comparison_->toMarkdown() : comparison_->toCsv()).toUtf8());
}

bool MainWindow::exportReport(const QString& folder) {
  refreshViews();
  QDir dir(folder);
  if (!dir.mkpath("plots")) {
    showError(tr("Cannot create '%1'.").arg(dir.filePath("plots")));
    return false;
  }
  if (!exportPlots(dir.filePath("plots"), "png", 1200, 800) || !exportPlots(dir.filePath("plots"), "pdf", 1200, 800))
    return false;
  if (!exportComparison(dir.filePath("comparison.csv")) || !exportComparison(dir.filePath("comparison.md")))
    return false;
  QString md = "# ReTreever Studio session report\n\n" + QDateTime::currentDateTime().toString(Qt::ISODate) + "\n\n";
  md += "## Runs\n\n" + comparison_->toMarkdown() + "\n";
  for (const auto& r : runs_) {
    const auto name = QString("metrics_run%1.csv").arg(r.id);
    if (!writeFileAtomically(dir.filePath(name), QByteArray::fromStdString(r.history.to_csv()))) return false;
    md += QString("- %1: [%2](%2), config:\n\n```json\n%3\n```\n\n").arg(r.name, name, QString::fromStdString(r.config.to_json()));
  }
  md += "## Curves\n\n";
  for (const auto& n : plots_->plotNames()) md += QString("![%1](plots/%1.png)\n\n").arg(n);
  md += "![comparison](plots/comparison.png)\n\n";
  if (inspector_->hasModel()) {
    const auto image = inspector_->exportTarget()->grab().toImage();
    QSaveFile f(dir.filePath("inspector.png"));
    if (f.open(QIODevice::WriteOnly) && image.save(&f, "PNG") && f.commit())
      md += "## Tree inspector\n\n![inspector](inspector.png)\n";
  }
  if (!writeFileAtomically(dir.filePath("report.md"), md.toUtf8())) return false;
  if (currentRun()) session_->saveCheckpointNow(dir.filePath("checkpoint.safetensors"));
  statusBar()->showMessage(tr("Report written to %1").arg(folder), 5000);
  return true;
}

}  // namespace retreever::ui
