// File > Export plots: the pictures' size and format, as the last export chose them (QSettings
// export/width, export/height, export/format).
#pragma once

#include <QDialog>
#include <QStringList>

class QComboBox;
class QSpinBox;

namespace retreever::ui {

class ExportPlotsDialog : public QDialog {
  Q_OBJECT
 public:
  explicit ExportPlotsDialog(QWidget* parent = nullptr);
  int plotWidth() const;
  int plotHeight() const;
  QStringList formats() const;  // "png", "pdf" or both
  void remember() const;        // the choices, for the next export

 private:
  QSpinBox* width_;
  QSpinBox* height_;
  QComboBox* format_;
};

}  // namespace retreever::ui
