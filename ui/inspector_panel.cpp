#include "inspector_panel.h"

#include "core/registry.h"

#include <QFutureWatcher>
#include <QtConcurrent/QtConcurrentRun>

#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QKeyEvent>
#include <QSlider>
#include <QSpinBox>
#include <QSplitter>
#include <QStackedWidget>
#include <QVBoxLayout>

#include "datasets/tasks.h"
#include "ui/tree_view.h"

namespace retreever::ui {

InspectorPanel::InspectorPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  controls->addWidget(new QLabel(tr("Evaluation sample")));
  sample_spin_ = new QSpinBox;
  sample_spin_->setObjectName("sample");
  sample_spin_->setToolTip(tr("Which context of the fixed evaluation set to inspect."));
  controls->addWidget(sample_spin_);
  auto* prev = new QPushButton(tr("◀ Level"));
  auto* next = new QPushButton(tr("Level ▶"));
  prev->setToolTip(tr("Hide the last level of the walk (step back through Algorithm 1). Key: Up."));
  next->setToolTip(tr("Reveal the next level of the walk. Key: Down."));
  level_slider_ = new QSlider(Qt::Horizontal);
  level_slider_->setObjectName("revealLevel");
  level_slider_->setToolTip(tr("How deep the retrieval walk is shown: 0 = the root only."));
  level_slider_->setFixedWidth(200);
  level_controls_ = new QWidget;
  level_controls_->setObjectName("levelControls");
  level_controls_->setSizePolicy(QSizePolicy::Maximum, QSizePolicy::Preferred);  // the stretch after it takes the room
  auto* level_layout = new QHBoxLayout(level_controls_);
  level_layout->setContentsMargins(0, 0, 0, 0);
  level_layout->addWidget(prev);
  level_layout->addWidget(level_slider_);
  level_layout->addWidget(next);
  controls->addSpacing(16);
  controls->addWidget(level_controls_);
  controls->addStretch();
  layout->addLayout(controls);

  body_ = new QWidget;
  auto* body_layout = new QVBoxLayout(body_);
  body_layout->setContentsMargins(0, 0, 0, 0);
  auto* splitter = splitter_ = new QSplitter(Qt::Vertical);
  views_ = new QStackedWidget;
  copy_view_ = new CopyTaskView;
  gp_view_ = new GpTaskView;
  views_->addWidget(copy_view_);
  views_->addWidget(gp_view_);
  image_view_ = new ImageTaskView;
  views_->addWidget(image_view_);
  tree_ = new TreeView;
  splitter->addWidget(views_);
  splitter->addWidget(tree_);
  splitter->setStretchFactor(0, 1);
  splitter->setStretchFactor(1, 2);
  showView(copy_view_);
  body_layout->addWidget(splitter, 1);
  summary_ = new QLabel(tr("No model yet: start training or open a checkpoint."));
  summary_->setObjectName("inspectSummary");
  summary_->setWordWrap(true);
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  body_layout->addWidget(summary_);
  layout->addWidget(body_, 1);

  connect(sample_spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int s) { selectSample(s); });
  connect(copy_view_, &TaskView::querySelected, this, &InspectorPanel::selectQuery);
  connect(gp_view_, &TaskView::querySelected, this, &InspectorPanel::selectQuery);
  connect(image_view_, &TaskView::querySelected, this, &InspectorPanel::selectQuery);
  connect(level_slider_, &QSlider::valueChanged, this, &InspectorPanel::revealLevel);
  connect(prev, &QPushButton::clicked, this, [this] { stepLevel(-1); });
  connect(next, &QPushButton::clicked, this, [this] { stepLevel(1); });
  // Keys: a click anywhere in the panel gives it the focus, and the arrow keys its children leave
  // unused come to keyPressEvent (a focused spin box or slider keeps its own).
  setFocusPolicy(Qt::ClickFocus);
  summary_->setToolTip(tr("Keys: Left and Right, the previous and next query; Up and Down, the walk's levels."));
}

InspectorPanel::~InspectorPanel() = default;

