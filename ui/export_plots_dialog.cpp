#include "export_plots_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QSettings>
#include <QSpinBox>

namespace retreever::ui {

ExportPlotsDialog::ExportPlotsDialog(QWidget* parent)
    : QDialog(parent), width_(new QSpinBox), height_(new QSpinBox), format_(new QComboBox) {
  setWindowTitle(tr("Export plots"));
  auto* form = new QFormLayout(this);
  width_->setRange(200, 8000);
  height_->setRange(150, 8000);
  const QSettings settings;
  width_->setValue(settings.value("export/width", 1200).toInt());
  height_->setValue(settings.value("export/height", 800).toInt());
  format_->addItems({"png", "pdf", "png+pdf"});
  format_->setCurrentText(settings.value("export/format", "png").toString());
  form->addRow(tr("Width (px)"), width_);
  form->addRow(tr("Height (px)"), height_);
  form->addRow(tr("Format"), format_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
}

int ExportPlotsDialog::plotWidth() const { return width_->value(); }
int ExportPlotsDialog::plotHeight() const { return height_->value(); }
QStringList ExportPlotsDialog::formats() const { return format_->currentText().split('+'); }

void ExportPlotsDialog::remember() const {
  QSettings settings;
  settings.setValue("export/width", width_->value());
  settings.setValue("export/height", height_->value());
  settings.setValue("export/format", format_->currentText());
}

}  // namespace retreever::ui
