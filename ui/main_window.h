// ReTreever Studio's main window: experiment dock, runs dock, tabs for the curves, the tree
// inspector and the comparison dashboard; menus, toolbar and shortcuts share one QAction per
// command (STYLE.md: Qt's MainWindow skeleton).
#pragma once

#include <memory>

#include <QList>
#include <QMainWindow>

#include "ui/run_record.h"
#include "ui/training_session.h"

class QAction;
class QLabel;
class QListWidget;
class QLockFile;
class QTabWidget;
class QMenu;

class QPushButton;

namespace retreever::ui {

class ExperimentPanel;
class PlotPanel;
class InspectorPanel;
class ComparisonPanel;
class SessionController;
class ScalingPanel;
class SessionExport;
struct ExportResult;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // For tests and scripting: the parts, the runs, and the commands without dialogs.
  TrainingSession* session() const { return session_; }
  ExperimentPanel* experiment() const { return experiment_; }
  PlotPanel* plots() const { return plots_; }
  InspectorPanel* inspector() const { return inspector_; }
  ComparisonPanel* comparison() const { return comparison_; }
  ScalingPanel* scaling() const { return scaling_; }
  QTabWidget* tabs() const { return tabs_; }
  const QList<RunRecord>& runs() const;
  SessionController* controller() const { return controller_; }
  QAction* action(const QString& name) const;

  void startTraining();                 // a new run from the experiment panel
  void queueRuns(const QList<Config>& configs, const QString& group);
  bool openCheckpoint(const QString& path);     // false (and an error dialog) when unreadable
  // Abandons the checkpoint being opened (the status bar's Cancel): whatever its loading yields is
  // discarded. False when nothing is being opened.
  bool cancelOpening();
  bool opening() const;
  // The run chosenRun() names; another than the one in hand is copied from its folder.
  void saveCheckpoint(const QString& path);
  bool exportPlots(const QString& folder, const QString& format, int width, int height);
  bool exportMetricsCsv(const QString& path);
  bool exportComparison(const QString& path);   // .csv or .md by extension
  bool exportReport(const QString& folder);
  void setDarkTheme(bool dark);
  // CPU threads of every training step, 0: tuned to the steps' speed (Train > CPU threads; kept
  // in the settings): the run in hand from its next step, and the runs after it.
  void setCpuThreads(int threads);
  int cpuThreads() const { return cpu_threads_; }
  void selectRun(int index);                    // shows that run's model in the inspector
  void useRunSettings(int index);               // the experiment panel takes that run's config
  bool queueEmpty() const;
  // Where the file dialogs open (`file` inside it, for a save): the folder last chosen in one of them,
  // else the home folder (not the working directory the studio was started from).
  QString dialogFolder(const QString& file = QString()) const;
  void rememberDialogFolder(const QString& path);  // a chosen file's folder, or a chosen folder

 Q_SIGNALS:
  void errorReported(const QString& message);  // every error dialog also emits this
  void refreshed();                             // after plots and tables were redrawn

 protected:
  void closeEvent(QCloseEvent* event) override;

 private:
  void createActions();
  void createMenus();
  void createToolBars();
  void createStatusBar();
  void createDockWindows();
  void readSettings();
  void writeSettings();

  void showError(const QString& message);
  void updateActions();
  void refreshViews();
  void addRecentFile(const QString& path);
  void removeRecentFile(const QString& path);
  void updateRecentMenu();
  // Shows an export's problems; `done` in the status bar when it succeeded.
  bool finishExport(const ExportResult& result, const QString& done);
  // The run Save checkpoint saves: the one selected in Runs, else the run in hand, else the newest
  // (a restored session's); -1 when there is none.
  int chosenRun() const;
  QString queueWait() const;  // when a run queued now starts, naming a paused run that holds the queue
  // The run's model in the inspector: its snapshot, else its kept checkpoint (loaded off the UI thread).
  void inspectRun(int row);

  SessionController* controller_;
  TrainingSession* session_;  // the controller's
  ExperimentPanel* experiment_;
  PlotPanel* plots_;
  InspectorPanel* inspector_;
  ComparisonPanel* comparison_;
  ScalingPanel* scaling_;
  QTabWidget* tabs_;
  QListWidget* run_list_ = nullptr;
  static constexpr int kMaxSessions = 9;      // studios open at once, each keeping its session
  std::unique_ptr<SessionExport> exports_;  // File > Export
  std::unique_ptr<QLockFile> session_lock_;  // held while this window keeps its session
  QLabel* state_label_;
  QLabel* speed_label_;
  QLabel* device_label_;
  QMenu* recent_menu_ = nullptr;
  QList<QAction*> actions_;

  bool dirty_ = false;
  bool dark_ = false;
  int cpu_threads_ = 0;
  QMenu* threads_menu_ = nullptr;
  QPushButton* cancel_open_ = nullptr;
};

}  // namespace retreever::ui
