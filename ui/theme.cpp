#include "theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyleFactory>

#include "ui/qcp.h"

namespace retreever::ui {

void apply_theme(bool dark) {
  QApplication::setStyle(QStyleFactory::create("Fusion"));
  QPalette p;
  if (dark) {
    p.setColor(QPalette::Window, QColor(45, 45, 48));
    p.setColor(QPalette::WindowText, QColor(230, 230, 230));
    p.setColor(QPalette::Base, QColor(30, 30, 32));
    p.setColor(QPalette::AlternateBase, QColor(60, 60, 64));
    p.setColor(QPalette::ToolTipBase, QColor(60, 60, 64));
    p.setColor(QPalette::ToolTipText, QColor(230, 230, 230));
    p.setColor(QPalette::Text, QColor(230, 230, 230));
    p.setColor(QPalette::Button, QColor(55, 55, 58));
    p.setColor(QPalette::ButtonText, QColor(230, 230, 230));
    p.setColor(QPalette::Highlight, QColor(42, 130, 218));
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::Mid, QColor(100, 100, 104));
    p.setColor(QPalette::PlaceholderText, QColor(150, 150, 150));
    p.setColor(QPalette::Disabled, QPalette::Text, QColor(120, 120, 120));
    p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(120, 120, 120));
  } else {
    p = QApplication::style()->standardPalette();
    p.setColor(QPalette::AlternateBase, QColor(236, 236, 240));
  }
  QApplication::setPalette(p);
}

void style_plot(QCustomPlot* plot, bool dark) {
  const QColor fg = dark ? QColor(220, 220, 220) : QColor(30, 30, 30);
  const QColor grid = dark ? QColor(80, 80, 84) : QColor(220, 220, 220);
  plot->setBackground(dark ? QColor(30, 30, 32) : Qt::white);
  for (auto* axis : plot->axisRect()->axes()) {
    axis->setBasePen(QPen(fg));
    axis->setTickPen(QPen(fg));
    axis->setSubTickPen(QPen(fg));
    axis->setTickLabelColor(fg);
    axis->setLabelColor(fg);
    axis->grid()->setPen(QPen(grid, 1, Qt::DotLine));
  }
  plot->legend->setBrush(dark ? QColor(45, 45, 48, 220) : QColor(255, 255, 255, 220));
  plot->legend->setTextColor(fg);
  plot->legend->setBorderPen(QPen(grid));
  for (int i = 0; i < plot->plotLayout()->elementCount(); ++i)
    if (auto* title = qobject_cast<QCPTextElement*>(plot->plotLayout()->elementAt(i))) title->setTextColor(fg);
  plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace retreever::ui
