#include "experiment_panel.h"

#include <algorithm>

#include "core/devices.h"
#include "core/registry.h"

#include <QCheckBox>
#include <QAbstractItemView>
#include <QComboBox>
#include <QFile>
#include <QFormLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QStyleOptionComboBox>
#include <QStylePainter>
#include <QVBoxLayout>
#include <nlohmann/json.hpp>

#include "core/memory.h"

// Resources compiled into a static library must be registered by hand (outside any namespace).
static void register_resources() { Q_INIT_RESOURCE(resources); }

namespace retreever::ui {

namespace {
// The config's fields as JSON, parsed once: which are numbers, and which of those are real-valued.
const QJsonObject& default_fields() {
  static const QJsonObject fields =
      QJsonDocument::fromJson(QByteArray::fromStdString(Config().to_json())).object();
  return fields;
}
// Real-valued fields, read from the JSON text itself: Qt's JSON numbers are all doubles and
// an integral default such as lambda_ca = 1.0 would pass for an integer field.
bool is_real_field(const QString& key) {
  static const auto json = nlohmann::json::parse(Config().to_json());
  const auto it = json.find(key.toStdString());
  return it != json.end() && it->is_number_float();
}
// A combo box's items: the values Config accepts for the field.
QStringList choice_list(const char* field) {
  QStringList items;
  for (const auto& c : Config::choices(field)) items << QString::fromStdString(c);
  return items;
}
// What a combo box shows for a choice, and the item's tooltip: models and tasks by their registry
// title, the tooltip their summary and the id config files and the command line write; other
// choices by their id.
std::pair<QString, QString> choice_words(const QString& field, const QString& id) {
  const auto name = id.toStdString();
  const DecoderInfo* d = field == "model" ? find_decoder(name) : nullptr;
  const TaskInfo* t = field == "task" ? find_task(name) : nullptr;
  if (!d && !t) return {id, {}};
  return {QString::fromStdString(d ? d->title : t->title),
          QString::fromStdString(d ? d->summary : t->summary) + "\n(--" + field + " " + id + ")"};
}
// A combo box that elides its current text ("Simplified Treefor…") where the box is narrower than
// the entry; Qt's styles clip it.
class ElidingComboBox : public QComboBox {
 protected:
  void paintEvent(QPaintEvent*) override {
    QStylePainter painter(this);
    QStyleOptionComboBox opt;
    initStyleOption(&opt);
    painter.drawComplexControl(QStyle::CC_ComboBox, opt);
    const auto field = style()->subControlRect(QStyle::CC_ComboBox, &opt, QStyle::SC_ComboBoxEditField, this);
    opt.currentText = fontMetrics().elidedText(opt.currentText, Qt::ElideRight, field.width() - 2);
    painter.drawControl(QStyle::CE_ComboBoxLabel, opt);
  }
};

// A combo box's value is its item's id (the item data), whatever the item shows.
QString value_of(const QWidget* editor) { return qobject_cast<const QComboBox*>(editor)->currentData().toString(); }
}  // namespace

void ensure_resources() {
  static const bool done = (register_resources(), true);
  (void)done;
}

ExperimentPanel::ExperimentPanel(QWidget* parent, int gpus)
    : QWidget(parent), gpus_(gpus < 0 ? cuda_device_count() : gpus) {
  auto* outer = new QVBoxLayout(this);
  auto* scroll = new QScrollArea;
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  auto* inner = new QWidget;
  auto* form = new QFormLayout(inner);
  form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  scroll->setWidget(inner);

  addSection(form, tr("Task"));
  addField(form, {"task", tr("Task"), tr("What to learn; hover an entry for what it is and the word config files and the command line name it by."), choice_list("task")});
  addField(form, {"model", tr("Model"), tr("The decoder that reads the context for each query; hover an entry for what it reads and the word config files and the command line name it by."), choice_list("model")});
  addField(form, {"seq_len", tr("Sequence length"), tr("Copy task: whole sequence length; the first half is the context (at least 4).")});
  addField(form, {"query_positions", tr("Query positions"), tr("Copy task: where the targets' positional encodings count from: from_zero = 0, 1, ... as the context's (the reference code); after_context = after the context's last position, as every older checkpoint."), choice_list("query_positions")});
  addField(form, {"kernel", tr("GP kernel"), tr("GP task: the kernel the training functions are drawn from."), choice_list("kernel")});
  addField(form, {"eval_kernel", tr("Eval kernel"), tr("GP task: the kernel of the evaluation functions (Matern-5/2 tests generalisation)."), choice_list("eval_kernel")});

  addField(form, {"data_dir", tr("Image folder"), tr("Image task: folder of IDX files (empty = /usr/share/datasets/fashion-mnist)."), {}, false, true});
  addField(form, {"eval_split", tr("Eval classes"), tr("Image task: evaluate on the training classes 0-4 (seen) or the unseen classes 5-9."), choice_list("eval_split")});

  addSection(form, tr("Model"));
  addField(form, {"branch_factor", tr("Branch factor b"), tr("Children per tree node; TCA reads k(b-1)+P nodes per query (at least 2).")});
  addField(form, {"ordering", tr("Tree ordering"), tr("How context tokens are laid out as leaves: given order, sorted by a coordinate, k-d tree splits, or sorted along a fixed random direction."), choice_list("ordering")});
  addField(form, {"leaf_layout", tr("Leaf layout"), tr("Where the padding of the leaf groups goes: packed = after the real leaves (the paper), so the last subtrees can be empty; balanced = spread evenly, so sibling nodes cover equal shares of the context."), choice_list("leaf_layout")});
  addField(form, {"padding_siblings", tr("Padding siblings"), tr("TCA: a sibling on the walk that covers only padding: zero = it stays in S as a zero vector, taking some attention weight and adding nothing (the reference code); masked = it is left out, as in every older checkpoint. The same tree without padding."), choice_list("padding_siblings")});
  addField(form, {"latents", tr("Perceiver latents L"), tr("Perceiver IO: learned latents each query reads; compare at L = tokens TCA reads.")});
  addField(form, {"treeformer_depth", tr("Treeformer depth"), tr("Treeformer: depth of the learned decision tree; each query reads its 2^depth leaf summaries.")});
  addField(form, {"d_model", tr("Width d_model"), tr("Width of every token embedding (paper: 64).")});
  addField(form, {"heads", tr("Heads"), tr("Attention heads; d_model must be divisible by it (paper: 4).")});
  addField(form, {"ff_dim", tr("Feed-forward width"), tr("Hidden width of the GEGLU feed-forward blocks (paper: 128).")});
  addField(form, {"embed_depth", tr("Embedder depth"), tr("Linear layers in the embedder MLPs (paper: 4).")});
  addField(form, {"encoder_layers", tr("Encoder layers"), tr("Transformer layers over the context before the decoder (0 = embedder only, as in the copy task).")});
  addField(form, {"aggregator_layers", tr("Aggregator layers"), tr("Transformer layers that summarise a node's children in the tree.")});
  addField(form, {"block", tr("Block style"), tr("How the attention layers are built: reference = the paper's code (each sublayer adds to its normalised input; keys and values read the tokens as they are; a stack's layers start as copies of its first), with which tree cross attention keeps pace with full cross attention; v1 = this project's first form (standard pre-norm), which every older checkpoint uses."), choice_list("block")});
  addField(form, {"bptt", tr("Backprop through tree"), tr("Let the task loss flow through the tree's internal nodes into the encoder."), {}, true});

  addSection(form, tr("Objective"));
  addField(form, {"reward", tr("RL reward"), tr("Classification reward for REINFORCE: accuracy (0/1) or negative cross entropy."), choice_list("reward")});
  addField(form, {"rl_baseline", tr("RL baseline"), tr("What REINFORCE subtracts from the reward: fixed = the paper's constant (0, or -log C for nce); mean = the reward's mean over the batch, which lowers the variance of the policy gradient."), choice_list("rl_baseline")});
  addField(form, {"lambda_rl", tr("λ RL"), tr("Weight of the REINFORCE term that trains the retrieval policy.")});
  addField(form, {"lambda_ca", tr("λ CA"), tr("Weight of the all-leaves cross-attention loss that helps early training.")});
  addField(form, {"ca_warmup", tr("L_CA warm-up steps"), tr("Steps at the start that train on the all-leaves loss alone; the read of S and the policy join afterwards, so the encoder first learns as full cross attention's does (0 = the paper's objective from the first step).")});
  addField(form, {"explore", tr("Exploration ε"), tr("Share of the policy's draws in training made uniformly over the children, so that a confidently wrong branch is still revisited (0 = the paper's pure sampling).")});
  addField(form, {"dropout", tr("Dropout"), tr("Dropout in training where the reference code has it: the attention weights of every attention but the tree walk's own (the walk, its read and the all-leaves read take none), each feed-forward's output and the positional encoding. The reference copy script trains with 0.1 (the copy preset), its other tasks with 0. It costs time.")});
  addField(form, {"entropy_bonus", tr("Entropy bonus α"), tr("Weight of the policy's entropy bonus; keeps exploration alive (paper: 0.01).")});

  addSection(form, tr("Optimisation"));
  addField(form, {"batch", tr("Batch"), tr("Tasks (sequences) per training step.")});
  addField(form, {"steps", tr("Steps"), tr("Training steps; the cosine learning-rate schedule spans them.")});
  addField(form, {"lr", tr("Learning rate"), tr("Adam's peak learning rate (paper: 5e-4).")});
  addField(form, {"adam_beta1", tr("Adam β1"), tr("Adam's first-moment decay: 0.9 is PyTorch's default; the reference code trains the copy task with 0.1.")});
  addField(form, {"grad_clip", tr("Gradient clip"), tr("Largest global gradient norm (0 turns clipping off).")});
  addField(form, {"seed", tr("Seed"), tr("Seeds the data, the initial weights and the policy's sampling.")});
  QStringList devices;
  for (const auto& d : device_names(gpus_)) devices << QString::fromStdString(d);
  if (!all_gpus(gpus_).empty()) devices << kAllGpus;
  addField(form, {"device", tr("Device"),
                  tr("Where to train: auto picks CUDA when this build sees a GPU; with several GPUs, cuda:K picks one "
                     "and \"all GPUs\" trains on every one, data parallel: each GPU takes a share of the batch and "
                     "the run equals one GPU's step for step."),
                  devices});
  addField(form, {"precision", tr("Precision"),
                  tr("fp32; tf32: float32 matrix products run on a GPU's TensorFloat-32 tensor cores (10-bit "
                     "mantissa; on the CPU the same as fp32); or bf16: the forward runs in bfloat16 (autocast). The "
                     "weights and the optimiser stay float32. On the H200 tf32 trains the copy task about 20% faster "
                     "than fp32; bf16 is slower there, and on the CPU."),
                  choice_list("precision")});
  addField(form, {"eval_every", tr("Evaluate every"), tr("Steps between evaluations on the fixed evaluation set.")});
  addField(form, {"eval_batches", tr("Eval batches"), tr("Batches in the fixed evaluation set.")});
  addField(form, {"log_every", tr("Log every"), tr("Steps between rows of the metrics CSV.")});

  auto* preset = new QPushButton(tr("Reset to the task's preset"));
  preset->setToolTip(tr("Load the paper's settings for this task, scaled to a laptop."));
  connect(preset, &QPushButton::clicked, this, [this] { applyPreset(config().task.c_str()); });
  status_ = new QLabel;
  status_->setWordWrap(true);
  status_->setObjectName("validationStatus");
  // Wide enough for the form beside its vertical scroll bar: no horizontal scroll bar at the start.
  scroll->setMinimumWidth(inner->minimumSizeHint().width() + scroll->verticalScrollBar()->sizeHint().width());
  outer->addWidget(scroll, 1);
  outer->addWidget(preset);
  outer->addWidget(status_);

  connect(qobject_cast<QComboBox*>(editors_["task"]), &QComboBox::currentIndexChanged, this, [this] {
    if (!loading_) applyPreset(value_of(editors_["task"]));
  });
  applyPreset("copy");
}

void ExperimentPanel::addSection(QFormLayout* form, const QString& title) {
  auto* label = new QLabel("<b>" + title + "</b>");
  form->addRow(label);
}

void ExperimentPanel::addField(QFormLayout* form, const Field& f) {
  QWidget* editor;
  if (f.boolean) {
    auto* box = new QCheckBox;
    connect(box, &QCheckBox::toggled, this, &ExperimentPanel::revalidate);
    editor = box;
  } else if (!f.choices.isEmpty()) {
    auto* combo = new ElidingComboBox;
    // The longest entry must not widen the dock: the box asks for about 14 characters, elides a
    // longer entry, and the list it drops down is as wide as its entries.
    combo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    combo->setMinimumContentsLength(14);
    int widest = 0;
    for (const auto& id : f.choices) {
      const auto [text, tip] = choice_words(f.key, id);
      combo->addItem(text, id);
      if (!tip.isEmpty()) combo->setItemData(combo->count() - 1, tip, Qt::ToolTipRole);
      widest = std::max(widest, combo->fontMetrics().horizontalAdvance(text));
    }
    combo->view()->setMinimumWidth(widest + 32);  // the entries' text, the popup's margins and scroll bar
    connect(combo, &QComboBox::currentIndexChanged, this, &ExperimentPanel::revalidate);
    editor = combo;
  } else {
    auto* line = new QLineEdit;
    connect(line, &QLineEdit::textChanged, this, &ExperimentPanel::revalidate);
    editor = line;
    is_number_[f.key] = !f.text;
  }
  editor->setObjectName(f.key);
  editor->setToolTip(f.tip);
  editor->setProperty("baseTip", f.tip);
  auto* label = new QLabel(f.label);
  label->setToolTip(f.tip);
  form->addRow(label, editor);
  editors_[f.key] = editor;
}

void ExperimentPanel::fromJsonObject(const QJsonObject& o) {
  loading_ = true;
  for (auto it = editors_.begin(); it != editors_.end(); ++it) {
    const auto v = o.value(it.key());
    if (auto* box = qobject_cast<QCheckBox*>(it.value())) box->setChecked(v.toBool());
    else if (auto* combo = qobject_cast<QComboBox*>(it.value())) {
      if (const int i = combo->findData(v.toString()); i >= 0) combo->setCurrentIndex(i);
    }
    else if (auto* line = qobject_cast<QLineEdit*>(it.value()))
      line->setText(v.isDouble() ? QString::number(v.toDouble(), 'g', 8) : v.toString());
  }
  loading_ = false;
  revalidate();
}

void ExperimentPanel::setConfig(const Config& config) {
  fromJsonObject(QJsonDocument::fromJson(QByteArray::fromStdString(config.to_json())).object());
}

void ExperimentPanel::applyPreset(const QString& task) {
  Config c = Config::preset(task.toStdString());
  const auto current = config();
  c.model = current.model;  // a new task keeps the chosen model
  c.device = current.device;
  c.precision = current.precision;
  setConfig(c);
}

QStringList ExperimentPanel::parallelDevices() const {
  QStringList out;
  if (value_of(editors_["device"]) == kAllGpus)
    for (const auto& d : all_gpus(gpus_)) out << QString::fromStdString(d);
  return out;
}

Config ExperimentPanel::config() const {
  // Editors -> JSON -> Config::from_json: the same parser as config files, so the GUI and the
  // command line accept exactly the same values.
  QJsonObject o = default_fields();
  for (auto it = editors_.begin(); it != editors_.end(); ++it) {
    if (auto* box = qobject_cast<QCheckBox*>(it.value())) o[it.key()] = box->isChecked();
    else if (qobject_cast<QComboBox*>(it.value())) o[it.key()] = value_of(it.value());
    else if (auto* line = qobject_cast<QLineEdit*>(it.value())) {
      const auto text = line->text().trimmed();
      if (!is_number_.value(it.key())) {
        o[it.key()] = text;
        continue;
      }
      bool is_int = false, is_double = false;
      const qlonglong i = text.toLongLong(&is_int);
      const double d = text.toDouble(&is_double);
      const bool integer_field = !is_real_field(it.key());
      if (integer_field && is_int) o[it.key()] = i;
      else if (!integer_field && is_double) o[it.key()] = d;
      else o[it.key()] = text;  // keeps the bad text so that validation names the field
    }
  }
  if (o["device"] == kAllGpus) o["device"] = "cuda:0";  // the replicas take the others (parallelDevices)
  try {
    return Config::from_json(QJsonDocument(o).toJson().toStdString());
  } catch (const std::exception&) {
    return Config();  // problems() explains; revalidate() parsed the same text
  }
}

void ExperimentPanel::revalidate() {
  if (loading_) return;
  QStringList problems;
  QSet<QString> bad;
  // Type errors first (text in a number field), then Config::validate's rules.
  for (auto it = editors_.begin(); it != editors_.end(); ++it) {
    auto* line = qobject_cast<QLineEdit*>(it.value());
    if (!line || !is_number_.value(it.key())) continue;
    bool ok = false;
    if (is_real_field(it.key())) line->text().trimmed().toDouble(&ok);
    else line->text().trimmed().toLongLong(&ok);
    if (!ok) {
      problems << QString("%1: '%2' is not a number.").arg(it.key(), line->text());
      bad.insert(it.key());
    }
  }
  if (problems.isEmpty())
    for (const auto& p : config().validate()) {
      const auto line = QString::fromStdString(p);
      problems << line;
      bad.insert(line.section(':', 0, 0));
    }
  // The memory the run would need, as the trainer will estimate it: a run that cannot fit is not started.
  QString memory;
  if (problems.isEmpty()) {
    const auto c = config();
    const double available = available_memory_bytes();
    if (memory_estimated_on(c.device)) {
      const auto refusal = QString::fromStdString(memory_refusal(c, available));
      if (!refusal.isEmpty()) {
        problems << refusal;
        for (const char* k : {"batch", "d_model", "eval_batches"}) bad.insert(k);
      }
      memory = tr("Needs about %1 of memory").arg(QString::fromStdString(memory_text(c.memory_estimate().total())));
      if (available > 0) memory += tr(" (%1 available)").arg(QString::fromStdString(memory_text(available)));
      memory += ".";
    } else {
      memory = tr("On a GPU the memory is not estimated: a run that does not fit stops at its first step "
                  "and says which setting to lower.");
    }
  }
  // Fields that do not apply to this task/model are disabled, not hidden: users see them, and why.
  const auto task = value_of(editors_["task"]).toStdString();
  const auto model = value_of(editors_["model"]).toStdString();
  for (auto it = editors_.begin(); it != editors_.end(); ++it) {
    const bool is_bad = bad.contains(it.key());
    it.value()->setStyleSheet(is_bad ? "background-color: #f8d0d0; color: #600;" : "");
    QString tip = it.value()->property("baseTip").toString();
    if (auto* combo = qobject_cast<QComboBox*>(it.value()))  // the chosen entry's own words, when it has some
      if (const auto entry = combo->currentData(Qt::ToolTipRole).toString(); !entry.isEmpty())
        tip += "\n\n" + tr("%1: %2").arg(combo->currentText(), entry);
    for (const auto& p : problems)
      if (p.startsWith(it.key() + ":")) tip += "\n\n⚠ " + p;
    const auto unread = unread_field_reason(it.key().toStdString(), task, model);
    if (!unread.empty()) tip += "\n\n" + tr("Not used by this run: %1.").arg(QString::fromStdString(unread));
    it.value()->setToolTip(tip);
    if (auto* form = qobject_cast<QFormLayout*>(it.value()->parentWidget()->layout()))
      if (auto* label = form->labelForField(it.value())) label->setToolTip(tip);  // the label says it too
    it.value()->setEnabled(unread.empty());
  }

  problems_ = problems;
  QString warning;
  if (problems.isEmpty())
    for (const auto& w : config().warnings()) warning = QString::fromStdString(w);
  status_->setText(!problems.isEmpty() ? "<span style='color:#b00'>" + problems.first().toHtmlEscaped() + "</span>"
                   : !warning.isEmpty() ? "<span style='color:#a60'>" + tr("Ready to train, but: ") + warning.toHtmlEscaped() + "</span> " + memory
                                        : tr("Ready to train.") + " " + memory);
  Q_EMIT validityChanged(problems.isEmpty(), problems.isEmpty() ? QString() : problems.first());
}

}  // namespace retreever::ui
