// Task, model and every hyperparameter of a run, validated as you type: bad values are
// marked, and the reason travels with validityChanged so Train can say why it is disabled.
#pragma once

#include <QMap>
#include <QWidget>

#include "core/config.h"

class QComboBox;
class QLabel;
class QFormLayout;

namespace retreever::ui {

class ExperimentPanel : public QWidget {
  Q_OBJECT
 public:
  // `gpus`: the GPUs the device menu offers (this machine's; tests pass another count).
  explicit ExperimentPanel(QWidget* parent = nullptr, int gpus = -1);

  // The config the editors describe (valid or not; see problems()).
  Config config() const;
  void setConfig(const Config& config);
  // With "all GPUs" chosen, the devices of the data-parallel run (config().device is the first);
  // else empty.
  QStringList parallelDevices() const;
  bool isValid() const { return problems_.isEmpty(); }
  QStringList problems() const { return problems_; }
  QWidget* editor(const QString& key) const { return editors_.value(key); }
  void applyPreset(const QString& task);

 Q_SIGNALS:
  void validityChanged(bool valid, const QString& reason);

 private:
  struct Field {
    Field(QString key_, QString label_, QString tip_, QStringList choices_ = {}, bool boolean_ = false,
          bool text_ = false)
        : key(std::move(key_)), label(std::move(label_)), tip(std::move(tip_)), choices(std::move(choices_)),
          boolean(boolean_), text(text_) {}
    QString key, label, tip;
    QStringList choices;  // a combo box when not empty
    bool boolean = false;
    bool text = false;  // a free-text field (a path), not a number
  };
  void addSection(QFormLayout* form, const QString& title);
  void addField(QFormLayout* form, const Field& f);
  void revalidate();
  void fromJsonObject(const class QJsonObject& o);

  QMap<QString, QWidget*> editors_;
  QMap<QString, bool> is_number_;
  QStringList problems_;
  QLabel* status_ = nullptr;
  bool loading_ = false;
  int gpus_ = 0;
};

// Registers the app's resources (icons, presets); safe to call any number of times.
void ensure_resources();

}  // namespace retreever::ui
