// The one chart renderer (ui/chart_view.h): ranges, legend placement, PNG export.
#include <QImage>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <filesystem>

#include "ui/chart_view.h"
#include "ui/qcp.h"

using namespace retreever;
using namespace retreever::ui;

namespace {

ChartSeries series(std::vector<double> x, std::vector<double> y, const std::string& label = "s") {
  ChartSeries s;
  s.label = label;
  s.x = std::move(x);
  s.y = std::move(y);
  return s;
}

ChartSpec spec_of(std::vector<ChartSeries> s) {
  ChartSpec spec;
  spec.title = "test";
  spec.x_label = "x";
  spec.y_label = "y";
  spec.series = std::move(s);
  return spec;
}

// Number of pixels of `rgb` in the image (exact match).
int count_colour(const QImage& img, QRgb rgb) {
  int n = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x) n += (img.pixel(x, y) & 0xFFFFFF) == (rgb & 0xFFFFFF);
  return n;
}

}  // namespace

class TestCharts : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void constant_series_gets_a_range_around_its_value() {
    QCustomPlot plot;
    draw_chart(&plot, spec_of({series({0, 10, 20, 30}, {7, 7, 7, 7})}));
    const auto y = plot.yAxis->range();
    QVERIFY(y.lower < 7 && y.upper > 7);
    QVERIFY(y.size() > 0.5 && y.size() < 10);  // a margin, not 1e-50 .. 1e50
    QVERIFY(plot.xAxis->range().lower < 0 && plot.xAxis->range().upper > 30);
  }

  void one_point_on_log_axes_gets_a_range_around_it() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({6}, {99.99})});
    spec.log_x = true;
    draw_chart(&plot, spec);
    const auto x = plot.xAxis->range(), y = plot.yAxis->range();
    QVERIFY(x.lower > 0 && x.lower < 6 && x.upper > 6 && x.upper < 100);
    QVERIFY(y.lower < 99.99 && y.upper > 99.99 && y.upper < 200);
    QCOMPARE(plot.xAxis->scaleType(), QCPAxis::stLogarithmic);
  }

  void bound_and_fixed_range_are_honoured() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({0, 1, 2}, {10, 60, 100})});
    spec.y_bound = 100;
    draw_chart(&plot, spec);
    QVERIFY(plot.yAxis->range().upper >= 100 && plot.yAxis->range().upper < 104);
    spec.y_min = -12, spec.y_max = 108;
    draw_chart(&plot, spec);
    QCOMPARE(plot.yAxis->range().lower, -12.0);
    QCOMPARE(plot.yAxis->range().upper, 108.0);
  }

  void an_empty_chart_shows_its_domain_until_data_comes() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({});
    spec.log_x = spec.log_y = true;
    spec.empty_x_lo = 1024, spec.empty_x_hi = 262144;
    spec.empty_y_lo = 0.01, spec.empty_y_hi = 100;
    draw_chart(&plot, spec);
    auto x = plot.xAxis->range(), y = plot.yAxis->range();
    QVERIFY(x.lower > 100 && x.lower < 1024 && x.upper > 262144 && x.upper < 1e6);
    QVERIFY(y.lower > 0 && y.lower < 0.01 && y.upper > 100 && y.upper < 1000);
    spec.series.push_back(series({4096}, {5}));  // data: its range, not the domain
    draw_chart(&plot, spec);
    x = plot.xAxis->range();
    QVERIFY(x.lower > 1024 && x.lower < 4096 && x.upper > 4096 && x.upper < 262144);
  }

  void an_empty_chart_says_its_text_until_data_comes() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({}, {})});
    spec.empty_text = "Press Train";
    auto said = [&] {
      for (int i = 0; i < plot.itemCount(); ++i)
        if (auto* t = qobject_cast<QCPItemText*>(plot.item(i)); t && t->text() == "Press Train") return true;
      return false;
    };
    draw_chart(&plot, spec);
    QVERIFY(said());
    spec.series[0] = series({1, 2}, {NAN, INFINITY});  // points, none drawable: still nothing to see
    draw_chart(&plot, spec);
    QVERIFY(said());
    spec.series[0] = series({1, 2}, {3, 4});
    draw_chart(&plot, spec);
    QVERIFY(!said());
  }

  void non_drawable_points_break_the_line_and_leave_the_range() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({1, 2, 3, 4}, {1, NAN, -5, 10})});
    spec.log_y = true;  // -5 cannot be drawn on a log axis
    const auto graphs = draw_chart(&plot, spec);
    QCOMPARE(graphs.size(), 1);
    QVERIFY(plot.yAxis->range().lower > 0);
    QVERIFY(std::isnan((graphs[0]->data()->begin() + 2)->value));
  }

  void legend_goes_to_the_emptiest_corner() {
    // Data rising from bottom-left to top-right: the top-left and bottom-right are empty, and
    // a series in the top-right corner rules that corner out.
    ChartSpec spec = spec_of({series({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})});
    const auto corner = emptiest_corner(spec, 0, 9, 0, 9);
    QVERIFY(corner == (Qt::AlignTop | Qt::AlignLeft) || corner == (Qt::AlignBottom | Qt::AlignRight));
    ChartSpec flat_top = spec_of({series({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {9, 9, 9, 9, 9, 9, 9, 9, 9, 9})});
    const auto low = emptiest_corner(flat_top, 0, 9, 0, 9);
    QVERIFY(low & Qt::AlignBottom);  // the legend never sits on a curve along the top
  }

  void legend_avoids_lines_between_markers_too() {
    // A line from corner to corner with markers only at its ends, and one marker in each of the
    // other corners: the markers tie, the line decides.
    auto diagonal = series({0, 10}, {0, 10}, "line");
    auto dots = series({0, 10}, {10, 0}, "dots");
    dots.line = false;
    const auto corner = emptiest_corner(spec_of({diagonal, dots}), 0, 10, 0, 10, 0.3, 0.3);
    QVERIFY(corner == (Qt::AlignTop | Qt::AlignLeft) || corner == (Qt::AlignBottom | Qt::AlignRight));
    // A wide legend over a curve along the top: it goes down.
    auto top = series({0, 5, 10}, {10, 10, 10}, "top");
    QVERIFY(emptiest_corner(spec_of({top}), 0, 10, 0, 10, 0.9, 0.3) & Qt::AlignBottom);
  }

  void a_legend_that_would_cover_data_everywhere_goes_below_the_axes() {
    QCustomPlot plot;
    plot.resize(800, 500);
    // Four lines filling the frame from edge to edge: every corner has data.
    std::vector<ChartSeries> lines;
    for (int i = 0; i < 4; ++i) lines.push_back(series({0, 10}, {double(i * 3), double(9 - i * 3)}, "line " + std::to_string(i)));
    draw_chart(&plot, spec_of(lines));
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.plotLayout()));
    // Drawn again with one short series in a corner: back inside the frame.
    draw_chart(&plot, spec_of({series({0, 1, 2}, {0, 1, 2}, "a"), series({0, 1, 2}, {0, 0.5, 1}, "b")}));
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.axisRect()->insetLayout()));
    QCOMPARE(plot.plotLayout()->rowCount(), 2);  // title and axes: the legend's row is gone
    // A chart without a legend never gives it a row, however crowded.
    ChartSpec hidden = spec_of(lines);
    hidden.legend = false;
    draw_chart(&plot, hidden);
    QVERIFY(!plot.legend->visible());
    QCOMPARE(plot.plotLayout()->rowCount(), 2);
  }

  void the_legend_is_placed_again_when_the_plot_changes_size() {
    // A chart drawn into a small plot (the studio draws before its window is shown), then enlarged.
    QCustomPlot plot;
    plot.resize(300, 200);
    plot.show();  // a hidden widget hears of its size when shown
    std::vector<ChartSeries> lines;
    for (int i = 0; i < 4; ++i)
      lines.push_back(series({0, 10}, {double(i * 3), double(9 - i * 3)}, "a long run name " + std::to_string(i)));
    draw_chart(&plot, spec_of(lines));
    // Four rows below the axes would leave them a strip (and a corner a box taller than the frame):
    // the legend is left out, the axes keep the plot.
    QVERIFY(!plot.legend->visible());
    QCOMPARE(plot.plotLayout()->rowCount(), 2);
    plot.resize(1500, 500);  // larger: below the axes, the row holds more entries
    QVERIFY(plot.legend->visible());
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.plotLayout()));
    QVERIFY2(plot.legend->wrap() >= 4, qPrintable(QString::number(plot.legend->wrap())));
    // Two entries a row, two rows, in a plot as short as the studio's learning-rate plot: left out;
    // a little taller, they fit below the axes.
    plot.resize(400, 160);
    QVERIFY(!plot.legend->visible());
    plot.resize(400, 260);
    QVERIFY(plot.legend->visible());
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.plotLayout()));
    // Two short lines low on the left: in a small plot the legend box would cover them in every
    // corner, so it goes below; in a large one it fits in an empty corner.
    plot.resize(260, 180);
    const auto low = spec_of({series({0, 1, 2, 10}, {0, 1, 0, 10}, "first run, long name"),
                              series({0, 1, 2, 10}, {1, 0, 1, 0}, "second run, long name")});
    draw_chart(&plot, low);
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.plotLayout()));
    plot.resize(1600, 1000);
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.axisRect()->insetLayout()));
    QCOMPARE(plot.legend->columnCount(), 1);  // back in a corner: its entries one under the other
    QCOMPARE(plot.legend->rowCount(), 2);
    plot.resize(260, 180);
    QCOMPARE(plot.legend->layout(), static_cast<QCPLayout*>(plot.plotLayout()));
  }

  void series_in_the_legend_are_the_labelled_ones() {
    QCustomPlot plot;
    auto unlabelled = series({0, 1}, {0, 1}, "");
    draw_chart(&plot, spec_of({series({0, 1}, {1, 2}, "a"), unlabelled}));
    QCOMPARE(plot.legend->itemCount(), 1);
    QVERIFY(plot.legend->visible());
    ChartSpec none = spec_of({unlabelled});
    draw_chart(&plot, none);
    QVERIFY(!plot.legend->visible());
  }

  void a_series_in_another_unit_reads_on_the_right_axis_with_its_own_range() {
    QCustomPlot plot;
    ChartSeries ll = series({10, 20, 30}, {-0.9, -0.4, 0.3}, "ll");
    ll.right_axis = true;
    ChartSpec spec = spec_of({series({10, 20, 30}, {20, 60, 100}, "acc"), ll});
    spec.y2_label = "log-likelihood";
    const auto graphs = draw_chart(&plot, spec);
    QCOMPARE(graphs[0]->valueAxis(), plot.yAxis);
    QCOMPARE(graphs[1]->valueAxis(), plot.yAxis2);
    QVERIFY(plot.yAxis2->visible());
    QCOMPARE(plot.yAxis2->label(), QString("log-likelihood"));
    const auto right = plot.yAxis2->range(), left = plot.yAxis->range();
    QVERIFY(right.lower < -0.9 && right.upper > 0.3 && right.size() < 3);  // its own range, not 0 .. 100
    QVERIFY(left.lower < 20 && left.upper > 100 && left.lower > -20);      // the left one without it
    // Drawn again with every series on the left, the right axis goes away.
    draw_chart(&plot, spec_of({series({0, 1}, {0, 1})}));
    QVERIFY(!plot.yAxis2->visible());
  }

  void metric_axes_of_accuracies_stop_just_above_100() {
    // One run at 97% (the comparison scatter after a first copy run): padded around its point,
    // the axis would reach 107; labelled by MetricAxes, it stops just above 100.
    for (const bool mixed : {false, true}) {
      QCustomPlot plot;
      ChartSpec spec = spec_of({series({6}, {97.09}, "acc")});
      MetricAxes axes;
      axes.add(true);
      if (mixed) axes.add(false);
      axes.label(spec);
      draw_chart(&plot, spec);
      const auto y = plot.yAxis->range();
      QVERIFY2(y.lower < 97.09 && y.upper > 97.09, mixed ? "mixed" : "accuracy only");
      QVERIFY2(y.upper < 101, mixed ? "mixed" : "accuracy only");
    }
    // Log-likelihoods alone have no such bound.
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({6}, {120}, "ll")});
    MetricAxes axes;
    axes.add(false);
    axes.label(spec);
    draw_chart(&plot, spec);
    QVERIFY(plot.yAxis->range().upper > 120);
  }

  void a_narrow_range_far_from_zero_gets_distinct_tick_labels() {
    // A cosine schedule's first 15 steps: 0.0005 .. 0.00049999 (the studio's learning-rate plot).
    std::vector<double> x, y;
    for (int t = 0; t < 15; ++t) x.push_back(t + 1), y.push_back(0.00025 * (1 + std::cos(M_PI * t / 10000.0)));
    QCustomPlot plot;
    plot.resize(600, 300);
    draw_chart(&plot, spec_of({series(x, y)}));
    plot.replot();
    QVector<double> ticks;
    QVector<QString> labels;
    plot.yAxis->ticker()->generate(plot.yAxis->range(), plot.locale(), plot.yAxis->numberFormat().at(0).toLatin1(),
                                   plot.yAxis->numberPrecision(), ticks, nullptr, &labels);
    QVERIFY(labels.size() >= 3);
    QCOMPARE(QSet<QString>(labels.begin(), labels.end()).size(), labels.size());
    // Read against zero, the same series spans 0 .. its peak, with the ordinary 6 digits.
    ChartSpec from_zero = spec_of({series(x, y)});
    from_zero.y_from_zero = true;
    draw_chart(&plot, from_zero);
    QVERIFY(plot.yAxis->range().lower <= 0 && plot.yAxis->range().upper > 0.0005);
    QCOMPARE(plot.yAxis->numberPrecision(), 6);
  }

  void log_axes_label_large_decades_with_suffixes() {
    // The Scaling view's axes: context sizes 1k .. 1M, latencies 0.05 .. 200 us.
    QCustomPlot plot;
    plot.resize(600, 300);
    ChartSpec spec = spec_of({series({1024, 16384, 262144, 1048576}, {0.05, 0.3, 4, 200})});
    spec.log_x = spec.log_y = true;
    draw_chart(&plot, spec);
    plot.replot();
    const auto labels_of = [&](QCPAxis* axis) {
      QVector<double> ticks;
      QVector<QString> labels;
      axis->ticker()->generate(axis->range(), plot.locale(), axis->numberFormat().at(0).toLatin1(),
                               axis->numberPrecision(), ticks, nullptr, &labels);
      return labels;
    };
    const QVector<QString> x = labels_of(plot.xAxis), y = labels_of(plot.yAxis);
    QVERIFY2(x.contains("1k") && x.contains("10k") && x.contains("100k") && x.contains("1M"),
             qPrintable(QStringList(x.begin(), x.end()).join(' ')));
    QVERIFY2(y.contains("0.1") && y.contains("1") && y.contains("100"), qPrintable(QStringList(y.begin(), y.end()).join(' ')));
    for (const auto& l : x + y) QVERIFY2(!l.contains('e'), qPrintable(l));  // no 1e+06, no "10^6"
  }

  void a_legend_leaves_lone_points_near_a_corner_visible() {
    // The report's GP scatter (one point a model, log x): the legend went to the top right, over
    // CA's point near that corner.
    auto point = [](double x, double y, const std::string& label) {
      ChartSeries s = series({x}, {y}, label);
      s.line = false, s.markers = true, s.point_labels = {"rbf"};
      return s;
    };
    ChartSpec spec = spec_of({point(4.9, -0.005, "ReTreever (TCA)"), point(13.6, 0.064, "Transformer + CA"),
                              point(5.0, -0.309, "Perceiver IO")});
    spec.log_x = true;
    QCustomPlot plot;
    plot.resize(spec.width, spec.height);
    plot.setViewport(QRect(0, 0, spec.width, spec.height));  // as save_chart_png renders (hidden: no resize event)
    draw_chart(&plot, spec);
    plot.replot();
    QVERIFY(plot.legend->visible());
    const QRectF box = plot.legend->outerRect();
    for (int g = 0; g < plot.graphCount(); ++g) {
      const auto d = plot.graph(g)->data()->at(0);
      const QPointF at(plot.xAxis->coordToPixel(d->key), plot.yAxis->coordToPixel(d->value));
      QVERIFY2(!box.adjusted(-6, -6, 6, 6).contains(at),
               qPrintable(QString("point %1 at %2,%3 under the legend %4,%5 %6x%7").arg(g).arg(at.x()).arg(at.y())
                              .arg(box.x()).arg(box.y()).arg(box.width()).arg(box.height())));
    }
  }

  void a_long_line_is_drawn_from_its_envelope() {
    // A run of 100k steps: a noisy curve with one spike and one gap (NaN). The graph gets a few
    // thousand points, the spike and the gap among them, and the same ranges as the whole line.
    std::vector<double> x, y;
    for (int i = 0; i < 100000; ++i) {
      x.push_back(i);
      y.push_back(i == 61234 ? 40.0 : i == 70000 ? NAN : 2.0 + std::sin(i * 0.37) * std::exp(-i / 30000.0));
    }
    ChartSpec spec = spec_of({series(x, y)});
    QCustomPlot plot;
    plot.resize(900, 560);
    const auto graphs = draw_chart(&plot, spec);
    const auto* data = graphs[0]->data().data();
    QVERIFY2(data->size() > 2000 && data->size() <= 8000, qPrintable(QString::number(data->size())));
    bool spike = false, gap = false;
    for (auto it = data->constBegin(); it != data->constEnd(); ++it) {
      spike = spike || (it->key == 61234 && it->value == 40.0);
      gap = gap || (it->key == 70000 && std::isnan(it->value));
    }
    QVERIFY(spike && gap);
    QCOMPARE(data->constBegin()->key, 0.0);
    QCOMPARE((data->constEnd() - 1)->key, 99999.0);
    QVERIFY(plot.yAxis->range().upper >= 40.0 && plot.yAxis->range().lower <= 2.0 - std::exp(-1.0 / 3));
    // Markers keep every point: each one shows.
    ChartSeries dots = series(std::vector<double>(x.begin(), x.begin() + 7000), std::vector<double>(7000, 1.0));
    dots.markers = true;
    QCOMPARE(draw_chart(&plot, spec_of({dots}))[0]->data()->size(), 7000);
    // A long line whose x and y differ in length is refused, not cut to the shorter before drawing.
    ChartSeries ragged = series(std::vector<double>(7000, 1.0), std::vector<double>(6999, 1.0));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, draw_chart(&plot, spec_of({ragged})));
  }

  void a_legend_in_a_corner_covers_no_point_however_near_the_corner() {
    // Six rows of legend, and a point near each corner at a distance from the top and bottom that
    // grows from 1% to 45% of the height: wherever the legend goes into a corner, its box (with a
    // marker's radius around it) holds no point. An estimate of the box from the font's height left
    // out a third of each row: points just under it were covered.
    for (int t = 1; t <= 45; ++t) {
      auto markers = [](std::vector<double> x, std::vector<double> y, const std::string& label) {
        ChartSeries s = series(std::move(x), std::move(y), label);
        s.line = false, s.markers = true;
        return s;
      };
      ChartSpec spec = spec_of({series({0, 100}, {50, 50}, "middle line"), markers({50, 50}, {0, 100}, "top and bottom"),
                                markers({2}, {100.0 - t}, "top left"), markers({98}, {100.0 - t}, "top right"),
                                markers({2}, {double(t)}, "bottom left"), markers({98}, {double(t)}, "bottom right")});
      QCustomPlot plot;
      plot.resize(spec.width, spec.height);
      plot.setViewport(QRect(0, 0, spec.width, spec.height));
      draw_chart(&plot, spec);
      plot.replot();
      if (!plot.legend->visible()) continue;
      const QRectF box = plot.legend->outerRect().adjusted(-6, -6, 6, 6);
      for (int g = 0; g < plot.graphCount(); ++g)
        for (auto d = plot.graph(g)->data()->constBegin(); d != plot.graph(g)->data()->constEnd(); ++d) {
          const QPointF at(plot.xAxis->coordToPixel(d->key), plot.yAxis->coordToPixel(d->value));
          QVERIFY2(!box.contains(at), qPrintable(QString("t = %1: point %2 of '%3' at %4,%5 under the legend %6,%7 %8x%9")
                                                     .arg(t).arg(d->key).arg(plot.graph(g)->name()).arg(at.x()).arg(at.y())
                                                     .arg(box.x()).arg(box.y()).arg(box.width()).arg(box.height())));
        }
    }
  }

  void point_labels_of_nearby_points_do_not_cover_each_other() {
    // Two runs' points at nearly the same place (the studio's comparison with ten runs had two
    // labels over each other): the second label moves below or to the left of its point.
    auto labelled = [](std::vector<double> x, std::vector<double> y, std::vector<std::string> names) {
      ChartSeries s = series(std::move(x), std::move(y));
      s.line = false, s.markers = true, s.point_labels = std::move(names);
      return s;
    };
    QCustomPlot plot;
    plot.resize(900, 560);
    draw_chart(&plot, spec_of({labelled({5, 5.3, 12, 20}, {0.67, 0.665, 0.2, 0.5}, {"#5 tca gp", "#3 tca gp", "#9 ca gp", "#10 ca gp"})}));
    QList<QCPItemText*> labels;
    for (int i = 0; i < plot.itemCount(); ++i)
      if (auto* t = qobject_cast<QCPItemText*>(plot.item(i))) labels << t;
    QCOMPARE(labels.size(), 4);
    QCOMPARE(labels[0]->positionAlignment(), Qt::AlignLeft | Qt::AlignBottom);  // the first where it always was
    QVERIFY(labels[1]->positionAlignment() != labels[0]->positionAlignment());
    QCOMPARE(labels[2]->positionAlignment(), Qt::AlignLeft | Qt::AlignBottom);  // far from both: the default
    QCOMPARE(labels[3]->positionAlignment(), Qt::AlignRight | Qt::AlignBottom);  // at the right edge: to the left
    // Drawn, the two nearby labels' rectangles do not meet.
    plot.replot();
    const QRectF a(labels[0]->topLeft->pixelPosition(), labels[0]->bottomRight->pixelPosition());
    const QRectF b(labels[1]->topLeft->pixelPosition(), labels[1]->bottomRight->pixelPosition());
    QVERIFY2(!a.intersects(b), qPrintable(QString("%1,%2 %3x%4 and %5,%6 %7x%8").arg(a.x()).arg(a.y()).arg(a.width())
                                              .arg(a.height()).arg(b.x()).arg(b.y()).arg(b.width()).arg(b.height())));
  }

  void redrawing_replaces_the_previous_chart() {
    QCustomPlot plot;
    ChartSpec spec = spec_of({series({0, 1}, {0, 1}, "a"), series({0, 1}, {1, 0}, "b")});
    spec.references.push_back({"paper", 0.5});
    draw_chart(&plot, spec);
    QCOMPARE(plot.graphCount(), 2);
    const int items = plot.itemCount();
    QVERIFY(items >= 2);  // the reference line and its label
    draw_chart(&plot, spec);
    QCOMPARE(plot.graphCount(), 2);
    QCOMPARE(plot.itemCount(), items);
  }

  void png_has_the_requested_size_and_the_series_colour() {
    QTemporaryDir dir;
    const std::string path = dir.filePath("chart.png").toStdString();
    ChartSpec spec = spec_of({series({0, 1, 2, 3}, {0, 3, 1, 4})});
    spec.series[0].colour = 0xD55E00;
    spec.width = 640, spec.height = 400;
    save_chart_png(spec, path);
    QImage img(QString::fromStdString(path));
    QVERIFY(!img.isNull());
    QCOMPARE(img.width(), 640);
    QCOMPARE(img.height(), 400);
    QVERIFY(count_colour(img, 0xD55E00) > 50);  // the line is drawn in its colour
    QVERIFY(!std::filesystem::exists(path + ".tmp"));
    // Written again: replaced, not appended or refused.
    spec.width = 320;
    save_chart_png(spec, path);
    QCOMPARE(QImage(QString::fromStdString(path)).width(), 320);
  }

  void bad_charts_throw_naming_the_path_and_leave_nothing() {
    QTemporaryDir dir;
    const std::string path = dir.filePath("x.png").toStdString();
    ChartSpec empty = spec_of({});
    try {
      save_chart_png(empty, path);
      QFAIL("an empty chart was drawn");
    } catch (const std::runtime_error& e) {
      QVERIFY(std::string(e.what()).find(path) != std::string::npos);
    }
    ChartSpec mismatched = spec_of({series({0, 1, 2}, {0, 1})});
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, save_chart_png(mismatched, path));
    ChartSpec ok = spec_of({series({0, 1}, {0, 1})});
    const std::string missing = dir.filePath("no/such/folder/x.png").toStdString();
    try {
      save_chart_png(ok, missing);
      QFAIL("wrote into a missing folder");
    } catch (const std::runtime_error& e) {
      QVERIFY(std::string(e.what()).find(missing) != std::string::npos);
    }
    QVERIFY(!std::filesystem::exists(path));
    QVERIFY(!std::filesystem::exists(missing + ".tmp"));
  }

  void palette_colours_are_distinct() {
    // Nine hues, then the same darker and lighter: 27 colours before the first comes back.
    for (std::size_t i = 0; i < 27; ++i)
      for (std::size_t j = i + 1; j < 27; ++j) QVERIFY(chart_palette(i) != chart_palette(j));
    QCOMPARE(chart_palette(27), chart_palette(0));
    QCOMPARE(chart_palette(9), 0x00446Au);  // 0x0072B2 at 60%
  }
};

QTEST_MAIN(TestCharts)
#include "test_charts.moc"