void InspectorPanel::keyPressEvent(QKeyEvent* event) {
  // Left and Right step through the sample's queries, no further than its first and last; Up and
  // Down hide and reveal the walk's levels, as the level buttons do (nothing for a model without one).
  switch (event->key()) {
    case Qt::Key_Left:
      if (result_ && query_ > 0) selectQuery(query_ - 1);
      break;
    case Qt::Key_Right:
      if (result_ && query_ + 1 < viewed_targets_) selectQuery(query_ + 1);
      break;
    case Qt::Key_Up:
      stepLevel(-1);
      break;
    case Qt::Key_Down:
      stepLevel(1);
      break;
    default:
      return QWidget::keyPressEvent(event);
  }
  event->accept();
}

void InspectorPanel::stepLevel(int delta) {
  if (level_controls_->isEnabled()) level_slider_->setValue(level_slider_->value() + delta);
}

// The stack takes the shown view's minimum height only: the image view's 300 px would leave the copy
// task's three rows of tokens in a tall empty pane.
void InspectorPanel::showView(QWidget* shown) {
  views_->setCurrentWidget(shown);
  for (auto* page : {static_cast<QWidget*>(copy_view_), static_cast<QWidget*>(gp_view_), static_cast<QWidget*>(image_view_)})
    page->setSizePolicy(QSizePolicy::Preferred, page == shown ? QSizePolicy::Preferred : QSizePolicy::Ignored);
  views_->setMinimumHeight(shown->minimumHeight());
}

std::int64_t InspectorPanel::sample() const { return sample_spin_->value(); }
TaskView* InspectorPanel::taskView() const {
  return static_cast<TaskView*>(views_->currentWidget());
}
QWidget* InspectorPanel::exportTarget() const { return body_; }

void InspectorPanel::clear() {
  ++load_ticket_;  // a load still running for an earlier snapshot is dropped when it ends
  inspector_.reset();
  viewed_sample_ = -1;
  result_.reset();
  tree_->clear();
  summary_->setText(tr("No model yet: start training or open a checkpoint."));
}

void InspectorPanel::setSnapshot(const Snapshot& snapshot) {
  load(QString::fromStdString(snapshot.config.task),
       [snapshot] { return std::make_shared<Inspector>(snapshot, datasets::make_task); });
}

void InspectorPanel::setCheckpoint(const QString& path, const QString& task) {
  load(task, [file = path.toStdString()] {
    return std::shared_ptr<Inspector>(Inspector::from_checkpoint(file, datasets::make_task));
  });
}

void InspectorPanel::load(const QString& task, std::function<std::shared_ptr<Inspector>()> make) {
  // Building the model and its evaluation set (70k images for the image task) takes a while: it
  // runs on a worker thread, and the newest model asked for wins.
  const auto ticket = ++load_ticket_;
  loading_ = true;
  if (!inspector_) summary_->setText(tr("Loading the model and its evaluation set..."));
  struct Loaded {
    std::shared_ptr<Inspector> inspector;
    QString error;
  };
  auto* watcher = new QFutureWatcher<Loaded>(this);
  connect(watcher, &QFutureWatcherBase::finished, this, [this, watcher, ticket, task = task.toStdString()] {
    watcher->deleteLater();
    if (ticket != load_ticket_) return;
    loading_ = false;
    const Loaded loaded = watcher->result();
    if (!loaded.inspector) {
      inspector_.reset();
      return Q_EMIT failed(tr("Cannot inspect this model: %1").arg(loaded.error));
    }
    install(loaded.inspector, task);
  });
  watcher->setFuture(QtConcurrent::run([make = std::move(make)] {
    Loaded l;
    try {
      l.inspector = make();
    } catch (const std::exception& e) {
      l.error = QString::fromUtf8(e.what());
    }
    return l;
  }));
}

void InspectorPanel::install(std::shared_ptr<Inspector> inspector, const std::string& task) {
  const bool first = !inspector_ || inspector_->config().task != task;  // a new task opens on a typical sample
  inspector_ = std::move(inspector);
  viewed_sample_ = -1;  // a new model: its views are new
  const auto& view = task_info(task).view;
  QWidget* shown = view == "function" ? static_cast<QWidget*>(gp_view_)
                   : view == "image"  ? static_cast<QWidget*>(image_view_)
                                      : copy_view_;
  showView(shown);
  if (first) {  // a new task's view starts at its minimum height, or a third of the panel
    const int total = splitter_->sizes().value(0) + splitter_->sizes().value(1);
    const int top = std::max(shown->minimumHeight() + 10, shown == copy_view_ ? 0 : total / 3);
    if (total > top + 150) splitter_->setSizes({top, total - top});
  }
  sample_spin_->blockSignals(true);
  sample_spin_->setRange(0, int(inspector_->samples() - 1));
  if (first) sample_spin_->setValue(int(inspector_->typical_sample()));
  sample_spin_->blockSignals(false);
  refresh();
}

