// Runs the core Trainer on its own thread (DESIGN.md "The training worker"). Commands go in
// as queued calls, events come out as signals; the GUI thread never touches the model.
#pragma once

#include <QObject>
#include <QString>
#include <QStringList>
#include <QThread>
#include <QTimer>
#include <memory>

#include "core/config.h"
#include "core/metrics.h"
#include "core/training/local_replicas.h"
#include "core/training/run_folder.h"
#include "core/training/trainer.h"

Q_DECLARE_METATYPE(retreever::Config)
Q_DECLARE_METATYPE(retreever::StepMetrics)
Q_DECLARE_METATYPE(retreever::EvalMetrics)
Q_DECLARE_METATYPE(retreever::MetricsHistory)
Q_DECLARE_METATYPE(retreever::Snapshot)

namespace retreever::ui {

class TrainingWorker;

class TrainingSession : public QObject {
  Q_OBJECT
 public:
  enum class State { Idle, Preparing, Running, Paused, Finished, Failed };
  Q_ENUM(State)

  explicit TrainingSession(QObject* parent = nullptr);
  ~TrainingSession() override;

  State state() const { return state_; }
  bool busy() const { return state_ == State::Preparing || state_ == State::Running || state_ == State::Paused; }

 public Q_SLOTS:
  // A fresh run; with two `devices` or more (the studio's "all GPUs"), data parallel over them:
  // the model on devices[0] and a replica on each further one (core/training/local_replicas.h).
  // With a `folder`, the run is kept there as `train --out` keeps it (core/training/run_folder.h):
  // at every evaluation, and when it stops, diverges or ends.
  void start(const retreever::Config& config, const QStringList& devices = {}, const QString& folder = {});
  // Loads a saved run (config, curves, model, optimiser); paused = wait for resume(). With a
  // `folder`, kept there from then on (not in the file's own folder); with `steps` beyond the
  // steps it has done, it trains until that step (its cosine schedule stretched to it).
  void resumeFrom(const QString& checkpoint, bool paused = true, const QString& folder = {}, qint64 steps = 0);
  void pause();
  void resume();
  void stop();                                   // ends the run (the model stays for saving)
  void stopNow();                                // the same, and returns when it is kept
  void stepOnce();                               // one step while paused
  void setLearningRate(double lr);               // takes effect at the next step
  void setTotalSteps(qint64 steps);
  // CPU threads of every step (0: tuned to the steps' speed, core/training/thread_tuner.h), for the
  // run in hand from its next step and for the runs after it.
  void setCpuThreads(int threads);
  void saveCheckpoint(const QString& path);
  void requestSnapshot();
  // Saves and returns when the file is written (the session report): whether it was (a failure is
  // reported by failed() as well).
  bool saveCheckpointNow(const QString& path);

 Q_SIGNALS:
  void stateChanged(retreever::ui::TrainingSession::State state);
  // A run began: its config, the steps already done and its history (non-empty when resumed).
  void runStarted(const retreever::Config& config, qint64 steps_done,
                  const retreever::MetricsHistory& history, const QString& device);
  void stepped(const retreever::StepMetrics& metrics);
  void evaluated(const retreever::EvalMetrics& metrics);
  void snapshotReady(const retreever::Snapshot& snapshot);
  void checkpointSaved(const QString& path);
  void failed(const QString& message);
  void learningRateChanged(double lr);

 private:
  void setState(State s);
  QThread thread_;
  TrainingWorker* worker_ = nullptr;
  State state_ = State::Idle;
};

// Lives on the session's thread. Each timer tick runs one step, so queued commands are
// handled between steps (pause latency is one step).
class TrainingWorker : public QObject {
  Q_OBJECT
 public:
  explicit TrainingWorker(TrainingSession* session);
  ~TrainingWorker() override;

 public Q_SLOTS:
  void start(const retreever::Config& config, const QStringList& devices, const QString& folder);
  void resumeFrom(const QString& checkpoint, bool paused, const QString& folder, qint64 steps);
  void pause();
  void resume();
  void stop();
  void stepOnce();
  void setLearningRate(double lr);
  void setTotalSteps(qint64 steps);
  void setCpuThreads(int threads);
  bool saveCheckpoint(const QString& path);  // whether it was written
  void requestSnapshot();

 Q_SIGNALS:
  void stateChanged(retreever::ui::TrainingSession::State state);

 private:
  void tick();
  bool runOneStep();  // false when the run ended or failed
  void evaluateAndSnapshot();
  void fail(const QString& message);
  void begin(const QString& folder, bool paused = false);
  // Into the run's folder, where it has one; evaluated: after an evaluation (the best checkpoint too).
  void keep(bool evaluated);
  void setState(TrainingSession::State s);
  // op on the trainer, and on every replica at the same time when the run is data parallel.
  void everywhere(const std::function<void(Trainer&)>& op);

  TrainingSession* session_;
  TrainingSession::State state_ = TrainingSession::State::Idle;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<LocalReplicas> replicas_;  // declared after trainer_: ends before it
  std::unique_ptr<RunFolder> folder_;         // where the run is kept (none: nowhere)
  QTimer* timer_ = nullptr;
  int cpu_threads_ = 0;  // 0: tuned
};

// "running", "paused", ...: how the studio names a state.
QString state_text(TrainingSession::State s);

}  // namespace retreever::ui
