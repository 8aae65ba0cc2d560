#include "task_views.h"

#include "ui/axis_range.h"

#include <QMouseEvent>
#include <QPainter>
#include <QVBoxLayout>
#include <algorithm>

#include "ui/qcp.h"
#include "ui/tree_view.h"

namespace retreever::ui {

QColor Highlight::summaryShade(int i) {
  static const QColor shades[] = {QColor(160, 215, 160), QColor(150, 195, 235), QColor(200, 180, 230),
                                  QColor(240, 210, 150), QColor(110, 200, 205)};
  return shades[i % 5];
}

void TaskView::setSample(const SampleView& sample) {
  sample_ = sample;
  sampleChanged();
}

void TaskView::setHighlight(const Highlight& h) {
  highlight_ = h;
  highlightChanged();
}

CopyTaskView::CopyTaskView(QWidget* parent) : TaskView(parent) {
  setMinimumHeight(120);
  setToolTip(tr("Top: the context (B = begin). Middle: the targets. Bottom: the model's predictions, "
                "errors in red. Click a target to see which nodes its query reads."));
}

QString CopyTaskView::token(float id) {
  const int t = int(id);
  if (t == 0) return "B";
  if (t == 1) return "E";
  return QString::number(t - 2);
}

QRectF CopyTaskView::cell(int row, std::int64_t i) const {
  // The sequence reads left to right: context cells, then target cells on the lower rows.
  const double n = double(sample_.context_size + sample_.target_count);
  const double w = std::max(4.0, (width() - 90.0) / std::max(1.0, n));
  const double h = std::min(28.0, (height() - 20.0) / 3.2);
  const double x0 = 80 + (row == 0 ? 0 : double(sample_.context_size)) * w;
  return {x0 + double(i) * w, 10 + row * (h + 4), w - 1, h};
}

QRectF CopyTaskView::targetCell(std::int64_t j) const { return cell(1, j); }

void CopyTaskView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  p.fillRect(rect(), palette().base());
  if (sample_.context_size == 0) return;
  const QStringList labels = {tr("context"), tr("target"), tr("predicted")};
  for (int row = 0; row < 3; ++row) {
    p.setPen(palette().color(QPalette::Text));
    p.drawText(QRectF(4, cell(row, 0).top(), 72, cell(row, 0).height()), Qt::AlignVCenter, labels[row]);
    const auto count = row == 0 ? sample_.context_size : sample_.target_count;
    for (std::int64_t i = 0; i < count; ++i) {
      const auto r = cell(row, i);
      QColor fill = palette().color(QPalette::AlternateBase);
      QString text;
      if (row == 0) {
        text = token(sample_.xc[i]);
        if (highlight_.context.contains(i)) fill = highlight_.context[i];
      } else if (row == 1) {
        text = token(sample_.yt[i]);
        if (i == highlight_.query) fill = QColor(255, 200, 60);
      } else {
        text = token(sample_.mean[i]);
        const bool wrong = sample_.mean[i] != sample_.yt[i];
        fill = wrong ? QColor(230, 80, 80) : palette().color(QPalette::AlternateBase);
        if (i == highlight_.query) fill = wrong ? QColor(255, 120, 60) : QColor(255, 200, 60);
      }
      p.setPen(Qt::NoPen);
      p.setBrush(fill);
      p.drawRoundedRect(r, 2, 2);
      if (r.width() >= 9) {
        p.setPen(fill.lightness() < 110 ? Qt::white : Qt::black);
        p.drawText(r, Qt::AlignCenter, text);
      }
    }
  }
  p.setPen(palette().color(QPalette::Text));
  p.drawText(QRectF(4, height() - 18, width() - 8, 16), Qt::AlignLeft,
             tr("accuracy on this sequence: %1%").arg(100 * sample_.metric, 0, 'f', 1));
}

void CopyTaskView::mousePressEvent(QMouseEvent* e) {
  for (int row = 1; row < 3; ++row)
    for (std::int64_t j = 0; j < sample_.target_count; ++j)
      if (cell(row, j).contains(e->position())) return Q_EMIT querySelected(j);
}