void InspectorPanel::selectSample(qint64 sample) {
  if (!inspector_) return;
  if (sample_spin_->value() != sample) return sample_spin_->setValue(int(sample));  // re-enters
  query_ = std::min<std::int64_t>(query_, inspector_->queries(sample) - 1);
  refresh();
}

void InspectorPanel::selectQuery(qint64 query) {
  query_ = query;
  refresh();
}

void InspectorPanel::updateHighlight() {
  if (!result_) return;
  // The selected nodes as far as the walk is revealed: the P leaves read one by one in S's green,
  // each summary node in its own lighter shade, in the tree and over the context tokens it covers.
  Highlight h;
  h.query = query_;
  int shade = 0;
  for (auto id : result_->trace.selected) {
    const auto& node = result_->nodes[id];
    if (node.level > tree_->revealedLevel()) continue;
    const bool leaf = node.level == result_->shape.k + 1;
    const QColor colour = leaf ? TreeView::colorOf(TreeView::Role::Selected) : Highlight::summaryShade(shade++);
    h.nodes[id] = colour;
    for (auto i : node.leaves) h.context[i] = colour;
  }
  tree_->setNodeColours(h.nodes);
  taskView()->setHighlight(h);
}

void InspectorPanel::revealLevel(int level) {
  tree_->setRevealedLevel(level);
  updateHighlight();
  if (level_slider_->value() != tree_->revealedLevel()) level_slider_->setValue(tree_->revealedLevel());
}

void InspectorPanel::refresh() {
  if (!inspector_) return;
  const auto s = sample();
  try {
    // The sample's view (its predictions, the GP curve, the image at every pixel) is the same for
    // every query: computed when the sample or the model changes, not on each click.
    if (s != viewed_sample_) {
      const auto view = inspector_->view(s);
      taskView()->setSample(view);
      viewed_sample_ = s;
      viewed_targets_ = view.target_count;
    }
    query_ = std::clamp<std::int64_t>(query_, 0, viewed_targets_ - 1);
    result_ = inspector_->inspect(s, query_);
    tree_->setResult(*result_);
    updateHighlight();
    level_slider_->blockSignals(true);
    level_slider_->setRange(0, std::max(0, tree_->levels() - 1));
    level_slider_->setValue(tree_->revealedLevel());
    level_slider_->blockSignals(false);
    level_controls_->setEnabled(result_->has_tree);

    QString text = tr("Sample %1, query %2: ").arg(s).arg(query_);
    if (result_->predicted_class >= 0) {
      auto name = [](double c) { return c == 0 ? QString("BOS") : c == 1 ? QString("EOS") : QString::number(int(c) - 2); };
      text += tr("predicts %1 (p = %2), target %3. ").arg(name(result_->predicted_class))
                  .arg(result_->prediction[result_->predicted_class], 0, 'f', 3).arg(name(result_->target[0]));
    } else {
      text += tr("predicts %1 ± %2, target %3. ").arg(result_->prediction[0], 0, 'f', 3)
                  .arg(result_->prediction[1], 0, 'f', 3).arg(result_->target[0], 0, 'f', 3);
    }
    text += tr("Reads %1 of %2 context tokens").arg(result_->tokens_per_query).arg(result_->context_size);
    if (result_->has_tree) {
      text += tr(" (k = %1 levels of choices above the leaves, b = %2, P = %3). Policy per level:").arg(result_->shape.k).arg(result_->shape.b).arg(result_->shape.p);
      for (const auto& level : result_->trace.probabilities) {
        QStringList ps;
        for (double p : level) ps << QString::number(p, 'f', 2);
        text += " [" + ps.join(' ') + "]";
      }
    }
    summary_->setText(text);
    Q_EMIT inspected(*result_);
  } catch (const std::exception& e) {
    Q_EMIT failed(QString::fromStdString(e.what()));
  }
}

}  // namespace retreever::ui
