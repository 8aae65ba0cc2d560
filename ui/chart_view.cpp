#include "chart_view.h"

#include <QApplication>
#include <QEvent>
#include <QFont>
#include <QFontMetrics>
#include <QPointer>
#include <algorithm>
#include <iterator>
#include <cmath>
#include <stdexcept>

#include "core/files.h"
#include "ui/axis_range.h"
#include "ui/qcp.h"

namespace retreever::ui {

namespace {

QColor colour_of(std::uint32_t rgb) { return QColor(int(rgb >> 16) & 0xFF, int(rgb >> 8) & 0xFF, int(rgb) & 0xFF); }

Qt::PenStyle pen_style(LineDash d) {
  switch (d) {
    case LineDash::dash: return Qt::DashLine;
    case LineDash::dot: return Qt::DotLine;
    case LineDash::dash_dot: return Qt::DashDotLine;
    default: return Qt::SolidLine;
  }
}

// Whether a series has an entry in the legend (a key entry may have no points).
bool listed(const ChartSeries& s) { return !s.label.empty() && s.in_legend; }

bool drawable(double x, double y, const ChartSpec& s) {
  return std::isfinite(x) && std::isfinite(y) && (!s.log_x || x > 0) && (!s.log_y || y > 0);
}

// A line of more points than a chart has pixels is drawn from some of them: per bucket of
// consecutive points its first, its lowest and its highest, in order, and the first point that
// breaks the line, so the curve's envelope, its spikes and its gaps stay as they were. A studio run
// of 100k steps drew 100k points a line and sampled each segment for the legend's place: three
// such runs took the UI thread 140 ms of every 150. A series with markers or labels keeps every
// point (each one shows).
constexpr std::size_t kLineBuckets = 2000;  // a bucket per pixel of a 2000-pixel-wide chart
void thin(ChartSeries& line, const ChartSpec& spec) {
  const std::size_t n = line.x.size();
  // Unequal lengths stay as given: draw_chart refuses them with a message.
  if (line.y.size() != n || line.markers || !line.point_labels.empty() || n <= 3 * kLineBuckets) return;
  std::vector<double> x, y;
  x.reserve(4 * kLineBuckets), y.reserve(4 * kLineBuckets);
  for (std::size_t b = 0; b < kLineBuckets; ++b) {
    const std::size_t from = n * b / kLineBuckets, to = n * (b + 1) / kLineBuckets;
    std::size_t lo = to, hi = to, gap = to;
    for (std::size_t k = from; k < to; ++k) {
      if (!drawable(line.x[k], line.y[k], spec)) {
        if (gap == to) gap = k;
        continue;
      }
      if (lo == to || line.y[k] < line.y[lo]) lo = k;
      if (hi == to || line.y[k] > line.y[hi]) hi = k;
    }
    // The series' last point too: the line ends where the data does.
    std::size_t picked[] = {from, lo, hi, gap, b + 1 == kLineBuckets ? to - 1 : to};
    std::sort(std::begin(picked), std::end(picked));
    for (std::size_t i = 0; i < std::size(picked); ++i)
      if (picked[i] < to && (i == 0 || picked[i] != picked[i - 1])) x.push_back(line.x[picked[i]]), y.push_back(line.y[picked[i]]);
  }
  line.x = std::move(x), line.y = std::move(y);
}

// A log axis labels its decades 0.01, 0.1, 1, 10, 100, 1k, 10k, 100k, 1M, ...: "100000" and
// "1e+06" are hard to tell apart at a glance, and the Scaling view names its sizes 1k .. 1M.
class CompactLogTicker : public QCPAxisTickerLog {
 protected:
  QString getTickLabel(double tick, const QLocale& locale, QChar format, int precision) override {
    static const char* const kSuffixes[] = {"k", "M", "G", "T"};
    double scaled = std::abs(tick);
    int power = -1;
    while (scaled >= 1000 && power < 3) scaled /= 1000, ++power;
    if (power < 0) return QCPAxisTickerLog::getTickLabel(tick, locale, format, precision);
    return QString::number(tick < 0 ? -scaled : scaled, 'g', 3) + kSuffixes[power];
  }
};

void set_scale(QCPAxis* axis, bool log) {
  axis->setScaleType(log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
  if (log) axis->setTicker(QSharedPointer<QCPAxisTickerLog>(new CompactLogTicker));
  else axis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
}

// The plot's title element (row 0 of its layout), made on first use.
QCPTextElement* title_element(QCustomPlot* plot) {
  auto* layout = plot->plotLayout();
  if (layout->rowCount() > 1)
    if (auto* t = qobject_cast<QCPTextElement*>(layout->element(0, 0))) return t;
  layout->insertRow(0);
  QFont font = plot->font();
  font.setPointSize(font.pointSize() + 1);
  font.setBold(true);
  auto* t = new QCPTextElement(plot, QString(), font);
  layout->addElement(0, 0, t);
  return t;
}

// Where a point's label goes: right of the point and above it, unless that covers a label placed
// before; then right below, left above, left below (the first that covers none and stays inside the
// frame). Pixels are estimated from the ranges and the frame's size, as for the legend.
void place_point_labels(const QList<QCPItemText*>& labels, double frame_w, double frame_h) {
  std::vector<QRectF> taken;
  auto fraction = [](const QCPAxis* axis, double v) {
    const auto r = axis->range();
    return axis->scaleType() == QCPAxis::stLogarithmic ? std::log(v / r.lower) / std::log(r.upper / r.lower)
                                                       : (v - r.lower) / r.size();
  };
  for (auto* label : labels) {
    const double px = fraction(label->position->keyAxis(), label->position->key()) * frame_w;
    const double py = (1 - fraction(label->position->valueAxis(), label->position->value())) * frame_h;
    const QFontMetricsF metrics(label->font());
    const double w = metrics.horizontalAdvance(label->text()) + 7, h = metrics.height() + 3;
    struct Place { Qt::Alignment align; QMargins padding; QRectF rect; };
    const Place places[] = {
        {Qt::AlignLeft | Qt::AlignBottom, QMargins(7, 0, 0, 3), QRectF(px, py - h, w, h)},
        {Qt::AlignLeft | Qt::AlignTop, QMargins(7, 3, 0, 0), QRectF(px, py, w, h)},
        {Qt::AlignRight | Qt::AlignBottom, QMargins(0, 0, 7, 3), QRectF(px - w, py - h, w, h)},
        {Qt::AlignRight | Qt::AlignTop, QMargins(0, 3, 7, 0), QRectF(px - w, py, w, h)}};
    const QRectF frame(0, 0, frame_w, frame_h);
    auto free = [&](const QRectF& r) {
      return std::none_of(taken.begin(), taken.end(), [&](const QRectF& t) { return t.intersects(r); });
    };
    const Place* chosen = &places[0];
    for (const auto& place : places)
      if (free(place.rect) && frame.contains(place.rect)) { chosen = &place; break; }
    if (chosen == &places[0] && !free(places[0].rect))  // nothing inside the frame: any free place
      for (const auto& place : places)
        if (free(place.rect)) { chosen = &place; break; }
    label->setPositionAlignment(chosen->align);
    label->setPadding(chosen->padding);
    taken.push_back(chosen->rect);
  }
}

}  // namespace

Qt::Alignment emptiest_corner(const ChartSpec& spec, double x_lo, double x_hi, double y_lo, double y_hi,
                              double legend_width, double legend_height, int* covered) {
  auto unit = [](double v, double lo, double hi, bool log) {
    if (log) v = std::log10(v), lo = std::log10(lo), hi = std::log10(hi);
    return hi > lo ? (v - lo) / (hi - lo) : 0.5;
  };
  const double w = std::clamp(legend_width, 0.05, 1.0), h = std::clamp(legend_height, 0.05, 1.0);
  // What lies under a legend box in each corner: markers, and lines sampled between them. Top-right
  // first, so a tie keeps the conventional place.
  const Qt::Alignment corners[] = {Qt::AlignTop | Qt::AlignRight, Qt::AlignTop | Qt::AlignLeft,
                                   Qt::AlignBottom | Qt::AlignRight, Qt::AlignBottom | Qt::AlignLeft};
  int counts[4] = {0, 0, 0, 0};
  auto count = [&](double u, double v) {
    const bool right = u > 1 - w, left = u < w, top = v > 1 - h, bottom = v < h;
    counts[0] += top && right, counts[1] += top && left, counts[2] += bottom && right, counts[3] += bottom && left;
  };
  for (const auto& s : spec.series) {
    double pu = NAN, pv = NAN;
    for (std::size_t k = 0; k < s.x.size() && k < s.y.size(); ++k) {
      if (!drawable(s.x[k], s.y[k], spec)) {
        pu = pv = NAN;
        continue;
      }
      const double u = unit(s.x[k], x_lo, x_hi, spec.log_x), v = unit(s.y[k], y_lo, y_hi, spec.log_y);
      count(u, v);
      if (s.line && std::isfinite(pu))
        for (int t = 1; t < 8; ++t) count(pu + (u - pu) * t / 8.0, pv + (v - pv) * t / 8.0);
      pu = u, pv = v;
    }
  }
  int best = 0;
  for (int i = 1; i < 4; ++i)
    if (counts[i] < counts[best]) best = i;
  if (covered) *covered = counts[best];
  return corners[best];
}

namespace {

// A legend below the axes: as many entries per row as the widest fits in the plot's width.
int legend_columns(const QCustomPlot* plot) {
  const auto* legend = plot->legend;
  const int width = plot->width() > 50 ? plot->width() : 900;
  const QFontMetrics metrics(legend->font());
  int widest = 0;
  for (int i = 0; i < legend->itemCount(); ++i)
    if (auto* item = qobject_cast<QCPPlottableLegendItem*>(legend->item(i)))
      widest = std::max(widest, metrics.horizontalAdvance(item->plottable()->name()));
  widest += legend->iconSize().width() + legend->iconTextPadding() + 16;
  return std::max(1, (width - 40) / std::max(60, widest + legend->columnSpacing()));
}

void wrap_legend(QCustomPlot* plot) {
  plot->legend->setWrap(legend_columns(plot));
  plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, true);  // rearranges the entries by the new wrap
}

// The legend inside the axis rect (in a corner) or, where every corner would cover data, in a
// row of its own below the axes, its entries side by side.
void place_legend(QCustomPlot* plot, bool outside, Qt::Alignment corner) {
  auto* legend = plot->legend;
  auto* inset = plot->axisRect()->insetLayout();
  auto* layout = plot->plotLayout();
  const bool is_outside = legend->layout() == layout;
  if (outside && !is_outside) {
    inset->take(legend);
    layout->addElement(layout->rowCount(), 0, legend);
    layout->setRowStretchFactor(layout->rowCount() - 1, 0.001);
    legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    legend->setMargins(QMargins(4, 2, 4, 2));
  } else if (!outside && is_outside) {
    layout->take(legend);
    layout->simplify();
    inset->addElement(legend, corner);
    legend->setWrap(0);  // before the fill order, which rearranges the entries by the wrap: one column
    legend->setFillOrder(QCPLayoutGrid::foRowsFirst, true);
  }
  if (outside) {
    wrap_legend(plot);
    layout->setMargins(QMargins(0, 0, 0, 6));  // the legend's bottom border inside the picture
  } else {
    layout->setMargins(QMargins(0, 0, 0, 0));
    inset->setInsetAlignment(0, corner);
  }
}

// Enough significant digits that neighbouring tick labels differ: a narrow range far from zero
// (0.0004999 .. 0.0005) would otherwise print one label twice. QCustomPlot's default is 6.
void set_precision(QCPAxis* axis) {
  const QCPRange r = axis->range();
  const double magnitude = std::max(std::abs(r.lower), std::abs(r.upper));
  int digits = 6;
  if (axis->scaleType() == QCPAxis::stLinear && r.size() > 0 && magnitude > 0)
    digits = std::clamp(int(std::ceil(std::log10(magnitude / (r.size() / 8)))) + 1, 6, 15);
  axis->setNumberPrecision(digits);
}


// Where the legend and the point labels go: both depend on the plot's size as well as its data
// (draw_chart, and again whenever the plot's size changes).
void place_overlays(QCustomPlot* plot, const ChartSpec& spec, const QList<QCPItemText*>& point_labels,
                    bool legend_visible) {
  const QCPRange xr = plot->xAxis->range(), yr = plot->yAxis->range();
  // The legend's share of the frame, from its rows and widest label, with the box's margins, its
  // inset from the axes and a marker's radius: a point just outside the box is still covered by
  // its marker (the report's GP scatter lost CA's point under an estimate from average widths).
  int rows = 0, widest = 0;
  const QFontMetrics metrics(plot->legend->font());
  for (const auto& s : spec.series)
    if (listed(s)) ++rows, widest = std::max(widest, metrics.horizontalAdvance(QString::fromStdString(s.label)));
  const double frame_w = std::max(100, (plot->width() > 50 ? plot->width() : spec.width) - 90);
  const double frame_h = std::max(60, (plot->height() > 50 ? plot->height() : spec.height) - 100);
  constexpr double kSlack = 14 + 12 + 8;  // the box's margins, its inset, a marker's radius (pixels)
  const double legend_w =
      (widest + plot->legend->iconSize().width() + plot->legend->iconTextPadding() + kSlack) / frame_w;
  // An entry's height as the legend lays it out (icon or text, margins): a third more than the font's.
  int row_h = metrics.height();
  for (int i = 0; i < plot->legend->itemCount(); ++i)
    if (auto* item = plot->legend->item(i)) row_h = std::max(row_h, item->minimumOuterSizeHint().height());
  row_h += plot->legend->rowSpacing();
  const double legend_h = (rows * row_h + kSlack) / frame_h;
  place_point_labels(point_labels, frame_w, frame_h);
  // The right axis's points where they appear on screen, in the left axis's units.
  ChartSpec placed;
  const ChartSpec* seen = &spec;
  if (plot->yAxis2->visible() && !spec.log_y) {
    placed = spec;
    const auto y2r = plot->yAxis2->range();
    for (auto& s : placed.series)
      if (s.right_axis)
        for (auto& v : s.y) v = yr.lower + (v - y2r.lower) / y2r.size() * yr.size();
    seen = &placed;
  }
  int covered = 0;
  const auto corner = emptiest_corner(*seen, xr.lower, xr.upper, yr.lower, yr.upper, legend_w, legend_h, &covered);
  // Below the axes where every corner would cover data, while its rows there take at most half the
  // height the axes would have without them. A short plot (the studio's learning rate beside six
  // runs) kept a strip of axes under three rows of legend; there the legend is left out (the Runs
  // list keys the runs' colours, as past six runs). A corner would not hold it either: a box of one
  // entry a row is taller than the rows below.
  bool below = legend_visible && covered > 0 && rows > 1, shown = legend_visible;
  if (below) {
    const int columns = legend_columns(plot);
    const int rows_below = (rows + columns - 1) / columns;
    const double axes_h = (plot->height() > 50 ? plot->height() : spec.height) - 70.0;  // less title, x axis
    if (rows_below * row_h + 12 > 0.5 * axes_h) below = shown = false;
  }
  // A hidden legend still takes its layout row: only a shown one goes below the axes.
  place_legend(plot, below, corner);
  plot->legend->setVisible(shown);
}

// Places a plot's legend and point labels again when its size changes (a chart drawn before its
// window was shown, a window resized): one per plot, holding what the last draw_chart drew.
class ChartRelayout : public QObject {
 public:
  using QObject::QObject;
  void remember(ChartSpec spec, const QList<QCPItemText*>& labels, bool legend_visible) {
    spec_ = std::move(spec);  // empty: no data, nothing to place
    labels_.clear();
    for (auto* l : labels) labels_ << QPointer<QCPItemText>(l);
    legend_visible_ = legend_visible;
  }
  bool eventFilter(QObject* watched, QEvent* event) override {
    auto* plot = qobject_cast<QCustomPlot*>(watched);
    if (plot && event->type() == QEvent::Resize && !spec_.series.empty()) {
      QList<QCPItemText*> labels;
      for (const auto& l : labels_)
        if (l) labels << l;
      place_overlays(plot, spec_, labels, legend_visible_);
      plot->replot(QCustomPlot::rpQueuedReplot);
    }
    return false;
  }

