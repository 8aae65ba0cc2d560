// The range an axis shows for its data: the data's extent with a margin, also when the extent is
// a single value (a constant series, one point), where QCustomPlot's own rescale leaves a range
// of zero size that later scaling blows up to 1e-50 .. 1e50.
#pragma once

#include "ui/qcp.h"

namespace retreever::ui {

// lo..hi: the data's extent (lo <= hi). Linear: a 6% margin, or +-10% of the value (at least
// +-0.5) when lo == hi. Logarithmic (lo > 0): a factor of 1.3 either side, 2 when lo == hi.
QCPRange padded_range(double lo, double hi, bool logarithmic);

// Sets every axis of `plot` that has data to padded_range of its graphs' extent.
void fit_axes(QCustomPlot* plot);

}  // namespace retreever::ui
