#include "session_export.h"

#include "core/files.h"
#include "ui/comparison_panel.h"
#include "ui/inspector_panel.h"
#include "ui/plot_panel.h"
#include "ui/qcp.h"
#include "ui/scaling_panel.h"
#include "ui/session_controller.h"
#include "ui/session_store.h"
#include "ui/training_session.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QDir>
#include <QImage>

#include <functional>
#include <stdexcept>

namespace retreever::ui {
namespace {

QString tr(const char* text) { return QCoreApplication::translate("SessionExport", text); }

// Runs `write`, which writes PATH in one step (core/files.h); false and the reason in `r` when it fails.
bool recorded(ExportResult& r, const QString& path, const std::function<void()>& write) {
  try {
    write();
  } catch (const std::exception& e) {
    r.problems << tr("Could not write '%1': %2").arg(path, QString::fromUtf8(e.what()));
    return false;
  }
  r.files << path;
  return true;
}

// PATH written by `write(temporary name)`.
bool write_to(ExportResult& r, const QString& path, const std::function<void(const QString&)>& write) {
  return recorded(r, path, [&] {
    write_atomically(path.toStdString(), [&](const std::string& tmp) { write(QString::fromStdString(tmp)); });
  });
}

bool write_bytes(ExportResult& r, const QString& path, const QByteArray& bytes) {
  return recorded(r, path, [&] { write_file_atomic(path.toStdString(), bytes.toStdString()); });
}

ExportResult failed(ExportResult r) {
  r.ok = false;
  return r;
}

// The second result's files and problems after the first's; ok only if both are.
void append(ExportResult& to, const ExportResult& from) {
  to.ok = to.ok && from.ok;
  to.problems << from.problems;
  to.files << from.files;
}

}  // namespace

ExportResult SessionExport::plots(const QString& folder, const QString& format, int width, int height) const {
  return plots(folder, QStringList{format}, width, height);
}

ExportResult SessionExport::plots(const QString& folder, const QStringList& formats, int width, int height) const {
  ExportResult r;
  QDir().mkpath(folder);
  s_.plots->draw(s_.runs->runPointers());  // behind another tab the curves wait to be drawn
  const auto all = s_.plots->plots();
  QList<QCustomPlot*> targets(all.begin(), all.end());
  QStringList names = s_.plots->plotNames();
  targets << s_.comparison->plot();
  names << "comparison";
  if (!s_.scaling->points().isEmpty()) {
    targets << s_.scaling->plots();
    names << s_.scaling->plotNames();
  }
  for (const auto& format : formats)
    for (int i = 0; i < targets.size(); ++i) {
      if (targets[i]->isHidden()) continue;  // a plot that does not apply to these runs
      auto* plot = targets[i];
      const bool ok = write_to(r, QDir(folder).filePath(names[i] + "." + format), [&](const QString& tmp) {
        if (!(format == "pdf" ? plot->savePdf(tmp, width, height) : plot->savePng(tmp, width, height)))
          throw std::runtime_error("is the disk full or the folder read-only?");
      });
      if (!ok) return failed(r);
    }
  return r;
}

ExportResult SessionExport::metricsCsv(const QString& path) const {
  ExportResult r;
  const auto* run = s_.runs->currentRun();
  if (!run) {
    r.problems << tr("There are no metrics yet: train or open a run first.");
    return failed(r);
  }
  return write_bytes(r, path, QByteArray::fromStdString(run->history.to_csv())) ? r : failed(r);
}

ExportResult SessionExport::comparison(const QString& path) const {
  ExportResult r;
  const bool markdown = path.endsWith(".md", Qt::CaseInsensitive);
  const auto text = markdown ? s_.comparison->toMarkdown() : s_.comparison->toCsv();
  return write_bytes(r, path, text.toUtf8()) ? r : failed(r);
}

ExportResult SessionExport::report(const QString& folder) const {
  ExportResult r;
  QDir dir(folder);
  if (!dir.mkpath("plots")) {
    r.problems << tr("Cannot create '%1'.").arg(dir.filePath("plots"));
    return failed(r);
  }
  append(r, plots(dir.filePath("plots"), QStringList{"png", "pdf"}, 1200, 800));
  if (!r.ok) return r;
  for (const auto* name : {"comparison.csv", "comparison.md"}) {
    append(r, comparison(dir.filePath(name)));
    if (!r.ok) return r;
  }
  QString md = "# ReTreever Studio session report\n\n" + QDateTime::currentDateTime().toString(Qt::ISODate) + "\n\n";
  md += "## Runs\n\n" + s_.comparison->toMarkdown() + "\n";
  const auto& runs = s_.runs->runs();
  for (int i = 0; i < runs.size(); ++i) {
    const auto& run = runs[i];
    const auto name = QString("metrics_run%1.csv").arg(run.id);
    if (!write_bytes(r, dir.filePath(name), QByteArray::fromStdString(run.history.to_csv()))) return failed(r);
    // Each run's model: the one in hand as it is now, the others from their folders.
    const auto checkpoint = QString("checkpoint_run%1.safetensors").arg(run.id);
    bool saved = false;
    if (i == s_.runs->currentIndex()) {
      saved = s_.session->saveCheckpointNow(dir.filePath(checkpoint));
    } else if (!kept_checkpoint(run).isEmpty()) {
      const auto why = copy_kept_checkpoint(run, dir.filePath(checkpoint));
      if (!why.isEmpty()) r.problems << why;
      saved = why.isEmpty();
    }
    if (saved) r.files << dir.filePath(checkpoint);
    const auto changes = run.config.changes_from_preset();
    md += QString("- %1: [%2](%2)%3; other than the %4 preset: %5\n\n  <details><summary>config</summary>\n\n"
                  "```json\n%6\n```\n\n  </details>\n\n")
              .arg(run.name, name, saved ? QString(", [%1](%1)").arg(checkpoint) : QString(),
                   QString::fromStdString(run.config.task),
                   changes.empty() ? tr("nothing") : QString::fromStdString(changes),
                   QString::fromStdString(run.config.to_json()));
  }
  md += "## Curves\n\n";
  for (int i = 0; i < s_.plots->plots().size(); ++i)
    if (!s_.plots->plots()[i]->isHidden()) md += QString("![%1](plots/%1.png)\n\n").arg(s_.plots->plotNames()[i]);
  md += "![comparison](plots/comparison.png)\n\n";
  if (!s_.scaling->points().isEmpty()) {  // plots() wrote them
    md += "## Scaling\n\n";
    for (const auto& name : s_.scaling->plotNames()) md += QString("![%1](plots/%1.png)\n\n").arg(name);
  }
  if (s_.inspector->hasModel()) {
    const auto image = s_.inspector->exportTarget()->grab().toImage();
    if (write_to(r, dir.filePath("inspector.png"), [&](const QString& tmp) {
          if (!image.save(tmp, "PNG")) throw std::runtime_error("cannot write the PNG");
        }))
      md += "## Tree inspector\n\n![inspector](inspector.png)\n";
  }
  return write_bytes(r, dir.filePath("report.md"), md.toUtf8()) ? r : failed(r);
}

}  // namespace retreever::ui
