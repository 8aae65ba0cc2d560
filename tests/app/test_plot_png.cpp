// The Qt-free PNG plot writer of the command line: its PNG bytes as Qt decodes them, where the
// plot puts its data, and every bad spec or path refused with the path and reason named.
#include <QDir>
#include <QFile>
#include <QImage>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

#include "app/cli/plot_png.h"

using retreever::cli::Canvas;
using retreever::cli::PlotFrame;
using retreever::cli::PlotSeries;
using retreever::cli::PlotSpec;

namespace {

constexpr std::uint32_t kWhite = 0xFFFFFF;

std::uint32_t rgb_of(QRgb c) {
  return std::uint32_t(c) & 0xFFFFFF;
}

int channel(std::uint32_t c, int shift) {
  return int((c >> shift) & 0xFF);
}

// Whether two colours differ by at most tolerance in every channel.
bool near(std::uint32_t a, std::uint32_t b, int tolerance) {
  for (int shift : {16, 8, 0})
    if (std::abs(channel(a, shift) - channel(b, shift)) > tolerance) return false;
  return true;
}

PlotSeries series(std::vector<double> x, std::vector<double> y, std::uint32_t colour = 0,
                  std::string label = "") {
  PlotSeries s;
  s.label = std::move(label);
  s.x = std::move(x);
  s.y = std::move(y);
  s.colour = colour;
  return s;
}

// The message of the std::runtime_error that f throws; empty if it throws none.
QString runtime_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return QString::fromStdString(e.what());
  }
  return {};
}

// Rows of column x whose pixel is near colour.
QVector<int> rows_near(const Canvas& c, int x, std::uint32_t colour, int tolerance) {
  QVector<int> rows;
  for (int y = 0; y < c.height(); ++y)
    if (near(c.pixel(x, y), colour, tolerance)) rows.push_back(y);
  return rows;
}

double mean(const QVector<int>& v) {
  double sum = 0;
  for (int x : v) sum += x;
  return v.isEmpty() ? std::nan("") : sum / v.size();
}

}  // namespace

