// Views that make a task's data readable, and where the user clicks a query:
// the copy task as digit cells, GP regression as a plot (QCustomPlot).
#pragma once

#include <QMap>
#include <QWidget>

#include "core/inspection.h"

class QCustomPlot;
class QCPGraph;

namespace retreever::ui {

// Shared by the task views and the tree: the selected nodes' colours (node id -> colour: the
// leaves read one by one in S's green, each summary node in a shade of its own) and the context
// tokens each covers in the same colour, so that a region of the data names its node in the tree.
struct Highlight {
  QMap<std::int64_t, QColor> context;  // context token -> the colour of the selected node over it
  QMap<std::int64_t, QColor> nodes;    // selected node id -> its colour
  std::int64_t query = -1;
  // The i-th summary node's shade (light, so that the data drawn over it stays readable).
  static QColor summaryShade(int i);
};

class TaskView : public QWidget {
  Q_OBJECT
 public:
  using QWidget::QWidget;
  void setSample(const SampleView& sample);
  void setHighlight(const Highlight& h);
  const Highlight& highlight() const { return highlight_; }
 Q_SIGNALS:
  void querySelected(qint64 query);

 protected:
  virtual void sampleChanged() { update(); }     // sample_ was replaced
  virtual void highlightChanged() { update(); }  // highlight_ was replaced
  SampleView sample_;
  Highlight highlight_;
};

// Three rows of cells: the context, the targets, and the prediction under each target
// (errors in red). Click a target to inspect its retrieval.
class CopyTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit CopyTaskView(QWidget* parent = nullptr);
  QRectF targetCell(std::int64_t j) const;  // for tests and screenshots

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

 private:
  QRectF cell(int row, std::int64_t i) const;
  static QString token(float id);
};

// Context points, the true targets, and the predicted mean with a ±2σ band. Click near a
// target point to inspect it.
class GpTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit GpTaskView(QWidget* parent = nullptr);
  QCustomPlot* plot() const { return plot_; }

 protected:
  void sampleChanged() override;
  void highlightChanged() override;

 private:
  void redraw();
  QCustomPlot* plot_;
};

// Image completion: the context mask, the prediction (the predicted mean at every pixel, the
// context pixels as given) and the ground truth side by side. Click a target pixel to inspect it; the
// pixels under the selected nodes are outlined in their node's colour.
class ImageTaskView : public TaskView {
  Q_OBJECT
 public:
  explicit ImageTaskView(QWidget* parent = nullptr);

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent*) override;

 private:
  QRectF panel(int i) const;
  QPoint pixelOf(const float* x) const;  // (row, column) of a point
};

}  // namespace retreever::ui
