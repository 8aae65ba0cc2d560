// What a chart shows, as plain data: the studio's panels and the report's PNGs describe their
// plots with it and one renderer draws them (ui/chart_view.h, QCustomPlot). Qt-free and
// header-only, so the command-line tool builds its report's charts also where Qt is absent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace retreever {

enum class LineDash { solid, dash, dot, dash_dot };

// A legend with more entries than this is hidden: it would cover the plot.
constexpr int kMaxLegendEntries = 12;

struct ChartSeries {
  std::string label;         // names the series (the legend, readouts); empty: not in the legend
  bool in_legend = true;     // false: named, but left out of the legend (a key entry explains it)
  std::vector<double> x, y;  // same length; NaN/inf points are skipped (they break the line)
  bool line = true;          // connect the points
  bool markers = false;      // a marker at each point (circles; squares for odd series)
  bool rings = false;        // markers as larger open rings: a series that may lie on another's
                             // points leaves them visible inside
  std::vector<std::string> point_labels;  // optional, same length as x: text beside each marker
  std::uint32_t colour = 0;  // 0xRRGGBB; 0 = the next colour of chart_palette
  LineDash dash = LineDash::solid;
  bool right_axis = false;  // read on the right-hand y axis (ChartSpec::y2_label), with its own range
};

struct ChartReference {  // a horizontal line at a published value, dashed, with its label
  std::string label;
  double y = 0;
  std::uint32_t colour = 0x888888;
};

struct ChartSpec {
  std::string title, x_label, y_label;
  std::string y2_label;  // the right-hand y axis, shown when a series is on it (another unit)
  bool log_x = false, log_y = false;  // non-positive values are not drawn on a log axis
  int width = 900, height = 560;      // pixels of an exported PNG
  // The largest value the y quantity can take (100 for an accuracy in %): the axis stops just
  // above it instead of padding into impossible values. NaN: no bound.
  double y_bound = std::numeric_limits<double>::quiet_NaN();
  // The y axis reaches 0 (linear axes): for a quantity read against zero, such as a learning rate
  // that a schedule takes from its peak to 0 (its first steps alone would fill the axis with
  // digits: 0.0005 .. 0.000499998).
  bool y_from_zero = false;
  // A fixed y range (both finite), e.g. -12..108 for accuracies that must stay clickable at 0%.
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
  // The extent an empty chart's axes show (all four finite), so that before any data they read as
  // the quantity's domain (context sizes 1k .. 256k, say) rather than QCustomPlot's 0 .. 5.
  double empty_x_lo = std::numeric_limits<double>::quiet_NaN(), empty_x_hi = empty_x_lo;
  double empty_y_lo = empty_x_lo, empty_y_hi = empty_x_lo;
  // Said in the middle of the frame while no series has a point to draw ("press Train", say).
  std::string empty_text;
  // A legend of the labelled series, in the corner with the least data (hidden above
  // kMaxLegendEntries). A series without points that is in the legend is a key: it explains a
  // colour or a dash.
  bool legend = true;
  std::vector<ChartSeries> series;
  std::vector<ChartReference> references;

  bool empty() const {
    for (const auto& s : series)
      if (!s.x.empty()) return false;
    return true;
  }
};

// Charts of evaluation metrics over runs: accuracy (in %) and log-likelihood are other units, so a
// chart that holds both reads the log-likelihoods on the right-hand axis. add() each run's metric,
// then label() the spec and place() each series.
struct MetricAxes {
  bool accuracy = false, likelihood = false;  // the metrics the chart shows
  void add(bool is_accuracy) { (is_accuracy ? accuracy : likelihood) = true; }
  bool mixed() const { return accuracy && likelihood; }
  void label(ChartSpec& spec) const {
    if (mixed()) spec.y_label = "accuracy %", spec.y2_label = "log-likelihood (right)";
    else if (accuracy || likelihood) spec.y_label = accuracy ? "accuracy %" : "log-likelihood";
    if (accuracy) spec.y_bound = 100;  // the left axis reads accuracies: none above 100 %
  }
  void place(ChartSeries& s, bool is_accuracy) const { s.right_axis = mixed() && !is_accuracy; }
};

// Colour i of the colour-blind-safe palette: run i of the studio and series i of a report chart
// share it, so a colour means one model or run across plots. Past its nine colours come the same
// hues darker, then lighter (a tenth run is not the first one's blue); it wraps after 27.
inline std::uint32_t chart_palette(std::size_t i) {
  static constexpr std::uint32_t kPalette[] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7, 0xE69F00,
                                               0x56B4E9, 0x8C564B, 0x7F7F7F, 0xBCBD22};
  constexpr std::size_t n = sizeof(kPalette) / sizeof(kPalette[0]);
  const std::uint32_t rgb = kPalette[i % n];
  const std::size_t shade = (i / n) % 3;  // 0: as listed, 1: darker, 2: lighter
  if (shade == 0) return rgb;
  std::uint32_t out = 0;
  for (int shift : {16, 8, 0}) {
    const std::uint32_t c = (rgb >> shift) & 0xFF;
    out |= (shade == 1 ? c * 6 / 10 : c + (255 - c) * 45 / 100) << shift;
  }
  return out;
}

}  // namespace retreever
