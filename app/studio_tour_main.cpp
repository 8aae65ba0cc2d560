// retreever-tour DIR [STEPS] [--first TASK] [--size WxH]: drives the real studio through a short session of each task and
// saves a screenshot of each main screen into DIR (the README's pictures come from here). A
// developer's tool, apart from the product. --first TASK instead trains one run of TASK, as a new
// user's first session, and shoots every tab. --size sets the window's size (default 1600x1000;
// 1366x768 shows a small laptop's screen, under an Xvfb screen of that size).
#include <QApplication>
#include <QTemporaryDir>
#include <cstdio>

#include "app/studio_tour.h"
#include "ui/main_window.h"

int main(int argc, char** argv) {
  QApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ReTreever");
  QApplication::setApplicationName("ReTreever Studio (tour)");
  const auto args = QApplication::arguments().mid(1);
  if (args.isEmpty() || args[0].startsWith("-")) {
    std::fprintf(stderr, "usage: retreever-tour DIR [STEPS] [--first TASK] [--size WxH]\nerror: name a folder for the screenshots\n");
    return 2;
  }
  const int steps = args.size() > 1 && !args[1].startsWith("-") ? args[1].toInt() : 600;
  const int first = args.indexOf("--first"), sized = args.indexOf("--size");
  QSize size(1600, 1000);
  if (sized >= 0) {
    const auto wh = sized + 1 < args.size() ? args[sized + 1].split('x') : QStringList();
    if (wh.size() != 2 || wh[0].toInt() < 320 || wh[1].toInt() < 240) {
      std::fprintf(stderr, "error: --size expects WIDTHxHEIGHT, at least 320x240, e.g. 1366x768\n");
      return 2;
    }
    size = QSize(wh[0].toInt(), wh[1].toInt());
  }
  // The tour starts from an empty session and leaves none behind (the studio keeps its runs there).
  QTemporaryDir data;
  qputenv("XDG_DATA_HOME", data.path().toUtf8());
  retreever::ui::MainWindow window;
  window.resize(size);
  window.show();
  auto* tour = new StudioTour(&window, args[0], steps > 0 ? steps : 600);
  if (first >= 0 && first + 1 < args.size()) tour->singleRun(args[first + 1]);
  else tour->start();
  return app.exec();
}
