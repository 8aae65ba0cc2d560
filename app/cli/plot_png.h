// Line and scatter plots written as PNG files with only the standard library and zlib, so the
// command-line tool can draw its reports on machines without Qt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace retreever::cli {

struct PlotSeries {
  std::string label;         // shown in the legend (empty: not in legend)
  std::vector<double> x, y;  // same length; NaN/inf points are skipped (break the line)
  bool line = true;          // connect points
  bool markers = false;      // draw a filled marker (circle, square) at each point
  std::vector<std::string> point_labels;  // optional, same length as x: text beside each marker
  std::uint32_t colour = 0;  // 0xRRGGBB; 0 = next colour of a colour-blind-safe palette
};

// Colour i of the palette that series without a colour take in turn (wraps around), for
// callers that want one colour to mean the same thing across several plots.
std::uint32_t palette_colour(std::size_t i);

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;  // log10 axes; non-positive values are skipped on a log axis
  int width = 900, height = 560;      // pixels
  // The largest value the y quantity can take (100 for an accuracy in %): the axis stops just
  // above it instead of padding into impossible values. NaN: no bound.
  double y_bound = std::numeric_limits<double>::quiet_NaN();
  std::vector<PlotSeries> series;
  // Horizontal reference lines (e.g. a published number), drawn dashed with their label.
  struct Reference {
    std::string label;
    double y;
    std::uint32_t colour = 0x888888;
  };
  std::vector<Reference> references;
};

// Renders the plot and writes it as an 8-bit RGB PNG: to path + ".tmp", then renamed over path.
// Throws std::runtime_error naming the path and the reason (cannot write, empty plot, mismatched
// x/y sizes, ...); no .tmp file is left behind.
void write_plot_png(const PlotSpec& spec, const std::string& path);

// An RGB pixel buffer with anti-aliased drawing and a built-in 7x13 bitmap font. Every drawing
// call is clipped to the clip rectangle (the whole canvas unless set_clip narrows it).
class Canvas {
 public:
  // Throws std::invalid_argument unless 1 <= width, height <= 20000.
  Canvas(int width, int height, std::uint32_t background = 0xFFFFFF);

  int width() const { return width_; }
  int height() const { return height_; }
  std::uint32_t pixel(int x, int y) const;  // 0xRRGGBB; throws std::out_of_range off the canvas
  const std::vector<unsigned char>& rgb() const { return rgb_; }  // rows top to bottom, RGB

  // Limits drawing to columns [x0, x1) and rows [y0, y1) of the canvas until reset_clip.
  void set_clip(int x0, int y0, int x1, int y1);
  void reset_clip();

  void set_pixel(int x, int y, std::uint32_t colour);
  // Mixes colour over the pixel with weight alpha in [0, 1].
  void blend_pixel(int x, int y, std::uint32_t colour, double alpha);
  void fill_rect(int x, int y, int w, int h, std::uint32_t colour);
  void rect_outline(int x, int y, int w, int h, std::uint32_t colour);  // 1 px, inside the rect

  // Anti-aliased lines of the given thickness; coordinates are pixel centres.
  void line(double x0, double y0, double x1, double y1, std::uint32_t colour,
            double thickness = 2.0);
  // Joined segments drawn as one shape, so joints are not darkened by overlapping blends.
  void polyline(const std::vector<double>& xs, const std::vector<double>& ys, std::uint32_t colour,
                double thickness = 2.0);
  void dashed_line(double x0, double y0, double x1, double y1, std::uint32_t colour,
                   double thickness = 1.5, double dash = 8.0, double gap = 5.0);
  void circle(double cx, double cy, double radius, std::uint32_t colour);     // filled
  void square(double cx, double cy, double half_side, std::uint32_t colour);  // filled

  // Text in the bitmap font with its top-left corner at (x, y); characters outside printable
  // ASCII are drawn as '?'. scale replicates pixels (2 doubles the size, for titles).
  void text(int x, int y, const std::string& s, std::uint32_t colour, int scale = 1);
  // Text rotated 90 degrees counter-clockwise (reads bottom to top); (x, y) is the top-left of
  // its bounding box, which is text_height() wide and text_width(s) tall.
  void text_vertical(int x, int y, const std::string& s, std::uint32_t colour);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1);

 private:
  bool outside_clip(int x, int y) const {
    return x < clip_x0_ || x >= clip_x1_ || y < clip_y0_ || y >= clip_y1_;
  }
  void glyph(int x, int y, char c, std::uint32_t colour, int scale, bool rotated);
  void blend_coverage(const std::vector<float>& coverage, int x0, int y0, int w,
                      std::uint32_t colour);

  int width_, height_;
  int clip_x0_ = 0, clip_y0_ = 0, clip_x1_, clip_y1_;
  std::vector<unsigned char> rgb_;
};

// The canvas as PNG bytes: signature, IHDR (8-bit RGB), one zlib-compressed IDAT, IEND.
std::vector<unsigned char> encode_png(const Canvas& canvas);

// Where render_plot put the axes: the frame in pixels and the data range it spans.
struct PlotFrame {
  int left = 0, top = 0, right = 0, bottom = 0;       // the frame's outermost columns and rows
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;  // data values at the frame's edges
  bool log_x = false, log_y = false;
  double x_to_pixel(double x) const;  // fractional column of a value; NaN if not drawable
  double y_to_pixel(double y) const;  // fractional row of a value; NaN if not drawable
};

// A point label as render_plot places it: top-left corner, width in pixels, text, colour.
struct PointLabel {
  int x, y, width;
  std::string text;
  std::uint32_t colour;
};
// Where the series' point_labels go in the frame (colours: one per series): beside their
// markers, inside the frame, and not on top of each other while a free place is near.
std::vector<PointLabel> place_point_labels(const PlotSpec& spec, const PlotFrame& f,
                                           const std::vector<std::uint32_t>& colours);

// Draws the plot that write_plot_png saves; frame (when given) receives the layout. Throws
// std::runtime_error with the reason when the spec cannot be drawn.
Canvas render_plot(const PlotSpec& spec, PlotFrame* frame = nullptr);

}  // namespace retreever::cli
