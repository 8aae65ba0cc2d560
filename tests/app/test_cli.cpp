// The 'retreever' command line, run as a user would: train, eval --json, inspect --json,
// resume, Ctrl-C, and every bad input refused with one clear line and a non-zero exit.
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QJsonObject>
#include <QFileInfo>
#include <QProcess>
#include <QTemporaryDir>
#include <QElapsedTimer>
#include <QtTest>
#include <cmath>
#include <csignal>
#include <vector>

namespace {

struct Result {
  int code = -1;
  bool crashed = false;
  QString out, err;
};

Result run(const QStringList& args, int timeout_ms = 300000) {
  QProcess p;
  p.start(RETREEVER_BINARY, args);
  Result r;
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    r.err = "timed out (a hang)";
    return r;
  }
  r.code = p.exitCode();
  r.crashed = p.exitStatus() != QProcess::NormalExit;
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

QJsonObject json_of(const QString& text) {
  QJsonParseError error;
  auto doc = QJsonDocument::fromJson(text.toUtf8(), &error);
  if (error.error != QJsonParseError::NoError) qWarning() << "bad JSON:" << text.left(300);
  return doc.object();
}

}  // namespace

class TestCli : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString run_dir_;

  QString file(const QString& name) { return dir_.filePath(name); }

  void expect_refusal(const QStringList& args, const QString& words) {
    auto r = run(args, 120000);
    const auto what = args.join(' ');
    QVERIFY2(!r.crashed, qPrintable("crashed: " + what));
    QVERIFY2(r.code != 0 && r.code != -1, qPrintable("accepted or hung: " + what + " " + r.err));
    const auto lines = r.err.trimmed().split('\n');
    QVERIFY2(lines.size() == 1 || (lines.size() > 1 && lines[1].startsWith("usage")),
             qPrintable("more than one error line for " + what + ": " + r.err));
    QVERIFY2(lines[0].startsWith("error: "), qPrintable(what + ": " + r.err));
    QVERIFY2(lines[0].contains(words, Qt::CaseInsensitive),
             qPrintable(what + ": expected '" + words + "' in: " + r.err));
  }

 private Q_SLOTS:
  void initTestCase() {
    run_dir_ = file("run");
    auto r = run({"train", "--task", "copy", "--model", "tca", "--seq-len", "8", "--batch", "8",
                  "--steps", "20", "--eval-every", "10", "--out", run_dir_});
    QVERIFY2(r.code == 0, qPrintable(r.err));
  }

  void version_names_the_build() {
    auto r = run({"--version"});
    QCOMPARE(r.code, 0);
    const auto line = r.out.trimmed();
    QVERIFY2(line.startsWith("ReTreever ") && line.contains("LibTorch ") && line.contains("CPU thread"), qPrintable(line));
    QVERIFY2(line.contains("GPU"), qPrintable(line));  // "no GPU", or how many
    QVERIFY(!line.contains('\n'));
    QVERIFY(run({"--help"}).out.contains("--version"));
    // train's help lists every task and model its --task and --model accept, each with a summary.
    const auto help = run({"train", "--help"}).out;
    for (const char* option : {"--task", "--model"}) {
      const QRegularExpression choices(QString("\\n\\s+%1 \\w+ .*\\(([a-z|]+)\\)\\n").arg(option));
      const auto m = choices.match(help);
      QVERIFY2(m.hasMatch(), option);
      for (const auto& name : m.captured(1).split('|'))
        QVERIFY2(help.contains(QRegularExpression("\\n  " + name + " +\\S.{20,}\\n")), qPrintable(name + " has no summary line"));
    }
  }

  void train_writes_config_metrics_and_checkpoints() {
    for (const char* f : {"config.json", "metrics.csv", "checkpoint.safetensors", "checkpoint_best.safetensors"})
      QVERIFY2(QFile::exists(run_dir_ + "/" + f), f);
    QFile csv(run_dir_ + "/metrics.csv");
    QVERIFY(csv.open(QIODevice::ReadOnly));
    const auto rows = QString::fromUtf8(csv.readAll()).trimmed().split('\n');
    QVERIFY(rows[0].startsWith("step,loss,"));
    QCOMPARE(rows.size(), 3);  // the header, then steps 10 and 20 (log_every 10)
    QVERIFY(rows[1].startsWith("10,") && rows[1].contains(",accuracy,"));  // evaluated at step 10
  }

  void train_refuses_a_folder_that_holds_another_run() {
    // Training into a run's folder would replace its checkpoint: refused, naming the three ways on.
    const auto dir = file("kept");
    auto r = run({"train", "--task", "copy", "--seq-len", "8", "--batch", "8", "--steps", "4", "--eval-every", "4",
                  "--out", dir});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto before = QFileInfo(dir + "/checkpoint.safetensors").lastModified();
    expect_refusal({"train", "--task", "copy", "--seq-len", "8", "--batch", "8", "--steps", "2", "--eval-every", "2",
                    "--out", dir},
                   "already holds a run (tca on copy, step 4); go on with it: --resume " + dir +
                       "/checkpoint.safetensors; keep it: pick another --out; replace it: add --overwrite");
    auto e = json_of(run({"eval", "--checkpoint", dir + "/checkpoint.safetensors", "--json"}).out);
    QCOMPARE(e["step"].toInt(), 4);
    QCOMPARE(QFileInfo(dir + "/checkpoint.safetensors").lastModified(), before);
    // Resuming into another run's folder would replace it too; resuming its own goes on.
    expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--steps", "22", "--out", dir},
                   "already holds a run");
    r = run({"train", "--resume", dir + "/checkpoint.safetensors", "--steps", "6"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(json_of(run({"eval", "--checkpoint", dir + "/checkpoint.safetensors", "--json"}).out)["step"].toInt(), 6);
    // --overwrite replaces it, once the new run is sure to start: a refused setting leaves it.
    expect_refusal({"train", "--task", "copy", "--seq-len", "8", "--batch", "8", "--steps", "2", "--lr", "-1",
                    "--out", dir, "--overwrite"},
                   "lr");
    QVERIFY(QFile::exists(dir + "/checkpoint.safetensors") && QFile::exists(dir + "/checkpoint_best.safetensors"));
    r = run({"train", "--task", "copy", "--seq-len", "8", "--batch", "8", "--steps", "2", "--eval-every", "2",
             "--out", dir, "--overwrite"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(json_of(run({"eval", "--checkpoint", dir + "/checkpoint.safetensors", "--json"}).out)["step"].toInt(), 2);
  }

  void inspect_text_names_ranges_only_where_tokens_are_consecutive() {
    // Pixels sorted by their second coordinate: a node covers context tokens of any index, so
    // "a..b" would claim a range that is not there.
    auto r = run({"train", "--task", "image", "--model", "tca", "--ordering", "sort_x2", "--encoder-layers", "0",
                  "--steps", "1", "--batch", "2", "--eval-every", "1", "--out", file("image-sorted")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    r = run({"inspect", "--checkpoint", file("image-sorted/checkpoint.safetensors")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto line = r.out.section("selected:", 1, 1).section('\n', 0, 0);
    QVERIFY2(line.contains(" tokens]"), qPrintable(r.out));
    const QRegularExpression entry("\\d+\\[([^\\]]*)\\]");
    int ranges = 0;
    for (auto it = entry.globalMatch(line); it.hasNext();) {
      const auto inside = it.next().captured(1);
      if (!inside.contains("..")) continue;
      ++ranges;
      QVERIFY2(inside.section("..", 0, 0).toInt() < inside.section("..", 1, 1).toInt(), qPrintable(line));
    }
    QVERIFY(ranges + line.count(" tokens]") + line.count("padding") > 0);
  }

  void fixed_threads_make_a_run_repeat_bit_for_bit() {
    // --threads fixes the count for every step (the tuner would choose it from the steps' speed,
    // and the count changes the order of float sums): two runs write the same metrics.
    QStringList train = {"train", "--task", "gp", "--model", "tca", "--steps", "8", "--batch", "4", "--eval-every", "8",
                         "--log-every", "1", "--threads", "2"};
    auto r = run(train + QStringList{"--out", file("threads-a")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.err.contains("on cpu, 2 CPU threads ->"), qPrintable(r.err));
    QVERIFY2(run(train + QStringList{"--out", file("threads-b")}).code == 0, "second run");
    auto losses = [&](const QString& dir) {
      QFile f(dir + "/metrics.csv");
      if (!f.open(QIODevice::ReadOnly)) return QStringList();
      QStringList out;
      for (const auto& row : QString::fromUtf8(f.readAll()).trimmed().split('\n').mid(1)) out << row.section(',', 0, 1);
      return out;
    };
    QCOMPARE(losses(file("threads-a")).size(), 8);
    QCOMPARE(losses(file("threads-a")), losses(file("threads-b")));
    expect_refusal(train.mid(0, 13) + QStringList{"--threads", "0", "--out", file("threads-c")}, "--threads must be");
  }

  void eval_json_reports_the_contract_fields() {
    auto r = run({"eval", "--checkpoint", run_dir_ + "/checkpoint.safetensors", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    auto j = json_of(r.out);
    QCOMPARE(j["task"].toString(), QString("copy"));
    QCOMPARE(j["model"].toString(), QString("tca"));
    QVERIFY(j.contains("accuracy"));
    const double acc = j["accuracy"].toDouble();
    QVERIFY(acc >= 0 && acc <= 1);
    QCOMPARE(j["context_size"].toDouble(), 4.0);      // seq 8 -> 4 context tokens
    QCOMPARE(j["tokens_per_query"].toDouble(), 3.0);  // k = 1, P = 2: 1 + 2
    QCOMPARE(j["tokens_fraction"].toDouble(), 0.75);
    // Accuracy per target position (copy task): one value per target, averaging to the accuracy.
    const auto per = j["per_target"].toArray();
    QCOMPARE(per.size(), 4);  // sequence 8: context 4, targets 4
    double mean = 0;
    for (const auto& v : per) mean += v.toDouble() / per.size();
    QVERIFY(qAbs(mean - j["accuracy"].toDouble()) < 1e-9);
    // Another seed gives another evaluation set, same contract.
    auto r2 = run({"eval", "--checkpoint", run_dir_ + "/checkpoint.safetensors", "--json", "--seed", "5", "--batches", "2"});
    QVERIFY2(r2.code == 0, qPrintable(r2.err));
    QVERIFY(json_of(r2.out).contains("accuracy"));
  }

  void inspect_json_describes_tree_and_trace() {
    auto r = run({"inspect", "--checkpoint", run_dir_ + "/checkpoint.safetensors", "--sample", "1", "--query", "2", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    auto j = json_of(r.out);
    QCOMPARE(j["context_size"].toInt(), 4);
    QCOMPARE(j["tokens_per_query"].toInt(), 3);
    QVERIFY(j["prediction"].toObject().contains("class"));
    auto nodes = j["tree"].toObject()["nodes"].toArray();
    QCOMPARE(nodes.size(), 1 + 2 + 4);  // root, two leaf groups, four leaves
    QCOMPARE(nodes[0].toObject()["level"].toInt(), 0);
    QCOMPARE(nodes[0].toObject()["parent"].toInt(), -1);
    QCOMPARE(nodes[0].toObject()["leaves"].toArray().size(), 4);
    auto trace = j["trace"].toObject();
    QCOMPARE(trace["path"].toArray().size(), 2);
    QCOMPARE(trace["selected"].toArray().size(), 3);
    QCOMPARE(trace["probabilities"].toArray().size(), 1);
    QCOMPARE(trace["probabilities"].toArray()[0].toArray().size(), 2);
  }

  void train_warns_about_exploration_on_regression() {
    auto r = run({"train", "--task", "gp", "--model", "tca", "--explore", "0.05", "--steps", "2", "--batch", "4",
                  "--eval-every", "2", "--out", file("gp-explore")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.err.contains("warning: explore:"), qPrintable(r.err));
    r = run({"train", "--task", "gp", "--model", "tca", "--steps", "2", "--batch", "4", "--eval-every", "2",
             "--ca-warmup", "1", "--out", file("gp-plain")});
    QVERIFY2(r.code == 0 && !r.err.contains("warning"), qPrintable(r.err));
    // A warm-up that spans the whole run: said, not refused.
    r = run({"train", "--task", "gp", "--model", "tca", "--steps", "2", "--batch", "4", "--eval-every", "2",
             "--ca-warmup", "5", "--out", file("gp-warm")});
    QVERIFY2(r.code == 0 && r.err.contains("warning: ca_warmup:") && r.err.contains("below steps (2)"), qPrintable(r.err));
    // A flag this model or task does not read: said, once each, and the run goes on.
    r = run({"train", "--task", "gp", "--model", "ca", "--steps", "1", "--batch", "4", "--eval-every", "1",
             "--seq-len", "64", "--latents", "4", "--out", file("gp-unread")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    // CA reads every context token: its evaluation line says as many as the (averaged) context
    // holds, not the average rounded to a whole number ("13.6 of 14").
    const auto said = QRegularExpression("step 1: eval log-likelihood [-0-9.]+, ([0-9.]+) of ([0-9.]+) tokens per query")
                          .match(r.err);
    QVERIFY2(said.hasMatch(), qPrintable(r.err));
    QCOMPARE(said.captured(1).toDouble(), said.captured(2).toDouble());
    QVERIFY2(r.err.count("warning: --seq-len has no effect on a ca run on gp: only the copy task reads it") == 1,
             qPrintable(r.err));
    QVERIFY2(r.err.count("warning: --latents has no effect on a ca run on gp: only the perceiver model reads it") == 1,
             qPrintable(r.err));
  }

  void resume_continues_from_the_checkpoint() {
    auto r = run({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--steps", "30", "--out", file("resumed")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    auto e = json_of(run({"eval", "--checkpoint", file("resumed/checkpoint.safetensors"), "--json"}).out);
    QCOMPARE(e["step"].toInt(), 30);
    expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--model", "ca", "--out", file("x")},
                   "cannot change when resuming");
    // Flags that resuming cannot apply are refused, never silently dropped...
    for (const char* flag : {"--batch", "--seed", "--treeformer-depth"})
      expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", flag, "4", "--out", file("x")},
                     "cannot change when resuming");
    // ... and the training settings it can apply are applied and recorded.
    r = run({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--steps", "24", "--lr", "0.002", "--explore", "0.1",
             "--reward", "nce", "--rl-baseline", "mean", "--ca-warmup", "12", "--dropout", "0.2", "--eval-every", "4",
             "--out", file("resumed2")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QFile cf(file("resumed2/config.json"));
    QVERIFY(cf.open(QIODevice::ReadOnly));
    const auto c = json_of(QString::fromUtf8(cf.readAll()));
    QCOMPARE(c["lr"].toDouble(), 0.002);
    QCOMPARE(c["explore"].toDouble(), 0.1);
    QCOMPARE(c["reward"].toString(), QString("nce"));
    QCOMPARE(c["rl_baseline"].toString(), QString("mean"));
    QCOMPARE(c["ca_warmup"].toInt(), 12);
    QCOMPARE(c["dropout"].toDouble(), 0.2);
    QCOMPARE(c["eval_every"].toInt(), 4);
    QCOMPARE(c["steps"].toInt(), 24);
    expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--reward", "loud", "--out", file("x")}, "reward");
    expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--ca-warmup", "-5", "--out", file("x")},
                   "ca_warmup: must be 0 or more");
    expect_refusal({"train", "--resume", run_dir_ + "/checkpoint.safetensors", "--dropout", "1.5", "--out", file("x")},
                   "dropout: must be");
  }

  void ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    QProcess p;
    p.start(RETREEVER_BINARY, {"train", "--task", "copy", "--seq-len", "16", "--batch", "8", "--steps",
                               "100000", "--out", file("interrupted")});
    QVERIFY(p.waitForStarted());
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(file("interrupted/config.json")), 60000);
    QTest::qWait(1500);
    ::kill(pid_t(p.processId()), SIGINT);
    QVERIFY(p.waitForFinished(60000));
    QCOMPARE(p.exitStatus(), QProcess::NormalExit);
    QCOMPARE(p.exitCode(), 130);
    const auto err = QString::fromUtf8(p.readAllStandardError());
    const auto said = QRegularExpression("interrupted at step (\\d+).*resume with --resume (\\S+)\\)").match(err);
    QVERIFY2(said.hasMatch(), qPrintable(err));
    QVERIFY(QFile::exists(file("interrupted/checkpoint.safetensors")));
    auto r = run({"eval", "--checkpoint", file("interrupted/checkpoint.safetensors"), "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    // The advice, taken as printed, goes on in the run's own folder.
    const int step = said.captured(1).toInt();
    r = run({"train", "--resume", said.captured(2), "--steps", QString::number(step + 3)});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    r = run({"eval", "--checkpoint", file("interrupted/checkpoint.safetensors"), "--json"});
    QCOMPARE(json_of(r.out)["step"].toInt(), step + 3);
  }

  void bench_times_the_chosen_models_and_writes_a_profile() {
    const QString prof = file("profile");
    auto r = run({"bench", "--what", "train", "--models", "tca,ca", "--seq-len", "8", "--batch", "4",
                  "--steps", "2", "--profile", prof});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QStringList models;
    QList<double> ms;
    for (const auto& line : r.out.split('\n')) {
      const auto f = line.split(' ', Qt::SkipEmptyParts);
      if (f.size() == 4 && f[1].toDouble() > 0) {  // model ms/step steps/s tokens
        models << f[0];
        ms << f[1].toDouble();
      }
    }
    QCOMPARE(models, (QStringList{"tca", "ca"}));
    // Under each CPU row (and its profile's line) its stages, and TCA's parts of them.
    QVERIFY2(r.out.contains(QRegularExpression("\\ntca .*\\n  profile: .*\\n  stages, ms a step \\(mean\\): embed [0-9.]+ \\| .*"
                                               "backward [0-9.]+ .*\\n    of which prepare: tree [0-9.]+; decode: walk .*"
                                               // the backward's largest autograd nodes, then the others' sum
                                               "; backward: ([A-Za-z]+ [0-9.]+, ){5}[0-9]+ more [0-9.]+\\n")),
             qPrintable(r.out));
    // The ratio line: TCA's step time over CA's, from the two figures just printed (each rounded
    // to 0.01 ms, the ratio to 0.01).
    QRegularExpression ratio("step time against CA's, this run: tca ([0-9.]+)x\\n");
    const auto match = ratio.match(r.out);
    QVERIFY2(match.hasMatch(), qPrintable(r.out));
    const double printed = match.captured(1).toDouble(), expected = ms[0] / ms[1];
    QVERIFY2(qAbs(printed - expected) <= 0.006 + expected * 0.01 / ms[1], qPrintable(r.out));
    for (const char* m : {"tca", "ca"}) {
      QFile trace(prof + "/train-" + m + ".trace.json");
      QVERIFY2(trace.open(QIODevice::ReadOnly), qPrintable("no trace for " + QString(m)));
      QJsonParseError error;
      const auto doc = QJsonDocument::fromJson(trace.readAll(), &error);
      QCOMPARE(error.error, QJsonParseError::NoError);
      QVERIFY(doc.isArray());
      bool has_mm = false;
      for (const auto& e : doc.array()) has_mm = has_mm || e.toObject()["name"].toString() == "aten::mm";
      QVERIFY2(has_mm, "the trace should hold the matrix products of the training step");
    }
    QVERIFY(!QFile::exists(prof + "/train-perceiver.trace.json"));
    // The table says where each trace went, under its model's row; --json says it in the model's figures.
    QVERIFY2(r.out.contains(QRegularExpression("\\nca .*\\n  profile: " + QRegularExpression::escape(prof) +
                                               "/train-ca\\.trace\\.json\\n")),
             qPrintable(r.out));
    const QString prof_json = file("profile-json");
    r = run({"bench", "--what", "train", "--models", "ca", "--seq-len", "8", "--batch", "4", "--steps", "2",
             "--profile", prof_json, "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto told = json_of(r.out)["train"].toObject()["models"].toArray()[0].toObject()["profile"].toObject();
    QCOMPARE(told["trace"].toString(), prof_json + "/train-ca.trace.json");
    QVERIFY(QFile::exists(told["trace"].toString()));
    expect_refusal({"bench", "--what", "train", "--models", "tca,lstm"}, "lstm");
    // A size the model refuses is refused before the table starts: no header above the error.
    auto big = run({"bench", "--what", "train", "--models", "tca", "--seq-len", "100000000", "--steps", "1"});
    QVERIFY(big.code != 0 && !big.crashed);
    QVERIFY2(big.err.startsWith("error: seq_len"), qPrintable(big.err));
    QVERIFY2(!big.out.contains("training step"), qPrintable(big.out));
    // So is a bad setting of the inference part, before the training part runs.
    auto small_n = run({"bench", "--what", "all", "--models", "ca", "--seq-len", "8", "--batch", "4", "--max-n", "5"});
    QVERIFY(small_n.code != 0 && !small_n.crashed);
    QVERIFY2(small_n.err.startsWith("error: --max-n"), qPrintable(small_n.err));
    QVERIFY2(!small_n.out.contains("training step"), qPrintable(small_n.out));
    // A largest size beyond this machine's memory is refused, with the largest that fits (the
    // estimate the Scaling view stops by), before anything is measured.
    auto huge_n = run({"bench", "--what", "all", "--models", "ca", "--device", "cpu", "--max-n", "1099511627776"});
    QVERIFY(huge_n.code != 0 && !huge_n.crashed);
    QVERIFY2(huge_n.err.startsWith("error: --max-n 1099511627776: its largest size needs about") &&
                 huge_n.err.contains("the largest that fits here: --max-n "),
             qPrintable(huge_n.err));
    QVERIFY2(!huge_n.out.contains("training step"), qPrintable(huge_n.out));
  }

  void bench_json_holds_the_table_figures() {
    // --json prints one JSON document (no table) with the figures the tables print.
    auto r = run({"bench", "--what", "all", "--models", "tca,ca", "--seq-len", "8", "--batch", "4", "--steps", "2",
                  "--max-n", "1024", "--queries", "16", "--repeats", "1", "--device", "cpu", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto doc = json_of(r.out);
    const auto models = doc["train"].toObject()["models"].toArray();
    QCOMPARE(models.size(), 2);
    QCOMPARE(models[0].toObject()["model"].toString(), QString("tca"));
    QVERIFY(models[1].toObject()["ms_per_step"].toDouble() > 0);
    const double tca_ms = models[0].toObject()["ms_per_step"].toDouble(), ca_ms = models[1].toObject()["ms_per_step"].toDouble();
    QVERIFY(qAbs(models[0].toObject()["ratio_to_ca"].toDouble() - tca_ms / ca_ms) < 1e-9 * tca_ms / ca_ms);
    QVERIFY(!models[1].toObject().contains("ratio_to_ca"));  // CA is the unit
    QCOMPARE(doc["train"].toObject()["dropout"].toDouble(), 0.0);  // the model's step; --dropout asks for masks
    // On the CPU each model's stages (core/stage.h), in the order they ran, with TCA's parts.
    auto stages_of = [&](int i) {
      QMap<QString, double> ms;
      QStringList order;
      for (const auto& s : models[i].toObject()["stages"].toArray()) {
        order << s.toObject()["stage"].toString();
        ms[order.back()] = s.toObject()["ms_per_step"].toDouble();
      }
      return std::make_pair(order, ms);
    };
    const auto [tca_order, tca_stage] = stages_of(0);
    const auto [ca_order, ca_stage] = stages_of(1);
    for (const char* s : {"embed", "prepare", "decode", "head", "loss", "backward", "optimizer", "rest"}) {
      QVERIFY2(tca_stage.value(s, -1) >= 0 && ca_stage.value(s, -1) >= 0, s);
    }
    QVERIFY2(tca_order.indexOf("embed") < tca_order.indexOf("decode") &&
                 tca_order.indexOf("decode") < tca_order.indexOf("backward") && tca_order.back() == "rest",
             qPrintable(tca_order.join(", ")));
    double parts = 0;
    for (const char* s : {"decode/walk", "decode/read S", "decode/policy", "decode/all leaves"}) {
      QVERIFY2(tca_stage.contains(s), s);
      parts += tca_stage[s];
    }
    QVERIFY(parts > 0 && parts <= tca_stage["decode"]);
    QVERIFY(tca_stage["prepare/tree"] > 0 && tca_stage["prepare/tree"] <= tca_stage["prepare"]);
    QVERIFY2(!ca_stage.contains("decode/walk"), qPrintable(ca_order.join(", ")));  // no walk, no tree
    const auto rows = doc["inference"].toObject()["rows"].toArray();
    QCOMPARE(rows.size(), 1);
    QCOMPARE(rows[0].toObject()["n"].toInt(), 1024);
    QVERIFY(rows[0].toObject()["tca_us_per_query"].toDouble() > 0);
    QVERIFY(rows[0].toObject()["ca_us_per_query"].toDouble() > 0);
    QVERIFY(!rows[0].toObject().contains("tca_graph_us_per_query"));  // graphs: CUDA only
    expect_refusal({"bench", "--what", "train", "--kernels", "maybe"}, "kernels");
    expect_refusal({"bench", "--what", "train", "--dropout", "2"}, "dropout: must be");
    expect_refusal({"bench", "--what", "train", "--graphs", "maybe"}, "--graphs must be on or off");
    expect_refusal({"train", "--out", file("graphs"), "--steps", "1", "--graphs", "yes"}, "--graphs must be on or off");
  }

  void precision_bf16_trains_and_benches() {
    // --precision bf16: the forward autocast to bfloat16 (the CPU's autocast here, LibTorch 2.4+), recorded in
    // config.json; older LibTorch refuses it on the CPU with the fix.
    auto r = run({"bench", "--what", "all", "--models", "tca,ca", "--seq-len", "8", "--batch", "4", "--steps", "2",
                  "--max-n", "1024", "--queries", "16", "--repeats", "1", "--device", "cpu", "--precision", "bf16",
                  "--json"});
    expect_refusal({"bench", "--what", "train", "--precision", "fp16"}, "precision");
    expect_refusal({"train", "--out", file("fp16"), "--steps", "1", "--precision", "fp16"}, "precision");
    if (r.code != 0 && r.err.contains("needs LibTorch 2.4")) {
      // LibTorch 1.13's CPU autocast cannot run the model: bench and train refuse it with the fix.
      QVERIFY2(r.err.contains("--precision fp32") && r.err.count('\n') == 1, qPrintable(r.err));
      expect_refusal({"train", "--out", file("bf16"), "--steps", "1", "--device", "cpu", "--precision", "bf16"},
                     "needs LibTorch 2.4");
      return;
    }
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto doc = json_of(r.out);
    QCOMPARE(doc["precision"].toString(), QString("bf16"));
    QCOMPARE(doc["train"].toObject()["precision"].toString(), QString("bf16"));
    QVERIFY(doc["train"].toObject()["models"].toArray()[0].toObject()["ms_per_step"].toDouble() > 0);
    QVERIFY(doc["inference"].toObject()["rows"].toArray()[0].toObject()["tca_us_per_query"].toDouble() > 0);
    const QString out = file("bf16");
    auto t = run({"train", "--out", out, "--steps", "2", "--seq-len", "8", "--batch", "4", "--eval-every", "2",
                  "--device", "cpu", "--precision", "bf16"});
    QVERIFY2(t.code == 0, qPrintable(t.err));
    QFile config(out + "/config.json");
    QVERIFY(config.open(QIODevice::ReadOnly));
    QCOMPARE(QJsonDocument::fromJson(config.readAll()).object()["precision"].toString(), QString("bf16"));
  }

  void precision_tf32_trains_and_benches() {
    // --precision tf32: float32 tensors (TensorFloat-32 products on a GPU; on this CPU as fp32), recorded in
    // config.json and in bench's figures, and a resumed run may switch back to fp32.
    auto r = run({"bench", "--what", "train", "--models", "tca", "--seq-len", "8", "--batch", "4", "--steps", "2",
                  "--device", "cpu", "--precision", "tf32", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto doc = json_of(r.out);
    QCOMPARE(doc["train"].toObject()["precision"].toString(), QString("tf32"));
    QVERIFY(doc["train"].toObject()["models"].toArray()[0].toObject()["ms_per_step"].toDouble() > 0);
    const QString out = file("tf32");
    auto t = run({"train", "--out", out, "--steps", "2", "--seq-len", "8", "--batch", "4", "--eval-every", "2",
                  "--device", "cpu", "--precision", "tf32"});
    QVERIFY2(t.code == 0, qPrintable(t.err));
    auto precision_of = [&]() {
      QFile config(out + "/config.json");
      return config.open(QIODevice::ReadOnly) ? QJsonDocument::fromJson(config.readAll()).object()["precision"].toString()
                                              : QString("(no config.json)");
    };
    QCOMPARE(precision_of(), QString("tf32"));
    auto resumed = run({"train", "--resume", out + "/checkpoint.safetensors", "--out", out, "--steps", "3",
                        "--precision", "fp32"});
    QVERIFY2(resumed.code == 0, qPrintable(resumed.err));
    QCOMPARE(precision_of(), QString("fp32"));
  }

  void bad_input_is_refused_with_one_clear_line() {
    const QString out = file("bad");
    const QStringList train = {"train", "--out", out, "--steps", "1"};
    expect_refusal(train + QStringList{"--task", "chess"}, "task");
    expect_refusal(train + QStringList{"--model", "lstm"}, "model");
    expect_refusal(train + QStringList{"--batch", "0"}, "batch");
    expect_refusal(train + QStringList{"--batch", "abc"}, "integer");
    expect_refusal({"train", "--out", out, "--steps", "-5"}, "steps");
    expect_refusal(train + QStringList{"--lr", "0"}, "lr");
    expect_refusal(train + QStringList{"--lr", "-1"}, "lr");
    expect_refusal(train + QStringList{"--branch-factor", "1"}, "branch_factor");
    expect_refusal(train + QStringList{"--seq-len", "2"}, "seq_len");
    expect_refusal(train + QStringList{"--device", "tpu"}, "device");
    expect_refusal(train + QStringList{"--bogus", "1"}, "unknown option");
    expect_refusal({"train", "--task", "copy"}, "--out");
    expect_refusal({"frobnicate"}, "unknown command");
    expect_refusal(train + QStringList{"--task", "image", "--data", file("no-such-folder")}, "dataset-fashion-mnist");

    QFile bad(file("bad.json"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"steps\": 10,,}");
    bad.close();
    expect_refusal(train + QStringList{"--config", file("bad.json")}, "malformed JSON");
    expect_refusal(train + QStringList{"--config", file("absent.json")}, "cannot read");
    expect_refusal(train + QStringList{"--config", run_dir_}, "is a folder, not a file");

    expect_refusal({"eval", "--checkpoint", file("absent.pt")}, "does not exist");
    QFile junk(file("junk.pt"));
    QVERIFY(junk.open(QIODevice::WriteOnly));
    junk.write("not a checkpoint at all");
    junk.close();
    expect_refusal({"eval", "--checkpoint", file("junk.pt")}, "not a valid safetensors file");
    QFile full(run_dir_ + "/checkpoint.safetensors");
    QVERIFY(full.open(QIODevice::ReadOnly));
    const auto bytes = full.readAll();
    QFile half(file("half.pt"));
    QVERIFY(half.open(QIODevice::WriteOnly));
    half.write(bytes.left(bytes.size() / 3));
    half.close();
    expect_refusal({"eval", "--checkpoint", file("half.pt")}, "not a valid safetensors file");
    expect_refusal({"inspect", "--checkpoint", file("half.pt"), "--json"}, "not a valid safetensors file");

    const auto ck = run_dir_ + "/checkpoint.safetensors";
    // A run folder where its checkpoint belongs: the error names the file to pass.
    expect_refusal({"eval", "--checkpoint", run_dir_}, "is a folder, not a file; pass '" + ck + "'");
    expect_refusal({"inspect", "--checkpoint", ck, "--sample", "99999", "--json"}, "out of range");
    expect_refusal({"inspect", "--checkpoint", ck, "--query", "99", "--json"}, "out of range");
    expect_refusal({"inspect", "--checkpoint", ck, "--query", "-1", "--json"}, "out of range");
    expect_refusal({"eval", "--checkpoint", ck, "--batches", "0"}, "batches");
    expect_refusal({"eval", "--checkpoint", ck, "--context", "0"}, "--context");
    expect_refusal({"eval", "--checkpoint", ck, "--context", "5"}, "copy task");  // run_dir_ is a copy run
  }

  // A budget small enough for a test: every section but image and ordering, a few steps each.
  QString write_budget(const QString& name, int copy_steps) {
    QFile f(file(name));
    if (!f.open(QIODevice::WriteOnly)) return {};
    // v1 and no dropout: a departure from the paper's recipe, so the copy section trains its row too.
    const QString run = QString("\"batch\": 8, \"steps\": %1, \"eval_every\": 5, \"eval_batches\": 1,"
                                " \"block\": \"v1\", \"dropout\": 0").arg(copy_steps);
    f.write(QString("{\"description\": \"test\", \"seed\": 3,"
                    " \"copy\": {\"seq_lens\": [8], \"config\": {%1}},"
                    " \"reward\": {\"seq_lens\": [8], \"config\": {%1}},"
                    " \"gp\": {\"eval_kernels\": [\"rbf\", \"matern\"], \"config\": {\"batch\": 4, \"steps\": 6,"
                    " \"eval_every\": 3, \"eval_batches\": 1, \"encoder_layers\": 1}}}")
                .arg(run).toUtf8());
    return f.fileName();
  }

  static QList<QStringList> csv_rows(const QString& path) {
    QFile f(path);
    QList<QStringList> rows;
    if (!f.open(QIODevice::ReadOnly)) return rows;
    for (const auto& line : QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts)) rows << line.split(',');
    return rows;
  }

  // PNG signature and the IHDR's width and height.
  static QSize png_size(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    const auto b = f.read(24);
    if (b.size() < 24 || !b.startsWith("\x89PNG\r\n\x1a\n") || b.mid(12, 4) != "IHDR") return {};
    auto be32 = [&](int at) { return (uchar(b[at]) << 24) | (uchar(b[at + 1]) << 16) | (uchar(b[at + 2]) << 8) | uchar(b[at + 3]); };
    return QSize(be32(16), be32(20));
  }

  void old_checkpoints_are_read_only_by_convert_with_trust() {
    const QString old = QStringLiteral(RETREEVER_TEST_DATA) + "/old-format-checkpoint.pt";
    QVERIFY(QFile::exists(old));
    // Every ordinary reader refuses the old format before reading it, naming the one way that does.
    for (const auto& args : {QStringList{"eval", "--checkpoint", old}, QStringList{"inspect", "--checkpoint", old},
                             QStringList{"train", "--resume", old, "--out", file("old-resumed")}})
      expect_refusal(args, "retreever convert --trust");
    expect_refusal({"convert", old, file("new.safetensors")}, "add --trust");
    expect_refusal({"convert", "--trust", run_dir_ + "/checkpoint.safetensors", file("x.safetensors")},
                   "not a checkpoint of the old format");
    auto r = run({"convert", "--trust", old, file("converted.safetensors")});
    QVERIFY2(r.code == 0 && r.out.contains("step 4"), qPrintable(r.err + r.out));
    expect_refusal({"convert", "--trust", old, file("converted.safetensors")}, "exists already");
    // The converted file is an ordinary checkpoint: it evaluates and resumes.
    const auto e = json_of(run({"eval", "--checkpoint", file("converted.safetensors"), "--json"}).out);
    QCOMPARE(e["step"].toInt(), 4);
    QCOMPARE(e["model"].toString(), QString("tca"));
    r = run({"train", "--resume", file("converted.safetensors"), "--steps", "6", "--out", file("converted-run")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(QFile::exists(file("converted-run/checkpoint.safetensors")));
  }

  void runs_that_cannot_fit_are_refused_at_once() {
    QElapsedTimer t;
    t.start();
    expect_refusal({"train", "--task", "copy", "--model", "tca", "--batch", "100000000", "--steps", "1", "--out", file("huge1")},
                   "batch: at most");
    QFile f(file("wide.json"));
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("{\"d_model\": 4000000}");
    f.close();
    expect_refusal({"train", "--task", "copy", "--config", file("wide.json"), "--steps", "1", "--out", file("huge2")},
                   "d_model: at most");
    // Within every bound, yet far beyond this machine: refused by the memory estimate, with the share to lower.
    expect_refusal({"train", "--task", "copy", "--seq-len", "1048576", "--batch", "65536", "--steps", "1", "--out", file("huge3")},
                   "needs about");
    // A guard against building or allocating before refusing, not a speed figure: each refusal is
    // a process start (about a second here, most of it loading LibTorch).
    QVERIFY2(t.elapsed() < 30000, qPrintable(QString("three refusals took %1 ms").arg(t.elapsed())));
    QVERIFY(!QFile::exists(file("huge3/checkpoint.safetensors")));
  }

  void report_writes_tables_plots_and_reuses_finished_runs() {
    const auto budget = write_budget("budget.json", 10);
    const auto out = file("report");
    auto r = run({"report", "--out", out, "--config", budget});
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));

    QFile md(out + "/report.md");
    QVERIFY(md.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(md.readAll());
    for (const char* heading : {"## Copy task", "## Reward ablation", "## 1-D GP regression"})
      QVERIFY2(text.contains(heading), heading);
    QVERIFY(text.contains("| N=8 | ReTreever (TCA) |"));
    QVERIFY(text.contains("TCA within 0.1 nats of CA on rbf"));
    // The section's prose names the kernels this budget evaluates on (rbf and matern), not the
    // laptop budget's three.
    QVERIFY2(text.contains("Trained on RBF functions; evaluated on RBF and Matern-5/2 functions"),
             qPrintable(text.mid(text.indexOf("## 1-D GP"), 300)));

    // The copy section's config departs from the paper's recipe (v1 block, no dropout): the report
    // says how, and trains TCA with the recipe beside (the reference copy script's settings).
    QVERIFY(text.contains("the v1 block (standard pre-norm) instead of the reference code's normalisation; "
                          "dropout 0 (the reference code's: 0.1)"));
    QFile copy_paper(out + "/copy/N8/tca_paper/config.json");
    QVERIFY(copy_paper.open(QIODevice::ReadOnly));
    const auto copy_recipe = json_of(QString::fromUtf8(copy_paper.readAll()));
    QCOMPARE(copy_recipe["block"].toString(), QString("reference"));
    QCOMPARE(copy_recipe["dropout"].toDouble(), 0.1);
    QCOMPARE(copy_recipe["adam_beta1"].toDouble(), 0.1);
    // One row per copy model and the paper's recipe, per reward, per GP model and kernel; values
    // are numbers.
    const auto rows = csv_rows(out + "/report.csv");
    QCOMPARE(rows.size(), 1 + 4 + 2 + 3 * 2);
    QCOMPARE(rows[4][2], QString("copy/N8/tca_paper"));
    QCOMPARE(rows[4][13], QString("paper"));
    QVERIFY(text.contains("| N=8 | ReTreever (TCA), paper's recipe |"));
    QCOMPARE(rows[0][0], QString("section"));
    for (int i = 1; i < rows.size(); ++i) {
      bool ok = false;
      rows[i][5].toDouble(&ok);
      QVERIFY2(ok, qPrintable(rows[i].join(',')));
    }
    // The table's TCA accuracy is what 'eval' says of the run's checkpoint.
    const auto e = json_of(run({"eval", "--checkpoint", out + "/copy/N8/tca/checkpoint.safetensors", "--json"}).out);
    QCOMPARE(rows[1][3], QString("tca"));
    QVERIFY(qAbs(rows[1][5].toDouble() - e["accuracy"].toDouble()) < 1e-5);
    // Perceiver IO gets as many latents as TCA reads.
    QFile pc(out + "/copy/N8/perceiver/config.json");
    QVERIFY(pc.open(QIODevice::ReadOnly));
    QCOMPARE(json_of(QString::fromUtf8(pc.readAll()))["latents"].toInt(), qRound(rows[1][6].toDouble()));
    // The accuracy-reward run is the copy run (same settings), the nce one its own.
    QVERIFY(QFile::exists(out + "/reward/N8/tca_nce/checkpoint.safetensors"));
    QVERIFY(!QFile::exists(out + "/reward/N8/tca_acc"));

    for (const char* plot : {"copy_N8", "copy_tokens", "reward", "gp_curves", "gp_tokens"}) {
      const auto path = out + "/plots/" + plot + ".png";
      QVERIFY2(png_size(path) == QSize(900, 560), qPrintable(path));
      QVERIFY2(text.contains(QString("plots/") + plot + ".png"), plot);
    }

    // Running it again reuses every finished run instead of training it again.
    const auto before = QFileInfo(out + "/copy/N8/tca/checkpoint.safetensors").lastModified();
    auto again = run({"report", "--out", out, "--config", budget});
    QVERIFY2(again.code == 0, qPrintable(again.err.right(2000)));
    QVERIFY2(!again.err.contains(": trained"), qPrintable(again.err));
    QCOMPARE(again.err.count(": reused"), 4 + 2 + 3);
    QCOMPARE(QFileInfo(out + "/copy/N8/tca/checkpoint.safetensors").lastModified(), before);
    // Same numbers; only the status column changes (trained -> reused).
    auto rows_again = csv_rows(out + "/report.csv");
    QCOMPARE(rows_again.size(), rows.size());
    for (int i = 1; i < rows.size(); ++i) {
      QCOMPARE(rows_again[i][9], QString("reused"));
      rows_again[i][9] = rows[i][9];
    }
    QCOMPARE(rows_again, rows);

    // A budget that changes the experiment must not overwrite the runs already there.
    expect_refusal({"report", "--out", out, "--config", write_budget("budget2.json", 12)},
                   "different experiment");
  }

  void report_reuse_ignores_settings_of_decoders_a_run_does_not_use() {
    auto budget = [&](const QString& name, const QString& extra) {
      QFile f(file(name));
      f.open(QIODevice::WriteOnly);
      f.write(QString("{\"seed\": 3, \"copy\": {\"seq_lens\": [8], \"models\": [\"ca\"], \"config\": "
                      "{\"batch\": 8, \"steps\": 4, \"eval_every\": 2, \"eval_batches\": 1%1}}}")
                  .arg(extra).toUtf8());
      return f.fileName();
    };
    const auto out = file("ca-report");
    auto r = run({"report", "--out", out, "--config", budget("ca.json", "")});
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));
    // Tree ordering, leaf layout, REINFORCE baseline and warm-up are TCA's: the CA run is the same run.
    auto again = run({"report", "--out", out, "--config",
                      budget("ca2.json", ", \"ordering\": \"kdtree\", \"leaf_layout\": \"balanced\", \"rl_baseline\": \"mean\", "
                                         "\"ca_warmup\": 2")});
    QVERIFY2(again.code == 0, qPrintable(again.err.right(2000)));
    QCOMPARE(again.err.count(": reused"), 1);
    // ... while a setting CA does use is a different experiment.
    expect_refusal({"report", "--out", out, "--config", budget("ca3.json", ", \"lr\": 0.001")}, "different experiment");
  }

  void report_averages_seeds_on_one_evaluation_set() {
    QFile f(file("seeds.json"));
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("{\"seed\": 3, \"gp\": {\"seeds\": 2, \"models\": [\"tca\", \"perceiver\"], \"eval_kernels\": [\"rbf\"],"
            " \"eval_context\": 40,"
            " \"config\": {\"batch\": 4, \"steps\": 6, \"eval_every\": 3, \"eval_batches\": 2, \"encoder_layers\": 1,"
            " \"ca_warmup\": 3}}}");
    f.close();
    const auto out = file("seeds-report");
    auto r = run({"report", "--out", out, "--config", f.fileName()});
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));
    // The report names the departure from the paper's recipe, and the run recorded it.
    QFile recipe(out + "/report.md");
    QVERIFY(recipe.open(QIODevice::ReadOnly));
    const auto recipe_text = QString::fromUtf8(recipe.readAll());
    QVERIFY(recipe_text.contains("Not the paper's recipe (the README says why): TCA trains with L_CA alone for the first 3 steps"));
    QVERIFY(recipe_text.contains("| ReTreever (TCA), paper's recipe |"));
    QFile cf(out + "/gp/seed4/tca/config.json");
    QVERIFY(cf.open(QIODevice::ReadOnly));
    QCOMPARE(json_of(QString::fromUtf8(cf.readAll()))["ca_warmup"].toInt(), 3);
    // Seed 3 trains into gp/MODEL, seed 4 into gp/seed4/MODEL.
    for (const char* dir : {"/gp/tca", "/gp/perceiver", "/gp/seed4/tca", "/gp/seed4/perceiver"})
      QVERIFY2(QFile::exists(out + dir + "/checkpoint.safetensors"), dir);
    const auto rows = csv_rows(out + "/report.csv");
    QCOMPARE(rows.size(), 1 + 3 + 3);  // rbf, then rbf with every evaluation task holding 40 points
    // Each case: TCA, Perceiver IO, then TCA with the paper's recipe (no warm-up), labelled.
    QCOMPARE(rows[0].mid(11), QStringList({"seeds", "sd", "recipe"}));
    QCOMPARE(rows[3][2], QString("gp/tca_paper"));
    QCOMPARE(rows[3][3], QString("tca"));
    QCOMPARE(rows[3][13], QString("paper"));
    QCOMPARE(rows[1][13], QString("default"));
    QFile paper_config(out + "/gp/tca_paper/config.json");
    QVERIFY(paper_config.open(QIODevice::ReadOnly));
    QCOMPARE(json_of(QString::fromUtf8(paper_config.readAll()))["ca_warmup"].toInt(), 0);
    // The TCA row is the mean of both seeds, each evaluated on seed 3's evaluation set.
    double sum = 0;
    std::vector<double> values;
    for (const char* dir : {"/gp/tca", "/gp/seed4/tca"}) {
      const auto e = json_of(run({"eval", "--checkpoint", out + dir + "/checkpoint.safetensors", "--seed", "3", "--json"}).out);
      values.push_back(e["log_likelihood"].toDouble());
      sum += values.back();
    }
    QCOMPARE(rows[1][3], QString("tca"));
    QCOMPARE(rows[1][11], QString("2"));
    QVERIFY2(qAbs(rows[1][5].toDouble() - sum / 2) < 1e-4, qPrintable(rows[1].join(',')));
    QVERIFY(qAbs(rows[1][12].toDouble() - qAbs(values[0] - values[1]) / std::sqrt(2.0)) < 1e-4);
    // The fixed-context rows: 40 context points in every task, TCA reading |S| of a 40-leaf tree,
    // and the mean of `eval --context 40` over both seeds.
    QCOMPARE(rows[4][1], QString("rbf@40"));
    QCOMPARE(rows[4][3], QString("tca"));
    QCOMPARE(rows[4][7].toDouble(), 40.0);
    QVERIFY2(rows[4][6].toDouble() <= 7.0 + 1e-9, qPrintable(rows[4].join(',')));  // k = 5, P = 2 at most
    double sum40 = 0;
    for (const char* dir : {"/gp/tca", "/gp/seed4/tca"}) {
      const auto e = json_of(
          run({"eval", "--checkpoint", out + dir + "/checkpoint.safetensors", "--seed", "3", "--context", "40", "--json"}).out);
      QCOMPARE(e["context_size"].toDouble(), 40.0);
      sum40 += e["log_likelihood"].toDouble();
    }
    QVERIFY2(qAbs(rows[4][5].toDouble() - sum40 / 2) < 1e-4, qPrintable(rows[4].join(',')));
    QVERIFY(qAbs(rows[4][5].toDouble() - rows[1][5].toDouble()) > 1e-6);  // another evaluation set
    // Both seeds' Perceiver IO read as many latents as the budget seed's TCA run reads.
    for (const char* dir : {"/gp/perceiver", "/gp/seed4/perceiver"}) {
      QFile pc(out + dir + "/config.json");
      QVERIFY(pc.open(QIODevice::ReadOnly));
      QCOMPARE(json_of(QString::fromUtf8(pc.readAll()))["latents"].toInt(), qRound(rows[1][6].toDouble()));
    }
    QFile md(out + "/report.md");
    QVERIFY(md.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(md.readAll());
    QVERIFY(text.contains(" ± "));
    QVERIFY(text.contains("over 2 training seeds (3 to 4"));
    // A seed count out of range is refused.
    QFile bad(file("seeds-bad.json"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"gp\": {\"seeds\": 0}}");
    bad.close();
    expect_refusal({"report", "--out", out, "--config", bad.fileName()}, "number of seeds");
    QVERIFY(bad.open(QIODevice::WriteOnly | QIODevice::Truncate));
    bad.write("{\"gp\": {\"eval_context\": 47}}");
    bad.close();
    expect_refusal({"report", "--out", out, "--config", bad.fileName()}, "context points from 3 to 46");
  }

  // --parallel: the runs train side by side first, then the report reuses them; the same numbers as
  // one run after another.
  void report_parallel_trains_side_by_side_with_the_same_results() {
    const auto budget = write_budget("budget_parallel.json", 6);
    const auto one = file("report_one"), two = file("report_two");
    auto a = run({"report", "--out", one, "--config", budget, "--only", "copy", "--threads", "1"});
    QVERIFY2(a.code == 0, qPrintable(a.err));
    auto b = run({"report", "--out", two, "--config", budget, "--only", "copy", "--parallel", "2", "--threads", "1"});
    QVERIFY2(b.code == 0, qPrintable(b.err));
    QVERIFY2(b.err.contains("2 at a time"), qPrintable(b.err));
    QVERIFY2(!b.err.contains(": trained"), qPrintable(b.err));  // the report's pass only reuses
    const auto ra = csv_rows(one + "/report.csv"), rb = csv_rows(two + "/report.csv");
    QCOMPARE(ra.size(), rb.size());
    QVERIFY(ra.size() >= 4);
    for (int i = 1; i < ra.size(); ++i) {
      QCOMPARE(rb[i][2], ra[i][2]);                            // run
      QVERIFY2(std::abs(rb[i][5].toDouble() - ra[i][5].toDouble()) < 1e-6, qPrintable(rb[i].join(',')));
    }
    QFile log(two + "/copy/N8/tca/train.log");
    QVERIFY(log.open(QIODevice::ReadOnly));
    QVERIFY(QString::fromUtf8(log.readAll()).contains("on cpu, 1 CPU thread ->"));  // --threads reached the child
    expect_refusal({"report", "--out", two, "--config", budget, "--no-train", "--parallel", "2"}, "--no-train");
  }

  // A study is a one-section budget of the report: every decoder on GP, the sized ones reading
  // as many tokens as TCA; orderings on a 1-D task leave out sort_x2; the runs are reused.
  void study_is_a_budget_of_the_report() {
    const QStringList tiny{"--steps", "4", "--batch", "4", "--eval-every", "2", "--device", "cpu"};
    const auto out = file("study-models");
    auto r = run(QStringList{"study", "models", "--task", "gp", "--out", out} + tiny);
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));
    QVERIFY2(r.out.startsWith("study: " + out + "/study.md"), qPrintable(r.out));
    const auto rows = csv_rows(out + "/study.csv");
    QCOMPARE(rows.size(), 1 + 4);  // tca, ca, perceiver, treeformer on the rbf kernel
    QStringList models;
    for (int i = 1; i < rows.size(); ++i) models << rows[i][3];
    QCOMPARE(models, QStringList({"tca", "ca", "perceiver", "treeformer"}));
    QFile pc(out + "/gp/perceiver/config.json");
    QVERIFY(pc.open(QIODevice::ReadOnly));
    QCOMPARE(json_of(QString::fromUtf8(pc.readAll()))["latents"].toInt(), qRound(rows[1][6].toDouble()));
    QFile md(out + "/study.md");
    QVERIFY(md.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(md.readAll());
    QVERIFY2(text.startsWith("# retreever study models"), qPrintable(text.left(200)));
    QVERIFY(text.contains("retreever study models --task gp --out"));  // the command that reproduces it
    QVERIFY(png_size(out + "/plots/gp_curves.png").isValid());
    auto again = run(QStringList{"study", "models", "--task", "gp", "--out", out} + tiny);
    QVERIFY2(again.code == 0, qPrintable(again.err.right(2000)));
    QCOMPARE(again.err.count(": reused"), 4);

    const auto ordering = file("study-ordering");
    r = run(QStringList{"study", "ordering", "--task", "gp", "--out", ordering, "--threads", "1"} + tiny);
    QVERIFY2(r.code == 0, qPrintable(r.err.right(2000)));
    // --threads fixes every run's threads, and the header says it.
    QVERIFY2(r.err.count("on cpu, 1 CPU thread ->") >= 3, qPrintable(r.err.right(2000)));
    QFile omd(ordering + "/study.md");
    QVERIFY(omd.open(QIODevice::ReadOnly));
    QVERIFY(QString::fromUtf8(omd.readAll()).contains("on 1 CPU thread a step (--threads)"));
    expect_refusal({"report", "--out", file("report-threads"), "--threads", "0"}, "--threads must be");
    const auto orows = csv_rows(ordering + "/study.csv");
    QStringList orders;
    for (int i = 1; i < orows.size(); ++i) orders << orows[i][1];
    QVERIFY2(!orders.contains("sort_x2") && orders.contains("given") && orders.contains("kdtree"), qPrintable(orders.join(' ')));
    QVERIFY(QFile::exists(ordering + "/ordering/kdtree/checkpoint.safetensors"));
    expect_refusal(QStringList{"study", "reward", "--task", "gp", "--out", file("study-bad")} + tiny, "copy task");
    expect_refusal({"study", "speed", "--out", file("study-bad")}, "unknown study 'speed'");
    // A report with no run to draw says so instead of pointing at a plots/ folder that is not there.
    auto empty = run({"report", "--out", file("report-empty"), "--no-train", "--only", "copy"});
    QVERIFY2(empty.code == 0 && empty.out.contains("no charts (no run to draw)"), qPrintable(empty.out + empty.err));
    QVERIFY(!QFileInfo::exists(file("report-empty") + "/plots"));
    // A GPU no machine has: refused before any run starts (its runs would have trained on the CPU).
    expect_refusal({"study", "models", "--out", file("study-gpu"), "--devices", "cuda:9999"}, "cuda:9999, but");
    QVERIFY(!QFileInfo::exists(file("study-gpu") + "/copy"));
    QFile bad(file("ordering-gp.json"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write(R"({"ordering": {"task": "gp", "orderings": ["given", "sort_x2"]}})");
    bad.close();
    expect_refusal({"report", "--out", file("report-bad"), "--config", bad.fileName()}, "needs 2-D inputs");
  }

  void report_no_train_lists_missing_runs() {
    const auto out = file("empty-report");
    auto r = run({"report", "--out", out, "--config", write_budget("budget3.json", 10), "--no-train"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(!QFile::exists(out + "/copy/N8/tca/checkpoint.safetensors"));
    const auto rows = csv_rows(out + "/report.csv");
    QCOMPARE(rows.size(), 1 + 4 + 2 + 3 * 2);
    QCOMPARE(rows[1][9], QString("missing"));
  }

  void report_refuses_bad_budgets() {
    auto budget = [&](const QString& name, const QByteArray& text) {
      QFile f(file(name));
      f.open(QIODevice::WriteOnly);
      f.write(text);
      return f.fileName();
    };
    const QString out = file("bad-report");
    expect_refusal({"report", "--out", out, "--config", budget("b1.json", "{\"copy\": {\"seq_lens\": [8], \"colour\": 1}}")}, "unknown field");
    expect_refusal({"report", "--out", out, "--config", budget("b2.json", "{\"copy\": {\"seq_lens\": [8], \"models\": [\"lstm\"]}}")}, "lstm");
    expect_refusal({"report", "--out", out, "--config", budget("b3.json", "{\"copy\": {\"seq_lens\": [2]}}")}, ">= 4");
    expect_refusal({"report", "--out", out, "--config", budget("b4.json", "{\"copy\": ")}, "not valid JSON");
    expect_refusal({"report", "--out", out, "--config", budget("b5.json", "{\"gp\": {\"config\": {\"batch\": 0}}}")}, "batch");
    expect_refusal({"report", "--out", out, "--only", "chess"}, "unknown section");
    expect_refusal({"report", "--out", out, "--config", file("absent.json")}, "cannot read");
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
