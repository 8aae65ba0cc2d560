// retreever-studio: the desktop app.
//   retreever-studio [CHECKPOINT.safetensors]  open a saved run
//   retreever-studio --tour DIR [STEPS]   drive a short session and save screenshots into DIR
#include <QApplication>

#include "app/studio_tour.h"
#include "ui/main_window.h"

int main(int argc, char** argv) {
  QApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ReTreever");
  QApplication::setApplicationName("ReTreever Studio");
  retreever::ui::MainWindow window;
  const auto args = QApplication::arguments().mid(1);
  const int tour = args.indexOf("--tour");
  if (tour >= 0) {
    if (tour + 1 >= args.size()) {
      std::fprintf(stderr, "error: --tour needs a folder for the screenshots\n");
      return 2;
    }
    window.resize(1600, 1000);
    window.show();
    const int steps = tour + 2 < args.size() ? args[tour + 2].toInt() : 600;
    auto* t = new StudioTour(&window, args[tour + 1], steps > 0 ? steps : 600);
    t->start();
    return app.exec();
  }
  window.show();
  // Any file named is opened: one that is not a checkpoint gets a dialog saying why.
  for (const auto& arg : args)
    if (!arg.startsWith("-")) window.openCheckpoint(arg);
  return app.exec();
}
