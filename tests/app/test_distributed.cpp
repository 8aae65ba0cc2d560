// Data-parallel training through the command line ('train --nproc N' and the launcher variables
// torchrun sets), on this machine's CPU with Gloo: two processes train like one step for step, only
// rank 0 writes, a killed process ends the run with one clear line, a run resumes with another
// number of processes, bad input is refused. And the process runner behind it (parallel_runs), and
// the interrupt handlers every training process installs.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <csignal>
#include <map>

#include "app/cli/parallel_runs.h"
#include "app/cli/training_run.h"
#include "core/training/distributed.h"

using namespace retreever;

namespace {

struct Result {
  int code = -1;
  bool crashed = false;
  QString out, err;
  qint64 ms = 0;
};

Result finish(QProcess& p, int timeout_ms) {
  Result r;
  QElapsedTimer clock;
  clock.start();
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished();
    r.err = "timed out (a hang)";
    return r;
  }
  r.ms = clock.elapsed();
  r.code = p.exitCode();
  r.crashed = p.exitStatus() != QProcess::NormalExit;
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

void start(QProcess& p, const QStringList& args, const std::map<QString, QString>& env = {}) {
  auto e = QProcessEnvironment::systemEnvironment();
  for (const auto& [k, v] : env) e.insert(k, v);
  p.setProcessEnvironment(e);
  p.start(RETREEVER_BINARY, args);
  p.waitForStarted();
}

Result run(const QStringList& args, const std::map<QString, QString>& env = {},
           int timeout_ms = 300000) {
  QProcess p;
  start(p, args, env);
  return finish(p, timeout_ms);
}

// metrics.csv as columns: name -> one value per logged step.
std::map<QString, std::vector<double>> metrics(const QString& path) {
  QFile f(path);
  std::map<QString, std::vector<double>> columns;
  if (!f.open(QIODevice::ReadOnly)) return columns;
  const auto lines = QString::fromUtf8(f.readAll()).trimmed().split('\n');
  const auto names = lines[0].split(',');
  for (int i = 1; i < lines.size(); ++i) {
    const auto cells = lines[i].split(',');
    for (int c = 0; c < names.size() && c < cells.size(); ++c)
      if (!cells[c].isEmpty()) columns[names[c]].push_back(cells[c].toDouble());
  }
  return columns;
}

// The loss terms whose step-for-step agreement the tests check.
const QStringList kLosses{"loss",    "tca_loss",     "ca_loss",  "rl_loss",
                          "entropy", "train_metric", "grad_norm"};

// Largest relative difference between a's and b's loss columns over steps [from, to) of b (whose
// rows are a's rows first_step.. on); fails the test when a column is missing or short.
double worst_difference(const std::map<QString, std::vector<double>>& a,
                        const std::map<QString, std::vector<double>>& b, std::size_t a_offset = 0) {
  double worst = 0;
  for (const auto& name : kLosses) {
    if (!a.count(name) || !b.count(name)) return INFINITY;
    const auto &x = a.at(name), &y = b.at(name);
    if (y.empty() || x.size() < a_offset + y.size()) return INFINITY;
    for (std::size_t i = 0; i < y.size(); ++i)
      worst = std::max(
          worst, std::abs(x[a_offset + i] - y[i]) / std::max(std::abs(x[a_offset + i]), 1e-3));
  }
  return worst;
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(s);
  return ntohs(a.sin_port);
}

// The pid of the child of `parent` whose environment says RANK=rank, or 0.
pid_t child_with_rank(qint64 parent, int rank) {
  for (const auto& entry : QDir("/proc").entryList(QDir::Dirs)) {
    bool number = false;
    const auto pid = entry.toLongLong(&number);
    if (!number) continue;
    QFile stat("/proc/" + entry + "/stat");
    if (!stat.open(QIODevice::ReadOnly)) continue;
    const auto text = QString::fromUtf8(stat.readAll());
    const auto fields = text.mid(text.lastIndexOf(')') + 2).split(' ');
    if (fields.size() < 2 || fields[1].toLongLong() != parent) continue;
    QFile environ("/proc/" + entry + "/environ");
    if (!environ.open(QIODevice::ReadOnly)) continue;
    for (const auto& var : environ.readAll().split('\0'))
      if (var == "RANK=" + QByteArray::number(rank)) return pid_t(pid);
  }
  return 0;
}

}  // namespace

