#include "comparison_panel.h"


#include "core/table.h"
#include "ui/chart_view.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include "core/paper.h"
#include "core/registry.h"
#include "ui/qcp.h"

namespace retreever::ui {

QString paper_result(const Config& c) {
  const auto f = paper_figure(c);
  if (!f) return QString();
  if (!*f->source) return QString("%1 ± %2").arg(f->value, 0, 'f', 1).arg(f->stddev, 0, 'f', 1);
  return QString("%1 (%2)").arg(f->value, 0, 'f', 2).arg(QString::fromUtf8(f->source));
}

QString compare_models_tip() {
  QString tip = QObject::tr("Queue one run of each model on the current experiment (same task, seed and steps).");
  for (const auto& d : decoders())
    tip += "\n\u2022 " + QString::fromStdString(d.title) + ": " + QString::fromStdString(d.summary) +
           (d.sized() ? QObject::tr(" (sized to read about as many tokens as TCA)") : QString());
  return tip;
}

namespace {
const QStringList kColumns = {"run", "model", "task", "steps", "context N", "tokens/query", "tokens %",
                              "metric", "value", "paper"};
}

ComparisonPanel::ComparisonPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* buttons = new QHBoxLayout;
  auto* compare = new QPushButton(tr("Compare all %1 models").arg(decoders().size()));
  compare->setObjectName("compareButton");
  compare->setToolTip(compare_models_tip());
  auto* reward = new QPushButton(tr("Reward study: accuracy vs negative CE"));
  reward->setObjectName("rewardStudyButton");
  reward->setToolTip(tr("Queue two TCA runs on the copy task that differ only in the RL reward (the paper's Table 3)."));
  buttons->addWidget(compare);
  buttons->addWidget(reward);
  buttons->addStretch();
  layout->addLayout(buttons);
  auto* splitter = new QSplitter(Qt::Vertical);
  table_ = new QTableWidget(0, kColumns.size());
  table_->setHorizontalHeaderLabels(kColumns);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->verticalHeader()->setVisible(false);
  plot_ = new QCustomPlot;
  splitter->addWidget(table_);
  splitter->addWidget(plot_);
  splitter->setStretchFactor(0, 1);  // a few rows; the chart gets the room
  splitter->setStretchFactor(1, 3);
  layout->addWidget(splitter, 1);
  connect(compare, &QPushButton::clicked, this, &ComparisonPanel::compareRequested);
  connect(reward, &QPushButton::clicked, this, &ComparisonPanel::rewardStudyRequested);
}

void ComparisonPanel::setRuns(const QList<const RunRecord*>& runs) {
  table_->setRowCount(0);
  ChartSpec spec;
  spec.title = tr("Each run's last evaluation against the tokens it reads per query").toStdString();
  spec.x_label = tr("tokens read per query").toStdString();
  spec.log_x = true;
  spec.legend = false;  // every point carries its run's name
  spec.empty_x_lo = 1, spec.empty_x_hi = 1024, spec.empty_y_lo = 0, spec.empty_y_hi = 100;  // tokens; accuracy %
  spec.empty_text = tr("Each run's last evaluation is a point here: train runs, or press Compare.").toStdString();
  MetricAxes axes;
  for (const auto* run : runs)
    if (const auto* e = run->lastEval()) axes.add(e->metric == "accuracy");
  axes.label(spec);
  for (const auto* run : runs) {
    const auto* e = run->lastEval();
    const int row = table_->rowCount();
    table_->insertRow(row);
    const auto& c = run->config;
    QStringList cells = {run->name, QString::fromStdString(c.model), QString::fromStdString(c.task),
                         // the step its value was measured at; without an evaluation, the steps trained
                         QString::number(e ? e->step : run->lastStep())};
    if (e) {
      const bool acc = e->metric == "accuracy";
      cells << QString::number(e->context_size, 'f', 1) << QString::number(e->tokens_per_query, 'f', 1)
            << QString::number(100 * e->tokens_fraction(), 'f', 1) << QString::fromStdString(e->metric)
            << (acc ? QString::number(100 * e->value, 'f', 2) : QString::number(e->value, 'f', 3));
    } else {
      cells << "" << "" << "" << "" << tr("(no evaluation yet)");
    }
    const auto paper = paper_result(c);
    cells << (paper.isEmpty() ? (c.is_classification() ? tr("— (paper: N = 256, 512, 1024)") : tr("—")) : paper);
    for (int col = 0; col < cells.size(); ++col) {
      auto* item = new QTableWidgetItem(cells[col]);
      if (col == 0) item->setForeground(run->color);
      table_->setItem(row, col, item);
    }
    if (!e) continue;
    ChartSeries point;
    point.label = run->name.toStdString();
    point.colour = run->color.rgb() & 0xFFFFFF;
    point.line = false;
    point.markers = true;
    if (const auto* d = find_decoder(c.model)) point.rings = d->sized();
    point.x = {e->tokens_per_query};
    point.y = {e->metric == "accuracy" ? 100 * e->value : e->value};
    point.point_labels = {point.label};
    axes.place(point, e->metric == "accuracy");
    spec.series.push_back(point);
  }
  draw_chart(plot_, spec);  // one run is one point: still a range around it
  plot_->replot();
}

Table ComparisonPanel::contents() const {
  Table t;
  for (const auto& c : kColumns) t.header.push_back(c.toStdString());
  for (int r = 0; r < table_->rowCount(); ++r) {
    std::vector<std::string> cells;
    for (int c = 0; c < table_->columnCount(); ++c)
      cells.push_back(table_->item(r, c) ? table_->item(r, c)->text().toStdString() : std::string());
    t.add(cells);
  }
  return t;
}

QString ComparisonPanel::toCsv() const { return QString::fromStdString(contents().csv()); }
QString ComparisonPanel::toMarkdown() const { return QString::fromStdString(contents().markdown()); }

}  // namespace retreever::ui
