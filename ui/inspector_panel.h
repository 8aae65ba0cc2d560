// The tree inspector: a task view to click a query in, the tree with its retrieval path,
// and controls to pick the sample and step through the walk level by level. Works on a
// snapshot (a frozen copy of the model), so clicking never races the optimiser.
#pragma once

#include <QWidget>
#include <functional>
#include <memory>

#include "core/inspection.h"
#include "core/training/trainer.h"
#include "ui/task_views.h"

Q_DECLARE_METATYPE(retreever::InspectResult)

class QSpinBox;
class QLabel;
class QStackedWidget;
class QSplitter;
class QSlider;
class QKeyEvent;

namespace retreever::ui {

class TreeView;

class InspectorPanel : public QWidget {
  Q_OBJECT
 public:
  explicit InspectorPanel(QWidget* parent = nullptr);
  ~InspectorPanel() override;

  void setSnapshot(const Snapshot& snapshot);
  // A saved run's model (a run of an earlier session), read from its checkpoint.
  void setCheckpoint(const QString& path, const QString& task);
  void clear();
  bool hasModel() const { return inspector_ != nullptr; }
  bool loading() const { return loading_; }  // a snapshot is being loaded on a worker thread
  const InspectResult* current() const { return result_ ? &*result_ : nullptr; }
  std::int64_t sample() const;
  std::int64_t query() const { return query_; }
  TreeView* treeView() const { return tree_; }
  TaskView* taskView() const;
  QWidget* exportTarget() const;  // what "export inspector image" renders

 public Q_SLOTS:
  void selectSample(qint64 sample);
  void selectQuery(qint64 query);
  void revealLevel(int level);

 Q_SIGNALS:
  void inspected(const retreever::InspectResult& result);
  void failed(const QString& message);

 protected:
  void keyPressEvent(QKeyEvent* event) override;

 private:
  void refresh();
  void stepLevel(int delta);  // one level more (1) or less (-1) of the walk shown, where there is a walk
  void updateHighlight();  // the context tokens under S, as far as the walk is revealed
  // Builds the inspector on a worker thread; the newest model asked for wins.
  void load(const QString& task, std::function<std::shared_ptr<Inspector>()> make);
  void install(std::shared_ptr<Inspector> inspector, const std::string& task);
  void showView(QWidget* view);  // one of the task views, sized by its own minimum
  std::shared_ptr<Inspector> inspector_;
  quint64 load_ticket_ = 0;
  bool loading_ = false;
  std::optional<InspectResult> result_;
  std::int64_t query_ = 0;
  std::int64_t viewed_sample_ = -1;  // the sample the task view shows (-1: none, or another model's)
  std::int64_t viewed_targets_ = 0;
  QSpinBox* sample_spin_;
  QSlider* level_slider_;
  QWidget* level_controls_;  // the walk's level buttons and slider: enabled only for a model with a tree
  QLabel* summary_;
  QStackedWidget* views_;
  QSplitter* splitter_;  // the task's view above, the tree below
  CopyTaskView* copy_view_;
  GpTaskView* gp_view_;
  ImageTaskView* image_view_;
  TreeView* tree_;
  QWidget* body_;
};

}  // namespace retreever::ui
