#include "training_session.h"

#include <QTimer>

#include "datasets/tasks.h"

namespace retreever::ui {

namespace {
void register_types() {
  static const bool done = [] {
    qRegisterMetaType<Config>();
    qRegisterMetaType<StepMetrics>();
    qRegisterMetaType<EvalMetrics>();
    qRegisterMetaType<MetricsHistory>();
    qRegisterMetaType<Snapshot>();
    qRegisterMetaType<TrainingSession::State>();
    return true;
  }();
  (void)done;
}
}  // namespace

TrainingSession::TrainingSession(QObject* parent) : QObject(parent) {
  register_types();
  worker_ = new TrainingWorker(this);
  worker_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
  connect(worker_, &TrainingWorker::stateChanged, this, &TrainingSession::setState);
  thread_.setObjectName("retreever-training");
  thread_.start();
}

TrainingSession::~TrainingSession() {
  // Stop between steps, then let the thread finish its event loop.
  QMetaObject::invokeMethod(worker_, "stop", Qt::BlockingQueuedConnection);
  thread_.quit();
  thread_.wait();
}

void TrainingSession::setState(State s) {
  if (state_ == s) return;
  state_ = s;
  Q_EMIT stateChanged(s);
}

// Every command is a queued call into the worker's thread.
void TrainingSession::start(const Config& config, const QStringList& devices, const QString& folder) {
  setState(State::Preparing);
  QMetaObject::invokeMethod(worker_, "start", Qt::QueuedConnection, Q_ARG(retreever::Config, config),
                            Q_ARG(QStringList, devices), Q_ARG(QString, folder));
}
void TrainingSession::resumeFrom(const QString& checkpoint, bool paused, const QString& folder, qint64 steps) {
  setState(State::Preparing);
  QMetaObject::invokeMethod(worker_, "resumeFrom", Qt::QueuedConnection, Q_ARG(QString, checkpoint),
                            Q_ARG(bool, paused), Q_ARG(QString, folder), Q_ARG(qint64, steps));
}
void TrainingSession::pause() { QMetaObject::invokeMethod(worker_, "pause", Qt::QueuedConnection); }
void TrainingSession::resume() { QMetaObject::invokeMethod(worker_, "resume", Qt::QueuedConnection); }
void TrainingSession::stop() { QMetaObject::invokeMethod(worker_, "stop", Qt::QueuedConnection); }
void TrainingSession::stopNow() { QMetaObject::invokeMethod(worker_, "stop", Qt::BlockingQueuedConnection); }
void TrainingSession::stepOnce() { QMetaObject::invokeMethod(worker_, "stepOnce", Qt::QueuedConnection); }
void TrainingSession::setLearningRate(double lr) {
  QMetaObject::invokeMethod(worker_, "setLearningRate", Qt::QueuedConnection, Q_ARG(double, lr));
}
void TrainingSession::setTotalSteps(qint64 steps) {
  QMetaObject::invokeMethod(worker_, "setTotalSteps", Qt::QueuedConnection, Q_ARG(qint64, steps));
}
void TrainingSession::setCpuThreads(int threads) {
  QMetaObject::invokeMethod(worker_, "setCpuThreads", Qt::QueuedConnection, Q_ARG(int, threads));
}
void TrainingSession::saveCheckpoint(const QString& path) {
  QMetaObject::invokeMethod(worker_, "saveCheckpoint", Qt::QueuedConnection, Q_ARG(QString, path));
}
bool TrainingSession::saveCheckpointNow(const QString& path) {
  bool saved = false;
  QMetaObject::invokeMethod(worker_, "saveCheckpoint", Qt::BlockingQueuedConnection, Q_RETURN_ARG(bool, saved),
                            Q_ARG(QString, path));
  return saved;
}
void TrainingSession::requestSnapshot() {
  QMetaObject::invokeMethod(worker_, "requestSnapshot", Qt::QueuedConnection);
}

TrainingWorker::TrainingWorker(TrainingSession* session) : session_(session) {
  timer_ = new QTimer(this);
  timer_->setInterval(0);
  connect(timer_, &QTimer::timeout, this, &TrainingWorker::tick);
}

TrainingWorker::~TrainingWorker() = default;

void TrainingWorker::setState(TrainingSession::State s) {
  state_ = s;
  Q_EMIT stateChanged(s);
}

void TrainingWorker::fail(const QString& message) {
  timer_->stop();
  Q_EMIT session_->failed(message);
  setState(TrainingSession::State::Failed);
}

void TrainingWorker::everywhere(const std::function<void(Trainer&)>& op) {
  if (replicas_) replicas_->together(op);
  else op(*trainer_);
}

void TrainingWorker::setCpuThreads(int threads) {
  cpu_threads_ = std::max(0, threads);
  // A data-parallel run's replicas share the cores as they were set: from the next run.
  if (trainer_ && !replicas_) trainer_->use_cpu_threads(cpu_threads_);
}

void TrainingWorker::keep(bool evaluated) {
  if (!folder_ || !trainer_) return;
  try {
    evaluated ? folder_->save_evaluated(*trainer_) : folder_->save(*trainer_);
  } catch (const std::exception& e) {  // the run goes on; the user hears why it is not kept
    Q_EMIT session_->failed(tr("Could not keep the run in '%1': %2")
                                .arg(QString::fromStdString(folder_->path()), QString::fromUtf8(e.what())));
  }
}

void TrainingWorker::begin(const QString& folder, bool paused) {
  folder_.reset();
  if (!folder.isEmpty()) {
    try {
      folder_ = std::make_unique<RunFolder>(folder.toStdString(), *trainer_);
    } catch (const std::exception& e) {  // a read-only disk: the run still trains
      Q_EMIT session_->failed(tr("The run trains, but the studio cannot keep it: %1. Save its checkpoint "
                                 "before you close the studio (File > Save checkpoint).")
                                  .arg(QString::fromUtf8(e.what())));
    }
  }
  QString device = QString::fromStdString(trainer_->device_name());
  if (replicas_)
    device = tr("data parallel on %1 devices, %2 .. %3")
                 .arg(replicas_->size())
                 .arg(device, QString::fromStdString(replicas_->devices().back()));
  Q_EMIT session_->runStarted(trainer_->config(), trainer_->steps_done(), trainer_->history(), device);
  if (trainer_->finished()) {
    setState(TrainingSession::State::Finished);
    requestSnapshot();
    return;
  }
  if (paused) {
    setState(TrainingSession::State::Paused);
    requestSnapshot();
    return;
  }
  setState(TrainingSession::State::Running);
  timer_->start();
}

void TrainingWorker::start(const Config& config, const QStringList& devices, const QString& folder) {
  timer_->stop();
  replicas_.reset();  // they hold the trainer about to go
  try {
    trainer_ = std::make_unique<Trainer>(config, datasets::make_task);
    trainer_->use_cpu_threads(cpu_threads_);  // before the replicas, which set the threads their way
    if (devices.size() > 1) {
      std::vector<std::string> list;
      for (const auto& d : devices) list.push_back(d.toStdString());
      replicas_ = std::make_unique<LocalReplicas>(*trainer_, list, datasets::make_task);
    }
  } catch (const std::exception& e) {
    trainer_.reset();
    return fail(QString::fromStdString(e.what()));
  }
  begin(folder);
}

void TrainingWorker::resumeFrom(const QString& checkpoint, bool paused, const QString& folder, qint64 steps) {
  timer_->stop();
  replicas_.reset();
  try {
    trainer_ = Trainer::load(checkpoint.toStdString(), datasets::make_task);
    trainer_->use_cpu_threads(cpu_threads_);
    if (steps > trainer_->steps_done()) trainer_->set_total_steps(steps);
  } catch (const std::exception& e) {
    trainer_.reset();
    return fail(QString::fromStdString(e.what()));
  }
  begin(folder, paused);
}

void TrainingWorker::pause() {
  if (!trainer_ || !timer_->isActive()) return;
  timer_->stop();
  setState(TrainingSession::State::Paused);
  requestSnapshot();  // what the user inspects while paused is the model as it is now
}

void TrainingWorker::resume() {
  if (!trainer_ || trainer_->finished() || timer_->isActive()) return;
  setState(TrainingSession::State::Running);
  timer_->start();
}

void TrainingWorker::stop() {
  if (!trainer_) return;
  const bool was_running = timer_->isActive();
  timer_->stop();
  if (was_running || state_ == TrainingSession::State::Paused) {
    keep(false);
    setState(TrainingSession::State::Finished);
    requestSnapshot();
  }
}

void TrainingWorker::stepOnce() {
  if (!trainer_ || timer_->isActive()) return;
  if (trainer_->finished()) {
    const auto steps = trainer_->steps_done() + 1;
    everywhere([steps](Trainer& t) { t.set_total_steps(steps); });
  }
  if (runOneStep()) requestSnapshot();
}

void TrainingWorker::setLearningRate(double lr) {
  if (!trainer_) return;
  try {
    everywhere([lr](Trainer& t) { t.set_peak_learning_rate(lr); });
    Q_EMIT session_->learningRateChanged(trainer_->learning_rate());
  } catch (const std::exception& e) {
    Q_EMIT session_->failed(QString::fromStdString(e.what()));
  }
}

void TrainingWorker::setTotalSteps(qint64 steps) {
  if (!trainer_ || steps <= trainer_->steps_done()) return;
  everywhere([steps](Trainer& t) { t.set_total_steps(steps); });
}

bool TrainingWorker::saveCheckpoint(const QString& path) {
  if (!trainer_) {
    Q_EMIT session_->failed("There is no model to save yet: start a run first.");
    return false;
  }
  try {
    trainer_->save(path.toStdString());
    Q_EMIT session_->checkpointSaved(path);
    return true;
  } catch (const std::exception& e) {
    Q_EMIT session_->failed(QString::fromStdString(e.what()));
    return false;
  }
}

void TrainingWorker::requestSnapshot() {
  if (trainer_) Q_EMIT session_->snapshotReady(trainer_->snapshot());
}

void TrainingWorker::evaluateAndSnapshot() {
  EvalMetrics e;
  Trainer* leader = trainer_.get();
  everywhere([&](Trainer& t) {
    auto mine = t.evaluate();  // data parallel: every trainer evaluates its share, and all get the sums
    if (&t == leader) e = mine;
  });
  keep(true);
  Q_EMIT session_->evaluated(e);
  requestSnapshot();
}

bool TrainingWorker::runOneStep() {
  try {
    StepMetrics s;
    Trainer* leader = trainer_.get();
    everywhere([&](Trainer& t) {
      auto mine = t.step();
      if (&t == leader) s = mine;
    });
    Q_EMIT session_->stepped(s);
    const auto& c = trainer_->config();
    if (s.step % c.eval_every == 0 || trainer_->finished()) evaluateAndSnapshot();
  } catch (const DivergenceError& e) {
    keep(false);  // its last good parameters
    fail(QString::fromStdString(e.what()) +
         ". The model keeps its last good parameters; lower the learning rate and step on.");
    return false;
  } catch (const std::exception& e) {
    fail(QString::fromStdString(e.what()));
    return false;
  }
  return true;
}

void TrainingWorker::tick() {
  if (!trainer_) return timer_->stop();
  if (!runOneStep()) return;
  if (trainer_->finished()) {
    timer_->stop();
    setState(TrainingSession::State::Finished);
  }
}

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

}  // namespace retreever::ui
