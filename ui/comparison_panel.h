// The comparison dashboard: every run's tokens read per query against its accuracy or
// log-likelihood, as a table (with the paper's numbers where the task matches) and a scatter.
#pragma once

#include <QList>
#include <QWidget>

#include "core/table.h"
#include "ui/run_record.h"

class QTableWidget;
class QCustomPlot;
class QLabel;

namespace retreever::ui {

// The paper's published number for a run's setting, if there is one ("" otherwise).
QString paper_result(const Config& c);
// What "Compare models" queues, one line per registered decoder (the toolbar's and the panel's tooltip).
QString compare_models_tip();

class ComparisonPanel : public QWidget {
  Q_OBJECT
 public:
  explicit ComparisonPanel(QWidget* parent = nullptr);
  void setRuns(const QList<const RunRecord*>& runs);
  QTableWidget* table() const { return table_; }
  QCustomPlot* plot() const { return plot_; }
  // The table as CSV or Markdown text (what Export writes).
  QString toCsv() const;
  QString toMarkdown() const;

 Q_SIGNALS:
  void compareRequested();
  void rewardStudyRequested();

 private:
  Table contents() const;  // the table's cells, for the one table writer
  QTableWidget* table_;
  QCustomPlot* plot_;
};

}  // namespace retreever::ui
