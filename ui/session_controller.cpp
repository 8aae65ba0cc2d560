#include "session_controller.h"

#include <QDir>
#include <QFileInfo>
#include <QTimer>
#include <algorithm>

#include "core/files.h"
#include "core/registry.h"
#include "core/training/checkpoint_header.h"
#include "core/tree/tree_shape.h"

namespace retreever::ui {

SessionController::SessionController(QObject* parent) : QObject(parent), session_(new TrainingSession(this)) {
  connect(session_, &TrainingSession::runStarted, this, &SessionController::onRunStarted);
  connect(session_, &TrainingSession::stepped, this, &SessionController::onStepped);
  connect(session_, &TrainingSession::evaluated, this, &SessionController::onEvaluated);
  connect(session_, &TrainingSession::snapshotReady, this, &SessionController::onSnapshot);
  connect(session_, &TrainingSession::stateChanged, this, &SessionController::onStateChanged);
}

QString checkpoint_label(const QString& path) {
  const QFileInfo file(path);
  const QString folder = file.absoluteDir().dirName();
  const QString name = file.fileName();
  if (name == kCheckpointFileName && !folder.isEmpty()) return folder;
  if (name == kBestCheckpointFileName && !folder.isEmpty()) return folder + " best";
  return file.fileName();
}

QList<const RunRecord*> SessionController::runPointers() const {
  QList<const RunRecord*> out;
  for (const auto& r : runs_) out << &r;
  return out;
}

RunRecord* SessionController::currentRun() {
  return current_ >= 0 && current_ < runs_.size() ? &runs_[current_] : nullptr;
}

void SessionController::setVisible(int index, bool visible) {
  if (index < 0 || index >= runs_.size() || runs_[index].visible == visible) return;
  runs_[index].visible = visible;
  persist();
  Q_EMIT changed();
}

void SessionController::queueRuns(const QList<Config>& configs, const QString& group, const QStringList& devices) {
  for (const auto& c : configs) {
    RunRecord r;
    r.id = next_id_++;
    r.config = c;
    r.name = run_name(r.id, c);
    r.color = run_color(r.id - 1);
    r.state = tr("queued");
    r.group = group;
    r.devices = devices;
    r.folder = store_.newFolder(r);
    runs_ << r;
    queue_ << runs_.size() - 1;
  }
  persist();
  Q_EMIT changed();
  startNextQueued();
}

void SessionController::startNextQueued() {
  if (session_->busy() || queue_.isEmpty()) return;
  current_ = queue_.takeFirst();
  stopping_ = false;
  runs_[current_].state = tr("starting");
  rate_steps_ = 0;
  rate_clock_.restart();
  session_->start(runs_[current_].config, runs_[current_].devices, runs_[current_].folder);
  persist();
  Q_EMIT changed();
}

bool SessionController::openCheckpoint(const QString& path, QString* error) {
  if (const auto why = unreadable_checkpoint_reason(path.toStdString()); !why.empty()) {
    if (error) *error = tr("Cannot open '%1': it %2.").arg(path, QString::fromStdString(why));
    return false;
  }
  if (opening() || !open_queue_.isEmpty()) {
    open_queue_ << path;
    return true;
  }
  if (session_->busy()) {
    if (error) *error = tr("A run is in progress: stop it before opening a checkpoint.");
    return false;
  }
  startOpening(path);
  return true;
}

void SessionController::startOpening(const QString& path) {
  pending_load_ = path;
  pending_run_ = RunRecord{};
  pending_run_.id = next_id_++;  // the run it becomes; kept in a folder of the session, not beside the file
  try {
    pending_run_.config = read_checkpoint_header(path.toStdString()).config;  // names the folder
  } catch (const std::exception&) {  // the loading says what is wrong
  }
  pending_run_.folder = store_.newFolder(pending_run_);
  Q_EMIT openingStarted(path);
  session_->resumeFrom(path, true, pending_run_.folder);  // errors arrive through the session's failed()
}

bool SessionController::continueOpenings(TrainingSession::State s) {
  if (open_queue_.isEmpty() || opening()) return false;
  if (s == TrainingSession::State::Paused) {  // the run just opened: stopped where its file left it
    stopping_ = true;
    session_->stop();
  } else if (s == TrainingSession::State::Finished || s == TrainingSession::State::Failed) {
    QTimer::singleShot(0, this, [this] {
      if (!open_queue_.isEmpty() && !session_->busy()) startOpening(open_queue_.takeFirst());
    });
  }
  return true;
}

void SessionController::stopAll() {
  for (int i : queue_) runs_[i].state = tr("cancelled");  // stays in the list, marked: it will not run
  const bool dropped = !queue_.isEmpty();
  queue_.clear();
  stopping_ = session_->busy();
  session_->stop();
  if (dropped) {
    persist();
    Q_EMIT changed();
  }
}

bool SessionController::cancelOpening() {
  if (pending_load_.isEmpty()) return false;
  open_queue_.clear();
  discarding_ = true;
  discarded_folder_ = pending_run_.folder;  // deleted once the run it would have been ends
  pending_load_.clear();
  session_->stop();  // queued behind the load: the worker ends the run it yields
  return true;
}

QList<Config> SessionController::comparisonConfigs(const Config& base) {
  const auto& task = task_info(base.task);
  const std::int64_t n = task.typical_context ? task.typical_context(base) : 25;
  const auto tca_tokens = TreeShape::of(std::max<std::int64_t>(2, n), base.branch_factor).tokens_per_query();
  QList<Config> configs;
  for (const auto& d : decoders()) configs << sized_like(base, d.name, tca_tokens);
  return configs;
}

QList<Config> SessionController::rewardStudyConfigs(Config base) {
  if (!task_info(base.task).classification)
    for (const auto& t : tasks())
      if (t.classification) {
        base.task = t.name;
        break;
      }
  for (const auto& d : decoders())
    if (d.policy) {
      base.model = d.name;
      break;
    }
  QList<Config> configs;
  for (const auto& r : Config::choices("reward")) {
    Config c = base;
    c.reward = r;
    configs << c;
  }
  return configs;
}

void SessionController::onRunStarted(const Config& config, qint64 steps_done, const MetricsHistory& history,
                                     const QString& device) {
  if (discarding_) return;  // a cancelled opening
  if (!pending_load_.isEmpty()) {
    RunRecord r = pending_run_;
    r.config = config;
    r.name = run_name(r.id, config) + " (" + checkpoint_label(pending_load_) + ")";
    r.color = run_color(r.id - 1);
    r.history = history;
    r.steps_done = steps_done;
    runs_ << r;
    current_ = runs_.size() - 1;
    const QString path = pending_load_;
    pending_load_.clear();
    Q_EMIT opened(path, config);
  } else if (auto* run = currentRun()) {
    run->config = config;
    run->history = history;
    run->steps_done = steps_done;
  }
  persist();
  Q_EMIT runStarted(device);
  Q_EMIT changed();
}

void SessionController::onStepped(const StepMetrics& m) {
  auto* run = currentRun();
  if (!run || discarding_) return;
  run->history.steps.push_back(m);  // every step: the live curves
  run->steps_done = m.step;
  ++rate_steps_;
  const double elapsed = rate_clock_.elapsed() / 1000.0;
  if (elapsed > 1.0) {
    steps_per_second_ = rate_steps_ / elapsed;
    rate_steps_ = 0;
    rate_clock_.restart();
  }
  Q_EMIT stepped(*run, m);
  Q_EMIT changed();
}

void SessionController::onEvaluated(const EvalMetrics& e) {
  if (discarding_) return;
  if (auto* run = currentRun()) run->history.evals.push_back(e);
  Q_EMIT changed();
}

void SessionController::onSnapshot(const Snapshot& s) {
  if (discarding_) return;
  auto* run = currentRun();
  if (!run) return;
  run->snapshot = s;
  Q_EMIT snapshotArrived(current_, s);
}

void SessionController::onStateChanged(TrainingSession::State s) {
  const bool ended = s == TrainingSession::State::Finished || s == TrainingSession::State::Failed;
  if (discarding_) {  // the cancelled opening's run: not the current run's state
    if (ended) {
      discarding_ = false;
      store_.deleteFolder(discarded_folder_);
      discarded_folder_.clear();
    }
    Q_EMIT stateChanged(ended ? TrainingSession::State::Idle : s);
    return;
  }
  // While a checkpoint is being read, the session's states are the opening's, not the last run's.
  if (auto* run = pending_load_.isEmpty() ? currentRun() : nullptr) {
    run->state = state_text(s);
    // Stopped before its last step: say where, so that it does not read as a run that completed.
    const std::int64_t done = run->lastStep();
    if (s == TrainingSession::State::Finished && stopping_ && done < run->config.steps)
      run->state = done > 0 ? tr("stopped at step %1").arg(done) : tr("stopped before its first step");
  }
  if (ended) stopping_ = false;
  if (s == TrainingSession::State::Failed && !pending_load_.isEmpty()) {
    const QString path = pending_load_;
    pending_load_.clear();
    Q_EMIT openingFailed(path);
  }
  persist();
  Q_EMIT stateChanged(s);
  Q_EMIT changed();
  if (continueOpenings(s)) return;
  if (ended) QTimer::singleShot(0, this, &SessionController::startNextQueued);
}

namespace {
bool refused(QString* error, const QString& why) {
  if (error) *error = why;
  return false;
}
}  // namespace

// The session on disk (ui/session_store.h) ---------------------------------------------------------

void SessionController::keepRunsIn(const QString& root) { store_ = SessionStore(root); }

void SessionController::persist() const {
  // A list that cannot be written loses nothing: the runs' folders hold every run.
  if (const auto why = store_.write(runs_, queue_); !why.isEmpty())
    qWarning("ReTreever Studio: could not write the session list: %s", qPrintable(why));
}

QString SessionController::restore() {
  auto restored = store_.read();
  for (auto& r : restored.runs) {
    next_id_ = std::max(next_id_, r.id + 1);
    runs_ << std::move(r);
  }
  Q_EMIT changed();
  return restored.problem;
}

void SessionController::keepAll() {
  if (session_->busy() && !opening()) {
    session_->stopNow();  // the worker keeps the run before it returns
    if (auto* run = currentRun()) {
      // Its last steps' signals may still wait in the queue: the checkpoint says where it stopped.
      try {
        if (const auto kept = kept_checkpoint(*run); !kept.isEmpty())
          run->steps_done = read_checkpoint_header(kept.toStdString()).step;
      } catch (const std::exception&) {  // restore() says what is wrong with it
      }
      run->state = tr("stopped at step %1").arg(run->lastStep());
    }
  }
  persist();
  queue_.clear();  // the queued runs stay listed as such; none starts now
}

bool SessionController::continueRun(int index, QString* error, qint64 until) {
  const auto refuse = [error](const QString& why) { return refused(error, why); };
  if (index < 0 || index >= runs_.size()) return refuse(tr("There is no such run."));
  auto& run = runs_[index];
  if (session_->busy() || opening()) return refuse(tr("A run is in progress: stop it first."));
  if (queue_.contains(index)) return refuse(tr("%1 is queued already.").arg(run.name));
  const QString checkpoint = kept_checkpoint(run);
  if (checkpoint.isEmpty()) {
    if (run.lastStep() > 0) return refuse(tr("%1 has no checkpoint kept to go on from.").arg(run.name));
    run.state = tr("queued");
    queue_ << index;
    persist();
    Q_EMIT changed();
    startNextQueued();
    return true;
  }
  const qint64 target = until > 0 ? until : run.config.steps;
  if (run.lastStep() >= target)
    return refuse(tr("%1 has trained %2 steps; ask for more than that.").arg(run.name).arg(run.lastStep()));
  current_ = index;
  stopping_ = false;
  run.state = tr("starting");
  rate_steps_ = 0;
  rate_clock_.restart();
  session_->resumeFrom(checkpoint, false, run.folder, target);
  persist();
  Q_EMIT changed();
  return true;
}

bool SessionController::removeRun(int index, QString* error) {
  const auto refuse = [error](const QString& why) { return refused(error, why); };
  if (index < 0 || index >= runs_.size()) return refuse(tr("There is no such run."));
  if (queue_.contains(index)) return refuse(tr("%1 is queued: stop the queue first.").arg(runs_[index].name));
  if (index == current_ && (session_->busy() || opening()))
    return refuse(tr("%1 is in progress: stop it first.").arg(runs_[index].name));
  store_.deleteFolder(runs_[index].folder);
  runs_.removeAt(index);
  for (auto& i : queue_)
    if (i > index) --i;
  if (current_ == index) current_ = -1;
  else if (current_ > index) --current_;
  persist();
  Q_EMIT changed();
  return true;
}

bool SessionController::clearSession(QString* error) {
  if (session_->busy() || opening() || !queue_.isEmpty()) return refused(error, tr("Runs are training or queued: stop them first."));
  for (const auto& r : runs_) store_.deleteFolder(r.folder);
  runs_.clear();
  current_ = -1;
  next_id_ = 1;
  persist();
  Q_EMIT changed();
  return true;
}

}  // namespace retreever::ui