class TestPlotPng : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  QString file(const QString& name) { return dir_.filePath(name); }

 private Q_SLOTS:
  void encoded_png_decodes_to_the_same_pixels() {
    Canvas canvas(37, 23, 0x102030);
    canvas.fill_rect(3, 4, 10, 5, 0xFF8000);
    for (int x = 0; x < 37; ++x) canvas.set_pixel(x, 20, std::uint32_t(x * 7) << 8 | 0x40);
    canvas.line(0, 0, 36, 22, 0xFFFFFF);
    const auto png = retreever::cli::encode_png(canvas);
    QVERIFY(png.size() > 8);
    QCOMPARE(QByteArray(reinterpret_cast<const char*>(png.data()), 8),
             QByteArray("\x89PNG\r\n\x1a\n", 8));
    QImage image;
    QVERIFY(image.loadFromData(png.data(), int(png.size()), "PNG"));
    QCOMPARE(image.width(), 37);
    QCOMPARE(image.height(), 23);
    QVERIFY(!image.hasAlphaChannel());
    for (int y = 0; y < 23; ++y)
      for (int x = 0; x < 37; ++x)
        QVERIFY2(rgb_of(image.pixel(x, y)) == canvas.pixel(x, y),
                 qPrintable(QString("pixel %1,%2").arg(x).arg(y)));
  }

  void pixel_off_the_canvas_throws() {
    Canvas canvas(4, 3);
    QCOMPARE(canvas.pixel(3, 2), kWhite);
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, canvas.pixel(4, 0));
    QVERIFY_THROWS_EXCEPTION(std::out_of_range, canvas.pixel(0, -1));
  }

  void lines_are_anti_aliased_and_clipped() {
    Canvas canvas(60, 40);
    canvas.set_clip(10, 10, 50, 30);
    canvas.line(-20, -5, 80, 45, 0x000000, 2.0);  // a diagonal far past the clip rectangle
    canvas.reset_clip();
    int inside = 0, grey = 0;
    for (int y = 0; y < 40; ++y)
      for (int x = 0; x < 60; ++x) {
        const std::uint32_t p = canvas.pixel(x, y);
        if (p == kWhite) continue;
        QVERIFY2(x >= 10 && x < 50 && y >= 10 && y < 30,
                 qPrintable(QString("ink outside the clip at %1,%2").arg(x).arg(y)));
        ++inside;
        grey += p != 0x000000;
      }
    QVERIFY(inside > 40);
    QVERIFY2(grey > 10, "a diagonal line should have partly covered (grey) pixels");
  }

  void text_draws_inside_its_box_and_width_scales() {
    Canvas canvas(200, 60);
    const std::string s = "Loss 0.25";
    canvas.text(5, 7, s, 0x000000);
    const int w = Canvas::text_width(s), h = Canvas::text_height();
    int dark = 0;
    for (int y = 0; y < 60; ++y)
      for (int x = 0; x < 200; ++x)
        if (canvas.pixel(x, y) != kWhite) {
          QVERIFY2(x >= 5 && x < 5 + w && y >= 7 && y < 7 + h,
                   qPrintable(QString("text ink outside its box at %1,%2").arg(x).arg(y)));
          ++dark;
        }
    QVERIFY(dark > 30);
    QCOMPARE(Canvas::text_width(""), 0);
    QCOMPARE(Canvas::text_width("abcd"), 2 * Canvas::text_width("ab"));
    QCOMPARE(Canvas::text_width("ab", 2), 2 * Canvas::text_width("ab"));
    QCOMPARE(Canvas::text_height(2), 2 * h);
    QCOMPARE(Canvas::text_width("\xc3\xa9"), Canvas::text_width("?"));  // one glyph per code point
  }

  void vertical_text_is_rotated() {
    Canvas canvas(60, 120);
    const std::string s = "accuracy";
    canvas.text_vertical(10, 20, s, 0x000000);
    const int w = Canvas::text_height(), h = Canvas::text_width(s);
    int dark = 0;
    for (int y = 0; y < 120; ++y)
      for (int x = 0; x < 60; ++x)
        if (canvas.pixel(x, y) != kWhite) {
          QVERIFY2(x >= 10 && x < 10 + w && y >= 20 && y < 20 + h,
                   qPrintable(QString("rotated ink outside its box at %1,%2").arg(x).arg(y)));
          ++dark;
        }
    QVERIFY(dark > 30);
  }

  void written_plot_loads_at_the_requested_size() {
    PlotSpec spec;
    spec.title = "Training loss";
    spec.x_label = "step";
    spec.y_label = "loss";
    spec.width = 640;
    spec.height = 400;
    spec.series.push_back(series({0, 1, 2, 3}, {2.0, 1.1, 0.7, 0.5}, 0, "TCA"));
    spec.references.push_back({"paper", 0.6});
    const QString path = file("loss.png");
    retreever::cli::write_plot_png(spec, path.toStdString());
    QImage image(path);
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), QSize(640, 400));
    QVERIFY(!QFile::exists(path + ".tmp"));
  }

  void write_replaces_an_existing_file() {
    const QString path = file("replaced.png");
    {
      QFile old(path);
      QVERIFY(old.open(QIODevice::WriteOnly));
      old.write("not a png");
    }
    PlotSpec spec;
    spec.series.push_back(series({1, 2}, {3, 4}));
    retreever::cli::write_plot_png(spec, path.toStdString());
    QCOMPARE(QImage(path).size(), QSize(spec.width, spec.height));
  }

  void series_ink_stays_inside_the_frame() {
    constexpr std::uint32_t kMagenta = 0xFF00FF;
    PlotSpec spec;
    PlotSeries s = series({0, 1, 2, 3, 4, 5}, {0, 5, -3, 8, 2, 1}, kMagenta, "magenta");
    s.markers = true;
    spec.series.push_back(s);
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    QVERIFY(f.left > 0 && f.right < canvas.width() - 1 && f.left < f.right);
    QVERIFY(f.top > 0 && f.bottom < canvas.height() - 1 && f.top < f.bottom);
    int inside = 0;
    for (int y = 0; y < canvas.height(); ++y)
      for (int x = 0; x < canvas.width(); ++x) {
        if (!near(canvas.pixel(x, y), kMagenta, 60)) continue;
        QVERIFY2(x > f.left && x < f.right && y > f.top && y < f.bottom,
                 qPrintable(QString("series ink outside the frame at %1,%2").arg(x).arg(y)));
        ++inside;
      }
    QVERIFY2(inside > 200, qPrintable(QString("only %1 series pixels").arg(inside)));
  }

  void labels_of_close_points_do_not_overlap() {
    // The copy report's case: TCA reads 9 and 10 tokens at N=512 and 1024 (both ~100%), on a
    // log axis that reaches 512; a second series puts two more labels near the same spot.
    PlotSpec spec;
    spec.log_x = true;
    PlotSeries a = series({9, 10, 256, 512}, {99.99, 99.99, 100, 100}, 0x0072B2, "tca");
    a.line = false;
    a.markers = true;
    a.point_labels = {"N=512", "N=1024", "N=512", "N=1024"};
    PlotSeries b = series({9, 10}, {98.5, 99}, 0x009E73, "other");
    b.line = false;
    b.markers = true;
    b.point_labels = {"N=512", "N=1024"};
    spec.series = {a, b};
    PlotFrame f;
    retreever::cli::render_plot(spec, &f);
    const auto labels = retreever::cli::place_point_labels(spec, f, {0x0072B2, 0x009E73});
    QCOMPARE(int(labels.size()), 6);
    const int h = Canvas::text_height();
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto& l = labels[i];
      QCOMPARE(l.width, Canvas::text_width(l.text));
      QVERIFY2(l.x >= f.left && l.x + l.width <= f.right && l.y >= f.top && l.y + h <= f.bottom,
               qPrintable(QString("label %1 leaves the frame").arg(i)));
      for (std::size_t j = 0; j < i; ++j) {
        const auto& o = labels[j];
        const bool overlap = l.x < o.x + o.width && o.x < l.x + l.width && l.y < o.y + h && o.y < l.y + h;
        QVERIFY2(!overlap, qPrintable(QString("labels %1 and %2 overlap").arg(j).arg(i)));
      }
    }
  }

  void horizontal_lines_land_at_their_rows() {
    constexpr std::uint32_t kLow = 0x0000FF, kMiddle = 0x00C000, kHigh = 0xFF0000;
    PlotSpec spec;
    spec.series.push_back(series({0, 10}, {0, 0}, kLow));
    spec.series.push_back(series({0, 10}, {5, 5}, kMiddle));
    spec.series.push_back(series({0, 10}, {10, 10}, kHigh));
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    const int column = (f.left + f.right) / 2;
    const double low = mean(rows_near(canvas, column, kLow, 40));
    const double middle = mean(rows_near(canvas, column, kMiddle, 40));
    const double high = mean(rows_near(canvas, column, kHigh, 40));
    QVERIFY2(high < middle && middle < low, "larger y must be drawn higher up");
    QVERIFY(std::abs(middle - (low + high) / 2) <= 1.0);  // the axis is linear
    QVERIFY(std::abs(low - f.y_to_pixel(0)) <= 1.0);
    QVERIFY(std::abs(high - f.y_to_pixel(10)) <= 1.0);
    QVERIFY2(low < f.bottom - 5 && high > f.top + 5, "the range is padded");
  }

  void constant_series_gets_a_non_zero_range() {
    PlotSpec spec;
    spec.series.push_back(series({2, 2, 2}, {7, 7, 7}, 0x0000FF));
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    QVERIFY(f.x_min < 2 && f.x_max > 2);
    QVERIFY(f.y_min < 7 && f.y_max > 7);
    QVERIFY(std::abs(f.y_to_pixel(7) - (f.top + f.bottom) / 2.0) <= 1.0);
    QCOMPARE(canvas.width(), spec.width);
  }

  void a_bound_stops_the_axis_just_above_it() {
    PlotSpec spec;
    spec.series.push_back(series({1, 2, 3}, {100, 100, 100}, 0x0000FF));  // accuracy at 100%
    PlotFrame free_frame, bounded;
    retreever::cli::render_plot(spec, &free_frame);
    QVERIFY(free_frame.y_max > 105);  // unbounded: padded symmetrically
    spec.y_bound = 100;
    retreever::cli::render_plot(spec, &bounded);
    QVERIFY(bounded.y_max >= 100 && bounded.y_max < 101);
    QVERIFY(bounded.y_to_pixel(100) >= bounded.top);  // the points stay inside the frame
  }

  void log_axis_skips_non_positive_values() {
    PlotSpec spec;
    spec.log_x = true;
    PlotSeries s = series({-1, 0, 1, 10, 100, 1000}, {5, 4, 3, 2, 1, 0.5}, 0x0000FF);
    s.markers = true;
    s.point_labels = {"neg", "zero", "1", "10", "100", "1000"};
    spec.series.push_back(s);
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    QVERIFY(f.x_min > 0 && f.x_min < 1);
    QVERIFY(f.x_max > 1000);
    QVERIFY(std::isnan(f.x_to_pixel(0)));
    QVERIFY(std::abs(f.x_to_pixel(10) - (f.x_to_pixel(1) + f.x_to_pixel(100)) / 2) < 0.5);

    PlotSpec nothing_positive;
    nothing_positive.log_y = true;
    nothing_positive.series.push_back(series({1, 2}, {0, -3}));
    const QString error = runtime_error_of(
        [&] { retreever::cli::write_plot_png(nothing_positive, file("empty.png").toStdString()); });
    QVERIFY2(error.contains("empty.png") && error.contains("log"), qPrintable(error));
    QVERIFY(!QFile::exists(file("empty.png")));
  }

  void bad_specs_throw_naming_the_path() {
    const QString path = file("bad.png");
    auto error_for = [&](const PlotSpec& spec) {
      return runtime_error_of([&] { retreever::cli::write_plot_png(spec, path.toStdString()); });
    };
    PlotSpec mismatched;
    mismatched.series.push_back(series({1, 2, 3}, {1, 2}, 0, "short"));
    QString error = error_for(mismatched);
    QVERIFY2(error.contains(path) && error.contains("3 x values") && error.contains("2 y values"),
             qPrintable(error));

    PlotSpec labels;
    labels.series.push_back(series({1, 2}, {1, 2}));
    labels.series[0].point_labels = {"only one"};
    QVERIFY2(error_for(labels).contains("point labels"), qPrintable(error_for(labels)));

    PlotSpec empty;
    QVERIFY2(error_for(empty).contains("empty plot"), qPrintable(error_for(empty)));

    PlotSpec not_finite;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    not_finite.series.push_back(series({nan, 1}, {1, std::numeric_limits<double>::infinity()}));
    QVERIFY2(error_for(not_finite).contains("empty plot"), qPrintable(error_for(not_finite)));

    PlotSpec tiny;
    tiny.width = 10;
    tiny.series.push_back(series({1}, {1}));
    QVERIFY2(error_for(tiny).contains("size"), qPrintable(error_for(tiny)));
    QVERIFY(!QFile::exists(path) && !QFile::exists(path + ".tmp"));
  }

  void unwritable_path_throws_and_leaves_no_temporary() {
    const QString path = file("no/such/dir/plot.png");
    PlotSpec spec;
    spec.series.push_back(series({1, 2}, {3, 4}));
    const QString error =
        runtime_error_of([&] { retreever::cli::write_plot_png(spec, path.toStdString()); });
    QVERIFY2(error.contains(path), qPrintable(error));
    QVERIFY(!QFile::exists(path + ".tmp"));
    QVERIFY(!QFile::exists(path));

    const QString a_directory = file("directory.png");
    QVERIFY(QDir().mkpath(a_directory));  // rename over a directory fails after the write
    const QString rename_error =
        runtime_error_of([&] { retreever::cli::write_plot_png(spec, a_directory.toStdString()); });
    QVERIFY2(rename_error.contains(a_directory), qPrintable(rename_error));
    QVERIFY(!QFile::exists(a_directory + ".tmp"));
  }

  void legend_avoids_the_data() {
    constexpr std::uint32_t kLegendBorder = 0xC4C4C4;
    PlotSpec spec;
    spec.series.push_back(series({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
                                 {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, "rising"));
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    const int middle_x = (f.left + f.right) / 2, middle_y = (f.top + f.bottom) / 2;
    int top_right = 0, bottom_right = 0;
    for (int y = f.top + 1; y < f.bottom; ++y)
      for (int x = middle_x; x < f.right; ++x)
        if (canvas.pixel(x, y) == kLegendBorder) (y < middle_y ? top_right : bottom_right)++;
    QVERIFY2(bottom_right > 50 && top_right == 0,
             qPrintable(QString("legend border pixels: top-right %1, bottom-right %2")
                            .arg(top_right)
                            .arg(bottom_right)));
  }

  void palette_gives_distinct_colours() {
    PlotSpec spec;
    for (int i = 0; i < 3; ++i) spec.series.push_back(series({0, 10}, {double(i), double(i)}));
    PlotFrame f;
    const Canvas canvas = retreever::cli::render_plot(spec, &f);
    const int column = (f.left + f.right) / 2;
    QVector<std::uint32_t> colours;
    for (int i = 0; i < 3; ++i) {
      const int row = int(std::lround(f.y_to_pixel(i)));
      colours.push_back(canvas.pixel(column, row));
      QVERIFY(colours.back() != kWhite);
    }
    QVERIFY(colours[0] != colours[1] && colours[1] != colours[2] && colours[0] != colours[2]);
  }
};

QTEST_GUILESS_MAIN(TestPlotPng)
#include "test_plot_png.moc"