GpTaskView::GpTaskView(QWidget* parent) : TaskView(parent), plot_(new QCustomPlot) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(plot_);
  setMinimumHeight(200);
  plot_->setToolTip(tr("Black: context points. Grey crosses: true targets. Line and band: predicted mean ± 2σ. "
                       "Click near a target to inspect its retrieval."));
  plot_->legend->setVisible(true);
  // The legend beside the axes, not over the points: a function's data fills the whole frame. It
  // keeps its own height at the top of its column, an empty element under it taking the rest (the
  // legend alone in the column spread its rows over the plot's height).
  auto* side = new QCPLayoutGrid;
  plot_->plotLayout()->addElement(0, 1, side);
  plot_->plotLayout()->setColumnStretchFactor(1, 0.001);
  plot_->axisRect()->insetLayout()->take(plot_->legend);
  side->addElement(0, 0, plot_->legend);
  side->addElement(1, 0, new QCPLayoutElement(plot_));
  side->setRowStretchFactor(0, 0.001);
  plot_->legend->setMargins(QMargins(6, 4, 6, 4));
  plot_->xAxis->setLabel("x");
  plot_->yAxis->setLabel("y");
  connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
    if (sample_.target_count == 0) return;
    // The nearest target point on screen.
    std::int64_t best = -1;
    double best_d = 1e18;
    for (std::int64_t j = 0; j < sample_.target_count; ++j) {
      const double px = plot_->xAxis->coordToPixel(sample_.xt[j]), py = plot_->yAxis->coordToPixel(sample_.yt[j]);
      const double d = std::hypot(px - e->position().x(), py - e->position().y());
      if (d < best_d) {
        best_d = d;
        best = j;
      }
    }
    if (best >= 0 && best_d < 40) Q_EMIT querySelected(best);
  });
}

void GpTaskView::sampleChanged() {
  redraw();
  fit_axes(plot_);  // every point inside the frame, with a margin
  plot_->replot();
}

void GpTaskView::highlightChanged() {
  redraw();
  plot_->replot();
}

void GpTaskView::redraw() {
  plot_->clearGraphs();
  if (sample_.context_size == 0) return;
  // Predicted mean and band along x: the model's curve (evenly spaced inputs and the targets, sorted).
  QVector<double> x, mean, lo, hi;
  for (std::size_t i = 0; i < sample_.curve_x.size(); ++i) {
    const double m = sample_.curve_mean[i], sd = sample_.curve_stddev[i];
    x << sample_.curve_x[i];
    mean << m;
    lo << m - 2 * sd;
    hi << m + 2 * sd;
  }
  auto* upper = plot_->addGraph();
  upper->setData(x, hi, true);
  upper->setPen(Qt::NoPen);
  upper->removeFromLegend();
  auto* lower = plot_->addGraph();
  lower->setData(x, lo, true);
  lower->setPen(Qt::NoPen);
  lower->setBrush(QColor(31, 119, 180, 50));
  lower->setChannelFillGraph(upper);
  lower->setName(tr("±2σ"));
  auto* m = plot_->addGraph();
  m->setData(x, mean, true);
  m->setPen(QPen(QColor(31, 119, 180), 2));
  m->setName(tr("predicted mean"));

  // Context points grouped by the selected node that covers them: the leaves read one by
  // one (dark green, large), each summary node's region in its own shade, as in the tree.
  QVector<double> cx, cy, tx, ty;
  QMap<QRgb, QPair<QVector<double>, QVector<double>>> groups;
  for (std::int64_t i = 0; i < sample_.context_size; ++i) {
    if (highlight_.context.contains(i)) {
      auto& g = groups[highlight_.context[i].rgb()];
      g.first << sample_.xc[i];
      g.second << sample_.yc[i];
    } else {
      cx << sample_.xc[i];
      cy << sample_.yc[i];
    }
  }
  for (std::int64_t j = 0; j < sample_.target_count; ++j) {
    tx << sample_.xt[j];
    ty << sample_.yt[j];
  }
  auto scatter = [&](const QVector<double>& xs, const QVector<double>& ys, QCPScatterStyle style, const QString& name) {
    auto* g = plot_->addGraph();
    g->setData(xs, ys);
    g->setLineStyle(QCPGraph::lsNone);
    g->setScatterStyle(style);
    g->setName(name);
    if (xs.isEmpty()) g->removeFromLegend();
    return g;
  };
  scatter(tx, ty, QCPScatterStyle(QCPScatterStyle::ssCross, QColor(120, 120, 120), 7), tr("true targets"));
  scatter(cx, cy, QCPScatterStyle(QCPScatterStyle::ssDisc, palette().color(QPalette::Text), 6), tr("context"));
  const QRgb leaf = TreeView::colorOf(TreeView::Role::Selected).rgb();
  bool summary_named = false;
  for (auto it = groups.begin(); it != groups.end(); ++it) {
    const bool is_leaf = it.key() == leaf;
    auto* g = scatter(it.value().first, it.value().second,
                      QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(it.key()), is_leaf ? 11 : 8),
                      is_leaf ? tr("leaves read (in S)") : tr("summarised by a node of S\n(its shade in the tree)"));
    if (!is_leaf && summary_named) g->removeFromLegend();
    summary_named = summary_named || !is_leaf;
  }
  if (highlight_.query >= 0 && highlight_.query < sample_.target_count) {
    const auto j = highlight_.query;
    scatter({sample_.xt[j]}, {sample_.yt[j]},
            QCPScatterStyle(QCPScatterStyle::ssStar, QPen(QColor(255, 140, 0), 2), QColor(255, 200, 60), 16),
            tr("query"));
  }
}

}  // namespace retreever::ui

