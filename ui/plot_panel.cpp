#include "plot_panel.h"

#include "ui/axis_range.h"

#include <QCheckBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QVBoxLayout>
#include <cmath>

#include "ui/qcp.h"

namespace retreever::ui {

QColor run_color(int index) {
  static const QColor palette[] = {QColor(31, 119, 180), QColor(214, 39, 40), QColor(44, 160, 44),
                                   QColor(148, 103, 189), QColor(255, 127, 14), QColor(23, 190, 207),
                                   QColor(227, 119, 194), QColor(140, 86, 75), QColor(188, 189, 34)};
  return palette[index % 9];
}

QString run_name(int id, const Config& c) {
  QString task = QString::fromStdString(c.task);
  if (c.task == "copy") task += QString("-%1").arg(c.seq_len);
  QString model = QString::fromStdString(c.model);
  if (c.model == "perceiver") model += QString("(L=%1)").arg(c.latents);
  if (c.model == "treeformer") model += QString("(d=%1)").arg(c.treeformer_depth);
  if (c.model == "tca" && c.reward != "acc" && c.task == "copy") model += "/" + QString::fromStdString(c.reward);
  return QString("#%1 %2 %3").arg(id).arg(model, task);
}

QVector<double> smooth(const QVector<double>& values, double alpha) {
  QVector<double> out(values.size());
  double avg = 0, weight = 0;
  for (int i = 0; i < values.size(); ++i) {
    avg = alpha * avg + (1 - alpha) * values[i];
    weight = alpha * weight + (1 - alpha);
    out[i] = weight > 0 ? avg / weight : values[i];
  }
  return out;
}

namespace {
enum PlotIndex { kLoss, kTerms, kEval, kTokens, kLr, kPositions, kCount };
}

PlotPanel::PlotPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  controls->addWidget(new QLabel(tr("Smoothing")));
  smoothing_ = new QSlider(Qt::Horizontal);
  smoothing_->setRange(0, 99);
  smoothing_->setValue(60);
  smoothing_->setMaximumWidth(200);
  smoothing_->setToolTip(tr("Exponential moving average of the training curves (0 = raw)."));
  smoothing_->setObjectName("smoothing");
  controls->addWidget(smoothing_);
  log_ = new QCheckBox(tr("Log scale"));
  log_->setToolTip(tr("Logarithmic y axis for the loss curves."));
  log_->setObjectName("logScale");
  controls->addWidget(log_);
  controls->addStretch();
  readout_ = new QLabel(tr("Hover a curve to read its values."));
  readout_->setObjectName("readout");
  controls->addWidget(readout_);
  layout->addLayout(controls);

  auto* grid = new QGridLayout;
  plots_ << makePlot(tr("Training loss"), tr("loss")) << makePlot(tr("Loss terms"), tr("value"))
         << makePlot(tr("Evaluation"), tr("metric")) << makePlot(tr("Tokens read per query"), tr("tokens"))
         << makePlot(tr("Learning rate"), tr("lr"))
         << makePlot(tr("Accuracy per target position (click to inspect)"), tr("accuracy %"));
  plots_[kPositions]->xAxis->setLabel(tr("target position (query)"));
  plots_[kPositions]->setToolTip(
      tr("Copy task, last evaluation: the accuracy at each target position. Positions at chance "
         "(10%) while the rest are right mean the policy is stuck on a wrong branch there; click "
         "a point to inspect that query."));
  connect(plots_[kPositions], &QCustomPlot::plottableClick, this,
          [this](QCPAbstractPlottable* plottable, int index, QMouseEvent*) {
            if (!position_graphs_.contains(plottable) || index < 0) return;
            const double key = plottable->interface1D()->dataMainKey(index);
            Q_EMIT targetPositionClicked(position_graphs_.value(plottable), qint64(std::llround(key)));
          });
  grid->addWidget(plots_[kLoss], 0, 0);
  grid->addWidget(plots_[kTerms], 0, 1);
  grid->addWidget(plots_[kEval], 1, 0);
  grid->addWidget(plots_[kTokens], 1, 1);
  grid->addWidget(plots_[kLr], 2, 0);
  grid->addWidget(plots_[kPositions], 2, 1);
  grid->setRowStretch(0, 3);
  grid->setRowStretch(1, 3);
  grid->setRowStretch(2, 2);
  layout->addLayout(grid, 1);
  connect(smoothing_, &QSlider::valueChanged, this, &PlotPanel::rebuild);
  connect(log_, &QCheckBox::toggled, this, &PlotPanel::setLogScale);
}

QStringList PlotPanel::plotNames() const {
  return {"loss", "loss_terms", "evaluation", "tokens", "learning_rate", "per_position"};
}
double PlotPanel::smoothing() const { return smoothing_->value() / 100.0; }
void PlotPanel::setSmoothing(double alpha) { smoothing_->setValue(int(std::round(alpha * 100))); }