 private:
  ChartSpec spec_;
  QList<QPointer<QCPItemText>> labels_;
  bool legend_visible_ = false;
};

ChartRelayout* relayout_of(QCustomPlot* plot) {
  if (auto* found = dynamic_cast<ChartRelayout*>(plot->findChild<QObject*>("chartRelayout", Qt::FindDirectChildrenOnly)))
    return found;
  auto* relayout = new ChartRelayout(plot);
  relayout->setObjectName("chartRelayout");
  plot->installEventFilter(relayout);
  return relayout;
}

}  // namespace

QList<QCPGraph*> draw_chart(QCustomPlot* plot, ChartSpec spec) {
  for (auto& s : spec.series) thin(s, spec);  // what is drawn, placed around and kept for a relayout
  plot->clearGraphs();
  plot->clearItems();
  if (!spec.title.empty()) title_element(plot)->setText(QString::fromStdString(spec.title));
  plot->xAxis->setLabel(QString::fromStdString(spec.x_label));
  plot->yAxis->setLabel(QString::fromStdString(spec.y_label));
  set_scale(plot->xAxis, spec.log_x);
  set_scale(plot->yAxis, spec.log_y);

  QList<QCPGraph*> graphs;
  QList<QCPItemText*> point_labels;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  double y2lo = INFINITY, y2hi = -INFINITY;  // the right axis's series
  std::size_t next_colour = 0;
  int index = 0;
  for (const auto& s : spec.series) {
    if (s.x.size() != s.y.size())
      throw std::runtime_error("chart '" + spec.title + "', series '" + s.label + "': " +
                               std::to_string(s.x.size()) + " x values but " + std::to_string(s.y.size()) + " y values");
    const QColor colour = colour_of(s.colour != 0 ? s.colour : chart_palette(next_colour++));
    auto* g = plot->addGraph(plot->xAxis, s.right_axis ? plot->yAxis2 : plot->yAxis);
    graphs << g;
    g->setName(QString::fromStdString(s.label));
    g->removeFromLegend();
    if (listed(s)) g->addToLegend();
    g->setPen(QPen(colour, 1.8, pen_style(s.dash)));
    g->setLineStyle(s.line ? QCPGraph::lsLine : QCPGraph::lsNone);
    if (s.markers && s.rings)
      g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(colour, 1.8), Qt::NoBrush, s.line ? 12 : 16));
    else if (s.markers)
      g->setScatterStyle(QCPScatterStyle(index % 2 == 0 ? QCPScatterStyle::ssDisc : QCPScatterStyle::ssSquare,
                                         colour, colour, s.line ? 6 : 9));
    QVector<double> x, y;
    for (std::size_t k = 0; k < s.x.size(); ++k) {
      const bool ok = drawable(s.x[k], s.y[k], spec);
      x << s.x[k];
      y << (ok ? s.y[k] : qQNaN());  // NaN breaks the line
      if (!ok) continue;
      xlo = std::min(xlo, s.x[k]), xhi = std::max(xhi, s.x[k]);
      auto& lo = s.right_axis ? y2lo : ylo;
      auto& hi = s.right_axis ? y2hi : yhi;
      lo = std::min(lo, s.y[k]), hi = std::max(hi, s.y[k]);
      if (k < s.point_labels.size() && !s.point_labels[k].empty()) {
        auto* label = new QCPItemText(plot);
        label->position->setAxes(plot->xAxis, g->valueAxis());
        label->position->setCoords(s.x[k], s.y[k]);
        label->setText(QString::fromStdString(s.point_labels[k]));
        label->setColor(colour);
        label->setClipToAxisRect(true);
        point_labels << label;
      }
    }
    g->setData(x, y, true);
    ++index;
  }
  for (const auto& r : spec.references) {
    if (!std::isfinite(r.y) || (spec.log_y && r.y <= 0)) continue;
    ylo = std::min(ylo, r.y), yhi = std::max(yhi, r.y);
    auto* line = new QCPItemStraightLine(plot);
    line->point1->setCoords(0, r.y);
    line->point2->setCoords(1, r.y);
    line->point1->setTypeX(QCPItemPosition::ptAxisRectRatio);
    line->point2->setTypeX(QCPItemPosition::ptAxisRectRatio);
    line->setPen(QPen(colour_of(r.colour), 1.3, Qt::DashLine));
    auto* label = new QCPItemText(plot);
    label->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
    label->position->setCoords(0.01, r.y);
    label->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
    label->setText(QString::fromStdString(r.label));
    label->setColor(colour_of(r.colour));
  }

  if (xlo > xhi && !spec.empty_text.empty()) {
    auto* note = new QCPItemText(plot);
    note->setObjectName("emptyText");
    note->position->setType(QCPItemPosition::ptAxisRectRatio);
    note->position->setCoords(0.5, 0.5);
    note->setPositionAlignment(Qt::AlignCenter);
    note->setText(QString::fromStdString(spec.empty_text));
    note->setColor(QColor(0x80, 0x80, 0x80));  // a placeholder's grey, on light and dark themes
  }
  if (xlo > xhi && std::isfinite(spec.empty_x_lo) && std::isfinite(spec.empty_x_hi) &&
      std::isfinite(spec.empty_y_lo) && std::isfinite(spec.empty_y_hi)) {  // no data yet: the domain
    plot->xAxis->setRange(padded_range(spec.empty_x_lo, spec.empty_x_hi, spec.log_x));
    plot->yAxis->setRange(padded_range(spec.empty_y_lo, spec.empty_y_hi, spec.log_y));
  }
  // The right axis: shown while a series reads on it, in the left axis's scale, with its own range.
  const bool right = y2lo <= y2hi;
  plot->yAxis2->setVisible(right);
  plot->yAxis2->setTickLabels(right);
  if (right) {
    plot->yAxis2->setLabel(QString::fromStdString(spec.y2_label));
    set_scale(plot->yAxis2, spec.log_y);
    plot->yAxis2->setRange(padded_range(y2lo, y2hi, spec.log_y));
    set_precision(plot->yAxis2);
    if (ylo > yhi) ylo = y2lo, yhi = y2hi;  // every series on the right: the left axis follows
  }
  // The legend's entries (a key entry has no points), shown once some series has points.
  int shown = 0;
  for (const auto& s : spec.series) shown += listed(s);
  const bool legend_visible = spec.legend && !spec.empty() && shown > 0 && shown <= kMaxLegendEntries;
  if (xlo <= xhi) {
    if (spec.y_from_zero && !spec.log_y) ylo = std::min(ylo, 0.0), yhi = std::max(yhi, 0.0);
    const QCPRange xr = padded_range(xlo, xhi, spec.log_x);
    QCPRange yr = padded_range(ylo, yhi, spec.log_y);
    if (std::isfinite(spec.y_bound) && !spec.log_y && yr.upper > spec.y_bound) {
      const double room = 0.03 * (yr.upper - yr.lower);
      yr.upper = std::max(spec.y_bound + room, yr.lower + room);
    }
    if (std::isfinite(spec.y_min) && std::isfinite(spec.y_max) && spec.y_min < spec.y_max)
      yr = QCPRange(spec.y_min, spec.y_max);
    plot->xAxis->setRange(xr);
    plot->yAxis->setRange(yr);
    set_precision(plot->xAxis), set_precision(plot->yAxis);
    place_overlays(plot, spec, point_labels, legend_visible);  // shows or hides the legend too
  } else {
    plot->legend->setVisible(legend_visible);
  }
  relayout_of(plot)->remember(xlo <= xhi ? std::move(spec) : ChartSpec{}, point_labels, legend_visible);
  return graphs;
}

