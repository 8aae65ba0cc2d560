#include "axis_range.h"

#include <algorithm>
#include <cmath>

namespace retreever::ui {

QCPRange padded_range(double lo, double hi, bool logarithmic) {
  if (logarithmic && lo > 0) {
    const double factor = hi > lo * 1.0001 ? 1.3 : 2.0;
    return QCPRange(lo / factor, hi * factor);
  }
  if (hi - lo > 1e-12 * std::max(1.0, std::abs(hi))) {
    const double margin = 0.06 * (hi - lo);
    return QCPRange(lo - margin, hi + margin);
  }
  const double half = std::max(0.5, 0.1 * std::abs(lo));
  return QCPRange(lo - half, hi + half);
}

void fit_axes(QCustomPlot* plot) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  const bool xlog = plot->xAxis->scaleType() == QCPAxis::stLogarithmic;
  const bool ylog = plot->yAxis->scaleType() == QCPAxis::stLogarithmic;
  for (int i = 0; i < plot->graphCount(); ++i) {
    for (const auto& d : *plot->graph(i)->data()) {
      if (!std::isfinite(d.key) || !std::isfinite(d.value)) continue;
      if (xlog && d.key <= 0) continue;
      if (ylog && d.value <= 0) continue;
      xlo = std::min(xlo, d.key), xhi = std::max(xhi, d.key);
      ylo = std::min(ylo, d.value), yhi = std::max(yhi, d.value);
    }
  }
  if (xlo > xhi) return;  // no data: leave the axes as they are
  plot->xAxis->setRange(padded_range(xlo, xhi, xlog));
  plot->yAxis->setRange(padded_range(ylo, yhi, ylog));
}

}  // namespace retreever::ui
