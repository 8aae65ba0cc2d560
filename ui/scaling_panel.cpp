#include "scaling_panel.h"

#include <QComboBox>
#include <QElapsedTimer>
#include <QCoreApplication>
#include <QPointer>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "core/devices.h"
#include "core/inspection.h"
#include "core/memory.h"
#include "core/registry.h"
#include "ui/chart_view.h"
#include "ui/qcp.h"
#include "ui/tree_view.h"

namespace retreever::ui {

namespace {
// A context size as the combo boxes name it: 16k, 1M (binary: 1k = 1024 tokens); other counts whole.
QString size_label(std::int64_t n) {
  constexpr std::int64_t k = 1024, m = k * k;
  return n >= m && n % m == 0 ? QString("%1M").arg(n / m) : n >= k && n % k == 0 ? QString("%1k").arg(n / k) : QString::number(n);
}
}  // namespace

ScalingPanel::ScalingPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  controls->addWidget(new QLabel(tr("Context sizes from 1k to")));
  max_n_ = new QComboBox;
  max_n_->setObjectName("scalingMaxN");
  for (std::int64_t n : {std::int64_t(16) << 10, std::int64_t(64) << 10, std::int64_t(256) << 10,
                         std::int64_t(1) << 20, std::int64_t(4) << 20, std::int64_t(16) << 20})
    max_n_->addItem(size_label(n), qlonglong(n));
  max_n_->setCurrentIndex(2);
  max_n_->setToolTip(tr("The largest context measured; sizes grow by 4 and stop early where memory would not hold them."));
  controls->addWidget(max_n_);
  controls->addWidget(new QLabel(tr("queries")));
  queries_ = new QSpinBox;
  queries_->setRange(1, 65536);
  queries_->setValue(int(ScalingOptions{}.queries));
  queries_->setToolTip(tr("Queries answered per measurement (batch 1): the latency is per query."));
  controls->addWidget(queries_);
  controls->addWidget(new QLabel(tr("device")));
  device_ = new QComboBox;
  for (const auto& d : Config::choices("device")) device_->addItem(QString::fromStdString(d));
  controls->addWidget(device_);
  start_ = new QPushButton(tr("Measure"));
  start_->setObjectName("scalingStart");
  start_->setToolTip(tr("Time inference of TCA, full cross attention and Perceiver IO (as many latents as TCA reads) "
                        "on random contexts, untrained, no encoder: what a query costs, not what it gets right."));
  controls->addWidget(start_);
  status_ = new QLabel(tr("Measures on a worker thread; the plots fill in as each size is done."));
  status_->setObjectName("scalingStatus");
  // A long summary wraps rather than widening the window (past a 1366-pixel screen at 1M tokens).
  status_->setWordWrap(true);
  status_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  controls->addWidget(status_, 1);
  layout->addLayout(controls);
  auto* plots = new QHBoxLayout;
  latency_ = new QCustomPlot;
  tokens_ = new QCustomPlot;
  preparation_ = new QCustomPlot;
  for (auto* p : {latency_, tokens_, preparation_}) {
    p->setMinimumSize(300, 240);
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    p->setAntialiasedElements(QCP::aeAll);
    plots->addWidget(p);
  }
  layout->addLayout(plots, 1);
  auto* walk_row = new QHBoxLayout;
  walk_row->addWidget(new QLabel(tr("One query's walk at N =")));
  walk_n_ = new QComboBox;
  walk_n_->setObjectName("scalingWalkN");
  for (std::int64_t n : {std::int64_t(1) << 10, std::int64_t(64) << 10, std::int64_t(1) << 20, std::int64_t(4) << 20})
    walk_n_->addItem(size_label(n), qlonglong(n));
  walk_n_->setCurrentIndex(2);
  walk_row->addWidget(walk_n_);
  walk_ = new QPushButton(tr("Walk"));
  walk_->setObjectName("scalingWalk");
  walk_->setToolTip(tr("Build an untrained TCA's tree over N random tokens and walk one query down it. The tree "
                       "view draws the path and the selected set S at any size; levels too dense to draw node by "
                       "node become bands. Wheel zooms into the path."));
  walk_row->addWidget(walk_);
  walk_row->addStretch(1);
  layout->addLayout(walk_row);
  tree_ = new TreeView;
  tree_->setObjectName("scalingTree");
  tree_->setPlaceholder(tr("Press Walk: an untrained TCA's tree over N random tokens, and one query's path down it."));
  layout->addWidget(tree_, 1);
  connect(walk_, &QPushButton::clicked, this,
          [this] { walk(walk_n_->currentData().toLongLong(), device_->currentText()); });
  connect(start_, &QPushButton::clicked, this, [this] {
    if (running_) return stop();
    run(max_n_->currentData().toLongLong(), queries_->value(), device_->currentText());
  });
  connect(max_n_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { redraw(); });  // empty axes' extent
  redraw();
}

