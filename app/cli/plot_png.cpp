#include "plot_png.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace retreever::cli {
namespace {

#include "font_fixed.inc"

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Okabe-Ito colours (safe for colour-blind readers); its yellow is left out, it vanishes on white.
constexpr std::uint32_t kPalette[] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7,
                                      0xE69F00, 0x56B4E9, 0x000000};
constexpr std::uint32_t kInk = 0x222222;
constexpr std::uint32_t kFrameColour = 0x444444;
constexpr std::uint32_t kGridColour = 0xE4E4E4;
constexpr std::uint32_t kMinorGridColour = 0xF2F2F2;
constexpr std::uint32_t kLegendBorder = 0xC4C4C4;
constexpr std::uint32_t kWhite = 0xFFFFFF;

constexpr int kTickLength = 5;
constexpr int kDigitMiddleRow = 6;  // the row of the font cell that digits are centred on
constexpr double kLineThickness = 2.0;
constexpr double kMarkerRadius = 3.5;

int channel(std::uint32_t colour, int shift) {
  return int((colour >> shift) & 0xFF);
}

// A darker shade of colour for text, which needs more contrast than a 2 px line.
std::uint32_t darker(std::uint32_t colour, double amount) {
  std::uint32_t out = 0;
  for (int shift : {16, 8, 0})
    out |= std::uint32_t(std::lround(channel(colour, shift) * (1 - amount))) << shift;
  return out;
}

// Converts a pixel coordinate to int without overflow for far-off, infinite or NaN values.
int clamp_to_int(double v) {
  return std::isnan(v) ? 0 : int(std::clamp(v, -1e8, 1e8));
}

// Calls f for each glyph of a UTF-8 string: printable ASCII as is, any other code point as '?'.
template <typename F>
void for_each_glyph(const std::string& s, F&& f) {
  for (unsigned char b : s) {
    if (b >= 0x80 && b < 0xC0) continue;  // a continuation byte: its code point was already drawn
    f(b >= kFontFirstChar && b <= kFontLastChar ? char(b) : '?');
  }
}

double distance_to_segment(double px, double py, double ax, double ay, double bx, double by) {
  const double dx = bx - ax, dy = by - ay;
  const double length2 = dx * dx + dy * dy;
  const double t =
      length2 > 0 ? std::clamp(((px - ax) * dx + (py - ay) * dy) / length2, 0.0, 1.0) : 0.0;
  return std::hypot(px - (ax + t * dx), py - (ay + t * dy));
}

