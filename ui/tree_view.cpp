#include "tree_view.h"

#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>
#include <QWheelEvent>
#include <cmath>

namespace retreever::ui {

namespace {
constexpr double kMargin = 28;      // pixels around the drawing
constexpr double kMaxRadius = 14;   // largest node circle
}  // namespace

TreeView::TreeView(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setMinimumHeight(220);
  setToolTip(tr("Wheel: zoom. Drag: pan. Double-click: fit.\nGreen: selected set S. Dark grey: the path taken "
                "(explored, not selected). Light red: never explored. Dashed: padding."));
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
  update();
}

void TreeView::setResult(const InspectResult& r) {
  const bool same_tree = result_ && result_->has_tree && r.has_tree &&
                         result_->nodes.size() == r.nodes.size();
  result_ = r;
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

QPointF TreeView::nodePos(std::int64_t id) const {
  const auto& r = *result_;
  const auto& n = r.nodes[id];
  const auto& s = r.shape;
  const double slots = double(s.padded());
  const double per_node = slots / double(s.level_size(n.level));
  const double u = (double(n.index) + 0.5) * per_node / slots;  // 0..1 across the leaves
  const double w = (width() - 2 * kMargin) * zoom_;
  const double rows = double(s.levels() - 1);
  const double v = rows > 0 ? double(n.level) / rows : 0.5;
  return {kMargin + u * w + pan_.x(), kMargin + v * (height() - 2 * kMargin) + pan_.y()};
}

double TreeView::nodeRadius(std::int64_t id) const {
  const auto& s = result_->shape;
  const double spacing = (width() - 2 * kMargin) * zoom_ / double(s.level_size(result_->nodes[id].level));
  double radius = std::clamp(spacing * 0.35, 1.5, kMaxRadius);
  const double p = probabilityOf(id);
  if (p >= 0 && result_->nodes[id].level <= revealed_) radius *= 0.7 + 0.6 * p;  // size by the policy
  return radius;
}

std::int64_t TreeView::nodeAt(const QPointF& p) const {
  if (!result_ || !result_->has_tree) return -1;
  std::int64_t best = -1;
  double best_d = 1e9;
  for (const auto& n : result_->nodes) {
    const auto c = nodePos(n.id);
    const double d = std::hypot(c.x() - p.x(), c.y() - p.y());
    if (d < std::max(6.0, nodeRadius(n.id) + 2) && d < best_d) {
      best = n.id;
      best_d = d;
    }
  }
  return best;
}

void TreeView::paintEvent(QPaintEvent*) {
  QPainter painter(this);
  painter.setRenderHint(QPainter::Antialiasing);
  painter.fillRect(rect(), palette().base());
  if (!result_) {
    painter.setPen(palette().color(QPalette::PlaceholderText));
    painter.drawText(rect(), Qt::AlignCenter, tr("Train or open a checkpoint, then click a query."));
    return;
  }
  if (!result_->has_tree) {
    painter.setPen(palette().color(QPalette::Text));
    painter.drawText(rect(), Qt::AlignCenter,
                     tr("This model has no tree: it reads %1 tokens for every query.").arg(result_->tokens_per_query));
    return;
  }
  const auto& r = *result_;
  const QRectF visible = QRectF(rect()).adjusted(-50, -50, 50, 50);
  const bool dense = double(r.shape.padded()) / zoom_ > 600;  // too many leaves for labels and edges
  // Edges: parent -> child; the walk in the path colour, rejected choices in the S colour,
  // each labelled with the policy's probability.
  QFont small = font();
  small.setPointSizeF(std::max(6.0, font().pointSizeF() - 2));
  painter.setFont(small);
  for (const auto& n : r.nodes) {
    if (n.parent < 0) continue;
    const auto a = nodePos(n.parent), b = nodePos(n.id);
    if (!visible.contains(a) && !visible.contains(b)) continue;
    const auto role = roleOf(n.id);
    const bool on_walk = roleOf(n.parent) == Role::Path && n.level <= revealed_;
    if (dense && !on_walk) continue;
    QPen pen(on_walk ? colorOf(role == Role::Path ? Role::Path : Role::Selected) : palette().color(QPalette::Mid),
             on_walk ? 2.2 : 0.8);
    if (on_walk && role != Role::Path) pen.setStyle(Qt::DashLine);
    painter.setPen(pen);
    painter.drawLine(a, b);
    const double p = probabilityOf(n.id);
    if (on_walk && p >= 0 && n.level <= r.shape.k) {
      painter.setPen(palette().color(QPalette::Text));
      painter.drawText((a + b) / 2 + QPointF(4, 0), QString::number(p, 'f', 2));
    }
  }
  // Nodes.
  for (const auto& n : r.nodes) {
    const auto c = nodePos(n.id);
    if (!visible.contains(c)) continue;
    const double radius = nodeRadius(n.id);
    const auto role = roleOf(n.id);
    QColor fill = colorOf(role);
    if (role == Role::Unexplored) {  // faded, but opaque so that edges do not show through
      const QColor base = palette().color(QPalette::Base);
      fill = QColor((fill.red() + base.red()) / 2, (fill.green() + base.green()) / 2, (fill.blue() + base.blue()) / 2);
    }
    painter.setBrush(n.padding ? QBrush(fill, Qt::BDiagPattern) : QBrush(fill));
    QPen outline(palette().color(QPalette::Text), n.padding ? 0.8 : 1.0);
    if (n.padding) outline.setStyle(Qt::DashLine);
    painter.setPen(radius < 3 ? Qt::NoPen : outline);
    painter.drawEllipse(c, radius, radius);
    if (radius >= 9 && n.level == r.shape.k + 1 && !n.leaves.empty()) {
      painter.setPen(Qt::white);
      painter.drawText(QRectF(c.x() - radius, c.y() - radius, 2 * radius, 2 * radius), Qt::AlignCenter,
                       QString::number(n.leaves.front()));
    }
  }
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
  painter.drawText(x, y, tr("level %1 of %2 revealed, |S| = %3").arg(revealed_).arg(r.shape.levels() - 1)
                             .arg(r.trace.selected.size()));
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
  if (!n.leaves.empty()) text += tr(" (%1..%2)").arg(n.leaves.front()).arg(n.leaves.back());
  if (n.padding) text += tr(", padding");
  const double p = probabilityOf(id);
  if (p >= 0) text += tr(", policy p = %1").arg(p, 0, 'f', 3);
  QToolTip::showText(e->globalPosition().toPoint(), text, this);
  Q_EMIT nodeHovered(text);
}

void TreeView::mouseDoubleClickEvent(QMouseEvent*) { fit(); }
void TreeView::resizeEvent(QResizeEvent*) { update(); }

}  // namespace retreever::ui
