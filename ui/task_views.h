// Views that make a task's data readable, and where the user clicks a query:
// the copy task as digit cells, GP regression as a plot (QCustomPlot).
#pragma once

#include <QMap>
#include <QWidget>

#include "core/inspection.h"

class QCustomPlot;
class QCPGraph;

namespace retreever::ui {

// Shared by the task views: context tokens to highlight (index -> colour) and the query.
struct Highlight {
  QMap<std::int64_t, QColor> context;  // tokens covered by selected nodes
  std::int64_t query = -1;
};

class TaskView : public QWidget {
  Q_OBJECT
 public:
  using QWidget::QWidget;
  virtual void setSample(const SampleView& sample) = 0;
  virtual void setHighlight(const Highlight& h) = 0;
 Q_SIGNALS:
  void querySelected(qint64 query);
};

// Three rows of cells: the context, the targets, and the prediction under each target
// (errors in red). Click a target to inspect its retrieval.
class CopyTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit CopyTaskView(QWidget* parent = nullptr);
  void setSample(const SampleView& sample) override;
  void setHighlight(const Highlight& h) override;
  QRectF targetCell(std::int64_t j) const;  // for tests and screenshots

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

 private:
  QRectF cell(int row, std::int64_t i) const;
  static QString token(float id);
  SampleView sample_;
  Highlight highlight_;
};

// Context points, the true targets, and the predicted mean with a ±2σ band. Click near a
// target point to inspect it.
class GpTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit GpTaskView(QWidget* parent = nullptr);
  void setSample(const SampleView& sample) override;
  void setHighlight(const Highlight& h) override;
  QCustomPlot* plot() const { return plot_; }

 private:
  void redraw();
  QCustomPlot* plot_;
  SampleView sample_;
  Highlight highlight_;
};

// Image completion: the context mask, the prediction (context pixels as given, targets as
// predicted means) and the ground truth side by side. Click a target pixel to inspect it; the
// pixels under the selected nodes are outlined in green.
class ImageTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit ImageTaskView(QWidget* parent = nullptr);
  void setSample(const SampleView& sample) override;
  void setHighlight(const Highlight& h) override;
  QPointF targetCenter(std::int64_t j) const;  // widget position of target j (first panel)

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

 private:
  QRectF panel(int i) const;
  QPoint pixelOf(const float* x) const;  // (row, column) of a point
  SampleView sample_;
  Highlight highlight_;
};

}  // namespace retreever::ui
