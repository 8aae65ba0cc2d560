#include "plot_panel.h"

#include "core/registry.h"
#include "ui/chart_view.h"

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
  const std::uint32_t rgb = chart_palette(std::size_t(index));
  return QColor(int(rgb >> 16) & 0xFF, int(rgb >> 8) & 0xFF, int(rgb) & 0xFF);
}

QString run_name(int id, const Config& c) {
  return QString("#%1 %2 %3").arg(id).arg(QString::fromStdString(model_label(c)), QString::fromStdString(task_label(c)));
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
// With more runs shown than this, the legends leave the runs out: the Runs list is the key of their
// colours, and ten runs' names below each chart took most of its height.
constexpr int kRunsInLegend = 6;
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

  auto* grid = grid_ = new QGridLayout;
  plots_ << makePlot(tr("Training loss (prediction)"), tr("loss")) << makePlot(tr("Loss terms"), tr("value"))
         << makePlot(tr("Evaluation"), tr("metric")) << makePlot(tr("Tokens read per query"), tr("tokens"))
         << makePlot(tr("Learning rate"), tr("lr"))
         << makePlot(tr("Accuracy per target position (click to inspect)"), tr("accuracy %"));
  plots_[kLoss]->setToolTip(
      tr("Each model's loss on its own predictions on the training batches: for TCA through the selected "
         "set S (L_TCA), for the others through what they read; comparable across models. TCA's optimiser "
         "minimises more: L_TCA + lambda_CA L_CA + lambda_RL L_RL (the 'loss' the command line prints). "
         "L_RL, REINFORCE's surrogate, follows the rewards rather than the error, so with log-likelihood "
         "rewards (GP, images) that sum can rise while the model gets better. Loss terms shows each part."));
  plots_[kTerms]->setToolTip(
      tr("TCA: the negative log-likelihood through the selected set S. CA: the same through every leaf "
         "(L_CA). RL: REINFORCE's surrogate with the entropy bonus (its value is not an error). Entropy: "
         "the policy's mean entropy per choice."));
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
  // Two columns of one width: without stretch the column whose legends sit below its axes (their
  // minimum width) took the extra space, and at a laptop's width the other lost its legends and
  // clipped "Accuracy per target position (click to inspect)".
  grid->setColumnStretch(0, 1);
  grid->setColumnStretch(1, 1);
  layout->addLayout(grid, 1);
  connect(smoothing_, &QSlider::valueChanged, this, &PlotPanel::redrawRequested);
  connect(log_, &QCheckBox::toggled, this, &PlotPanel::setLogScale);
}

QStringList PlotPanel::plotNames() const {
  return {"loss", "loss_terms", "evaluation", "tokens", "learning_rate", "per_position"};
}
double PlotPanel::smoothing() const { return smoothing_->value() / 100.0; }
void PlotPanel::setSmoothing(double alpha) { smoothing_->setValue(int(std::round(alpha * 100))); }

void PlotPanel::setLogScale(bool on) {
  if (log_->isChecked() != on) log_->setChecked(on);
  Q_EMIT redrawRequested();
}

QCustomPlot* PlotPanel::makePlot(const QString& title, const QString& y_label) {
  auto* plot = new QCustomPlot;
  plot->setObjectName(title);
  plot->setMinimumSize(260, 160);
  plot->setProperty("chartTitle", title);
  plot->setProperty("yLabel", y_label);
  plot->legend->setFont(QFont(font().family(), std::max(7, font().pointSize() - 1)));
  plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  plot->setAntialiasedElements(QCP::aeAll);
  connect(plot, &QCustomPlot::mouseMove, this, [this, plot](QMouseEvent* e) { showReadout(plot, e); });
  return plot;
}

void PlotPanel::setRuns(const QList<const RunRecord*>& runs) {
  // Seven plots replot in about 30 ms on a 2-core machine: not while the user watches another tab.
  if (window()->isVisible() && !isVisible()) return;
  draw(runs);
}