bool finite_point(double x, double y) {
  return std::isfinite(x) && std::isfinite(y);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Canvas

Canvas::Canvas(int width, int height, std::uint32_t background)
    : width_(width), height_(height), clip_x1_(width), clip_y1_(height) {
  if (width <= 0 || height <= 0 || width > 20000 || height > 20000)
    throw std::invalid_argument("canvas size " + std::to_string(width) + "x" +
                                std::to_string(height) + " outside 1..20000");
  rgb_.resize(std::size_t(width) * std::size_t(height) * 3);
  for (std::size_t i = 0; i < rgb_.size(); i += 3) {
    rgb_[i] = (unsigned char)channel(background, 16);
    rgb_[i + 1] = (unsigned char)channel(background, 8);
    rgb_[i + 2] = (unsigned char)channel(background, 0);
  }
}

std::uint32_t Canvas::pixel(int x, int y) const {
  if (x < 0 || y < 0 || x >= width_ || y >= height_)
    throw std::out_of_range("pixel (" + std::to_string(x) + ", " + std::to_string(y) +
                            ") outside the canvas");
  const unsigned char* p = &rgb_[(std::size_t(y) * width_ + x) * 3];
  return (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | p[2];
}

void Canvas::set_clip(int x0, int y0, int x1, int y1) {
  clip_x0_ = std::clamp(x0, 0, width_);
  clip_y0_ = std::clamp(y0, 0, height_);
  clip_x1_ = std::clamp(x1, clip_x0_, width_);
  clip_y1_ = std::clamp(y1, clip_y0_, height_);
}

void Canvas::reset_clip() {
  set_clip(0, 0, width_, height_);
}

void Canvas::set_pixel(int x, int y, std::uint32_t colour) {
  blend_pixel(x, y, colour, 1.0);
}

void Canvas::blend_pixel(int x, int y, std::uint32_t colour, double alpha) {
  if (outside_clip(x, y) || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.0);
  unsigned char* p = &rgb_[(std::size_t(y) * width_ + x) * 3];
  const int source[3] = {channel(colour, 16), channel(colour, 8), channel(colour, 0)};
  for (int k = 0; k < 3; ++k) p[k] = (unsigned char)std::lround(p[k] + (source[k] - p[k]) * alpha);
}

void Canvas::fill_rect(int x, int y, int w, int h, std::uint32_t colour) {
  const int x0 = std::max(x, clip_x0_), x1 = std::min(x + std::max(w, 0), clip_x1_);
  const int y0 = std::max(y, clip_y0_), y1 = std::min(y + std::max(h, 0), clip_y1_);
  for (int row = y0; row < y1; ++row)
    for (int col = x0; col < x1; ++col) set_pixel(col, row, colour);
}

void Canvas::rect_outline(int x, int y, int w, int h, std::uint32_t colour) {
  fill_rect(x, y, w, 1, colour);
  fill_rect(x, y + h - 1, w, 1, colour);
  fill_rect(x, y, 1, h, colour);
  fill_rect(x + w - 1, y, 1, h, colour);
}

void Canvas::line(double x0, double y0, double x1, double y1, std::uint32_t colour,
                  double thickness) {
  polyline({x0, x1}, {y0, y1}, colour, thickness);
}

void Canvas::polyline(const std::vector<double>& xs, const std::vector<double>& ys,
                      std::uint32_t colour, double thickness) {
  const std::size_t n = std::min(xs.size(), ys.size());
  const double half = std::max(thickness, 0.5) / 2, reach = half + 1;
  double min_x = kInf, min_y = kInf, max_x = -kInf, max_y = -kInf;
  for (std::size_t i = 0; i < n; ++i) {
    if (!finite_point(xs[i], ys[i])) continue;
    min_x = std::min(min_x, xs[i]), max_x = std::max(max_x, xs[i]);
    min_y = std::min(min_y, ys[i]), max_y = std::max(max_y, ys[i]);
  }
  // Coverage is collected over the clipped bounding box, then blended once per pixel.
  const int x0 = std::max(clip_x0_, clamp_to_int(std::floor(min_x - reach)));
  const int x1 = std::min(clip_x1_, clamp_to_int(std::ceil(max_x + reach)) + 1);
  const int y0 = std::max(clip_y0_, clamp_to_int(std::floor(min_y - reach)));
  const int y1 = std::min(clip_y1_, clamp_to_int(std::ceil(max_y + reach)) + 1);
  if (x0 >= x1 || y0 >= y1) return;
  const int w = x1 - x0;
  std::vector<float> coverage(std::size_t(w) * std::size_t(y1 - y0), 0.0f);
  auto stamp = [&](double ax, double ay, double bx, double by) {
    const int sx0 = std::max(x0, clamp_to_int(std::floor(std::min(ax, bx) - reach)));
    const int sx1 = std::min(x1, clamp_to_int(std::ceil(std::max(ax, bx) + reach)) + 1);
    const int sy0 = std::max(y0, clamp_to_int(std::floor(std::min(ay, by) - reach)));
    const int sy1 = std::min(y1, clamp_to_int(std::ceil(std::max(ay, by) + reach)) + 1);
    for (int y = sy0; y < sy1; ++y)
      for (int x = sx0; x < sx1; ++x) {
        const double d = distance_to_segment(x, y, ax, ay, bx, by);
        float& c = coverage[std::size_t(y - y0) * w + (x - x0)];
        c = std::max(c, float(std::clamp(half + 0.5 - d, 0.0, 1.0)));
      }
  };
  if (n == 1 && finite_point(xs[0], ys[0])) stamp(xs[0], ys[0], xs[0], ys[0]);
  for (std::size_t i = 1; i < n; ++i)
    if (finite_point(xs[i - 1], ys[i - 1]) && finite_point(xs[i], ys[i]))
      stamp(xs[i - 1], ys[i - 1], xs[i], ys[i]);
  blend_coverage(coverage, x0, y0, w, colour);
}

void Canvas::blend_coverage(const std::vector<float>& coverage, int x0, int y0, int w,
                            std::uint32_t colour) {
  for (std::size_t i = 0; i < coverage.size(); ++i)
    if (coverage[i] > 0) blend_pixel(x0 + int(i % w), y0 + int(i / w), colour, coverage[i]);
}

void Canvas::dashed_line(double x0, double y0, double x1, double y1, std::uint32_t colour,
                         double thickness, double dash, double gap) {
  const double length = std::hypot(x1 - x0, y1 - y0);
  if (!std::isfinite(length) || length <= 0 || !(dash > 0) || !(gap >= 0)) return;
  if (length / (dash + gap) > 1e5) return;  // a dash pattern finer than any canvas shows
  const double ux = (x1 - x0) / length, uy = (y1 - y0) / length;
  for (double s = 0; s < length; s += dash + gap) {
    const double e = std::min(s + dash, length);
    line(x0 + ux * s, y0 + uy * s, x0 + ux * e, y0 + uy * e, colour, thickness);
  }
}

void Canvas::circle(double cx, double cy, double radius, std::uint32_t colour) {
  if (!finite_point(cx, cy) || !(radius > 0)) return;
  const int x0 = clamp_to_int(std::floor(cx - radius - 1)), x1 = clamp_to_int(cx + radius + 1);
  const int y0 = clamp_to_int(std::floor(cy - radius - 1)), y1 = clamp_to_int(cy + radius + 1);
  for (int y = std::max(y0, clip_y0_); y <= std::min(y1, clip_y1_ - 1); ++y)
    for (int x = std::max(x0, clip_x0_); x <= std::min(x1, clip_x1_ - 1); ++x)
      blend_pixel(x, y, colour, radius + 0.5 - std::hypot(x - cx, y - cy));
}

void Canvas::square(double cx, double cy, double half_side, std::uint32_t colour) {
  if (!finite_point(cx, cy) || !(half_side > 0)) return;
  const int x0 = clamp_to_int(std::floor(cx - half_side - 1)),
            x1 = clamp_to_int(cx + half_side + 1);
  const int y0 = clamp_to_int(std::floor(cy - half_side - 1)),
            y1 = clamp_to_int(cy + half_side + 1);
  for (int y = std::max(y0, clip_y0_); y <= std::min(y1, clip_y1_ - 1); ++y)
    for (int x = std::max(x0, clip_x0_); x <= std::min(x1, clip_x1_ - 1); ++x) {
      const double cover_x = std::clamp(half_side + 0.5 - std::abs(x - cx), 0.0, 1.0);
      const double cover_y = std::clamp(half_side + 0.5 - std::abs(y - cy), 0.0, 1.0);
      blend_pixel(x, y, colour, cover_x * cover_y);
    }
}

void Canvas::glyph(int x, int y, char c, std::uint32_t colour, int scale, bool rotated) {
  const unsigned char* rows = kFontGlyphs[c - kFontFirstChar];
  for (int row = 0; row < kFontHeight; ++row)
    for (int col = 0; col < kFontWidth; ++col) {
      if (!((rows[row] >> (kFontWidth - 1 - col)) & 1)) continue;
      if (rotated)  // counter-clockwise: the glyph's top goes left, its right side goes up
        set_pixel(x + row, y + kFontWidth - 1 - col, colour);
      else
        fill_rect(x + col * scale, y + row * scale, scale, scale, colour);
    }
}

void Canvas::text(int x, int y, const std::string& s, std::uint32_t colour, int scale) {
  scale = std::max(scale, 1);
  int pen = x;
  for_each_glyph(s, [&](char c) {
    glyph(pen, y, c, colour, scale, false);
    pen += kFontWidth * scale;
  });
}

void Canvas::text_vertical(int x, int y, const std::string& s, std::uint32_t colour) {
  int pen = y + text_width(s);  // the first glyph sits at the bottom of the box
  for_each_glyph(s, [&](char c) {
    pen -= kFontWidth;
    glyph(x, pen, c, colour, 1, true);
  });
}

int Canvas::text_width(const std::string& s, int scale) {
  int glyphs = 0;
  for_each_glyph(s, [&](char) { ++glyphs; });
  return glyphs * kFontWidth * std::max(scale, 1);
}

int Canvas::text_height(int scale) {
  return kFontHeight * std::max(scale, 1);
}

// ---------------------------------------------------------------------------------------------
// PNG

namespace {

void append_u32(std::vector<unsigned char>& out, std::uint32_t v) {
  for (int shift : {24, 16, 8, 0}) out.push_back((unsigned char)((v >> shift) & 0xFF));
}

// A chunk: length, type, data, and the CRC of type and data.
void append_chunk(std::vector<unsigned char>& out, const char* type,
                  const std::vector<unsigned char>& data) {
  append_u32(out, std::uint32_t(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), &out[start], uInt(out.size() - start));
  append_u32(out, std::uint32_t(crc));
}

}  // namespace

std::vector<unsigned char> encode_png(const Canvas& canvas) {
  const std::size_t stride = std::size_t(canvas.width()) * 3;
  std::vector<unsigned char> raw;
  raw.reserve((stride + 1) * canvas.height());
  for (int y = 0; y < canvas.height(); ++y) {
    raw.push_back(0);  // filter type None: plots are mostly flat colour and deflate well as is
    const auto row = canvas.rgb().begin() + std::ptrdiff_t(y * stride);
    raw.insert(raw.end(), row, row + std::ptrdiff_t(stride));
  }
  uLongf compressed_size = compressBound(uLong(raw.size()));
  std::vector<unsigned char> idat(compressed_size);
  if (compress2(idat.data(), &compressed_size, raw.data(), uLong(raw.size()), 9) != Z_OK)
    throw std::runtime_error("zlib could not compress the image");
  idat.resize(compressed_size);

  std::vector<unsigned char> ihdr;
  append_u32(ihdr, std::uint32_t(canvas.width()));
  append_u32(ihdr, std::uint32_t(canvas.height()));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, adaptive filters, no interlace

  std::vector<unsigned char> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  append_chunk(png, "IHDR", ihdr);
  append_chunk(png, "IDAT", idat);
  append_chunk(png, "IEND", {});
  return png;
}

// ---------------------------------------------------------------------------------------------
// Plot

namespace {

// Axis units: the value itself, or its log10 on a log axis; NaN where the axis cannot show it.
double to_axis_units(double v, bool log) {
  if (!std::isfinite(v) || (log && v <= 0)) return kNaN;
  return log ? std::log10(v) : v;
}

struct Extent {
  double lo = kInf, hi = -kInf;
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// The shown span in axis units: the data widened to a non-zero span, plus 5% on each side.
Extent padded_span(Extent data, bool log) {
  if (data.empty()) data = {0.0, 1.0};  // only reference lines on this axis: any unit span
  // Near log10 = 0 a relative test would pass spans of values that doubles cannot tell apart.
  const double scale = std::max({std::abs(data.lo), std::abs(data.hi), log ? 1.0 : 0.0});
  if (data.hi - data.lo <= 1e-9 * scale) {  // one value: centre it with a sensible span
    const double centre = (data.lo + data.hi) / 2;
    const double half = log ? 0.5 : (centre == 0 ? 1.0 : std::abs(centre) * 0.1);
    data = {centre - half, centre + half};
  }
  const double pad = 0.05 * (data.hi - data.lo);
  return {data.lo - pad, data.hi + pad};
}

struct Tick {
  double at;          // axis units
  std::string label;  // empty: a minor tick, grid line only
};

// Rewrites printf's scientific notation ("2.50e+06", "1e-05") to the compact "2.5e6", "1e-5".
std::string compact_exponent(std::string s) {
  const auto e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mantissa = s.substr(0, e);
  if (mantissa.find('.') != std::string::npos) {
    mantissa.erase(mantissa.find_last_not_of('0') + 1);
    if (mantissa.back() == '.') mantissa.pop_back();
  }
  std::string digits = s.substr(e + 1);
  const bool negative = !digits.empty() && digits[0] == '-';
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.erase(0, 1);
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size() - 1));
  return mantissa + "e" + (negative ? "-" : "") + digits;
}

std::string format_general(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return compact_exponent(buf);
}

// A tick label with as many decimals as the step needs, so labels of one axis line up.
std::string format_tick(double v, double step, double max_abs) {
  char buf[48];
  const int step_exponent = int(std::floor(std::log10(step) + 1e-9));
  if (max_abs >= 1e6 || (max_abs > 0 && max_abs < 1e-3)) {  // fixed would need many digits
    const int max_exponent = int(std::floor(std::log10(max_abs) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::max(0, max_exponent - step_exponent), v);
    return v == 0 ? "0" : compact_exponent(buf);
  }
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -step_exponent), v);
  return buf;
}

// The smallest 1, 2 or 5 x 10^k step that splits span into at most max_ticks intervals.
double nice_step(double span, int max_ticks) {
  const double raw = span / std::max(max_ticks, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * magnitude >= raw * (1 - 1e-9)) return m * magnitude;
  return 10 * magnitude;
}

std::vector<Tick> linear_ticks(double lo, double hi, int max_ticks) {
  const double step = nice_step(hi - lo, max_ticks);
  const double first = std::ceil(lo / step - 1e-9), last = std::floor(hi / step + 1e-9);
  const double max_abs = std::max(std::abs(first * step), std::abs(last * step));
  std::vector<Tick> ticks;
  if (!(last - first >= 0 && last - first <= 1000)) return ticks;  // a span below double precision
  for (int k = 0; k <= int(last - first); ++k) {
    double v = (first + k) * step;
    if (std::abs(v) < step * 1e-6) v = 0;  // no "-0" or "1e-17" at zero
    ticks.push_back({v, format_tick(v, step, max_abs)});
  }
  return ticks;
}

// Ticks at m x 10^d for the given multipliers m, inside [lo, hi] (axis units are decades).
std::vector<Tick> multiple_ticks(double lo, double hi, const std::vector<int>& multipliers) {
  std::vector<Tick> ticks;
  for (int d = int(std::floor(lo)); d <= int(std::ceil(hi)); ++d)
    for (int m : multipliers) {
      const double at = d + std::log10(double(m));
      if (at >= lo - 1e-9 && at <= hi + 1e-9)
        ticks.push_back({at, format_general(m * std::pow(10.0, d))});
    }
  return ticks;
}

std::vector<Tick> log_ticks(double lo, double hi, int max_ticks, double pixels_per_decade) {
  const int first = int(std::ceil(lo - 1e-9)), last = int(std::floor(hi + 1e-9));
  if (last - first + 1 >= 2) {  // labelled decades, every k-th one when they are crowded
    int every = 1;
    while ((last - first) / every + 1 > max_ticks) ++every;
    std::vector<Tick> ticks;
    const bool scientific = first < -3 || last > 4;  // "1e-6 .. 1e2", not "1e-6 .. 0.01 .. 100"
    for (int d = first; d <= last; ++d)
      if (((d % every) + every) % every == 0)
        ticks.push_back(
            {double(d), scientific ? "1e" + std::to_string(d) : format_general(std::pow(10.0, d))});
    if (every == 1 && pixels_per_decade >= 40)
      for (Tick minor : multiple_ticks(lo, hi, {2, 3, 4, 5, 6, 7, 8, 9}))
        ticks.push_back({minor.at, ""});
    return ticks;
  }
  // Less than two decades shown: label 1-2-5 multiples, or every multiple, or fall back to
  // linear steps in data values when even those are too few.
  for (const std::vector<int>& multipliers :
       {std::vector<int>{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    auto ticks = multiple_ticks(lo, hi, multipliers);
    if (ticks.size() >= 3 && int(ticks.size()) <= max_ticks) return ticks;
  }
  auto ticks = linear_ticks(std::pow(10.0, lo), std::pow(10.0, hi), max_ticks);
  std::vector<Tick> positive;
  for (Tick t : ticks)
    if (t.at > 0) positive.push_back({std::log10(t.at), t.label});
  return positive;
}

std::vector<Tick> axis_ticks(Extent span, bool log, int max_ticks, double length_px) {
  max_ticks = std::max(max_ticks, 2);
  return log ? log_ticks(span.lo, span.hi, max_ticks, length_px / (span.hi - span.lo))
             : linear_ticks(span.lo, span.hi, max_ticks);
}

// Whether the tick labels keep min_gap pixels apart; label_size measures along the axis.
template <typename Size>
bool labels_fit(const std::vector<Tick>& ticks, Extent span, double length_px, Size label_size,
                int min_gap) {
  double previous_end = -kInf;
  for (const Tick& t : ticks) {
    if (t.label.empty()) continue;
    const double centre = (t.at - span.lo) / (span.hi - span.lo) * length_px;
    const double half = label_size(t.label) / 2.0;
    if (centre - half < previous_end + min_gap) return false;
    previous_end = centre + half;
  }
  return true;
}

int labelled_count(const std::vector<Tick>& ticks) {
  return int(
      std::count_if(ticks.begin(), ticks.end(), [](const Tick& t) { return !t.label.empty(); }));
}

// About max_ticks ticks whose labels do not collide: fewer when they would, more when fewer
// than three labels would show and more fit.
template <typename Size>
std::vector<Tick> spaced_ticks(Extent span, bool log, double length_px, int max_ticks,
                               Size label_size, int min_gap) {
  auto fits = [&](const std::vector<Tick>& t) {
    return labels_fit(t, span, length_px, label_size, min_gap);
  };
  max_ticks = std::max(max_ticks, 2);
  auto ticks = axis_ticks(span, log, max_ticks, length_px);
  while (!fits(ticks) && max_ticks > 2) ticks = axis_ticks(span, log, --max_ticks, length_px);
  for (int more = max_ticks + 1; labelled_count(ticks) < 3 && more <= max_ticks + 4; ++more) {
    auto denser = axis_ticks(span, log, more, length_px);
    if (!fits(denser)) break;
    ticks = denser;
  }
  return ticks;
}

struct LegendEntry {
  std::string label;
  std::uint32_t colour;
  bool line, markers;
  int marker_shape;
};

struct Layout {
  PlotFrame frame;
  Extent x_span, y_span;  // axis units
  std::vector<Tick> x_ticks, y_ticks;
};

// The series' colours: explicit ones as given, the rest from the palette, skipping colours
// that are already taken explicitly.
std::vector<std::uint32_t> series_colours(const PlotSpec& spec) {
  std::vector<std::uint32_t> explicit_colours, colours;
  for (const auto& s : spec.series)
    if (s.colour != 0) explicit_colours.push_back(s.colour);
  auto taken = [&](std::uint32_t c) {
    return std::find(explicit_colours.begin(), explicit_colours.end(), c) != explicit_colours.end();
  };
  const std::size_t palette_size = std::size(kPalette);
  std::size_t next = 0;
  for (const auto& s : spec.series) {
    if (s.colour != 0) {
      colours.push_back(s.colour);
      continue;
    }
    std::uint32_t colour = kPalette[next % palette_size];
    for (std::size_t tries = 1; tries < palette_size && taken(colour); ++tries)
      colour = kPalette[++next % palette_size];
    ++next;
    colours.push_back(colour);
  }
  return colours;
}

std::string series_name(const PlotSeries& s, std::size_t index) {
  return "series " + std::to_string(index) + (s.label.empty() ? "" : " '" + s.label + "'");
}

// Throws the reason the spec cannot be drawn.
void check_spec(const PlotSpec& spec) {
  if (spec.width < 200 || spec.height < 150 || spec.width > 10000 || spec.height > 10000)
    throw std::runtime_error("plot size " + std::to_string(spec.width) + "x" +
                             std::to_string(spec.height) +
                             " outside 200x150 .. 10000x10000 pixels");
  std::size_t drawable = 0;
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    if (s.x.size() != s.y.size())
      throw std::runtime_error(series_name(s, i) + " has " + std::to_string(s.x.size()) +
                               " x values but " + std::to_string(s.y.size()) + " y values");
    if (!s.point_labels.empty() && s.point_labels.size() != s.x.size())
      throw std::runtime_error(series_name(s, i) + " has " + std::to_string(s.x.size()) +
                               " points but " + std::to_string(s.point_labels.size()) +
                               " point labels");
    for (std::size_t k = 0; k < s.x.size(); ++k)
      drawable +=
          finite_point(to_axis_units(s.x[k], spec.log_x), to_axis_units(s.y[k], spec.log_y));
  }
  for (const auto& r : spec.references) drawable += std::isfinite(to_axis_units(r.y, spec.log_y));
  if (drawable == 0)
    throw std::runtime_error(std::string("empty plot: no finite point or reference line to draw") +
                             (spec.log_x || spec.log_y ? " (a log axis skips values <= 0)" : ""));
}

// The data extents in axis units; references widen only the y axis.
std::pair<Extent, Extent> data_extents(const PlotSpec& spec) {
  Extent x, y;
  for (const auto& s : spec.series)
    for (std::size_t k = 0; k < s.x.size(); ++k) {
      const double ax = to_axis_units(s.x[k], spec.log_x), ay = to_axis_units(s.y[k], spec.log_y);
      if (finite_point(ax, ay)) x.add(ax), y.add(ay);
    }
  for (const auto& r : spec.references) y.add(to_axis_units(r.y, spec.log_y));
  return {x, y};
}

int widest_label(const std::vector<Tick>& ticks) {
  int widest = 0;
  for (const Tick& t : ticks) widest = std::max(widest, Canvas::text_width(t.label));
  return widest;
}

double from_axis_units(double v, bool log) {
  return log ? std::pow(10.0, v) : v;
}

// Margins follow from the text around the frame; the y tick labels set the left margin and
// the last x tick label the right one.
Layout compute_layout(const PlotSpec& spec) {
  const int text_h = Canvas::text_height();
  Layout layout;
  auto [x_data, y_data] = data_extents(spec);
  layout.x_span = padded_span(x_data, spec.log_x);
  layout.y_span = padded_span(y_data, spec.log_y);
  if (std::isfinite(spec.y_bound) && !spec.log_y) {
    const double room = 0.02 * (layout.y_span.hi - layout.y_span.lo);
    layout.y_span.hi = std::max(std::min(layout.y_span.hi, spec.y_bound + room), layout.y_span.lo + room);
  }
  for (const Extent& span : {layout.x_span, layout.y_span})
    if (!std::isfinite(span.hi - span.lo))
      throw std::runtime_error("data range too wide to plot (values near the double limit)");

  PlotFrame& f = layout.frame;
  f.log_x = spec.log_x, f.log_y = spec.log_y;
  f.top = spec.title.empty() ? 16 : 14 + Canvas::text_height(2) + 12;
  const int below_frame = kTickLength + 5 + text_h + (spec.x_label.empty() ? 0 : 10 + text_h) + 12;
  f.bottom = spec.height - 1 - below_frame;

  const double plot_h = f.bottom - f.top;
  layout.y_ticks = spaced_ticks(
      layout.y_span, spec.log_y, plot_h, int(plot_h / 45),
      [&](const std::string&) { return text_h; }, 8);
  f.left = 12 + (spec.y_label.empty() ? 0 : text_h + 10) + widest_label(layout.y_ticks) + 6 +
           kTickLength;
  int right_margin = 24;
  for (int pass = 0; pass < 2; ++pass) {  // the last label may need a wider right margin
    f.right = spec.width - 1 - right_margin;
    const double plot_w = f.right - f.left;
    layout.x_ticks = spaced_ticks(
        layout.x_span, spec.log_x, plot_w, int(plot_w / 80),
        [](const std::string& s) { return Canvas::text_width(s); }, 14);
    for (const Tick& t : layout.x_ticks) {
      const double centre = (t.at - layout.x_span.lo) / (layout.x_span.hi - layout.x_span.lo);
      const double overhang = (centre - 1) * plot_w + Canvas::text_width(t.label) / 2.0;
      right_margin = std::max(right_margin, int(std::ceil(overhang)) + 8);
    }
  }
  f.x_min = from_axis_units(layout.x_span.lo, spec.log_x);
  f.x_max = from_axis_units(layout.x_span.hi, spec.log_x);
  f.y_min = from_axis_units(layout.y_span.lo, spec.log_y);
  f.y_max = from_axis_units(layout.y_span.hi, spec.log_y);
  return layout;
}

// A label readable over grid lines and data: a white outline, then the text.
void text_with_halo(Canvas& canvas, int x, int y, const std::string& s, std::uint32_t colour) {
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx)
      if (dx != 0 || dy != 0) canvas.text(x + dx, y + dy, s, kWhite);
  canvas.text(x, y, s, colour);
}

void draw_marker(Canvas& canvas, double x, double y, int shape, std::uint32_t colour) {
  if (shape % 2 == 0)
    canvas.circle(x, y, kMarkerRadius, colour);
  else
    canvas.square(x, y, kMarkerRadius - 0.5, colour);
}

void draw_grid(Canvas& canvas, const Layout& layout) {
  const PlotFrame& f = layout.frame;
  for (bool minor : {true, false}) {  // major lines go over minor ones
    const std::uint32_t colour = minor ? kMinorGridColour : kGridColour;
    for (const Tick& t : layout.x_ticks)
      if (t.label.empty() == minor) {
        const int x = int(std::lround(f.x_to_pixel(from_axis_units(t.at, f.log_x))));
        canvas.fill_rect(x, f.top + 1, 1, f.bottom - f.top - 1, colour);
      }
    for (const Tick& t : layout.y_ticks)
      if (t.label.empty() == minor) {
        const int y = int(std::lround(f.y_to_pixel(from_axis_units(t.at, f.log_y))));
        canvas.fill_rect(f.left + 1, y, f.right - f.left - 1, 1, colour);
      }
  }
}

void draw_axes(Canvas& canvas, const Layout& layout) {
  const PlotFrame& f = layout.frame;
  canvas.rect_outline(f.left, f.top, f.right - f.left + 1, f.bottom - f.top + 1, kFrameColour);
  for (const Tick& t : layout.x_ticks) {
    if (t.label.empty()) continue;
    const int x = int(std::lround(f.x_to_pixel(from_axis_units(t.at, f.log_x))));
    canvas.fill_rect(x, f.bottom + 1, 1, kTickLength, kFrameColour);
    const int w = Canvas::text_width(t.label);
    const int left = std::clamp(x - w / 2, 0, std::max(0, canvas.width() - w));
    canvas.text(left, f.bottom + kTickLength + 4, t.label, kInk);
  }
  for (const Tick& t : layout.y_ticks) {
    if (t.label.empty()) continue;
    const int y = int(std::lround(f.y_to_pixel(from_axis_units(t.at, f.log_y))));
    canvas.fill_rect(f.left - kTickLength, y, kTickLength, 1, kFrameColour);
    canvas.text(f.left - kTickLength - 5 - Canvas::text_width(t.label), y - kDigitMiddleRow,
                t.label, kInk);
  }
}

// s, or as much of it as fits in max_width followed by "...".
std::string fit_text(std::string s, int max_width) {
  if (Canvas::text_width(s) <= max_width) return s;
  while (!s.empty() && Canvas::text_width(s + "...") > max_width) {
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
    if (!s.empty()) s.pop_back();  // drops whole UTF-8 code points
  }
  return s + "...";
}

void draw_titles(Canvas& canvas, const PlotSpec& spec, const PlotFrame& f) {
  const int text_h = Canvas::text_height(), room = canvas.width() - 8;
  auto centred = [&](int width, int centre) {
    return std::clamp(centre - width / 2, 4, std::max(4, canvas.width() - 4 - width));
  };
  if (!spec.title.empty()) {  // double size if it fits, else normal size, shortened if need be
    const int scale = Canvas::text_width(spec.title, 2) <= room ? 2 : 1;
    const std::string title = fit_text(spec.title, room);
    const int w = Canvas::text_width(title, scale);
    canvas.text(centred(w, (f.left + f.right) / 2), scale == 2 ? 14 : 14 + text_h / 2, title, kInk,
                scale);
  }
  if (!spec.x_label.empty()) {
    const std::string label = fit_text(spec.x_label, room);
    const int w = Canvas::text_width(label);
    canvas.text(centred(w, (f.left + f.right) / 2), f.bottom + kTickLength + 4 + text_h + 10, label,
                kInk);
  }
  if (!spec.y_label.empty()) {
    const std::string label = fit_text(spec.y_label, canvas.height() - 8);
    const int h = Canvas::text_width(label);
    const int top =
        std::clamp((f.top + f.bottom) / 2 - h / 2, 4, std::max(4, canvas.height() - 4 - h));
    canvas.text_vertical(12, top, label, kInk);
  }
}

// Pixel positions of one series; NaN where a point cannot be drawn, which breaks the line.
std::pair<std::vector<double>, std::vector<double>> series_pixels(const PlotSeries& s,
                                                                  const PlotFrame& f) {
  std::vector<double> xs(s.x.size()), ys(s.y.size());
  for (std::size_t k = 0; k < s.x.size(); ++k) {
    xs[k] = f.x_to_pixel(s.x[k]);
    ys[k] = f.y_to_pixel(s.y[k]);
    if (!finite_point(xs[k], ys[k])) xs[k] = ys[k] = kNaN;
  }
  return {xs, ys};
}

void draw_reference_lines(Canvas& canvas, const PlotSpec& spec, const PlotFrame& f) {
  for (const auto& r : spec.references) {
    const double y = f.y_to_pixel(r.y);
    if (std::isfinite(y)) canvas.dashed_line(f.left + 1, y, f.right - 1, y, r.colour, 1.5);
  }
}

// Each label sits at the left end of its line, above it unless the frame's top is too close.
void draw_reference_labels(Canvas& canvas, const PlotSpec& spec, const PlotFrame& f) {
  const int text_h = Canvas::text_height();
  for (const auto& r : spec.references) {
    const double y = f.y_to_pixel(r.y);
    if (!std::isfinite(y) || r.label.empty()) continue;
    const int row = int(std::lround(y));
    const int top = row - text_h - 1 > f.top + 2 ? row - text_h - 1 : row + 4;  // above if room
    text_with_halo(canvas, f.left + 8, top, r.label, darker(r.colour, 0.3));
  }
}

void draw_series(Canvas& canvas, const PlotSpec& spec, const PlotFrame& f,
                 const std::vector<std::uint32_t>& colours) {
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    const auto [xs, ys] = series_pixels(s, f);
    if (s.line) canvas.polyline(xs, ys, colours[i], kLineThickness);
    if (s.markers)
      for (std::size_t k = 0; k < xs.size(); ++k)
        draw_marker(canvas, xs[k], ys[k], int(i), colours[i]);
  }
}

}  // namespace