namespace retreever::ui {

ImageTaskView::ImageTaskView(QWidget* parent) : TaskView(parent) {
  setMinimumHeight(300);  // three images of 28 x 28 pixels at about 10 screen pixels each
  setToolTip(tr("Left: the context pixels (the rest masked in blue). Middle: the model's predicted mean at every "
                "pixel, the context pixels as given. Right: the ground truth at the pixels the sample drew (context "
                "and targets). Click a target pixel to inspect it."));
}

QRectF ImageTaskView::panel(int i) const {
  const double side = std::max(40.0, std::min((width() - 40.0) / 3.0, height() - 30.0));
  return {10 + i * (side + 10), 22, side, side};
}

QPoint ImageTaskView::pixelOf(const float* x) const {
  const auto [r, c] = pixel_of(x, sample_.image_height, sample_.image_width);
  return {int(c), int(r)};
}

void ImageTaskView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().base());
  const int H = int(sample_.image_height), W = int(sample_.image_width);
  if (H == 0 || W == 0) return;
  auto gray = [](float y) {  // y = intensity - 0.5
    const int v = std::clamp(int(std::lround((y + 0.5f) * 255)), 0, 255);
    return qRgb(v, v, v);
  };
  const QRgb masked = qRgb(40, 60, 110);
  QImage context(W, H, QImage::Format_RGB32), prediction(W, H, QImage::Format_RGB32), truth(W, H, QImage::Format_RGB32);
  context.fill(masked);
  truth.fill(masked);
  // The prediction at every pixel where the model was asked at each (else masked as the others).
  const bool whole = std::int64_t(sample_.pixel_mean.size()) == std::int64_t(H) * W;
  prediction.fill(masked);
  if (whole)
    for (int r = 0; r < H; ++r)
      for (int c = 0; c < W; ++c) prediction.setPixel(c, r, gray(sample_.pixel_mean[std::size_t(r) * W + c]));
  for (std::int64_t i = 0; i < sample_.context_size; ++i) {
    const auto px = pixelOf(&sample_.xc[i * 2]);
    context.setPixel(px, gray(sample_.yc[i]));
    prediction.setPixel(px, gray(sample_.yc[i]));
    truth.setPixel(px, gray(sample_.yc[i]));
  }
  for (std::int64_t j = 0; j < sample_.target_count; ++j) {
    const auto px = pixelOf(&sample_.xt[j * 2]);
    prediction.setPixel(px, gray(sample_.mean[j]));
    truth.setPixel(px, gray(sample_.yt[j]));
  }
  // A sample draws a subset of the pixels (context, then targets); the rest stay masked.
  const QStringList titles = {tr("context (%1 px)").arg(sample_.context_size),
                              whole ? tr("prediction (every pixel)")
                                    : tr("prediction (%1 targets)").arg(sample_.target_count),
                              tr("ground truth (the %1 drawn px)").arg(sample_.context_size + sample_.target_count)};
  const QImage* images[] = {&context, &prediction, &truth};
  for (int i = 0; i < 3; ++i) {
    const auto r = panel(i);
    p.drawImage(r, *images[i]);
    p.setPen(palette().color(QPalette::Text));
    p.drawText(QRectF(r.left(), 2, r.width(), 18), Qt::AlignCenter, titles[i]);
    const double cw = r.width() / W, ch = r.height() / H;
    p.setBrush(Qt::NoBrush);
    for (auto it = highlight_.context.begin(); it != highlight_.context.end(); ++it) {
      const auto px = pixelOf(&sample_.xc[it.key() * 2]);
      p.setPen(QPen(it.value(), 1.5));
      p.drawRect(QRectF(r.left() + px.x() * cw, r.top() + px.y() * ch, cw, ch));
    }
    if (highlight_.query >= 0 && highlight_.query < sample_.target_count) {
      const auto px = pixelOf(&sample_.xt[highlight_.query * 2]);
      p.setPen(QPen(QColor(255, 140, 0), 2.5));
      p.drawEllipse(QRectF(r.left() + (px.x() - 0.5) * cw, r.top() + (px.y() - 0.5) * ch, 2 * cw, 2 * ch));
    }
  }
}

void ImageTaskView::mousePressEvent(QMouseEvent* e) {
  for (int i = 0; i < 3; ++i) {
    const auto r = panel(i);
    if (!r.contains(e->position())) continue;
    const int c = int((e->position().x() - r.left()) / r.width() * double(sample_.image_width));
    const int row = int((e->position().y() - r.top()) / r.height() * double(sample_.image_height));
    for (std::int64_t j = 0; j < sample_.target_count; ++j)
      if (pixelOf(&sample_.xt[j * 2]) == QPoint(c, row)) return Q_EMIT querySelected(j);
  }
}

}  // namespace retreever::ui
