// A short training run lowers the loss on each task and model; divergence stops cleanly; the flat
// Adam takes torch::optim::Adam's steps and reads and writes its state.
#include <QScopeGuard>
#include <QtTest>
#include <cmath>
#include <numeric>
#include <set>
#include <thread>
#include <sstream>

#include <torch/optim/adam.h>
#include <torch/serialize.h>

#include "core/model/losses.h"
#include "core/model/retreever.h"
#include "core/stage.h"
#include "core/training/device.h"
#include "core/training/distributed.h"
#include "core/training/flat_adam.h"
#include "core/training/local_replicas.h"
#include "core/training/thread_tuner.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

#include "tests/small_config.h"

using retreever::testing::small_config;
using namespace retreever;

namespace {
// A small model of a task's preset on the CPU: width 16, two heads, one evaluation batch.
Config tiny(const std::string& task) {
  Config c = small_config(task);
  c.seq_len = 8;
  c.ff_dim = 16;
  c.batch = Config::preset(task).batch;
  return c;
}

// Three parameters of different shapes, the same values in each set.
std::vector<torch::Tensor> parameter_set() {
  torch::manual_seed(7);
  std::vector<torch::Tensor> p{torch::randn({3, 4}), torch::randn({5}), torch::randn({2, 2, 2})};
  for (auto& t : p) t.set_requires_grad(true);
  return p;
}

// Gives every parameter of both sets the same gradient, drawn for step `t`.
void set_gradients(std::vector<torch::Tensor>& a, std::vector<torch::Tensor>& b, int t) {
  torch::manual_seed(100 + t);
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto g = torch::randn(a[i].sizes()) * double(i + 1);
    for (auto* p : {&a[i], &b[i]}) {
      if (p->grad().defined()) p->mutable_grad().copy_(g);  // the flat Adam's views stay in place
      else p->mutable_grad() = g.clone();
    }
  }
}

// Copies of the values as fresh leaf parameters.
std::vector<torch::Tensor> fresh_copy(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> copy;
  for (const auto& p : params) copy.push_back(p.detach().clone().set_requires_grad(true));
  return copy;
}

// Moves optimiser state as a checkpoint does: saved to bytes by one, loaded by the other.
template <class From, class To>
void transfer_state(const From& from, To& to) {
  torch::serialize::OutputArchive saved;
  from.save(saved);
  std::ostringstream bytes;
  saved.save_to(bytes);
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes.str());
  archive.load_from(in);
  to.load(archive);
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

double mean_loss(const std::vector<StepMetrics>& s, size_t from, size_t to) {
  double sum = 0;
  for (size_t i = from; i < to; ++i) sum += s[i].tca_loss;  // the task loss (L_RL is no loss to watch fall)
  return sum / double(to - from);
}
}  // namespace