ScalingPanel::~ScalingPanel() {
  if (stop_) stop_->store(true);
}

QList<QCustomPlot*> ScalingPanel::plots() const { return {latency_, tokens_, preparation_}; }

void ScalingPanel::stop() {
  if (stop_) stop_->store(true);
}

bool ScalingPanel::run(std::int64_t max_n, std::int64_t queries, const QString& device) {
  if (running_) return false;
  ScalingOptions o;
  o.max_n = max_n;
  o.queries = queries;
  o.device = device.toStdString();
  o.graphs = true;  // on a GPU: replayed from CUDA graphs as well (ScalingPoint::latency_us)
  points_.clear();
  redraw();
  running_ = true;
  walk_->setEnabled(false);  // one job at a time on the worker
  start_->setText(tr("Stop"));
  status_->setText(tr("Measuring..."));
  stop_ = std::make_shared<std::atomic<bool>>(false);
  auto stop = stop_;
  QPointer<ScalingPanel> self(this);
  (void)QtConcurrent::run([o, stop, self] {
    QString error;
    std::int64_t largest = 0;
    try {
      largest = measure_scaling(o, available_memory_bytes(), [&](const ScalingPoint& p) {
        QMetaObject::invokeMethod(qApp, [self, p] {
          if (self) self->addPoint(p);
        }, Qt::QueuedConnection);
      }, stop.get());
    } catch (const std::exception& e) {
      error = QString::fromUtf8(e.what());
    }
    QMetaObject::invokeMethod(qApp, [self, error, largest, stop, max_n = o.max_n] {
      if (!self) return;
      const bool ok = self->endJob(error);
      QString summary = largest == 0 ? tr("No size was measured.")
                        : stop->load() ? tr("Stopped after N = %1.").arg(size_label(largest))
                        : largest < max_n ? tr("Up to N = %1: the next size would not fit in memory.").arg(size_label(largest))
                                          : tr("Done: N up to %1.").arg(size_label(largest));
      if (ok) self->status_->setText(summary);
      Q_EMIT self->finished(summary);
    }, Qt::QueuedConnection);
  });
  return true;
}

bool ScalingPanel::walk(std::int64_t n, const QString& device) {
  if (running_) return false;
  running_ = true;
  walk_->setEnabled(false);
  start_->setEnabled(false);
  status_->setText(tr("Building a tree over %L1 tokens...").arg(n));
  QPointer<ScalingPanel> self(this);
  const auto where = device.toStdString();
  (void)QtConcurrent::run([self, n, where] {
    QElapsedTimer clock;
    clock.start();
    auto result = std::make_shared<InspectResult>();
    QString error;
    try {
      *result = inspect_random_context(n, ScalingOptions().d_model, ScalingOptions().heads, where);
    } catch (const std::exception& e) {
      error = QString::fromUtf8(e.what());
    }
    const double seconds = clock.elapsed() / 1e3;
    QMetaObject::invokeMethod(qApp, [self, result, error, seconds, n] {
      if (!self || !self->endJob(error)) return;
      const auto tokens = result->tokens_per_query;
      const auto levels = result->shape.levels() - 1;  // below the root, as the tree view counts them
      self->tree_->setResult(std::move(*result));
      self->tree_->repaint();  // now, so that the frame time below is this tree's
      const auto summary = tr("N = %L1: the query read %2 tokens down %3 levels; built and walked in %4 s, drawn in %5 ms")
                               .arg(n).arg(tokens).arg(levels)
                               .arg(seconds, 0, 'f', 1).arg(self->tree_->lastFrameMs(), 0, 'f', 1);
      self->status_->setText(summary);
      Q_EMIT self->walked(summary);
    }, Qt::QueuedConnection);
  });
  return true;
}