// Point labels sit above and right of their marker; left of it near the frame's right edge,
// below it near the top. A label that would overlap one already placed tries the other side
// of its marker, then steps away from it, so labels of nearby points stay readable.
std::vector<PointLabel> place_point_labels(const PlotSpec& spec, const PlotFrame& f,
                                           const std::vector<std::uint32_t>& colours) {
  const int text_h = Canvas::text_height();
  std::vector<PointLabel> placed;
  auto overlaps = [&](int x, int y, int w) {
    for (const PointLabel& l : placed)
      if (x < l.x + l.width + 2 && l.x < x + w + 2 && y < l.y + text_h && l.y < y + text_h) return true;
    return false;
  };
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    const auto [xs, ys] = series_pixels(s, f);
    for (std::size_t k = 0; k < s.point_labels.size(); ++k) {
      if (!finite_point(xs[k], ys[k]) || s.point_labels[k].empty()) continue;
      const int w = Canvas::text_width(s.point_labels[k]);
      const int px = int(std::lround(xs[k])), py = int(std::lround(ys[k]));
      const int right = px + 6, left = px - 6 - w, above = py - text_h + 1, below = py + 3;
      const int x0 = right + w > f.right - 2 ? left : right;
      const int y0 = above < f.top + 2 ? below : above;
      const int y1 = y0 == above ? below : above;
      std::vector<std::pair<int, int>> candidates = {{x0, y0}, {x0, y1}, {x0 == right ? left : right, y0}};
      for (int step = 1; step <= 4; ++step) {
        candidates.push_back({x0, below + step * text_h});
        candidates.push_back({x0, above - step * text_h});
      }
      std::pair<int, int> at = candidates.front();
      for (const auto& c : candidates) {
        const bool in_frame = c.first >= f.left + 2 && c.first + w <= f.right - 2 && c.second >= f.top + 2 &&
                              c.second + text_h <= f.bottom - 2;
        if (in_frame && !overlaps(c.first, c.second, w)) {
          at = c;
          break;
        }
      }
      placed.push_back({at.first, at.second, w, s.point_labels[k], darker(colours[i], 0.35)});
    }
  }
  return placed;
}

