// Live training curves (QCustomPlot): loss, loss terms, evaluation metric, tokens per query
// learning rate and accuracy per target position (click to inspect), every run overlaid in its
// own colour, with smoothing, a log-axis toggle
// and a read-out of the value under the mouse.
#pragma once

#include <QList>
#include <QHash>
#include <QWidget>

#include "ui/run_record.h"

class QCustomPlot;
class QCPAbstractPlottable;
class QSlider;
class QCheckBox;
class QLabel;
class QGridLayout;

namespace retreever::ui {

class PlotPanel : public QWidget {
  Q_OBJECT
 public:
  explicit PlotPanel(QWidget* parent = nullptr);

  // Redraws from the runs (cheap enough to call at ~10 Hz while training). The pointers are read
  // here only: the runs' list may move its records once this returns. Behind another tab of a
  // shown window the panel draws nothing; the window calls again when the tab comes back.
  void setRuns(const QList<const RunRecord*>& runs);
  void draw(const QList<const RunRecord*>& runs);  // now, shown or not (exports)
  QList<QCustomPlot*> plots() const { return plots_; }
  QStringList plotNames() const;
  double smoothing() const;
  void setSmoothing(double alpha);  // 0 = raw .. 0.99
  void setLogScale(bool on);

 Q_SIGNALS:
  // A point of the per-position plot was clicked: run id and target position (query index).
  void targetPositionClicked(int run_id, qint64 position);
  // Smoothing or the log scale changed: the runs are to be drawn again (setRuns).
  void redrawRequested();

 private:
  QCustomPlot* makePlot(const QString& title, const QString& y_label);
  void showReadout(QCustomPlot* plot, QMouseEvent* event);

  QList<QCustomPlot*> plots_;
  QHash<QCPAbstractPlottable*, int> position_graphs_;  // per-position graph -> run id
  QSlider* smoothing_ = nullptr;
  QCheckBox* log_ = nullptr;
  QLabel* readout_ = nullptr;
  QGridLayout* grid_ = nullptr;
};

// Exponential moving average with bias correction (as TensorBoard smooths curves).
QVector<double> smooth(const QVector<double>& values, double alpha);

}  // namespace retreever::ui
