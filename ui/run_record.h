// One training run kept in the session: what it was, what it measured, its latest snapshot.
#pragma once

#include <QColor>
#include <QString>
#include <QStringList>
#include <algorithm>
#include <optional>

#include "core/config.h"
#include "core/metrics.h"
#include "core/training/trainer.h"

namespace retreever::ui {

struct RunRecord {
  int id = 0;
  QString name;     // e.g. "#2 tca copy-64"
  QColor color;
  Config config;
  MetricsHistory history;
  std::optional<Snapshot> snapshot;  // the latest frozen model, for inspection
  QString state;    // human-readable: queued, running, paused, finished, failed
  bool visible = true;
  QString group;    // runs queued together by a comparison share a group
  QStringList devices;  // data parallel over these ("all GPUs"); empty: config.device alone
  QString folder;       // where the studio keeps the run (config, metrics, checkpoints); empty: nowhere
  // Steps trained, as the trainer counts them: a checkpoint's history keeps every log_every-th
  // step only, so its last row may be earlier.
  std::int64_t steps_done = 0;

  const EvalMetrics* lastEval() const { return history.evals.empty() ? nullptr : &history.evals.back(); }
  std::int64_t lastStep() const {  // 0: none yet
    return std::max(steps_done, history.steps.empty() ? std::int64_t(0) : history.steps.back().step);
  }
};

// A colour per run that stays distinct on light and dark backgrounds.
QColor run_color(int index);
QString run_name(int id, const Config& c);

}  // namespace retreever::ui
