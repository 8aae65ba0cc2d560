// 'retreever-tour DIR': drives the real app through a short session and saves a
// screenshot of each main screen (the README's pictures come from here).
#pragma once

#include <QObject>
#include <QString>

namespace retreever::ui {
class MainWindow;
}

class StudioTour : public QObject {
  Q_OBJECT
 public:
  StudioTour(retreever::ui::MainWindow* window, QString folder, int steps);
  void start();
  // One short run of `task`, then a screenshot of each tab (first-TASK-*.png): a first session.
  void singleRun(const QString& task);

 private:
  void next();
  bool inspectorReady();  // false: asks next() again shortly
  void shoot(const QString& name);
  retreever::ui::MainWindow* w_;
  QString folder_;
  int steps_;
  int stage_ = 0;
};
