// retreever-studio: the desktop app.
//   retreever-studio [CHECKPOINT.safetensors ...]  open saved runs
#include <QApplication>

#include "ui/main_window.h"

int main(int argc, char** argv) {
  QApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ReTreever");
  QApplication::setApplicationName("ReTreever Studio");
  retreever::ui::MainWindow window;
  window.show();
  // Any file named is opened: one that is not a checkpoint gets a dialog saying why.
  for (const auto& arg : QApplication::arguments().mid(1))
    if (!arg.startsWith("-")) window.openCheckpoint(arg);
  return app.exec();
}
