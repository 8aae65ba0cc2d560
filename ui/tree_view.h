// The tree of one context drawn top-down, with the retrieval path of the selected query lit
// up as in Figure 3 of the paper: the path taken, the selected set S, nodes explored but not
// selected, and nodes never explored, each in its own colour; policy probabilities on the
// edges. Wheel zooms, drag pans, double-click fits; levels can be revealed one at a time.
// Level of detail: a level whose nodes would stand closer than a few pixels is drawn as one band,
// with only the walk's nodes on it (the path and S) drawn one by one, so that a frame costs what
// the screen shows, not what the tree holds (a tree of a million leaves stays interactive).
#pragma once

#include <QColor>
#include <QMap>
#include <QPointF>
#include <QWidget>
#include <optional>

#include "core/inspection.h"

class QPainter;

namespace retreever::ui {

class TreeView : public QWidget {
  Q_OBJECT
 public:
  enum class Role { Path, Selected, Explored, Unexplored };
  explicit TreeView(QWidget* parent = nullptr);

  void setResult(InspectResult result);  // tree + trace of one query (moved in: a 1M-leaf tree is large)
  void clear();
  // What the view says while it has no tree (by default: how to get one in the inspector).
  void setPlaceholder(const QString& text);
  const InspectResult* current() const { return result_ ? &*result_ : nullptr; }
  // Reveal the walk down to this level (0 = root only; shape.k + 1 = everything).
  void setRevealedLevel(int level);
  int revealedLevel() const { return revealed_; }
  int levels() const { return result_ ? int(result_->shape.levels()) : 0; }
  Role roleOf(std::int64_t id) const;  // as drawn at the current revealed level
  // Colours for selected nodes (Highlight::nodes: each summary node in the shade its tokens have in
  // the task view), drawn with S's green outline; other nodes keep their role's colour.
  void setNodeColours(QMap<std::int64_t, QColor> colours);
  QColor fillOf(std::int64_t id) const;  // what the node is filled with, as drawn now
  QPointF nodePos(std::int64_t id) const;  // its centre in widget pixels (after zoom and pan)
  double nodeRadius(std::int64_t id) const;
  void fit();

  static QColor colorOf(Role role);
  // What the last frame drew (nodes, edges and bands) and how long it took.
  std::int64_t lastFrameItems() const { return frame_items_; }
  double lastFrameMs() const { return frame_ms_; }

 protected:
  void paintEvent(QPaintEvent*) override;
  void wheelEvent(QWheelEvent*) override;
  void mousePressEvent(QMouseEvent*) override;
  void mouseMoveEvent(QMouseEvent*) override;
  void mouseDoubleClickEvent(QMouseEvent*) override;
  void resizeEvent(QResizeEvent*) override;

 private:
  double treeWidth() const;                   // the leaves' row in pixels, zoomed
  double spacing(std::int64_t level) const;   // pixels between neighbouring nodes of a level
  std::int64_t nodeAt(const QPointF& p) const;
  double probabilityOf(std::int64_t id) const;  // policy probability of reaching id from its parent
  // The nodes of a level that fall on the widget, [first, last); collapsed when they stand too
  // close to draw one by one.
  struct Span {
    std::int64_t first = 0, last = 0;
    bool collapsed = false;
  };
  Span visibleSpan(std::int64_t level) const;
  // The level's index (fractional) of the node that would sit at widget x: nodePos inverted.
  double indexAt(std::int64_t level, double x) const;
  enum class Edges { Other, Walk };  // the walk's edges (parent on the path, revealed) or the others
  void drawEdge(QPainter& painter, std::int64_t id, Edges which);
  void drawNode(QPainter& painter, std::int64_t id);

  std::optional<InspectResult> result_;
  std::vector<int> role_;          // per node id, for the full trace
  std::vector<int> role_level_;    // the level at which each node's role becomes known
  std::vector<double> prob_;       // per node id, -1 when not scored
  QMap<std::int64_t, QColor> colours_;
  QString placeholder_;  // said while there is no tree
  int revealed_ = 0;
  double zoom_ = 1.0;
  QPointF pan_;
  QPoint drag_from_;
  bool dragging_ = false;
  std::int64_t frame_items_ = 0;
  double frame_ms_ = 0;
};

}  // namespace retreever::ui