class TestTraining : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  // The studio's "all GPUs" (here two CPU devices over Gloo): a leader and a replica in one
  // process train as one trainer does, step for step; a change of the learning rate reaches both.
  void local_replicas_train_as_one_trainer() {
    if (!distributed_unsupported_reason("gloo").empty()) QSKIP("this build has no Gloo");
    Config c = small_config("copy", "tca");
    c.steps = 6;
    c.eval_every = 3;
    c.dropout = 0;  // with dropout each replica draws its own slice's masks: not one trainer's
    Trainer one(c, datasets::make_task), leader(c, datasets::make_task);
    {
      LocalReplicas replicas(leader, {"cpu", "cpu"}, datasets::make_task, 30);
      QCOMPARE(replicas.size(), 2);
      QCOMPARE(leader.world_size(), 2);
      for (int step = 0; step < 4; ++step) {
        if (step == 2) {
          one.set_peak_learning_rate(2 * c.lr);
          replicas.together([&](Trainer& t) { t.set_peak_learning_rate(2 * c.lr); });
        }
        const auto a = one.step();
        StepMetrics b;
        replicas.together([&](Trainer& t) {
          auto m = t.step();
          if (&t == &leader) b = m;
        });
        QVERIFY2(std::abs(a.loss - b.loss) <= 1e-3 * std::max(1.0, std::abs(a.loss)),
                 qPrintable(QString("step %1: one %2, data parallel %3").arg(step).arg(a.loss).arg(b.loss)));
      }
      EvalMetrics e;
      replicas.together([&](Trainer& t) {
        auto m = t.evaluate();
        if (&t == &leader) e = m;
      });
      QVERIFY(std::abs(e.value - one.evaluate().value) < 1e-4);
      // A replica's failure reaches the caller, and the run goes on afterwards.
      bool thrown = false;
      try {
        replicas.together([&](Trainer& t) {
          if (&t != &leader) throw std::runtime_error("replica failed");
        });
      } catch (const std::runtime_error& error) {
        thrown = std::string(error.what()) == "replica failed";
      }
      QVERIFY(thrown);
    }
    QCOMPARE(leader.world_size(), 1);  // the replicas are gone: the leader trains alone again
    QVERIFY(std::isfinite(leader.step().loss));
    // Fewer than two devices is refused with the reason.
    QVERIFY_EXCEPTION_THROWN(LocalReplicas(leader, {"cpu"}, datasets::make_task), std::runtime_error);
  }

  void short_run_lowers_the_loss_data() {
    QTest::addColumn<QString>("task");
    QTest::addColumn<QString>("model");
    for (const char* task : {"copy", "gp"})
      for (const char* model : {"tca", "ca", "perceiver", "treeformer"})
        QTest::newRow((std::string(task) + "/" + model).c_str()) << QString(task) << QString(model);
  }

  void short_run_lowers_the_loss() {
    QFETCH(QString, task);
    QFETCH(QString, model);
    Config c = Config::preset(task.toStdString());
    c.model = model.toStdString();
    c.seq_len = 16;
    c.d_model = 32;
    c.heads = 4;
    c.ff_dim = 64;
    c.encoder_layers = task == "gp" ? 1 : 0;
    c.batch = task == "gp" ? 16 : 32;
    c.steps = 160;
    c.ca_warmup = std::min<std::int64_t>(c.ca_warmup, 40);  // the GP preset's; both phases run
    c.lr = 1e-3;
    c.eval_batches = 2;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    std::vector<StepMetrics> s;
    while (!t.finished()) s.push_back(t.step());
    const double first = mean_loss(s, 0, 20), last = mean_loss(s, s.size() - 20, s.size());
    QVERIFY2(last < first - 0.1, qPrintable(QString("task loss %1 -> %2").arg(first).arg(last)));
    for (const auto& m : s) QVERIFY(std::isfinite(m.loss));
    // The schedule decays to zero and metrics are logged every log_every steps.
    QVERIFY(s.back().lr < 0.01 * c.lr);
    QCOMPARE(int64_t(t.history().steps.size()), c.steps / c.log_every);
    auto e = t.evaluate();
    if (task == "copy") {
      QVERIFY(e.value > 0.2);  // chance is 1/10
      QCOMPARE(e.metric, std::string("accuracy"));
    } else {
      QCOMPARE(e.metric, std::string("log_likelihood"));
    }
  }

  // A StageClock times the named spans run on its thread while it lives (nested ones apart), in the
  // order they ended, and nothing after it goes; a clock inside another takes the spans meanwhile.
  void stage_clock_times_the_named_spans() {
    auto sleep_in = [](int ms) {
      RETREEVER_STAGE("test/sleep");
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    };
    std::vector<StageClock::Stage> outer_seen, inner_seen;
    {
      StageClock outer;
      {
        RETREEVER_STAGE("test");
        sleep_in(15);
        sleep_in(5);
      }
      {
        StageClock inner;
        sleep_in(5);
        inner_seen = inner.stages();
      }
      { RECORD_USER_SCOPE("another::span"); }  // not ours: left out
      outer_seen = outer.stages();
    }
    QCOMPARE(int(outer_seen.size()), 2);
    QCOMPARE(outer_seen[0].name, std::string("test/sleep"));  // ended first
    QCOMPARE(outer_seen[1].name, std::string("test"));
    QVERIFY2(outer_seen[0].ms >= 19.5 && outer_seen[0].ms < 60, std::to_string(outer_seen[0].ms).c_str());
    QVERIFY(outer_seen[1].ms >= outer_seen[0].ms);
    QCOMPARE(int(inner_seen.size()), 1);
    QVERIFY(inner_seen[0].ms >= 4.5);
    // A training step's stages, TCA's walk among them.
    Config c = tiny("copy");
    Trainer t(c, datasets::make_task);
    std::vector<std::string> names;
    {
      StageClock clock;
      t.step();
      for (const auto& s : clock.stages()) names.push_back(s.name);
    }
    for (const char* s : {"embed", "prepare/tree", "prepare", "decode/walk", "decode/read S", "decode/policy",
                          "decode/all leaves", "decode", "head", "loss", "backward", "backward/Addmm", "optimizer"})
      QVERIFY2(std::find(names.begin(), names.end(), s) != names.end(), s);
  }

  // The backward's autograd nodes count as parts of the span around them, named by their type.
  void stage_clock_times_the_backward_nodes() {
    QCOMPARE(backward_node_stage("AddmmBackward0"), std::string("backward/Addmm"));
    QCOMPARE(backward_node_stage("MulBackward1"), std::string("backward/Mul"));
    QCOMPARE(backward_node_stage("torch::autograd::CppNode<retreever::(anonymous namespace)::PairedLinear>"),
             std::string("backward/PairedLinear"));
    QCOMPARE(backward_node_stage("torch::autograd::AccumulateGrad"), std::string("backward/AccumulateGrad"));
    auto x = torch::randn({256, 256}, torch::requires_grad());
    std::vector<StageClock::Stage> seen;
    {
      StageClock clock;
      auto y = (x.mm(x) * 2).sum();  // the forward's operators are not the clock's
      {
        RETREEVER_STAGE("backward");
        y.backward();
      }
      seen = clock.stages();
    }
    auto ms = [&](const std::string& name) {
      for (const auto& s : seen)
        if (s.name == name) return s.ms;
      return -1.0;
    };
    QCOMPARE(int(seen.size()), 5);  // Sum, Mul, Mm, AccumulateGrad, backward
    double nodes = 0;
    for (const char* n : {"backward/Sum", "backward/Mul", "backward/Mm", "backward/AccumulateGrad"}) {
      QVERIFY2(ms(n) >= 0, n);
      nodes += ms(n);
    }
    QCOMPARE(seen.back().name, std::string("backward"));
    QVERIFY(ms("backward/Mm") > 0 && nodes <= ms("backward"));
  }

  // A kernel's time goes to the stages whose span was open when its launching operator started,
  // on any thread; a kernel of no operator, or launched outside the stages, to "rest".
  void device_stages_follow_each_kernel_to_its_launcher() {
    auto host = [](std::string name, double start, double duration, std::uint64_t id = 0) {
      return TraceEvent{std::move(name), false, start, duration, id};
    };
    auto kernel = [](double duration, std::uint64_t launcher) {
      return TraceEvent{"kernel", true, 1000, duration, launcher};
    };
    const std::vector<TraceEvent> events = {
        host("retreever::decode", 10, 10), host("retreever::decode/walk", 12, 3), host("retreever::backward", 30, 20),
        host("aten::mm", 13, 1, 1),   // inside decode and its walk
        host("aten::add", 18, 1, 2),  // inside decode only
        host("aten::mm", 35, 5, 3),   // on another thread, while the backward span is open
        host("aten::copy_", 60, 1, 4),  // outside every stage
        kernel(1000, 1), kernel(2000, 2), kernel(4000, 3), kernel(8000, 4), kernel(16000, 0), kernel(32000, 99),
        // Kineto 2.x's device copy of a span, not work; a kernel whose name begins like a span's is work.
        TraceEvent{"retreever::decode", true, 10, 64000, 0}, TraceEvent{"retreever::cuda::a_kernel", true, 10, 128000, 0}};
    auto copies_dropped = events;
    drop_span_copies(copies_dropped);
    QCOMPARE(copies_dropped.size(), events.size() - 1);
    QCOMPARE(copies_dropped.back().name, std::string("retreever::cuda::a_kernel"));
    const auto stages = device_stages(events);
    QCOMPARE(int(stages.size()), 4);
    QCOMPARE(stages[0].name, std::string("decode"));  // in the order they started
    QCOMPARE(stages[1].name, std::string("decode/walk"));
    QCOMPARE(stages[2].name, std::string("backward"));
    QCOMPARE(stages[3].name, std::string("rest"));
    QCOMPARE(stages[0].ms, 3.0);
    QCOMPARE(stages[1].ms, 1.0);
    QCOMPARE(stages[2].ms, 4.0);
    QCOMPARE(stages[3].ms, 184.0);  // the copy's kernel, two of no operator, one of an unknown one
    // No kernel traced to an operator (a trace without correlations): nothing to tell.
    QVERIFY(device_stages({host("retreever::decode", 0, 10), kernel(5, 0)}).empty());
  }

  void tca_reads_log_many_tokens() {
    Config c = Config::preset("copy");
    c.seq_len = 256;
    c.eval_batches = 1;
    c.batch = 2;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    auto e = t.evaluate();
    QCOMPARE(e.context_size, 128.0);
    QCOMPARE(e.tokens_per_query, 8.0);  // PAPER.md: 8 of 128
    c.model = "ca";
    Trainer ca(c, datasets::make_task);
    QCOMPARE(ca.evaluate().tokens_per_query, 128.0);
  }

  void ca_warmup_trains_on_l_ca_alone_then_on_the_whole_objective() {
    Config c = small_config("gp");
    c.batch = Config::preset("gp").batch;
    c.steps = 6;
    c.ca_warmup = 3;
    Trainer t(c, datasets::make_task);
    for (int i = 1; i <= 6; ++i) {
      auto s = t.step();
      const double whole = s.tca_loss + s.ca_loss + s.rl_loss;
      const double expected = i <= 3 ? s.ca_loss : whole;
      QVERIFY2(std::abs(s.loss - expected) < 1e-4 * (1 + std::abs(expected)),
               qPrintable(QString("step %1: loss %2, expected %3").arg(i).arg(s.loss).arg(expected)));
      // The other terms are still measured during the warm-up, and differ from L_CA.
      QVERIFY(s.tca_loss != s.ca_loss && s.rl_loss != 0 && s.entropy > 0);
    }
  }

  void divergence_stops_without_updating_the_model() {
    Config c = Config::preset("gp");
    c.d_model = 16;
    c.heads = 2;
    c.encoder_layers = 1;
    c.grad_clip = 0;
    c.steps = 50;
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    t.set_peak_learning_rate(1e30);  // guaranteed to blow up (a config file may not ask for it: lr <= 1)
    bool diverged = false;
    std::int64_t before = 0;
    try {
      while (!t.finished()) {
        before = t.steps_done();
        t.step();
      }
    } catch (const DivergenceError& e) {
      diverged = true;
      QCOMPARE(t.steps_done(), before);  // the failing step did not count
      QVERIFY(std::string(e.what()).find("learning rate") != std::string::npos);
    }
    QVERIFY2(diverged, "a learning rate of 1e30 did not diverge");
  }

  void allocator_failures_are_told_from_other_errors() {
    // The texts LibTorch's allocators and cuBLAS throw (LibTorch 1.13 and 2.x), and others.
    for (const char* oom : {"CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.81 GiB",
                            "[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: "
                            "you tried to allocate 67108864 bytes. Error code 12 (Cannot allocate memory)",
                            "DefaultCPUAllocator: not enough memory: you tried to allocate 1125899906842624 bytes.",
                            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"})
      QVERIFY2(is_out_of_memory(std::runtime_error(oom)), oom);
    for (const char* other : {"CUDA error: an illegal memory access was encountered",
                              "mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)",
                              "cannot create output folder 'x': Not a directory"})
      QVERIFY2(!is_out_of_memory(std::runtime_error(other)), other);
  }

  void running_out_of_memory_stops_with_the_settings_to_lower() {
    // The copy task, whose third training batch asks the CPU allocator for a petabyte: its real
    // failure, at a known step (the trainer refuses runs its estimate does not fit; this one fits).
    struct Greedy : Task {
      std::unique_ptr<Task> inner;
      mutable int training_batches = 0;
      TaskSpec spec() const override { return inner->spec(); }
      Batch sample(std::int64_t batch, std::uint64_t seed, bool evaluation) const override {
        if (!evaluation && ++training_batches == 3) (void)torch::empty({std::int64_t(1) << 48});
        return inner->sample(batch, seed, evaluation);
      }
    };
    Config c = tiny("copy");
    c.steps = 10;
    Trainer t(c, [](const Config& config) {
      auto task = std::make_unique<Greedy>();
      task->inner = datasets::make_task(config);
      return std::unique_ptr<Task>(std::move(task));
    });
    t.step();
    t.step();
    try {
      t.step();
      QFAIL("a petabyte was allocated");
    } catch (const OutOfMemoryError& e) {
      const std::string what = e.what();
      QVERIFY2(what.find("out of memory on cpu at step 3") == 0, e.what());
      QVERIFY2(what.find("lower batch") != std::string::npos, e.what());  // the setting to lower
      QVERIFY2(what.find("allocate") != std::string::npos, e.what());     // what the allocator said
      QVERIFY2(what.find('\n') == std::string::npos, e.what());           // one line
    }
    QCOMPARE(t.steps_done(), std::int64_t(2));  // the failing step did not count
    QVERIFY(std::isfinite(t.evaluate().value));  // and the model is whole
    t.step();                                     // the next batch is an ordinary one
    QCOMPARE(t.steps_done(), std::int64_t(3));
  }

  void flat_adam_takes_the_steps_of_torch_adam() {
    auto flat_params = parameter_set(), torch_params = parameter_set();
    FlatAdam flat(flat_params);
    torch::optim::Adam reference(torch_params, torch::optim::AdamOptions(0.01));
    for (int t = 0; t < 6; ++t) {
      flat.zero_grad();
      set_gradients(flat_params, torch_params, t);
      const double lr = 0.01 * (1.0 - 0.1 * t);  // a schedule, as training uses
      for (auto& group : reference.param_groups())
        static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      flat.step(lr);
      reference.step();
    }
    QVERIFY2(max_difference(flat_params, torch_params) < 1e-6, "the flat Adam left torch's path");
    QVERIFY(max_difference(flat_params, parameter_set()) > 1e-3);  // and both moved
    // Gradient norm and clipping act on every gradient at once.
    double sum = 0;
    for (const auto& p : flat_params) sum += p.grad().pow(2).sum().item<double>();
    QVERIFY(std::abs(flat.grad_norm().item<double>() - std::sqrt(sum)) < 1e-4);
    flat.scale_grad(torch::tensor(0.5));
    double scaled = 0;
    for (const auto& p : flat_params) scaled += p.grad().pow(2).sum().item<double>();
    QVERIFY(std::abs(std::sqrt(scaled) - 0.5 * std::sqrt(sum)) < 1e-4);
  }

  void flat_adam_resumes_from_the_state_torch_adam_saved() {
    // A checkpoint written before the flat Adam holds torch::optim::Adam's state.
    auto torch_params = parameter_set(), other = parameter_set();
    torch::optim::Adam reference(torch_params, torch::optim::AdamOptions(0.01));
    for (int t = 0; t < 3; ++t) {
      set_gradients(other, torch_params, t);
      reference.step();
    }
    auto resumed = fresh_copy(torch_params);
    FlatAdam flat(resumed);
    transfer_state(reference, flat);
    QCOMPARE(flat.steps_taken(), std::int64_t(3));
    for (int t = 3; t < 6; ++t) {
      flat.zero_grad();
      set_gradients(resumed, torch_params, t);
      flat.step(0.01);
      reference.step();
    }
    QVERIFY2(max_difference(resumed, torch_params) < 1e-6, "moments or step count were not resumed");

    // And what the flat Adam saves, torch::optim::Adam reads back.
    auto again = fresh_copy(resumed);
    torch::optim::Adam reader(again, torch::optim::AdamOptions(0.01));
    transfer_state(flat, reader);
    QCOMPARE(int64_t(reader.state().size()), int64_t(again.size()));
  }

  void regression_is_scored_with_the_papers_metric() {
    // The paper's log-likelihood: the mean over each batch's targets, then the mean over batches.
    // The same model, rebuilt here from the trainer's seed, scores the same evaluation set by hand.
    Config c = tiny("gp");
    c.model = "ca";
    c.eval_batches = 6;
    c.eval_batch = 3;
    Trainer trainer(c, datasets::make_task);
    auto e = trainer.evaluate();
    auto task = datasets::make_task(c);
    torch::manual_seed(derive_seed(c.seed, 4, 0));  // the trainer's initialisation stream
    ReTreever model(c, task->spec());
    model->eval();
    torch::NoGradGuard no_grad;
    double batch_means = 0, sum = 0, count = 0;
    std::set<int64_t> target_counts;
    for (const auto& batch : evaluation_set(*task, c, c.seed)) {
      auto m = task_metric(model->forward(batch, DecodeRequest{}).prediction, batch.yt, task->spec(), c.bound_std);
      batch_means += m.mean().item<double>() / double(c.eval_batches);
      sum += m.sum().item<double>();
      count += double(m.numel());
      target_counts.insert(batch.yt.size(1));
    }
    QVERIFY2(target_counts.size() > 1, "the evaluation batches should differ in their target counts");
    QVERIFY2(std::abs(e.value - batch_means) < 1e-5, qPrintable(QString("%1 vs %2").arg(e.value).arg(batch_means)));
    QVERIFY(std::abs(e.per_point - sum / count) < 1e-5);
    QVERIFY2(std::abs(e.value - e.per_point) > 1e-3, "the two means coincide: the test cannot tell them apart");
    // The history keeps both through its JSON form.
    auto back = MetricsHistory::from_json(trainer.history().to_json());
    QCOMPARE(back.evals.back().per_point, e.per_point);
  }

  void schedule_steps_and_adam_beta1_reach_the_optimiser() {
    Config c = tiny("copy");
    c.batch = 4;
    c.steps = 4;
    c.schedule_steps = 100;  // the first 4 steps of a 100-step schedule
    Trainer t(c, datasets::make_task);
    QCOMPARE(t.learning_rate(), c.lr);
    t.step();
    t.step();
    QVERIFY(std::abs(t.learning_rate() - cosine_lr(c.lr, 2, 100)) < 1e-15);
    // Adam's first step is the same for any beta1 (the bias-corrected moment is the gradient), so
    // the second step's loss agrees; the second update differs when beta1 does, and so the third loss.
    auto loss_of_step = [&](double beta1, int n) {
      Config d = c;
      d.adam_beta1 = beta1;
      Trainer run(d, datasets::make_task);
      double loss = 0;
      for (int i = 0; i < n; ++i) loss = run.step().loss;
      return loss;
    };
    QVERIFY(std::abs(loss_of_step(0.9, 2) - loss_of_step(0.1, 2)) < 1e-5);
    QVERIFY(std::abs(loss_of_step(0.9, 3) - loss_of_step(0.1, 3)) > 1e-6);
  }

  void a_new_trainer_tunes_its_threads_whatever_the_last_one_left() {
    // Trainers one after another in a process (the studio's runs, a report's): a tuner's warm-up or
    // a fixed count leaves LibTorch at one thread, and the next trainer still tunes over every core.
    const QByteArray omp = qgetenv("OMP_NUM_THREADS");  // ctest sets it; the tuner is off under it
    qunsetenv("OMP_NUM_THREADS");
    const auto restore = qScopeGuard([&] {
      if (!omp.isNull()) qputenv("OMP_NUM_THREADS", omp);
    });
    if (default_cpu_threads() < 2) QSKIP("needs two cores");
    torch::set_num_threads(1);
    auto c = small_config();
    c.device = "cpu";
    Trainer t(c, datasets::make_task);
    QVERIFY(t.tunes_cpu_threads());
    t.use_cpu_threads(1);  // the studio's CPU threads setting, changed mid-run
    QVERIFY(!t.tunes_cpu_threads());
    QCOMPARE(t.fixed_cpu_threads(), 1);
    QCOMPARE(torch::get_num_threads(), 1);
    QCOMPARE(t.step().cpu_threads, 1);  // what the step ran on, for the studio's status bar
    t.use_cpu_threads(0);  // back to tuned, from every core
    QVERIFY(t.tunes_cpu_threads());
    QCOMPARE(t.fixed_cpu_threads(), 0);
    QCOMPARE(torch::get_num_threads(), default_cpu_threads());
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, t.use_cpu_threads(-1));
    torch::set_num_threads(default_cpu_threads());
  }

  void thread_tuner_keeps_the_faster_count() {
    // Steps whose time depends on the threads: idle (2 threads faster) and with the cores busy
    // (1 thread 15 times faster, as measured on this project's 2-core VM).
    ThreadTuner tuner(2);
    int with_two = 0, steps = 0;
    auto run = [&](int n, double two, double one) {
      for (int i = 0; i < n; ++i, ++steps) {
        with_two += tuner.threads() == 2;
        tuner.record(tuner.threads() == 2 ? two : one);
      }
    };
    auto until_trial = [&](int trials, double two, double one) {  // steps until the trial ends
      const int from = steps;
      while (tuner.trials() < trials && steps - from < 10000) run(1, two, one);
      return steps - from;
    };
    // Idle: the warm-up and one trial (3 steps of each count), then every core.
    QCOMPARE(until_trial(1, 0.010, 0.016), ThreadTuner::kWarmUpSteps + 2 * ThreadTuner::kTrialSteps);
    QCOMPARE(with_two, ThreadTuner::kTrialSteps);
    QCOMPARE(tuner.threads(), 2);
    // One slow step (a hiccup) is not a trial; a lasting slowdown is. The count follows it, and the
    // slow count's trial stops at its first step.
    run(1, 0.3, 0.3);
    run(10, 0.010, 0.016);
    QCOMPARE(tuner.trials(), 1);
    with_two = 0;
    QCOMPARE(until_trial(2, 0.300, 0.020), ThreadTuner::kSlowSteps + ThreadTuner::kTrialSteps + 1);
    QCOMPARE(with_two, ThreadTuner::kSlowSteps + 1);
    QCOMPARE(tuner.threads(), 1);
    // The next trial waits until that slow step (0.28 s lost) is a twentieth of the time held:
    // 350 steps of 0.016 s, more than kHoldSteps.
    const int held = until_trial(3, 0.010, 0.016) - 2 * ThreadTuner::kTrialSteps;
    QVERIFY2(held >= 349 && held <= 351, qPrintable(QString::number(held)));
    QCOMPARE(tuner.threads(), 2);  // the cores are free again
    // Without a costly loss the trials come every kHoldSteps.
    QCOMPARE(until_trial(4, 0.010, 0.016), ThreadTuner::kHoldSteps + 2 * ThreadTuner::kTrialSteps);
    QVERIFY_EXCEPTION_THROWN(ThreadTuner{1}, std::invalid_argument);
  }

  void trainer_runs_the_tuners_counts_unless_the_threads_are_fixed() {
    const QByteArray fixed = qgetenv("OMP_NUM_THREADS");
    const int before = torch::get_num_threads();
    qunsetenv("OMP_NUM_THREADS");
    const int cores = default_cpu_threads();  // without OMP_NUM_THREADS: every core
    if (cores < 2) {
      if (!fixed.isNull()) qputenv("OMP_NUM_THREADS", fixed);
      QSKIP("needs two cores");
    }
    torch::set_num_threads(2);
    std::set<int> used;
    {
      Trainer trainer(tiny("gp"), datasets::make_task);
      for (int i = 0; i < ThreadTuner::kWarmUpSteps + 2 * ThreadTuner::kTrialSteps; ++i) {
        trainer.step();
        used.insert(trainer.threads_in_use());
      }
    }
    std::set<int> kept;
    {
      Trainer trainer(tiny("gp"), datasets::make_task);
      trainer.keep_cpu_threads();
      torch::set_num_threads(2);
      for (int i = 0; i < ThreadTuner::kWarmUpSteps + 2 * ThreadTuner::kTrialSteps; ++i) {
        trainer.step();
        kept.insert(trainer.threads_in_use());
      }
    }
    if (!fixed.isNull()) qputenv("OMP_NUM_THREADS", fixed);
    torch::set_num_threads(before);
    QCOMPARE(used, (std::set<int>{1, cores}));  // the trial ran one thread and every core
    QCOMPARE(kept, std::set<int>{2});
  }

  void cosine_schedule_has_the_right_ends() {
    QCOMPARE(cosine_lr(1.0, 0, 100), 1.0);
    QVERIFY(std::abs(cosine_lr(1.0, 50, 100) - 0.5) < 1e-12);
    QVERIFY(std::abs(cosine_lr(1.0, 100, 100)) < 1e-12);
  }
};

QTEST_GUILESS_MAIN(TestTraining)
#include "test_training.moc"
