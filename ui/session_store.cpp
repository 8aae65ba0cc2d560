#include "session_store.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include "core/files.h"
#include "core/training/checkpoint_header.h"
#include "ui/training_session.h"

namespace retreever::ui {

namespace {

constexpr const char* kSessionFile = "session.json";
constexpr const char* kSessionFormat = "retreever-studio-session";
constexpr qint64 kMaxSessionBytes = 64LL << 20;  // a session of ten thousand runs is well below

QString tr(const char* text) { return QCoreApplication::translate("SessionStore", text); }

// The state a restored run shows: from its checkpoint where it has one.
QString restored_state(const RunRecord& r, const QString& saved, bool kept) {
  const QString failed = state_text(TrainingSession::State::Failed);
  if (!kept) return saved == tr("cancelled") || saved == failed ? saved : tr("not started");
  if (r.steps_done >= r.config.steps) return state_text(TrainingSession::State::Finished);
  return saved == failed ? saved : tr("stopped at step %1").arg(r.steps_done);
}

}  // namespace

QString kept_checkpoint(const RunRecord& run) {
  if (run.folder.isEmpty()) return {};
  const QString path = QDir(run.folder).filePath(kCheckpointFileName);
  return QFileInfo(path).isFile() ? path : QString();
}

QString copy_kept_checkpoint(const RunRecord& run, const QString& path) {
  const auto kept = kept_checkpoint(run);
  if (kept.isEmpty()) return tr("%1 has no checkpoint yet: it has not trained.").arg(run.name);
  try {
    write_atomically(path.toStdString(), [&](const std::string& tmp) {
      if (!QFile::copy(kept, QString::fromStdString(tmp))) throw std::runtime_error("the copy failed");
    });
  } catch (const std::exception& e) {
    return tr("Could not save '%1': %2").arg(path, QString::fromUtf8(e.what()));
  }
  return {};
}

SessionStore::SessionStore(QString root) : root_(std::move(root)) {}

QString SessionStore::runsFolder() const { return QDir::cleanPath(QDir(root_).filePath("runs")); }

QString SessionStore::newFolder(const RunRecord& run) const {
  if (!keeps()) return {};
  const QString base = QString("%1/%2-%3-%4")
                           .arg(runsFolder())
                           .arg(run.id, 3, 10, QChar('0'))
                           .arg(QString::fromStdString(run.config.model), QString::fromStdString(run.config.task));
  QString folder = base;
  for (int n = 2; QFileInfo::exists(folder); ++n) folder = QString("%1-%2").arg(base).arg(n);  // an earlier session's
  return folder;
}

bool SessionStore::owns(const QString& folder) const {
  return keeps() && !folder.isEmpty() && QDir::cleanPath(folder).startsWith(runsFolder() + "/");
}

void SessionStore::deleteFolder(const QString& folder) const {
  if (owns(folder)) QDir(folder).removeRecursively();
}

QString SessionStore::write(const QList<RunRecord>& runs, const QList<int>& queued) const {
  if (!keeps()) return {};
  QJsonArray list;
  const QDir root(root_);
  for (int i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    list << QJsonObject{{"id", r.id},
                        {"name", r.name},
                        {"state", queued.contains(i) ? QString("queued") : r.state},
                        {"visible", r.visible},
                        {"group", r.group},
                        {"devices", QJsonArray::fromStringList(r.devices)},
                        {"folder", r.folder.isEmpty() ? QString() : root.relativeFilePath(r.folder)},
                        {"config", QJsonDocument::fromJson(QByteArray::fromStdString(r.config.to_json())).object()}};
  }
  const QJsonObject doc{{"format", kSessionFormat}, {"version", 1}, {"runs", list}};
  try {
    QDir().mkpath(root_);
    write_file_atomic(root.filePath(kSessionFile).toStdString(), QJsonDocument(doc).toJson().toStdString());
  } catch (const std::exception& e) {
    return QString::fromUtf8(e.what());
  }
  return {};
}

SessionStore::Restored SessionStore::read() const {
  Restored out;
  if (!keeps()) return out;
  const QString path = QDir(root_).filePath(kSessionFile);
  QFile file(path);
  if (!file.exists()) return out;
  // A list that cannot be read is moved aside (nothing the user made is overwritten) and the
  // studio starts a new one; the runs' folders stay where they are.
  auto aside = [&](const QString& why) {
    const QString moved = path + ".unreadable-" + QDateTime::currentDateTime().toString("yyyyMMdd-hhmmss");
    QFile::rename(path, moved);
    out.problem = tr("The last session's list of runs could not be read (%1). It was moved to %2; the runs' "
                     "folders are in %3 (open their checkpoints with File > Open checkpoint).")
                      .arg(why, moved, runsFolder());
    return out;
  };
  if (file.size() > kMaxSessionBytes) return aside(tr("%1 bytes, more than a session list holds").arg(file.size()));
  if (!file.open(QIODevice::ReadOnly)) {
    out.problem = tr("Cannot read %1: %2").arg(path, file.errorString());
    return out;
  }
  QJsonParseError error{};
  const auto doc = QJsonDocument::fromJson(file.readAll(), &error);
  file.close();
  if (error.error != QJsonParseError::NoError) return aside(error.errorString());
  if (!doc.isObject() || doc.object()["format"].toString() != kSessionFormat) return aside(tr("not a session list"));
  QStringList problems;
  for (const auto& value : doc.object()["runs"].toArray()) {
    const auto o = value.toObject();
    RunRecord r;
    r.id = o["id"].toInt();
    r.name = o["name"].toString();
    if (r.id <= 0 || r.name.isEmpty()) {
      problems << tr("an entry without an id or a name was skipped");
      continue;
    }
    r.color = run_color(r.id - 1);
    r.visible = o["visible"].toBool(true);
    r.group = o["group"].toString();
    for (const auto& d : o["devices"].toArray()) r.devices << d.toString();
    if (const QString folder = o["folder"].toString(); !folder.isEmpty()) {
      r.folder = QDir::cleanPath(QDir(root_).absoluteFilePath(folder));
      if (!owns(r.folder)) {
        problems << tr("%1: its folder %2 is not one of the session's; it was left alone").arg(r.name, r.folder);
        r.folder.clear();  // never written to or deleted from here
      }
    }
    try {
      r.config = Config::from_json(QJsonDocument(o["config"].toObject()).toJson().toStdString());
    } catch (const std::exception& e) {
      problems << tr("%1: %2").arg(r.name, QString::fromUtf8(e.what()).section('\n', 0, 0));
      continue;
    }
    const QString checkpoint = kept_checkpoint(r);
    if (!checkpoint.isEmpty()) {
      try {
        const auto header = read_checkpoint_header(checkpoint.toStdString());
        r.config = header.config;  // as it trained last (a run trained further has more steps)
        r.history = header.history;
        r.steps_done = header.step;
      } catch (const std::exception& e) {
        problems << tr("%1: %2").arg(r.name, QString::fromUtf8(e.what()));
        r.state = tr("checkpoint unreadable");
        out.runs << r;
        continue;
      }
    }
    r.state = restored_state(r, o["state"].toString(), !checkpoint.isEmpty());
    out.runs << r;
  }
  if (!problems.isEmpty())
    out.problem = tr("Some runs of the last session could not be restored: %1.").arg(problems.join("; "));
  return out;
}

}  // namespace retreever::ui
