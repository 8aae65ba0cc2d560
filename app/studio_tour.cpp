#include "studio_tour.h"

#include <QApplication>
#include <QDir>
#include <QPixmap>
#include <QTabWidget>
#include <QTimer>
#include <cstdio>
#include <functional>
#include <memory>

#include "ui/experiment_panel.h"
#include "ui/inspector_panel.h"
#include "ui/main_window.h"
#include "ui/scaling_panel.h"

using namespace retreever;
using namespace retreever::ui;

StudioTour::StudioTour(MainWindow* window, QString folder, int steps)
    : QObject(window), w_(window), folder_(std::move(folder)), steps_(steps) {}

void StudioTour::start() {
  QDir().mkpath(folder_);
  connect(w_->session(), &TrainingSession::stateChanged, this, [this](TrainingSession::State s) {
    if (s == TrainingSession::State::Finished || s == TrainingSession::State::Failed)
      QTimer::singleShot(800, this, [this] {
        if (!w_->session()->busy() && w_->queueEmpty()) next();
      });
  });
  // Stage 0: the copy task, TCA against CA and Perceiver IO (one click: Compare).
  Config c = Config::preset("copy");
  c.steps = steps_;
  c.eval_every = std::max(10, steps_ / 10);
  w_->experiment()->setConfig(c);
  w_->action("compare")->trigger();
}

void StudioTour::shoot(const QString& name) {
  QApplication::processEvents();
  const auto path = QDir(folder_).filePath(name + ".png");
  w_->grab().save(path);
  std::printf("wrote %s\n", qPrintable(path));
  std::fflush(stdout);
}

bool StudioTour::inspectorReady() {
  if (w_->inspector()->hasModel() && !w_->inspector()->loading()) return true;
  QTimer::singleShot(200, this, &StudioTour::next);  // the inspector loads off the UI thread
  return false;
}

void StudioTour::singleRun(const QString& task) {
  // One run of one task, as a new user's first session: every tab is shot after it.
  QDir().mkpath(folder_);
  Config c = Config::preset(task.toStdString());
  c.steps = steps_;
  c.eval_every = std::max(10, steps_ / 10);
  if (c.encoder_layers > 2) c.encoder_layers = 2;
  w_->experiment()->setConfig(c);
  connect(w_->session(), &TrainingSession::stateChanged, this, [this, task](TrainingSession::State s) {
    if (s != TrainingSession::State::Finished && s != TrainingSession::State::Failed) return;
    auto shootAll = std::make_shared<std::function<void()>>();
    *shootAll = [this, task, shootAll] {
      if (!(w_->inspector()->hasModel() && !w_->inspector()->loading()))
        return void(QTimer::singleShot(200, this, *shootAll));
      w_->tabs()->setCurrentIndex(0);
      QTimer::singleShot(500, this, [this, task] {
        shoot("first-" + task + "-curves");
        w_->tabs()->setCurrentWidget(w_->inspector());
        QTimer::singleShot(500, this, [this, task] {
          shoot("first-" + task + "-inspector");
          w_->tabs()->setCurrentIndex(2);
          QTimer::singleShot(500, this, [this, task] {
            shoot("first-" + task + "-comparison");
            // The Scaling tab, with one query's walk at a million tokens (no measurement: minutes).
            w_->tabs()->setCurrentWidget(w_->scaling());
            connect(w_->scaling(), &ScalingPanel::walked, this, [this] {
              QTimer::singleShot(500, this, [this] {
                shoot("first-scaling-walk");
                QApplication::quit();
              });
            });
            connect(w_->scaling(), &ScalingPanel::failed, this, [] { QApplication::quit(); });
            w_->scaling()->walk(std::int64_t(1) << 20, "auto");
          });
        });
      });
    };
    QTimer::singleShot(300, this, *shootAll);
  });
  w_->action("train")->trigger();
}

void StudioTour::next() {
  switch (stage_++) {
    case 0: {
      w_->selectRun(0);  // the TCA run
      w_->tabs()->setCurrentIndex(0);
      if (!inspectorReady()) return void(--stage_);
      QTimer::singleShot(600, this, [this] {
        shoot("studio-curves");
        w_->tabs()->setCurrentWidget(w_->inspector());
        w_->inspector()->selectQuery(9);
        QTimer::singleShot(400, this, [this] {
          shoot("studio-inspector-copy");
          w_->inspector()->revealLevel(2);
          QTimer::singleShot(300, this, [this] {
            shoot("studio-inspector-step");
            w_->inspector()->revealLevel(99);
            w_->tabs()->setCurrentWidget(w_->tabs()->widget(2));
            QTimer::singleShot(400, this, [this] {
              shoot("studio-comparison");
              // Stage 1: GP regression with TCA.
              Config g = Config::preset("gp");
              g.steps = steps_;
              g.encoder_layers = 2;
              g.eval_every = std::max(10, steps_ / 10);
              w_->experiment()->setConfig(g);
              w_->action("train")->trigger();
            });
          });
        });
      });
      break;
    }
    case 1: {
      w_->selectRun(int(w_->runs().size()) - 1);  // the GP run just finished
      w_->tabs()->setCurrentWidget(w_->inspector());
      if (!inspectorReady()) return void(--stage_);  // next() comes again once it has loaded
      // Show the evaluation context with the most points: the retrieval has most to choose from.
      qint64 best = 0, most = 0;
      for (qint64 i = 0; i < 256; i += 16) {  // a GP batch shares its context size: one probe per batch
        w_->inspector()->selectSample(i);
        if (w_->inspector()->current() && w_->inspector()->current()->context_size > most) {
          most = w_->inspector()->current()->context_size;
          best = i;
        }
      }
      w_->inspector()->selectSample(best);
      w_->inspector()->selectQuery(2);
      QTimer::singleShot(600, this, [this] {
        shoot("studio-inspector-gp");
        // Stage 2: image completion on Fashion-MNIST (skipped when the data is not installed).
        Config im = Config::preset("image");
        im.steps = steps_;
        im.eval_every = std::max(10, steps_ / 10);
        w_->experiment()->setConfig(im);
        w_->action("train")->trigger();
      });
      break;
    }
    case 2: {
      w_->selectRun(int(w_->runs().size()) - 1);  // the image run just finished
      w_->tabs()->setCurrentWidget(w_->inspector());
      if (!inspectorReady()) return void(--stage_);
      w_->inspector()->selectSample(3);
      w_->inspector()->selectQuery(0);
      QTimer::singleShot(600, this, [this] {
        if (w_->runs().last().config.task == "image" && w_->runs().last().snapshot) shoot("studio-inspector-image");
        // The Scaling view: inference against the context size, measured live.
        w_->tabs()->setCurrentWidget(w_->scaling());
        // Then one query's walk at a million tokens, drawn below the plots.
        connect(w_->scaling(), &ScalingPanel::finished, this, [this] { w_->scaling()->walk(std::int64_t(1) << 20, "auto"); });
        connect(w_->scaling(), &ScalingPanel::walked, this, [this] {
          QTimer::singleShot(500, this, [this] {
            shoot("studio-scaling");
            w_->setDarkTheme(true);
            w_->tabs()->setCurrentIndex(0);
            QTimer::singleShot(600, this, [this] {
              shoot("studio-dark");
              w_->setDarkTheme(false);
              QApplication::quit();
            });
          });
        });
        w_->scaling()->run(std::int64_t(256) << 10, 1024, "auto");
      });
      break;
    }
    default:
      break;
  }
}
