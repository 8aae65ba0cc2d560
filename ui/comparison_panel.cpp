#include "comparison_panel.h"

#include "ui/axis_range.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include "core/paper.h"
#include "ui/qcp.h"

namespace retreever::ui {

QString paper_result(const Config& c) {
  const auto r = published_copy_accuracy(c);
  return r ? QString("%1 ± %2").arg(r->mean, 0, 'f', 1).arg(r->stddev, 0, 'f', 1) : QString();
}

namespace {
const QStringList kColumns = {"run", "model", "task", "steps", "context N", "tokens/query", "tokens %",
                              "metric", "value", "paper"};
}

ComparisonPanel::ComparisonPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* buttons = new QHBoxLayout;
  auto* compare = new QPushButton(tr("Compare TCA, CA, Perceiver IO and Treeformer"));
  compare->setObjectName("compareButton");
  compare->setToolTip(tr("Queue four runs of the current experiment (same task, seed and steps): tree cross "
                         "attention, full cross attention, Perceiver IO with as many latents as TCA reads, and "
                         "a simplified Treeformer TC attention with about as many leaf summaries (one shared decision tree routes "
                         "the context; no per-head trees, no query routing, no TF attention, no bootstrapped training)."));
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
  plot_->xAxis->setLabel(tr("tokens read per query"));
  plot_->xAxis->setScaleType(QCPAxis::stLogarithmic);
  plot_->xAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
  plot_->yAxis->setLabel(tr("accuracy % / log-likelihood"));
  plot_->legend->setVisible(true);
  plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);
  splitter->addWidget(table_);
  splitter->addWidget(plot_);
  layout->addWidget(splitter, 1);
  connect(compare, &QPushButton::clicked, this, &ComparisonPanel::compareRequested);
  connect(reward, &QPushButton::clicked, this, &ComparisonPanel::rewardStudyRequested);
}

void ComparisonPanel::setRuns(const QList<const RunRecord*>& runs) {
  table_->setRowCount(0);
  plot_->clearGraphs();
  plot_->clearItems();
  for (const auto* run : runs) {
    const auto* e = run->lastEval();
    const int row = table_->rowCount();
    table_->insertRow(row);
    const auto& c = run->config;
    QStringList cells = {run->name, QString::fromStdString(c.model), QString::fromStdString(c.task),
                         QString::number(e ? e->step : 0)};
    if (e) {
      const bool acc = e->metric == "accuracy";
      cells << QString::number(e->context_size, 'f', 1) << QString::number(e->tokens_per_query, 'f', 1)
            << QString::number(100 * e->tokens_fraction(), 'f', 1) << QString::fromStdString(e->metric)
            << (acc ? QString::number(100 * e->value, 'f', 2) : QString::number(e->value, 'f', 3));
    } else {
      cells << "" << "" << "" << "" << tr("(no evaluation yet)");
    }
    const auto paper = paper_result(c);
    cells << (paper.isEmpty() ? (c.task == "copy" ? tr("— (paper: N = 256, 512, 1024)") : tr("—")) : paper);
    for (int col = 0; col < cells.size(); ++col) {
      auto* item = new QTableWidgetItem(cells[col]);
      if (col == 0) item->setForeground(run->color);
      table_->setItem(row, col, item);
    }
    if (!e) continue;
    auto* g = plot_->addGraph();
    g->setName(run->name);
    g->setLineStyle(QCPGraph::lsNone);
    g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, run->color, run->color, 10));
    const double y = e->metric == "accuracy" ? 100 * e->value : e->value;
    g->setData({e->tokens_per_query}, {y});
    auto* label = new QCPItemText(plot_);
    label->position->setCoords(e->tokens_per_query, y);
    label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
    label->setPadding(QMargins(8, 0, 0, 4));
    label->setText(run->name);
    label->setColor(run->color);
  }
  fit_axes(plot_);  // one run is one point: still a range around it
  plot_->replot();
}

QString ComparisonPanel::toCsv() const {
  QStringList lines = {kColumns.join(',')};
  for (int r = 0; r < table_->rowCount(); ++r) {
    QStringList cells;
    for (int c = 0; c < table_->columnCount(); ++c) {
      auto text = table_->item(r, c) ? table_->item(r, c)->text() : QString();
      if (text.contains(',') || text.contains('"')) text = '"' + text.replace("\"", "\"\"") + '"';
      cells << text;
    }
    lines << cells.join(',');
  }
  return lines.join('\n') + '\n';
}

QString ComparisonPanel::toMarkdown() const {
  QStringList lines = {"| " + kColumns.join(" | ") + " |", "|" + QString("---|").repeated(kColumns.size())};
  for (int r = 0; r < table_->rowCount(); ++r) {
    QStringList cells;
    for (int c = 0; c < table_->columnCount(); ++c)
      cells << (table_->item(r, c) ? table_->item(r, c)->text().replace('|', "\\|") : QString());
    lines << "| " + cells.join(" | ") + " |";
  }
  return lines.join('\n') + '\n';
}

}  // namespace retreever::ui