namespace {

// How much of the drawn data lies in the box: points, line pixels every few px, point labels.
int data_under(const PlotSpec& spec, const PlotFrame& f, const std::vector<PointLabel>& labels,
               int x0, int y0, int x1, int y1) {
  constexpr double kMargin = 6, kSampleStep = 3;
  auto inside = [&](double x, double y) {
    return x >= x0 - kMargin && x <= x1 + kMargin && y >= y0 - kMargin && y <= y1 + kMargin;
  };
  int count = 0;
  for (const PointLabel& l : labels)
    if (l.x < x1 && l.x + l.width > x0 && l.y < y1 && l.y + Canvas::text_height() > y0) count += 10;
  for (const auto& s : spec.series) {
    const auto [xs, ys] = series_pixels(s, f);
    for (std::size_t k = 0; k < xs.size(); ++k) {
      count += finite_point(xs[k], ys[k]) && inside(xs[k], ys[k]) ? 3 : 0;
      if (!s.line || k == 0 || !finite_point(xs[k - 1], ys[k - 1]) || !finite_point(xs[k], ys[k]))
        continue;
      const double length = std::hypot(xs[k] - xs[k - 1], ys[k] - ys[k - 1]);
      const int samples = int(std::min(length / kSampleStep, 1e4));
      for (int j = 1; j < samples; ++j) {
        const double t = double(j) / samples;
        count += inside(xs[k - 1] + t * (xs[k] - xs[k - 1]), ys[k - 1] + t * (ys[k] - ys[k - 1]));
      }
    }
  }
  for (const auto& r : spec.references) {
    const double y = f.y_to_pixel(r.y);
    if (std::isfinite(y) && inside(x0, y)) count += int((x1 - x0) / kSampleStep);
  }
  return count;
}

void draw_legend(Canvas& canvas, const PlotSpec& spec, const PlotFrame& f,
                 const std::vector<std::uint32_t>& colours,
                 const std::vector<PointLabel>& point_labels) {
  std::vector<LegendEntry> entries;
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    if (!s.label.empty()) entries.push_back({s.label, colours[i], s.line, s.markers, int(i)});
  }
  if (entries.empty()) return;
  constexpr int kPad = 8, kRowGap = 5, kSwatch = 26, kInset = 10;
  const int text_h = Canvas::text_height();
  int text_w = 0;
  for (const auto& e : entries) text_w = std::max(text_w, Canvas::text_width(e.label));
  const int box_w = kPad + kSwatch + 6 + text_w + kPad;
  const int box_h = 2 * kPad + int(entries.size()) * text_h + (int(entries.size()) - 1) * kRowGap;

