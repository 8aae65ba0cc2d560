// retreever-studio: the desktop app.
#include <QApplication>

#include "ui/main_window.h"

int main(int argc, char** argv) {
  QApplication::setHighDpiScaleFactorRoundingPolicy(Qt::HighDpiScaleFactorRoundingPolicy::PassThrough);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("ReTreever");
  QApplication::setApplicationName("ReTreever Studio");
  retreever::ui::MainWindow window;
  window.show();
  for (const auto& arg : QApplication::arguments().mid(1))
    if (arg.endsWith(".pt")) window.openCheckpoint(arg);  // retreever-studio run/checkpoint.pt
  return app.exec();
}
