// The studio's session without its widgets: the runs, the queue that trains them one after the
// other on the TrainingSession, checkpoints being opened, and the configs of comparisons. The main
// window shows what it holds; tests drive it directly.
#pragma once

#include <QElapsedTimer>
#include <QList>
#include <QObject>
#include <QString>

#include "ui/run_record.h"
#include "ui/session_store.h"
#include "ui/training_session.h"

namespace retreever::ui {

// How an opened checkpoint is named in its run's name: the run's folder for the files `train`
// writes (".../gp-seed1/checkpoint.safetensors" -> "gp-seed1", checkpoint_best -> "gp-seed1 best"),
// the file's name otherwise.
QString checkpoint_label(const QString& path);

class SessionController : public QObject {
  Q_OBJECT
 public:
  explicit SessionController(QObject* parent = nullptr);

  TrainingSession* session() const { return session_; }
  const QList<RunRecord>& runs() const { return runs_; }
  QList<const RunRecord*> runPointers() const;
  RunRecord* currentRun();             // the run the session trains (or trained last)
  int currentIndex() const { return current_; }
  bool queueEmpty() const { return queue_.isEmpty(); }
  void setVisible(int index, bool visible);

  // Adds the runs to the queue (each a new RunRecord, `group` shared) and starts the next one
  // when the session is free; each trains data parallel over `devices` when it names two or more.
  void queueRuns(const QList<Config>& configs, const QString& group, const QStringList& devices = {});
  // Opens a checkpoint as a paused run; false with `error` set when it cannot start (busy, missing
  // file). Errors while loading arrive through the session's failed(). Checkpoints opened while
  // one is loading (several files at once) wait their turn: each becomes a run, and each but the
  // last, if not finished, is stopped where its file left it (nothing is lost: the file holds it).
  bool openCheckpoint(const QString& path, QString* error);
  // Abandons the checkpoint being opened, and those waiting: what its loading yields is discarded.
  bool cancelOpening();
  bool opening() const { return !pending_load_.isEmpty(); }
  // A cancelled opening is still winding down: the session's messages are not the user's.
  bool discarding() const { return discarding_; }
  // Empties the queue and stops the run in progress.
  void stopAll();

  // The session kept on disk: each run in a folder of root/runs (config.json, metrics.csv and its
  // checkpoints, as `train --out` writes them; saved at every evaluation and when it stops), the
  // list of runs in root/session.json. Without a root nothing is written.
  void keepRunsIn(const QString& root);
  QString root() const { return store_.root(); }
  // Brings back the runs root/session.json lists: their curves and checkpoints; the run that was
  // training as stopped where it was kept, queued runs as not started. Returns what could not be
  // read ("" when all was well); an unreadable session.json is renamed aside, never overwritten.
  QString restore();
  // Stops the run in hand, keeps it and the list (the window closes): returns when written. The
  // queue is held from then on.
  void keepAll();
  // Trains a run of the list further from its checkpoint, until step `until` (0: the steps it was
  // planned with), or starts one that never started. False with `error` set when it cannot (busy,
  // nothing kept, no step left to train).
  bool continueRun(int index, QString* error, qint64 until = 0);
  // Forgets every run and deletes the folders this session made; refused while a run trains.
  bool clearSession(QString* error);
  // Forgets one run and deletes its folder; refused for the run in hand and for queued runs.
  bool removeRun(int index, QString* error);
  double stepsPerSecond() const { return steps_per_second_; }

  // Every registered decoder on `base`, the sized ones reading as many tokens as TCA reads at the
  // task's typical context size (the paper compares at equal tokens).
  static QList<Config> comparisonConfigs(const Config& base);
  // The policy decoder on a classification task, once per classification reward (paper, Table 3).
  static QList<Config> rewardStudyConfigs(Config base);

 Q_SIGNALS:
  void changed();                                   // runs, their states or metrics changed
  void openingStarted(const QString& path);                // a checkpoint is being read
  void opened(const QString& path, const Config& config);  // a checkpoint became a run
  void openingFailed(const QString& path);                  // a checkpoint could not be read
  void snapshotArrived(int run, const retreever::Snapshot& snapshot);
  void stateChanged(retreever::ui::TrainingSession::State state);  // of the current run (not a cancelled opening)
  void stepped(const RunRecord& run, const retreever::StepMetrics& m);
  void runStarted(const QString& device);

 private:
  void startNextQueued();
  void persist() const;                           // root/session.json
  void startOpening(const QString& path);
  // After the session settles: the next checkpoint waiting, once the run opened before it has
  // stopped. True when an opening goes on (queued runs wait for it).
  bool continueOpenings(TrainingSession::State s);
  void onRunStarted(const Config& config, qint64 steps_done, const MetricsHistory& history, const QString& device);
  void onStepped(const StepMetrics& m);
  void onEvaluated(const EvalMetrics& e);
  void onSnapshot(const Snapshot& s);
  void onStateChanged(TrainingSession::State s);

  TrainingSession* session_;
  QList<RunRecord> runs_;
  int current_ = -1;           // index in runs_ of the run the session trains
  QList<int> queue_;           // runs waiting their turn
  int next_id_ = 1;
  QString pending_load_;       // checkpoint being opened (becomes a run when it starts)
  RunRecord pending_run_;      // the run it becomes: its id and folder
  QString discarded_folder_;   // a cancelled opening's folder, deleted when its run ends
  QStringList open_queue_;     // checkpoints waiting for the one being opened
  bool discarding_ = false;    // an opening was cancelled: ignore the session until it ends
  bool stopping_ = false;      // Stop was pressed: the current run ends before its last step
  SessionStore store_;         // where the session is kept (by default nowhere)
  QElapsedTimer rate_clock_;
  qint64 rate_steps_ = 0;
  double steps_per_second_ = 0;
};

}  // namespace retreever::ui
