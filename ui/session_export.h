// The studio's exports (File > Export): the plots as PNG or PDF, a run's metrics as CSV, the
// comparison table as CSV or Markdown, and a report folder that holds them all with each run's
// checkpoint and settings. Every file is written to a temporary name and renamed (core/files.h).
// No dialogs: each call returns what it wrote and what it could not; the window shows the latter.
#pragma once

#include <QString>
#include <QStringList>

namespace retreever::ui {

class ComparisonPanel;
class InspectorPanel;
class PlotPanel;
class ScalingPanel;
class SessionController;
class TrainingSession;

struct ExportResult {
  bool ok = true;       // false: the export stopped at the last of `problems`
  QStringList problems;  // a report goes on past a run's checkpoint or the inspector's picture
  QStringList files;     // written
};

class SessionExport {
 public:
  // What the exports read: the panels as they are drawn, the runs, and the run in hand's model.
  struct Sources {
    PlotPanel* plots;
    ComparisonPanel* comparison;
    ScalingPanel* scaling;
    InspectorPanel* inspector;
    SessionController* runs;
    TrainingSession* session;
  };
  explicit SessionExport(const Sources& sources) : s_(sources) {}

  // Every plot that applies to the runs (hidden ones are left out), the comparison's, and the
  // Scaling view's once it has points: FOLDER/NAME.FORMAT, format "png" or "pdf".
  ExportResult plots(const QString& folder, const QString& format, int width, int height) const;
  // The same in several formats from one drawing of the curves.
  ExportResult plots(const QString& folder, const QStringList& formats, int width, int height) const;
  ExportResult metricsCsv(const QString& path) const;  // the run in hand's curves
  ExportResult comparison(const QString& path) const;  // .md: Markdown, otherwise CSV
  // FOLDER/report.md with plots/, comparison.{csv,md}, metrics_runN.csv, checkpoint_runN.safetensors
  // (the run in hand's model as it is now, the others' kept checkpoints) and inspector.png. It goes
  // on past a checkpoint or the picture that cannot be written; the run in hand's failure is reported
  // by its TrainingSession (failed()), as every failure of its worker, not in `problems`.
  ExportResult report(const QString& folder) const;

 private:
  Sources s_;
};

}  // namespace retreever::ui