  // Corners in order of preference; the first with the least data under it wins.
  const int right_x = f.right - kInset - box_w, left_x = f.left + kInset;
  const int top_y = f.top + kInset, bottom_y = f.bottom - kInset - box_h;
  const std::pair<int, int> corners[] = {
      {right_x, top_y}, {right_x, bottom_y}, {left_x, top_y}, {left_x, bottom_y}};
  std::pair<int, int> best = corners[0];
  int best_count = std::numeric_limits<int>::max();
  for (const auto& [x, y] : corners) {
    const int count = data_under(spec, f, point_labels, x, y, x + box_w, y + box_h);
    if (count < best_count) best = {x, y}, best_count = count;
  }

  const auto [x, y] = best;
  canvas.fill_rect(x, y, box_w, box_h, kWhite);
  canvas.rect_outline(x, y, box_w, box_h, kLegendBorder);
  for (std::size_t k = 0; k < entries.size(); ++k) {
    const LegendEntry& e = entries[k];
    const int row_top = y + kPad + int(k) * (text_h + kRowGap);
    const double middle = row_top + kDigitMiddleRow + 0.5;  // a 2 px line covers two whole rows
    const double swatch_x = x + kPad;
    if (e.line) canvas.line(swatch_x, middle, swatch_x + kSwatch, middle, e.colour, kLineThickness);
    if (e.markers) draw_marker(canvas, swatch_x + kSwatch / 2.0, middle, e.marker_shape, e.colour);
    canvas.text(x + kPad + kSwatch + 6, row_top, e.label, kInk);
  }
}

}  // namespace

