// The one chart renderer: draws a ChartSpec (ui/chart.h) into a QCustomPlot, for the studio's
// panels and for the report's PNGs, so both look alike and are maintained once.
#pragma once

#include <QList>
#include <string>

#include "ui/chart.h"

class QCustomPlot;
class QCPGraph;

namespace retreever::ui {

// Clears the plot's graphs and items and draws `spec`: title, axis labels and scales, series,
// references, ranges (padded_range, never of zero size; y_bound and y_min/y_max honoured) and a
// legend in a corner where it covers no data, else in a row below the axes. A line of more than
// 6,000 points is drawn from its envelope (each of 2,000 buckets' first, lowest and highest
// points). Returns the graph of each series, in order.
QList<QCPGraph*> draw_chart(QCustomPlot* plot, ChartSpec spec);

// Renders `spec` offscreen at spec.width x spec.height and writes a PNG to PATH.tmp, renamed over
// PATH. Creates an offscreen QApplication when the process has none (the command line). Throws
// std::runtime_error naming the path and the reason; no .tmp file is left behind.
void save_chart_png(const ChartSpec& spec, const std::string& path);

// Which corner of the axis rect a legend box of legend_width x legend_height (shares of the frame)
// covers least of the spec's markers and lines, once the axes span x_lo..x_hi and y_lo..y_hi (data
// units): Qt::AlignTop | Qt::AlignRight and so on. `covered` receives how much data that corner
// still covers (0: none); draw_chart then puts a legend of several entries below the axes instead.
Qt::Alignment emptiest_corner(const ChartSpec& spec, double x_lo, double x_hi, double y_lo, double y_hi,
                              double legend_width = 0.3, double legend_height = 0.3, int* covered = nullptr);

}  // namespace retreever::ui