void save_chart_png(const ChartSpec& spec, const std::string& path) {
  if (spec.width < 16 || spec.height < 16 || spec.width > 20000 || spec.height > 20000)
    throw std::runtime_error("cannot draw " + path + ": size " + std::to_string(spec.width) + "x" +
                             std::to_string(spec.height) + " pixels is outside 16..20000");
  if (spec.empty()) throw std::runtime_error("cannot draw " + path + ": the chart '" + spec.title + "' has no data");
  if (!QApplication::instance()) {
    // The command line draws without a display: Qt's offscreen platform, made once, kept.
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
    static int argc = 1;
    static char name[] = "retreever";
    static char* argv[] = {name, nullptr};
    // Without a login session (root, CI) Qt warns that XDG_RUNTIME_DIR is unset and uses a
    // folder of its own; the command line's output is no place for that line.
    static QtMessageHandler previous = nullptr;
    previous = qInstallMessageHandler([](QtMsgType type, const QMessageLogContext& context, const QString& message) {
      if (!message.startsWith(QLatin1String("QStandardPaths: XDG_RUNTIME_DIR"))) previous(type, context, message);
    });
    static auto* app = new QApplication(argc, argv);
    (void)app;
    qInstallMessageHandler(previous);
  } else if (!qobject_cast<QApplication*>(QCoreApplication::instance())) {
    throw std::runtime_error("cannot draw " + path + ": charts need a QApplication, this process has a QCoreApplication");
  }
  QCustomPlot plot;
  plot.resize(spec.width, spec.height);
  plot.setAntialiasedElements(QCP::aeAll);
  draw_chart(&plot, spec);
  write_atomically(path, [&](const std::string& tmp) {  // core/files.h: PATH replaced in one step
    if (!plot.savePng(QString::fromStdString(tmp), spec.width, spec.height, 1.0, -1))
      throw std::runtime_error("cannot write " + path + ": the folder is missing or not writable");
  });
}

}  // namespace retreever::ui
