// The studio's session on disk, kept by SessionController: ROOT/session.json lists the runs (name,
// state, config, folder, ...), and each run lives in ROOT/runs/NNN-MODEL-TASK/ as `retreever train
// --out` writes one (core/training/run_folder.h). No widgets, no LibTorch.
#pragma once

#include <QList>
#include <QString>

#include "ui/run_record.h"

namespace retreever::ui {

// The run's last checkpoint in its folder, "" when it has none yet.
QString kept_checkpoint(const RunRecord& run);
// Copies it to PATH (a temporary name, then renamed): "" or why not.
QString copy_kept_checkpoint(const RunRecord& run, const QString& path);

class SessionStore {
 public:
  explicit SessionStore(QString root = {});  // "": keeps nothing, reads nothing
  bool keeps() const { return !root_.isEmpty(); }
  const QString& root() const { return root_; }
  QString runsFolder() const;                      // ROOT/runs
  QString newFolder(const RunRecord& run) const;   // ROOT/runs/NNN-MODEL-TASK, not on disk yet
  bool owns(const QString& folder) const;          // a folder under ROOT/runs
  void deleteFolder(const QString& folder) const;  // only one it owns

  // Writes session.json in one step (a temporary file renamed). `queued`: indices of the runs still
  // waiting. Returns "" or why it could not.
  QString write(const QList<RunRecord>& runs, const QList<int>& queued) const;

  struct Restored {
    QList<RunRecord> runs;
    QString problem;  // "" when every run came back
  };
  // The runs session.json lists: curves, steps and config from each kept checkpoint; a run that was
  // training comes back as stopped where it was kept, a queued one as not started. A list that
  // cannot be read is moved aside (session.json.unreadable-TIME), never overwritten; a folder it
  // names outside ROOT/runs is dropped from its run.
  Restored read() const;

 private:
  QString root_;
};

}  // namespace retreever::ui