void PlotPanel::draw(const QList<const RunRecord*>& runs) {
  const double alpha = smoothing();
  std::vector<ChartSpec> specs(kCount);
  for (int i = 0; i < kCount; ++i) {
    specs[i].title = plots_[i]->property("chartTitle").toString().toStdString();
    specs[i].y_label = plots_[i]->property("yLabel").toString().toStdString();
    specs[i].x_label = tr("step").toStdString();
  }
  specs[kPositions].x_label = tr("target position (query)").toStdString();
  // Accuracy in %: a fixed range keeps points at 0% clear of the axis (where a click would hit
  // the axis, not the point); no legend over the clickable points (the colours are the runs').
  specs[kPositions].y_min = -12, specs[kPositions].y_max = 108, specs[kPositions].legend = false;
  specs[kLoss].log_y = specs[kTerms].log_y = log_->isChecked();
  specs[kLr].y_from_zero = true;  // the schedule runs from its peak to 0
  auto add = [&](int plot, const QString& name, const QColor& color, LineDash dash, const QVector<double>& x,
                 const QVector<double>& y, bool markers) {
    ChartSeries s;
    s.label = name.toStdString();
    s.colour = color.rgb() & 0xFFFFFF;
    if (s.colour == 0) s.colour = 0x010101;  // 0 would mean "next palette colour"
    s.dash = dash;
    s.markers = markers;
    s.x.assign(x.begin(), x.end());
    s.y.assign(y.begin(), y.end());
    specs[plot].series.push_back(std::move(s));
    return int(specs[plot].series.size()) - 1;
  };
  MetricAxes axes;
  for (const auto* run : runs)
    if (run->visible) axes.add(run->config.is_classification());
  axes.label(specs[kEval]);
  // The loss terms: one line a term (dashes) a run (colours). With several runs the legend lists
  // each run once (its TCA term) and a key of the dashes, instead of every line (two TCA runs'
  // eight entries with their long names took the chart's height).
  // Over the runs shown: the loss terms' lines, and the first evaluation an empty plot can promise.
  int term_lines = 0, shown_runs = 0;
  std::int64_t first_eval = 0;
  for (const auto* run : runs)
    if (run->visible) {
      ++shown_runs;
      term_lines += decoder_info(run->config.model).policy ? 4 : 1;
      if (run->config.eval_every > 0 && (first_eval == 0 || run->config.eval_every < first_eval))
        first_eval = run->config.eval_every;
    }
  const bool term_key = shown_runs > 1 && term_lines > shown_runs;
  // One run shown: its terms take colours of their own (the TCA term keeps the run's), since four
  // dashes of one colour are lost in a noisy curve; with several runs a colour is a run.
  auto term_colour = [&](const RunRecord* run, int term) {
    return shown_runs == 1 && term > 0 ? run_color(run->id - 1 + term) : run->color;
  };
  QHash<int, int> position_series;  // series index of the per-position plot -> run id
  for (const auto* run : runs) {
    if (!run->visible) continue;
    QVector<double> steps, tca, ca, rl, entropy, lr;
    for (const auto& s : run->history.steps) {
      steps << double(s.step);
      tca << s.tca_loss;
      ca << s.ca_loss;
      rl << s.rl_loss;
      entropy << s.entropy;
      lr << s.lr;
    }
    add(kLoss, run->name, run->color, LineDash::solid, steps, smooth(tca, alpha), false);
    // A model without a policy has one term, its prediction loss (named by the run alone).
    const bool policy = decoder_info(run->config.model).policy;
    add(kTerms, run->name + (policy ? " TCA" : ""), run->color, LineDash::solid, steps, smooth(tca, alpha), false);
    if (policy) {
      for (int t : {add(kTerms, run->name + " CA", term_colour(run, 1), LineDash::dash, steps, smooth(ca, alpha), false),
                    add(kTerms, run->name + " RL", term_colour(run, 2), LineDash::dot, steps, smooth(rl, alpha), false),
                    add(kTerms, run->name + " entropy", term_colour(run, 3), LineDash::dash_dot, steps,
                        smooth(entropy, alpha), false)})
        specs[kTerms].series[t].in_legend = !term_key;
    }
    add(kLr, run->name, run->color, LineDash::solid, steps, lr, false);
    QVector<double> es, ev, et;
    for (const auto& e : run->history.evals) {
      es << double(e.step);
      ev << (e.metric == "accuracy" ? 100 * e.value : e.value);
      et << e.tokens_per_query;
    }
    const bool accuracy = run->config.is_classification();
    // The metric in the name only where the chart holds two (the axis names a single one).
    const QString metric = !axes.mixed() ? QString() : accuracy ? tr(" accuracy %") : tr(" log-likelihood (right)");
    const int eval_series = add(kEval, run->name + metric, run->color, LineDash::solid, es, ev, true);
    axes.place(specs[kEval].series[eval_series], accuracy);
    add(kTokens, run->name, run->color, LineDash::solid, es, et, true);
    if (const auto* last = run->lastEval(); last && !last->per_target.empty()) {
      QVector<double> pos, acc;
      for (size_t j = 0; j < last->per_target.size(); ++j) {
        pos << double(j);
        acc << 100 * last->per_target[j];
      }
      position_series.insert(add(kPositions, run->name, run->color, LineDash::solid, pos, acc, true), run->id);
    }
  }
  // What an empty plot says: how to start, or when its first points come.
  if (shown_runs == 0) specs[kLoss].empty_text = tr("No run yet: press Train, or open a checkpoint.").toStdString();
  for (int i = 0; shown_runs > 0 && i < kCount; ++i) specs[i].empty_text = tr("Waiting for the first steps.").toStdString();
  if (first_eval > 0)
    specs[kEval].empty_text = specs[kTokens].empty_text =
        tr("The first evaluation comes at step %1.").arg(first_eval).toStdString();
  const bool runs_keyed = shown_runs > kRunsInLegend;
  if (runs_keyed)
    for (auto& spec : specs)
      for (auto& series : spec.series) series.in_legend = false;
  if (term_key) {
    const QColor key = palette().color(QPalette::WindowText);
    if (runs_keyed) add(kTerms, tr("prediction (solid)"), key, LineDash::solid, {}, {}, false);
    add(kTerms, tr("CA (dashed)"), key, LineDash::dash, {}, {}, false);
    add(kTerms, tr("RL (dotted)"), key, LineDash::dot, {}, {}, false);
    add(kTerms, tr("entropy (dash-dot)"), key, LineDash::dash_dot, {}, {}, false);
  }
  position_graphs_.clear();
  for (int i = 0; i < kCount; ++i) {
    const auto graphs = draw_chart(plots_[i], std::move(specs[i]));
    if (i == kPositions)
      for (auto it = position_series.begin(); it != position_series.end(); ++it)
        position_graphs_.insert(graphs[it.key()], it.value());
    plots_[i]->replot(QCustomPlot::rpQueuedReplot);
  }
  // Only the plots that apply to the runs shown: the per-position accuracy is the copy task's.
  // Without it the learning rate takes the whole last row.
  const bool positions = !position_series.isEmpty();
  if (plots_[kPositions]->isHidden() == positions) {
    plots_[kPositions]->setVisible(positions);
    grid_->removeWidget(plots_[kLr]);
    grid_->addWidget(plots_[kLr], 2, 0, 1, positions ? 1 : 2);
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