bool ScalingPanel::endJob(const QString& error) {
  running_ = false;
  start_->setText(tr("Measure"));
  start_->setEnabled(true);
  walk_->setEnabled(true);
  if (error.isEmpty()) return true;
  status_->setText(tr("Stopped: %1").arg(error));
  Q_EMIT failed(error);
  return false;
}

void ScalingPanel::addPoint(const ScalingPoint& p) {
  points_ << p;
  status_->setText(tr("%1 at N = %2: %3 us per query, %4 tokens read")
                       .arg(QString::fromStdString(decoder_info(p.model).title)).arg(p.n)
                       .arg(p.latency_us(), 0, 'g', 3).arg(p.tokens_per_query, 0, 'f', 0) +
                   (p.cpu_threads > 0 ? QString(" (%1)").arg(QString::fromStdString(cpu_threads_text(p.cpu_threads)))
                                      : QString()));
  redraw();
}

void ScalingPanel::redraw() {
  ChartSpec latency, tokens, preparation;
  latency.title = tr("Per-query latency").toStdString();
  latency.y_label = tr("microseconds per query (log)").toStdString();
  tokens.title = tr("Tokens read per query").toStdString();
  tokens.y_label = tr("tokens (log)").toStdString();
  // What each context costs before its queries: TCA builds its tree, CA projects keys and values,
  // Perceiver IO's latents read the whole context.
  preparation.title = tr("Preparation per context (tree, keys, latents)").toStdString();
  preparation.y_label = tr("milliseconds (log)").toStdString();
  const double max_n = double(max_n_->currentData().toLongLong());
  for (auto* spec : {&latency, &tokens, &preparation}) {
    spec->x_label = tr("context tokens N (log)").toStdString();
    spec->log_x = spec->log_y = true;
    spec->empty_x_lo = double(ScalingOptions{}.min_n);  // before a measurement: the sizes it will take
    spec->empty_x_hi = max_n;
  }
  latency.empty_y_lo = 0.01, latency.empty_y_hi = 100;  // microseconds: a GPU's TCA to a CPU's CA
  tokens.empty_y_lo = 1, tokens.empty_y_hi = max_n;
  preparation.empty_y_lo = 0.01, preparation.empty_y_hi = 1000;
  latency.empty_text = tokens.empty_text = preparation.empty_text =
      tr("Press Measure:\neach size is drawn\nas it is timed.").toStdString();  // lines that fit a third of a laptop's width
  const auto& all = decoders();
  for (std::size_t i = 0; i < all.size(); ++i) {
    ChartSeries l, t, r;
    l.label = t.label = r.label = all[i].title;
    l.colour = t.colour = r.colour = chart_palette(i);  // the report's colour of each model
    l.markers = t.markers = r.markers = true;
    // A decoder sized to read as many tokens as TCA (Perceiver IO's latents) lies on TCA's line
    // there: dashed, with rings around TCA's points, and said so, so that both stay visible.
    if (all[i].sized()) {
      t.dash = LineDash::dash;
      t.rings = true;
      t.label += tr(" (sized to TCA's tokens)").toStdString();
    }
    for (const auto& p : points_)
      if (p.model == all[i].name) {
        l.x.push_back(double(p.n)), l.y.push_back(p.latency_us());
        t.x.push_back(double(p.n)), t.y.push_back(p.tokens_per_query);
        r.x.push_back(double(p.n)), r.y.push_back(p.preparation_ms());
      }
    if (l.x.empty()) continue;
    latency.series.push_back(l);
    tokens.series.push_back(t);
    preparation.series.push_back(r);
  }
  if (std::any_of(points_.begin(), points_.end(), [](const ScalingPoint& p) { return p.graph_us_per_query > 0; }))
    latency.title = tr("Per-query latency, replayed from CUDA graphs").toStdString();
  draw_chart(latency_, latency);
  draw_chart(tokens_, tokens);
  draw_chart(preparation_, preparation);
  for (auto* p : plots()) p->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace retreever::ui