double PlotFrame::x_to_pixel(double x) const {
  const double lo = to_axis_units(x_min, log_x), hi = to_axis_units(x_max, log_x);
  return left + (to_axis_units(x, log_x) - lo) / (hi - lo) * (right - left);
}

double PlotFrame::y_to_pixel(double y) const {
  const double lo = to_axis_units(y_min, log_y), hi = to_axis_units(y_max, log_y);
  return bottom - (to_axis_units(y, log_y) - lo) / (hi - lo) * (bottom - top);
}

Canvas render_plot(const PlotSpec& spec, PlotFrame* frame) {
  check_spec(spec);
  const Layout layout = compute_layout(spec);
  const PlotFrame& f = layout.frame;
  const auto colours = series_colours(spec);

  Canvas canvas(spec.width, spec.height, kWhite);
  canvas.set_clip(f.left + 1, f.top + 1, f.right, f.bottom);  // data stays inside the frame
  draw_grid(canvas, layout);
  draw_reference_lines(canvas, spec, f);
  draw_series(canvas, spec, f, colours);
  draw_reference_labels(canvas, spec, f);
  const auto point_labels = place_point_labels(spec, f, colours);
  for (const PointLabel& l : point_labels) text_with_halo(canvas, l.x, l.y, l.text, l.colour);
  draw_legend(canvas, spec, f, colours, point_labels);
  canvas.reset_clip();
  draw_axes(canvas, layout);
  draw_titles(canvas, spec, f);
  if (frame) *frame = f;
  return canvas;
}

void write_plot_png(const PlotSpec& spec, const std::string& path) {
  auto fail = [&](const std::string& reason) {
    return std::runtime_error("cannot write plot '" + path + "': " + reason);
  };
  if (path.empty()) throw fail("empty path");
  std::vector<unsigned char> png;
  try {
    png = encode_png(render_plot(spec));
  } catch (const std::exception& e) {
    throw fail(e.what());
  }
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (!out) throw fail(std::strerror(errno));
  const bool written = std::fwrite(png.data(), 1, png.size(), out) == png.size();
  const int write_errno = errno;
  if (std::fclose(out) != 0 || !written) {
    const int err = written ? errno : write_errno;
    std::remove(tmp.c_str());
    throw fail(std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw fail(std::strerror(err));
  }
}

std::uint32_t palette_colour(std::size_t i) { return kPalette[i % std::size(kPalette)]; }

}  // namespace retreever::cli