class TestDistributed : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString config_;

  QString file(const QString& name) { return dir_.filePath(name); }

  // A small copy task with TCA, the whole objective (L_TCA, L_CA, REINFORCE with the batch-mean
  // baseline, whose statistic spans the processes, and exploration); schedule over 16 steps.
  QStringList train(const QString& out, int steps, const QStringList& more = {}) {
    return QStringList{"train",
                       "--task",
                       "copy",
                       "--model",
                       "tca",
                       "--config",
                       config_,
                       "--seq-len",
                       "16",
                       "--batch",
                       "8",
                       "--steps",
                       QString::number(steps),
                       "--log-every",
                       "1",
                       "--eval-every",
                       "8",
                       "--rl-baseline",
                       "mean",
                       "--explore",
                       "0.1",
                       "--device",
                       "cpu",
                       "--out",
                       out} +
           more;
  }

 private Q_SLOTS:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    config_ = file("tiny.json");
    QFile f(config_);
    QVERIFY(f.open(QIODevice::WriteOnly));
    // No dropout: with it (the copy preset's 0.1) each process draws its own slice's masks, so the
    // processes would not equal one process step for step.
    f.write(R"({"d_model": 16, "heads": 2, "ff_dim": 16, "embed_depth": 2, "encoder_layers": 0,
                "eval_batches": 3, "schedule_steps": 16, "dropout": 0})");
  }

  // The reference: one process, 16 steps (trained once, for every test that compares with it).
  bool reference() {
    if (QFile::exists(file("one/metrics.csv"))) return true;
    auto one = run(train(file("one"), 16));
    if (one.code != 0) qWarning("%s", qPrintable(one.err));
    return one.code == 0;
  }

  void aSecondInterruptStopsAtOnce() {
    // In a child process: the first SIGINT only asks (the child goes on and says so through a pipe),
    // and so does a SIGTERM after it (a data-parallel worker gets the terminal's SIGINT and its
    // launcher's SIGTERM for one Ctrl-C); a second SIGINT ends the child by SIGINT, as a step that
    // never ends would be ended.
    int fds[2];
    QVERIFY(::pipe(fds) == 0);
    const pid_t child = ::fork();
    QVERIFY(child >= 0);
    if (child == 0) {
      ::close(fds[0]);
      retreever::cli::install_interrupt_handlers();
      std::raise(SIGINT);
      std::raise(SIGTERM);
      const char survived = retreever::cli::interrupt_requested() ? 'y' : 'n';
      (void)!::write(fds[1], &survived, 1);
      std::raise(SIGINT);
      ::_exit(0);  // not reached when the second interrupt works
    }
    ::close(fds[1]);
    char survived = 0;
    QCOMPARE(::read(fds[0], &survived, 1), ssize_t(1));
    ::close(fds[0]);
    int status = 0;
    QCOMPARE(::waitpid(child, &status, 0), child);
    QCOMPARE(survived, 'y');  // the first SIGINT and a SIGTERM were noted and did not end the process
    QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "the second interrupt did not end the process");
  }

  void twoProcessesTrainLikeOne() {
    QVERIFY(reference());
    auto two = run(train(file("two"), 16, {"--nproc", "2"}));
    QVERIFY2(two.code == 0, qPrintable(two.err));
    QVERIFY2(two.err.contains("x 2 processes"), qPrintable(two.err));
    QCOMPARE(two.err.count("training tca on copy"), 1);  // one progress, rank 0's
    auto a = metrics(file("one/metrics.csv")), b = metrics(file("two/metrics.csv"));
    QCOMPARE(b["loss"].size(), std::size_t(16));
    // The RL part is in play: a REINFORCE term that is not zero at every step.
    double rl = 0;
    for (double v : b["rl_loss"]) rl = std::max(rl, std::abs(v));
    QVERIFY2(rl > 1e-4, "the REINFORCE term is zero: the test would not see its batch statistic");
    const double worst = worst_difference(a, b);
    qInfo("1 vs 2 processes over 16 steps: largest relative difference %.3g", worst);
    QVERIFY2(worst < 1e-3, qPrintable(QString("2 processes differ from 1: %1").arg(worst)));
    // Evaluation, split over the processes (3 batches: 2 and 1) and summed, equals one process's.
    QCOMPARE(b["eval_value"].size(), std::size_t(2));
    QCOMPARE(a["eval_value"], b["eval_value"]);
    QCOMPARE(a["eval_per_point"], b["eval_per_point"]);
    QCOMPARE(a["tokens_per_query"], b["tokens_per_query"]);
    // One set of files, and the launcher's rendezvous folder is gone.
    QCOMPARE(QDir(file("two")).entryList(QDir::Files),
             QStringList({"checkpoint.safetensors", "checkpoint_best.safetensors", "config.json",
                          "metrics.csv"}));
  }

  // torchrun's way: the processes are started by someone else, with RANK, WORLD_SIZE, MASTER_ADDR
  // and MASTER_PORT. Each is told another --out: only rank 0's folder may appear.
  void launcherVariablesAndOnlyRankZeroWrites() {
    const auto port = QString::number(free_port());
    QProcess p0, p1;
    start(
        p0, train(file("env0"), 4),
        {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}});
    start(
        p1, train(file("env1"), 4),
        {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}});
    auto r0 = finish(p0, 120000), r1 = finish(p1, 120000);
    QVERIFY2(r0.code == 0, qPrintable(r0.err));
    QVERIFY2(r1.code == 0, qPrintable(r1.err));
    QVERIFY(QFile::exists(file("env0/checkpoint.safetensors")));
    QVERIFY2(!QDir(file("env1")).exists(), "rank 1 wrote files");
    QVERIFY2(r1.err.trimmed().isEmpty(), qPrintable("rank 1 printed: " + r1.err));
    QVERIFY(reference());
    const double worst =
        worst_difference(metrics(file("one/metrics.csv")), metrics(file("env0/metrics.csv")));
    QVERIFY2(worst < 1e-3,
             qPrintable(QString("torchrun-style run differs from 1 process: %1").arg(worst)));
  }

  // Processes started with different runs (here another seed) refuse to train together.
  void disagreeingProcessesAreRefused() {
    const auto port = QString::number(free_port());
    QProcess p0, p1;
    const std::map<QString, QString> env0{
        {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}};
    auto env1 = env0;
    env1["RANK"] = "1";
    start(p0, train(file("disagree"), 4), env0);
    start(p1, train(file("disagree"), 4, {"--seed", "7"}), env1);
    auto r0 = finish(p0, 120000), r1 = finish(p1, 120000);
    QVERIFY2(r0.code != 0 && r0.code != -1 && r1.code != 0 && r1.code != -1,
             qPrintable(r0.err + r1.err));
    QVERIFY2(r0.err.trimmed().startsWith("error: another process has another config"),
             qPrintable(r0.err));
    QVERIFY2(r1.err.trimmed().startsWith("error: process 1 has another config"),
             qPrintable(r1.err));
    QVERIFY(!QFile::exists(file("disagree/checkpoint.safetensors")));
  }

  void resumeWithAnotherProcessCount() {
    // 8 steps on one process, then on to 16 on two: the same 16 steps as one process throughout.
    QVERIFY(reference());
    auto first = run(train(file("leg"), 8));
    QVERIFY2(first.code == 0, qPrintable(first.err));
    auto second = run({"train", "--resume", file("leg/checkpoint.safetensors"), "--steps", "16",
                       "--nproc", "2", "--out", file("leg")});
    QVERIFY2(second.code == 0, qPrintable(second.err));
    auto a = metrics(file("one/metrics.csv")), b = metrics(file("leg/metrics.csv"));
    QCOMPARE(b["step"].size(), std::size_t(16));
    QCOMPARE(b["step"].back(), 16.0);
    const double worst = worst_difference(a, b);
    QVERIFY2(worst < 1e-3,
             qPrintable(QString("resumed on 2 processes differs from 1 process: %1").arg(worst)));
    // And back: from two processes to one.
    auto back = run({"train", "--resume", file("leg/checkpoint.safetensors"), "--steps", "18",
                     "--out", file("leg")});
    QVERIFY2(back.code == 0, qPrintable(back.err));
    QCOMPARE(metrics(file("leg/metrics.csv"))["step"].back(), 18.0);
  }

  void killedProcessEndsTheRun() {
    QProcess p;
    start(p, train(file("killed"), 100000, {"--nproc", "2", "--eval-every", "5"}),
          {{"RETREEVER_DIST_TIMEOUT", "60"}});
    const auto checkpoint = file("killed/checkpoint.safetensors");
    QElapsedTimer clock;
    clock.start();
    while (!QFile::exists(checkpoint) && clock.elapsed() < 120000) QTest::qWait(100);
    QVERIFY2(QFile::exists(checkpoint), "no checkpoint was written");
    const pid_t victim = child_with_rank(p.processId(), 1),
                survivor = child_with_rank(p.processId(), 0);
    QVERIFY(victim > 0 && survivor > 0);
    QCOMPARE(::kill(victim, SIGKILL), 0);
    auto r = finish(p, 60000);
    QVERIFY2(!r.crashed && r.code != 0 && r.code != -1,
             qPrintable("exit " + QString::number(r.code) + ": " + r.err));
    QVERIFY2(r.ms < 30000, qPrintable(QString("took %1 ms to stop").arg(r.ms)));
    const auto errors = r.err.split('\n').filter(QRegularExpression("^error"));
    QCOMPARE(errors.size(), 1);
    QVERIFY2(errors[0].contains("process 1 of 2 was killed by signal 9"), qPrintable(errors[0]));
    QVERIFY2(errors[0].contains("last good checkpoint is kept: " + checkpoint),
             qPrintable(errors[0]));
    QVERIFY2(::kill(survivor, 0) != 0, "rank 0 is still running");
    // The checkpoint is whole: it evaluates.
    auto e = run({"eval", "--checkpoint", checkpoint, "--json"});
    QVERIFY2(e.code == 0, qPrintable(e.err));
  }

  // SIGTERM (or a terminal's Ctrl-C) to the launcher: every process stops at the same step, rank 0
  // saves, the run exits with 130 and resumes from there.
  void interruptSavesAndStopsAll() {
    QProcess p;
    start(p, train(file("stopped"), 100000, {"--nproc", "2", "--eval-every", "5"}));
    const auto checkpoint = file("stopped/checkpoint.safetensors");
    QElapsedTimer clock;
    clock.start();
    while (!QFile::exists(checkpoint) && clock.elapsed() < 120000) QTest::qWait(100);
    const pid_t worker = child_with_rank(p.processId(), 1);
    QVERIFY(worker > 0);
    ::kill(pid_t(p.processId()), SIGTERM);
    auto r = finish(p, 60000);
    QVERIFY2(r.code == 130, qPrintable("exit " + QString::number(r.code) + ": " + r.err));
    QVERIFY2(r.err.contains("interrupted at step"), qPrintable(r.err));
    QVERIFY2(!r.err.contains("error"), qPrintable(r.err));
    QVERIFY(::kill(worker, 0) != 0);
    const auto steps = metrics(file("stopped/metrics.csv"))["step"];
    QVERIFY(!steps.empty());
    auto resumed =
        run({"train", "--resume", checkpoint, "--steps", QString::number(steps.back() + 2),
             "--nproc", "2", "--out", file("stopped")});
    QVERIFY2(resumed.code == 0, qPrintable(resumed.err));
  }

  // A process that stops answering (SIGSTOP) is noticed after the timeout, not waited for forever.
  void silentProcessTimesOut() {
    QProcess p;
    start(p, train(file("silent"), 100000, {"--nproc", "2"}), {{"RETREEVER_DIST_TIMEOUT", "5"}});
    pid_t victim = 0;
    QElapsedTimer clock;
    clock.start();
    while (!(victim = child_with_rank(p.processId(), 1)) && clock.elapsed() < 60000)
      QTest::qWait(100);
    QVERIFY(victim > 0);
    QTest::qWait(3000);  // into training
    QCOMPARE(::kill(victim, SIGSTOP), 0);
    auto r = finish(p, 90000);
    QVERIFY2(!r.crashed && r.code != 0 && r.code != -1,
             qPrintable("exit " + QString::number(r.code) + ": " + r.err));
    QVERIFY2(r.ms < 40000, qPrintable(QString("took %1 ms to stop").arg(r.ms)));
    const auto errors = r.err.split('\n').filter(QRegularExpression("^error"));
    QCOMPARE(errors.size(), 1);
    QVERIFY2(
        errors[0].contains("lost contact") && errors[0].contains("timed out", Qt::CaseInsensitive),
        qPrintable(errors[0]));
    QVERIFY2(::kill(victim, 0) != 0, "the silent process is still there");
  }

  void badInputIsRefused() {
    auto expect = [&](const QStringList& args, const std::map<QString, QString>& env,
                      const QString& words) {
      auto r = run(args, env, 120000);
      QVERIFY2(!r.crashed && r.code != 0 && r.code != -1,
               qPrintable(args.join(' ') + ": " + r.err));
      const auto lines = r.err.trimmed().split('\n');
      QVERIFY2(lines.size() == 1 && lines[0].startsWith("error: ") && lines[0].contains(words),
               qPrintable("expected one line with '" + words + "', got: " + r.err));
    };
    expect(train(file("bad"), 4, {"--nproc", "0"}), {}, "--nproc must be 1 or more");
    expect(train(file("bad"), 4, {"--nproc", "9"}), {}, "more than the batch");
    expect(train(file("bad"), 4, {"--batch", "60000", "--nproc", "50000"}), {},
           "more than this machine can use");
    expect(train(file("bad"), 4, {"--nproc", "two"}), {}, "--nproc");
    expect(train(file("bad"), 4, {"--nproc", "2"}),
           {{"RANK", "0"},
            {"WORLD_SIZE", "2"},
            {"MASTER_ADDR", "127.0.0.1"},
            {"MASTER_PORT", "29500"}},
           "leave it out");
    expect(train(file("bad"), 4), {{"WORLD_SIZE", "2"}}, "RANK is not");
    expect(train(file("bad"), 4), {{"WORLD_SIZE", "2"}, {"RANK", "5"}}, "RANK=5");
    expect(train(file("bad"), 4), {{"WORLD_SIZE", "2"}, {"RANK", "0"}}, "MASTER_ADDR");
    // The rendezvous port is taken: rank 0 says so at once instead of waiting.
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    QCOMPARE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    QCOMPARE(::listen(s, 1), 0);
    socklen_t n = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
    expect(train(file("bad"), 4),
           {{"RANK", "0"},
            {"WORLD_SIZE", "2"},
            {"MASTER_ADDR", "127.0.0.1"},
            {"MASTER_PORT", QString::number(ntohs(a.sin_port))},
            {"RETREEVER_DIST_TIMEOUT", "20"}},
           "port in use");
    ::close(s);
    QVERIFY(!QDir(file("bad")).exists());
  }

  // study --parallel: the same table as one run after another; a sweep that cannot start ends with one line.
  void studyRunsInParallel() {
    const QStringList study{"study",        "reward",  "--config", config_,   "--seq-len",
                            "16",           "--batch", "8",        "--steps", "6",
                            "--eval-every", "3",       "--device", "cpu"};
    auto one = run(study + QStringList{"--out", file("study1")});
    QVERIFY2(one.code == 0, qPrintable(one.err));
    auto two = run(study + QStringList{"--out", file("study2"), "--parallel", "2"});
    QVERIFY2(two.code == 0, qPrintable(two.err));
    QVERIFY2(two.err.contains("2 at a time"), qPrintable(two.err));
    // The study's table without its status column (trained one after another, reused after the
    // parallel pass trained them).
    auto table = [&](const QString& dir) {
      QFile f(file(dir + "/study.csv"));
      QStringList rows;
      if (!f.open(QIODevice::ReadOnly)) return rows;
      for (const auto& line : QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts)) {
        auto cells = line.split(',');
        if (cells.size() > 9) cells.removeAt(9);
        rows << cells.join(',');
      }
      return rows;
    };
    const auto sequential = table("study1");
    QCOMPARE(sequential.size(), 3);  // header and the two rewards
    QVERIFY2(sequential[1].startsWith("reward,N=16 acc,reward/N16/tca_acc,tca,accuracy,"), qPrintable(sequential[1]));
    QCOMPARE(table("study2"), sequential);
    QVERIFY(QFile::exists(file("study2/reward/N16/tca_acc/train.log")));
    QVERIFY(QFile::exists(file("study2/study.md")));
    auto listed = run(
        study + QStringList{"--out", file("study5"), "--devices", "cpu"});  // one slot, on the CPU
    QVERIFY2(listed.code == 0, qPrintable(listed.err));
    QVERIFY2(listed.err.contains("1 at a time"), qPrintable(listed.err));
    QCOMPARE(table("study5"), sequential);
    // A sweep whose runs cannot start is refused before any process starts (the planning pass builds
    // each run), with one line naming the fix.
    auto bad = run({"study", "ordering", "--task", "image", "--config", config_, "--steps", "2",
                    "--data", file("none"), "--out", file("study3"), "--parallel", "2"});
    QVERIFY2(bad.code != 0 && !bad.crashed, qPrintable(bad.err));
    const auto errors = bad.err.split('\n').filter(QRegularExpression("^error"));
    QCOMPARE(errors.size(), 1);
    QVERIFY2(errors[0].contains("--data"), qPrintable(errors[0]));
    QVERIFY(!QFile::exists(file("study3/ordering/given/train.log")));
    auto refused = run({"study", "reward", "--parallel", "0", "--out", file("study4")});
    QCOMPARE(refused.code, 2);
    QVERIFY2(refused.err.startsWith("error: --parallel"), qPrintable(refused.err));
  }

  void environmentVariablesAreRead() {
    std::map<std::string, std::string> env;
    auto get = [&](const char* n) -> const char* {
      return env.count(n) ? env.at(n).c_str() : nullptr;
    };
    QVERIFY(!setup_from_environment(get));  // none: one process
    env = {{"WORLD_SIZE", "1"}, {"RANK", "0"}};
    QVERIFY(!setup_from_environment(get));
    env = {{"SLURM_NTASKS", "4"},    {"SLURM_PROCID", "3"},
           {"SLURM_LOCALID", "1"},   {"SLURM_NTASKS_PER_NODE", "2(x2)"},
           {"MASTER_ADDR", "node1"}, {"MASTER_PORT", "29500"}};
    auto s = setup_from_environment(get);
    QVERIFY(s);
    QCOMPARE(s->rank, 3);
    QCOMPARE(s->world_size, 4);
    QCOMPARE(s->local_rank, 1);
    QCOMPARE(s->local_world_size, 2);
    QCOMPARE(s->master_addr, std::string("node1"));
    env.erase("MASTER_ADDR");  // srun alone (no rendezvous address): not a data-parallel run
    QVERIFY(!setup_from_environment(get));
    env = {{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}};
    QVERIFY_EXCEPTION_THROWN(setup_from_environment(get), std::invalid_argument);
    // The slices of the batch cover it, in order, sizes within one.
    for (int world : {1, 2, 3, 7})
      for (int batch : {7, 8, 100}) {
        if (batch < world) continue;
        std::int64_t next = 0;
        for (int r = 0; r < world; ++r) {
          auto [from, to] = rank_rows(batch, r, world);
          QCOMPARE(from, next);
          QVERIFY(to - from == batch / world || to - from == batch / world + 1);
          next = to;
        }
        QCOMPARE(next, std::int64_t(batch));
      }
  }

  void jobsRunAtMostPAtATime() {
    std::vector<cli::Job> jobs;
    for (int i = 0; i < 4; ++i) {
      cli::Job j;
      j.name = "job " + std::to_string(i);
      j.program = "/bin/sh";
      j.args = {"-c", i == 2 ? "sleep 0.4; echo 'error: job two failed' >&2; exit 3" : "sleep 0.4"};
      j.log = file("job" + QString::number(i) + ".log").toStdString();
      jobs.push_back(j);
    }
    cli::RunOptions options;
    options.parallel = 2;
    QElapsedTimer clock;
    clock.start();
    auto results = cli::run_jobs(jobs, options);
    const auto ms = clock.elapsed();
    QVERIFY2(ms >= 780 && ms < 1500,
             qPrintable(QString("4 jobs of 0.4 s, 2 at a time, took %1 ms").arg(ms)));
    QCOMPARE(results.size(), std::size_t(4));
    QVERIFY(results[0].ok() && results[1].ok() && results[3].ok());
    QCOMPARE(results[2].exit_code, 3);
    QCOMPARE(results[2].error, std::string("job two failed"));
    QCOMPARE(results[2].describe(), std::string("exited with status 3: job two failed"));
  }

  void aFailureStopsTheOthers() {
    std::vector<cli::Job> jobs(2);
    jobs[0].program = jobs[1].program = "/bin/sh";
    jobs[0].args = {"-c", "sleep 30"};
    jobs[1].args = {"-c", "sleep 0.2; kill -9 $$"};
    cli::RunOptions options;
    options.parallel = 2;
    options.stop_on_failure = true;
    options.grace_seconds = 1;
    QElapsedTimer clock;
    clock.start();
    auto results = cli::run_jobs(jobs, options);
    QVERIFY2(clock.elapsed() < 5000, "the sleeper was not stopped");
    QCOMPARE(results[1].signal, 9);
    QVERIFY(!results[1].stopped);
    QVERIFY(results[0].stopped);
    QVERIFY(!results[0].ok());
    QVERIFY(QString::fromStdString(results[1].describe()).startsWith("was killed by signal 9"));
  }

  void parallelAndDevicesOptions() {
    QCOMPARE(cli::parse_parallel("3", 8), 3);
    QVERIFY_EXCEPTION_THROWN(cli::parse_parallel("0", 8), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_parallel("9", 8), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_parallel("2x", 8), std::invalid_argument);
    QCOMPARE(cli::parse_devices("cuda:0,cuda:1", 2), std::vector<std::string>({"cuda:0", "cuda:1"}));
    QCOMPARE(cli::parse_devices("cpu", 0), std::vector<std::string>({"cpu"}));
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("cuda:0,cuda:0", 2), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("gpu0", 2), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("", 2), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("cuda:99999999999999999999", 2),
                             std::invalid_argument);
    // A GPU the machine does not have is refused, not left to train on the CPU.
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("cuda:0,cuda:2", 2), std::invalid_argument);
    QVERIFY_EXCEPTION_THROWN(cli::parse_devices("cuda:0", 0), std::invalid_argument);
  }
};

QTEST_GUILESS_MAIN(TestDistributed)
#include "test_distributed.moc"
