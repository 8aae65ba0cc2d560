#include "tree_view.h"

#include <QElapsedTimer>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>
#include <QWheelEvent>
#include <cmath>

namespace retreever::ui {

namespace {
constexpr double kMargin = 28;      // pixels around the drawing
constexpr double kMaxRadius = 14;   // largest node circle
constexpr double kMinSpacing = 3;   // pixels between a level's nodes below which the level collapses
}  // namespace

TreeView::TreeView(QWidget* parent)
    : QWidget(parent), placeholder_(tr("Train or open a checkpoint, then click a query.")) {
  setMouseTracking(true);
  setMinimumHeight(220);
  setToolTip(tr("Wheel: zoom. Drag: pan. Double-click: fit.\nGreen: selected set S (a summary node ringed in green, "
                "filled with the shade of its tokens above). Dark grey: the path taken (explored, not "
                "selected). Light red: never explored. Dashed: padding."));
}

QColor TreeView::colorOf(Role role) {
  switch (role) {
    case Role::Selected: return QColor(46, 160, 67);
    case Role::Path: return QColor(90, 90, 90);
    case Role::Explored: return QColor(150, 150, 150);
    case Role::Unexplored: return QColor(230, 150, 150);
  }
  return Qt::black;
}

void TreeView::clear() {
  result_.reset();
  colours_.clear();
  update();
}

void TreeView::setNodeColours(QMap<std::int64_t, QColor> colours) {
  colours_ = std::move(colours);
  update();
}

QColor TreeView::fillOf(std::int64_t id) const {
  const auto role = roleOf(id);
  if (role == Role::Selected && colours_.contains(id)) return colours_.value(id);
  QColor fill = colorOf(role);
  if (role == Role::Unexplored) {  // faded, but opaque so that edges do not show through
    const QColor base = palette().color(QPalette::Base);
    fill = QColor((fill.red() + base.red()) / 2, (fill.green() + base.green()) / 2, (fill.blue() + base.blue()) / 2);
  }
  return fill;
}

void TreeView::setResult(InspectResult result) {
  const bool same_tree = result_ && result_->has_tree && result.has_tree &&
                         result_->nodes.size() == result.nodes.size();
  result_ = std::move(result);
  const auto& r = *result_;
  const auto n = r.nodes.size();
  role_.assign(n, int(Role::Unexplored));
  role_level_.assign(n, 0);
  prob_.assign(n, -1);
  if (r.has_tree) {
    const auto& s = r.shape;
    // Path nodes are explored; their children were scored by the policy at that level.
    for (size_t l = 0; l < r.trace.path.size(); ++l) {
      role_[r.trace.path[l]] = int(Role::Path);
      role_level_[r.trace.path[l]] = int(l);
    }
    for (size_t l = 0; l < r.trace.probabilities.size(); ++l) {
      const auto parent = r.nodes[r.trace.path[l]];
      for (std::int64_t c = 0; c < s.b; ++c)
        prob_[s.node_id(l + 1, parent.index * s.b + c)] = r.trace.probabilities[l][c];
    }
    for (auto id : r.trace.selected) {
      role_[id] = int(Role::Selected);
      role_level_[id] = int(r.nodes[id].level);
    }
    if (!same_tree) revealed_ = int(s.levels()) - 1;
  }
  if (!same_tree) fit();
  update();
}

void TreeView::setRevealedLevel(int level) {
  revealed_ = std::clamp(level, 0, std::max(0, levels() - 1));
  update();
}

TreeView::Role TreeView::roleOf(std::int64_t id) const {
  if (!result_ || id < 0 || id >= std::int64_t(role_.size())) return Role::Unexplored;
  if (role_level_[id] > revealed_) return Role::Unexplored;
  // A rejected sibling is first seen as explored-by-scoring and becomes part of S.
  return Role(role_[id]);
}

double TreeView::probabilityOf(std::int64_t id) const {
  return id >= 0 && id < std::int64_t(prob_.size()) ? prob_[id] : -1;
}

void TreeView::fit() {
  zoom_ = 1.0;
  pan_ = {};
  update();
}

double TreeView::treeWidth() const { return (width() - 2 * kMargin) * zoom_; }

double TreeView::spacing(std::int64_t level) const {
  return treeWidth() / double(result_->shape.level_size(level));
}

QPointF TreeView::nodePos(std::int64_t id) const {
  const auto& r = *result_;
  const auto& n = r.nodes[id];
  const auto& s = r.shape;
  const double slots = double(s.padded());
  const double per_node = slots / double(s.level_size(n.level));
  const double u = (double(n.index) + 0.5) * per_node / slots;  // 0..1 across the leaves
  const double w = treeWidth();
  const double rows = double(s.levels() - 1);
  const double v = rows > 0 ? double(n.level) / rows : 0.5;
  return {kMargin + u * w + pan_.x(), kMargin + v * (height() - 2 * kMargin) + pan_.y()};
}

double TreeView::nodeRadius(std::int64_t id) const {
  const auto& s = result_->shape;
  // No wider than its level's spacing allows, nor taller than a row (deep trees have thin rows).
  const double rows = std::max<double>(1, double(s.levels() - 1));
  const double row_height = (height() - 2 * kMargin) / rows;
  double radius = std::clamp(std::min(spacing(result_->nodes[id].level), row_height) * 0.35, 1.5, kMaxRadius);
  const double p = probabilityOf(id);
  if (p >= 0 && result_->nodes[id].level <= revealed_) radius *= 0.7 + 0.6 * p;  // size by the policy
  const auto role = roleOf(id);
  if (role == Role::Path || role == Role::Selected) radius = std::max(radius, 4.0);  // the walk stays visible
  return radius;
}

double TreeView::indexAt(std::int64_t level, double x) const {
  // Node i of the level sits at x = kMargin + (i + 0.5) * spacing + pan (nodePos).
  return (x - kMargin - pan_.x()) / spacing(level) - 0.5;
}

TreeView::Span TreeView::visibleSpan(std::int64_t level) const {
  const auto count = result_->shape.level_size(level);
  Span span;
  span.first = std::clamp<std::int64_t>(std::int64_t(std::floor(indexAt(level, -50))), 0, count);
  span.last = std::clamp<std::int64_t>(std::int64_t(std::ceil(indexAt(level, width() + 50))) + 1, 0, count);
  span.collapsed = spacing(level) < kMinSpacing;
  return span;
}

std::int64_t TreeView::nodeAt(const QPointF& p) const {
  if (!result_ || !result_->has_tree) return -1;
  const auto& s = result_->shape;
  std::int64_t best = -1;
  double best_d = 1e9;
  auto consider = [&](std::int64_t id) {
    const auto c = nodePos(id);
    const double d = std::hypot(c.x() - p.x(), c.y() - p.y());
    if (d < std::max(6.0, nodeRadius(id) + 2) && d < best_d) {
      best = id;
      best_d = d;
    }
  };
  // The walk's nodes (drawn on collapsed levels too), then the nodes next to the pointer on each
  // level drawn one by one: a few dozen candidates whatever the tree's size.
  for (auto id : result_->trace.path) consider(id);
  for (auto id : result_->trace.selected) consider(id);
  for (std::int64_t l = 0; l < s.levels(); ++l) {
    if (visibleSpan(l).collapsed) continue;
    const auto count = s.level_size(l);
    const auto near = std::int64_t(std::floor(indexAt(l, p.x()) + 0.5));
    for (auto i = std::max<std::int64_t>(0, near - 1); i <= std::min(count - 1, near + 1); ++i) consider(s.node_id(l, i));
  }
  return best;
}

void TreeView::drawEdge(QPainter& painter, std::int64_t id, Edges which) {
  const auto& n = result_->nodes[id];
  if (n.parent < 0) return;
  const auto role = roleOf(id);
  const bool on_walk = roleOf(n.parent) == Role::Path && n.level <= revealed_;
  if (on_walk != (which == Edges::Walk)) return;
  const auto a = nodePos(n.parent), b = nodePos(id);
  QPen pen(on_walk ? colorOf(role == Role::Path ? Role::Path : Role::Selected) : palette().color(QPalette::Mid),
           on_walk ? 2.2 : 0.8);
  if (on_walk && role != Role::Path) pen.setStyle(Qt::DashLine);
  painter.setPen(pen);
  painter.drawLine(a, b);
  ++frame_items_;
  const double p = probabilityOf(id);
  // A label needs a row of its own: on rows closer than the text's height the labels would overlap
  // (deep trees); the tooltip of each node still gives its probability.
  const bool room = std::abs(b.y() - a.y()) >= 2 * painter.fontMetrics().height();
  if (on_walk && room && p >= 0 && n.level <= result_->shape.k) {
    // On the side away from the parent, so that two siblings' labels never meet; a child straight
    // below its parent (odd b) writes to the right, where the next sibling's label needs room too.
    const QString text = QString::number(p, 'f', 2);
    const double w = painter.fontMetrics().horizontalAdvance(text);
    const bool left = b.x() < a.x() - 0.5, below = std::abs(b.x() - a.x()) <= 0.5;
    if (below && spacing(n.level) / 2 < w + 4) return;  // the tooltip still gives it
    const QPointF mid = (a + b) / 2;
    painter.setPen(palette().color(QPalette::Text));
    painter.drawText(left ? mid + QPointF(-4 - w, 0) : mid + QPointF(4, 0), text);
  }
}

void TreeView::drawNode(QPainter& painter, std::int64_t id) {
  const auto& n = result_->nodes[id];
  const auto c = nodePos(id);
  const double radius = nodeRadius(id);
  const QColor fill = fillOf(id);
  painter.setBrush(n.padding ? QBrush(fill, Qt::BDiagPattern) : QBrush(fill));
  QPen outline(palette().color(QPalette::Text), n.padding ? 0.8 : 1.0);
  if (n.padding) outline.setStyle(Qt::DashLine);
  const QColor green = colorOf(Role::Selected);
  if (roleOf(id) == Role::Selected && fill != green) outline = QPen(green, 2.5);  // a summary node of S
  painter.setPen(radius < 3 ? QPen(Qt::NoPen) : outline);
  painter.drawEllipse(c, radius, radius);
  ++frame_items_;
  if (radius >= 9 && n.level == result_->shape.k + 1 && !n.leaves.empty()) {
    painter.setPen(Qt::white);
    painter.drawText(QRectF(c.x() - radius, c.y() - radius, 2 * radius, 2 * radius), Qt::AlignCenter,
                     QString::number(n.leaves.front()));
  }
}

void TreeView::setPlaceholder(const QString& text) {
  placeholder_ = text;
  update();
}

void TreeView::paintEvent(QPaintEvent*) {
  QElapsedTimer clock;
  clock.start();
  frame_items_ = 0;
  QPainter painter(this);
  painter.setRenderHint(QPainter::Antialiasing);
  painter.fillRect(rect(), palette().base());
  if (!result_) {
    painter.setPen(palette().color(QPalette::PlaceholderText));
    painter.drawText(rect(), Qt::AlignCenter, placeholder_);
    return;
  }
  if (!result_->has_tree) {
    painter.setPen(palette().color(QPalette::Text));
    painter.drawText(rect(), Qt::AlignCenter,
                     tr("This model has no retrieval walk to show: every query reads the same %1 tokens.").arg(result_->tokens_per_query));
    return;
  }
  const auto& r = *result_;
  const auto& s = r.shape;
  const bool dense = double(s.padded()) / zoom_ > 600;  // too many leaves for labels and edges
  std::vector<Span> spans;
  for (std::int64_t l = 0; l < s.levels(); ++l) spans.push_back(visibleSpan(l));
  QFont small = font();
  small.setPointSizeF(std::max(6.0, font().pointSizeF() - 2));
  painter.setFont(small);
  // Edges: parent -> child, the others only where they are few enough to see; then the walk on top,
  // in the path colour, rejected choices in the S colour, each labelled with the policy's probability.
  if (!dense)
    for (std::int64_t l = 1; l < s.levels(); ++l)
      if (!spans[l].collapsed && !spans[l - 1].collapsed)
        for (auto i = spans[l].first; i < spans[l].last; ++i) drawEdge(painter, s.node_id(l, i), Edges::Other);
  for (auto id : r.trace.path) drawEdge(painter, id, Edges::Walk);
  for (auto id : r.trace.selected) drawEdge(painter, id, Edges::Walk);
  // Nodes, level by level; a collapsed level is a band that says how many nodes it holds.
  const QColor band = palette().color(QPalette::Mid);
  for (std::int64_t l = 0; l < s.levels(); ++l) {
    const auto& span = spans[l];
    if (!span.collapsed) {
      for (auto i = span.first; i < span.last; ++i) drawNode(painter, s.node_id(l, i));
      continue;
    }
    if (span.first >= span.last) continue;
    const double y = nodePos(s.node_id(l, 0)).y();
    const double x0 = std::max(0.0, nodePos(s.node_id(l, span.first)).x());
    const double x1 = std::min(double(width()), nodePos(s.node_id(l, span.last - 1)).x());
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor(band.red(), band.green(), band.blue(), 90));
    painter.drawRoundedRect(QRectF(x0, y - 3, std::max(1.0, x1 - x0), 6), 3, 3);
    painter.setPen(palette().color(QPalette::PlaceholderText));
    painter.drawText(QPointF(x0 + 4, y - 6), tr("%L1 nodes").arg(s.level_size(l)));
    ++frame_items_;
  }
  for (auto id : r.trace.path)
    if (spans[r.nodes[id].level].collapsed) drawNode(painter, id);
  for (auto id : r.trace.selected)
    if (spans[r.nodes[id].level].collapsed) drawNode(painter, id);
  // Legend, top left (the leaves use the bottom row).
  painter.setFont(font());
  int x = 8;
  const int y = fontMetrics().height();
  for (auto [role, text] : {std::pair{Role::Selected, tr("selected S")}, {Role::Path, tr("path (explored)")},
                            {Role::Unexplored, tr("never explored")}}) {
    painter.setPen(Qt::NoPen);
    painter.setBrush(colorOf(role));
    painter.drawEllipse(QPointF(x + 5, y - 4), 5, 5);
    painter.setPen(palette().color(QPalette::Text));
    painter.drawText(x + 14, y, text);
    x += 24 + fontMetrics().horizontalAdvance(text);
  }
  painter.drawText(x, y, tr("level %1 of %2 revealed, |S| = %3, %L4 tokens").arg(revealed_).arg(s.levels() - 1)
                             .arg(r.trace.selected.size()).arg(r.context_size));
  frame_ms_ = clock.nsecsElapsed() / 1e6;
}

