// The Scaling view: runs the inference benchmark (core/scaling.h) on a worker thread and plots,
// as each point is measured, per-query latency and tokens read against the context size N on
// log-log axes for TCA, full cross attention and Perceiver IO. Below, one query's walk down a TCA
// tree over N random tokens (up to millions), drawn by the inspector's tree view with its level of
// detail: the path and S at any size.
#pragma once

#include <QList>
#include <QWidget>
#include <atomic>
#include <memory>

#include "core/scaling.h"

class QComboBox;
class QCustomPlot;
class QLabel;
class QPushButton;
class QSpinBox;

namespace retreever::ui {

class TreeView;

class ScalingPanel : public QWidget {
  Q_OBJECT
 public:
  explicit ScalingPanel(QWidget* parent = nullptr);
  ~ScalingPanel() override;

  // Starts a measurement up to max_n tokens (returns false while one runs).
  bool run(std::int64_t max_n, std::int64_t queries, const QString& device);
  void stop();
  bool running() const { return running_; }
  // Builds a tree over n random tokens on a worker thread and shows one query's walk (returns false
  // while a walk or a measurement runs); walked() follows.
  bool walk(std::int64_t n, const QString& device);
  TreeView* tree() const { return tree_; }
  const QList<ScalingPoint>& points() const { return points_; }
  QList<QCustomPlot*> plots() const;
  QStringList plotNames() const { return {"scaling_latency", "scaling_tokens", "scaling_preparation"}; }

 Q_SIGNALS:
  void finished(const QString& summary);  // after the last point, a stop, or an error
  void failed(const QString& message);
  void walked(const QString& summary);

 private:
  void redraw();
  // A measurement or a walk ended on the worker: the buttons come back, and an error goes to the
  // status line and failed(). True when there was none.
  bool endJob(const QString& error);
  void addPoint(const ScalingPoint& p);

  QComboBox* max_n_;
  QComboBox* device_;
  QSpinBox* queries_;
  QPushButton* start_;
  QComboBox* walk_n_;
  QPushButton* walk_;
  TreeView* tree_;
  QLabel* status_;
  QCustomPlot* latency_;
  QCustomPlot* tokens_;
  QCustomPlot* preparation_;  // each context's own work before its queries: the tree, the keys, the latents
  QList<ScalingPoint> points_;
  std::shared_ptr<std::atomic<bool>> stop_;
  bool running_ = false;
};

}  // namespace retreever::ui