void PlotPanel::setLogScale(bool on) {
  if (log_->isChecked() != on) log_->setChecked(on);
  for (int i : {kLoss, kTerms}) {
    auto* axis = plots_[i]->yAxis;
    axis->setScaleType(on ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (on) axis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else axis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
  }
  rebuild();
}

QCustomPlot* PlotPanel::makePlot(const QString& title, const QString& y_label) {
  auto* plot = new QCustomPlot;
  plot->setObjectName(title);
  plot->setMinimumSize(260, 160);
  plot->plotLayout()->insertRow(0);
  auto* heading = new QCPTextElement(plot, title, QFont(font().family(), font().pointSize() + 1, QFont::Bold));
  plot->plotLayout()->addElement(0, 0, heading);
  plot->xAxis->setLabel(tr("step"));
  plot->yAxis->setLabel(y_label);
  plot->legend->setVisible(true);
  plot->legend->setFont(QFont(font().family(), std::max(7, font().pointSize() - 1)));
  plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
  plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  plot->setAntialiasedElements(QCP::aeAll);
  connect(plot, &QCustomPlot::mouseMove, this, [this, plot](QMouseEvent* e) { showReadout(plot, e); });
  return plot;
}

void PlotPanel::setRuns(const QList<const RunRecord*>& runs) {
  runs_ = runs;
  rebuild();
}

void PlotPanel::rebuild() {
  const double alpha = smoothing();
  const bool log = log_->isChecked();
  for (auto* p : plots_) p->clearGraphs();
  position_graphs_.clear();
  auto add = [&](int plot, const QString& name, const QColor& color, Qt::PenStyle style,
                 const QVector<double>& x, const QVector<double>& y, bool scatter) {
    auto* g = plots_[plot]->addGraph();
    g->setName(name);
    QPen pen(color, 1.6, style);
    g->setPen(pen);
    if (scatter) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, color, color, 5));
    QVector<double> yy = y;
    if (log && (plot == kLoss || plot == kTerms))  // a log axis shows only positive values
      for (auto& v : yy) v = v > 0 ? v : qQNaN();
    g->setData(x, yy, true);
    return g;
  };
  for (const auto* run : runs_) {
    if (!run->visible) continue;
    QVector<double> steps, loss, tca, ca, rl, entropy, lr;
    for (const auto& s : run->history.steps) {
      steps << double(s.step);
      loss << s.loss;
      tca << s.tca_loss;
      ca << s.ca_loss;
      rl << s.rl_loss;
      entropy << s.entropy;
      lr << s.lr;
    }
    add(kLoss, run->name, run->color, Qt::SolidLine, steps, smooth(loss, alpha), false);
    add(kTerms, run->name + " TCA", run->color, Qt::SolidLine, steps, smooth(tca, alpha), false);
    if (run->config.model == "tca") {
      add(kTerms, run->name + " CA", run->color, Qt::DashLine, steps, smooth(ca, alpha), false);
      add(kTerms, run->name + " RL", run->color, Qt::DotLine, steps, smooth(rl, alpha), false);
      add(kTerms, run->name + " entropy", run->color, Qt::DashDotLine, steps, smooth(entropy, alpha), false);
    }
    add(kLr, run->name, run->color, Qt::SolidLine, steps, lr, false);
    QVector<double> es, ev, et;
    for (const auto& e : run->history.evals) {
      es << double(e.step);
      ev << (e.metric == "accuracy" ? 100 * e.value : e.value);
      et << e.tokens_per_query;
    }
    const QString metric = run->config.is_classification() ? tr("accuracy %") : tr("log-likelihood");
    add(kEval, run->name + " " + metric, run->color, Qt::SolidLine, es, ev, true);
    add(kTokens, run->name, run->color, Qt::SolidLine, es, et, true);
    if (const auto* last = run->lastEval(); last && !last->per_target.empty()) {
      QVector<double> pos, acc;
      for (size_t j = 0; j < last->per_target.size(); ++j) {
        pos << double(j);
        acc << 100 * last->per_target[j];
      }
      position_graphs_.insert(add(kPositions, run->name, run->color, Qt::SolidLine, pos, acc, true), run->id);
    }
  }
  for (auto* p : plots_) {
    // Room around the data so that flat curves (tokens read) and end points stay visible.
    fit_axes(p);
    // Accuracy in %: a fixed range keeps points at 0% clear of the axis (where a click would hit
    // the axis, not the point).
    if (p == plots_[kPositions]) p->yAxis->setRange(-12, 108);
    // No legend over the clickable points (the colours are the runs' colours in every plot).
    p->legend->setVisible(p != plots_[kPositions] && p->graphCount() > 0 && p->graphCount() <= 12);
    p->replot(QCustomPlot::rpQueuedReplot);
  }
}

void PlotPanel::showReadout(QCustomPlot* plot, QMouseEvent* event) {
  const double x = plot->xAxis->pixelToCoord(event->pos().x());
  QStringList parts;
  for (int i = 0; i < plot->graphCount(); ++i) {
    auto* g = plot->graph(i);
    if (g->data()->isEmpty()) continue;
    auto it = g->data()->findBegin(x);
    if (it == g->data()->constEnd()) continue;
    parts << QString("%1: %2 @ %3").arg(g->name()).arg(it->value, 0, 'g', 4).arg(it->key);
    if (parts.size() >= 3) break;
  }
  readout_->setText(parts.isEmpty() ? QString() : parts.join("   "));
}

}  // namespace retreever::ui