void TreeView::wheelEvent(QWheelEvent* e) {
  if (!result_) return;
  const double factor = std::pow(1.0015, e->angleDelta().y());
  const double new_zoom = std::clamp(zoom_ * factor, 1.0, 4096.0);
  // Keep the point under the cursor fixed.
  const double x = e->position().x();
  pan_.setX(x - (x - kMargin - pan_.x()) * (new_zoom / zoom_) - kMargin);
  zoom_ = new_zoom;
  update();
}

void TreeView::mousePressEvent(QMouseEvent* e) {
  dragging_ = true;
  drag_from_ = e->pos();
}

void TreeView::mouseMoveEvent(QMouseEvent* e) {
  if (dragging_ && (e->buttons() & Qt::LeftButton)) {
    pan_ += QPointF(e->pos() - drag_from_);
    drag_from_ = e->pos();
    update();
    return;
  }
  dragging_ = false;
  const auto id = nodeAt(e->position());
  if (id < 0) return;
  const auto& n = result_->nodes[id];
  QString text = tr("node %1, level %2, %3 real tokens").arg(n.id).arg(n.level).arg(n.leaves.size());
  if (!n.leaf_range().empty()) text += tr(" (%1)").arg(QString::fromStdString(n.leaf_range()));
  if (n.padding) text += tr(", padding");
  const double p = probabilityOf(id);
  if (p >= 0) text += tr(", policy p = %1").arg(p, 0, 'f', 3);
  QToolTip::showText(e->globalPosition().toPoint(), text, this);
}

void TreeView::mouseDoubleClickEvent(QMouseEvent*) { fit(); }
void TreeView::resizeEvent(QResizeEvent*) { update(); }

}  // namespace retreever::ui
