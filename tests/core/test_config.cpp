// Configs round-trip through JSON, and every bad value is named with its fix.
#include <QtTest>

#include "core/config.h"
#include "core/devices.h"
#include "core/memory.h"
#include "core/registry.h"
#include "core/training/device.h"

using namespace retreever;

namespace {
bool mentions(const std::vector<std::string>& problems, const std::string& what) {
  for (const auto& p : problems)
    if (p.find(what) != std::string::npos) return true;
  return false;
}
}  // namespace

class TestConfig : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void json_round_trip_keeps_every_field() {
    Config c = Config::preset("gp");
    c.model = "perceiver";
    c.lr = 1.25e-4;
    c.bptt = true;
    c.ordering = "kdtree";
    c.leaf_layout = "balanced";
    c.seed = 42;
    c.ca_warmup = 1500;
    auto back = Config::from_json(c.to_json());
    QCOMPARE(back.to_json(), c.to_json());
    QVERIFY(Config().validate().empty());
    for (const char* t : {"copy", "gp", "image"}) QVERIFY(Config::preset(t).validate().empty());
    // What sets the run apart from its preset, in the field table's order (the studio's run tooltip).
    QCOMPARE(c.changes_from(Config::preset("gp")),
             std::string("model perceiver, bptt true, ordering kdtree, leaf_layout balanced, ca_warmup 1500, "
                         "lr 0.000125, seed 42"));
    QCOMPARE(c.changes_from(c), std::string());
  }

  void missing_keys_keep_defaults() {
    auto c = Config::from_json(R"({"model": "ca", "steps": 7})");
    QCOMPARE(c.model, std::string("ca"));
    QCOMPARE(c.steps, int64_t(7));
    QCOMPARE(c.d_model, Config().d_model);
    // A checkpoint written before leaf_layout existed was trained with the packed layout.
    QCOMPARE(c.leaf_layout, std::string("packed"));
  }

  void files_from_earlier_versions_keep_their_block_style() {
    // A config written before "block" existed was trained with the v1 block: Config::legacy() is the
    // base that reads it so, while a new config gets today's default.
    const std::string old_file = R"({"model": "tca", "steps": 7})";
    QCOMPARE(Config::from_json(old_file, Config::legacy()).block, std::string("v1"));
    QCOMPARE(Config::from_json(old_file).block, Config().block);
    QCOMPARE(Config::from_json(R"({"block": "reference"})", Config::legacy()).block, std::string("reference"));
    QCOMPARE(Config::choices("block"), (std::vector<std::string>{"reference", "v1"}));
    // Likewise its queries' positions: after the context then, from 0 (the reference code's) now.
    QCOMPARE(Config::from_json(old_file, Config::legacy()).query_positions, std::string("after_context"));
    QCOMPARE(Config::from_json(old_file).query_positions, std::string("from_zero"));
    QCOMPARE(Config::from_json(old_file, Config::legacy()).padding_siblings, std::string("masked"));
    QCOMPARE(Config::from_json(old_file).padding_siblings, std::string("zero"));
    QCOMPARE(Config::from_saved_json(old_file).block, std::string("v1"));
    // An evaluation context fixed at the largest size of its day (gp 47, image 197) opens as today's
    // largest (46, 196: the reference's bounds) and validates; other sizes stay as saved.
    auto gp = Config::from_saved_json(R"({"task": "gp", "eval_context": 47})");
    QCOMPARE(gp.eval_context, std::int64_t(46));
    QVERIFY(gp.validate().empty());
    QCOMPARE(Config::from_saved_json(R"({"task": "image", "eval_context": 197})").eval_context, std::int64_t(196));
    QCOMPARE(Config::from_saved_json(R"({"task": "gp", "eval_context": 30})").eval_context, std::int64_t(30));
    QVERIFY(!Config::from_json(R"({"task": "gp", "eval_context": 47})").validate().empty());  // a new config: refused
  }

  void schedule_can_span_more_steps_than_the_run() {
    Config c;
    c.steps = 40;
    QVERIFY(c.validate().empty());
    c.schedule_steps = -1;
    QVERIFY(mentions(c.validate(), "schedule_steps:"));
  }

  // A bound's message gives the value as a user would write it back.
  void values_beyond_a_bound_are_quoted_readably() {
    Config c;
    c.lr = 1e35;
    QCOMPARE(c.validate().front(), std::string("lr: at most 1 (got 1e+35); lower it."));
    c.lr = 1.5;
    QCOMPARE(c.validate().front(), std::string("lr: at most 1 (got 1.5); lower it."));
    c = Config();
    c.batch = 70000;
    QCOMPARE(c.validate().front(), std::string("batch: at most 65536 (got 70000); lower it."));
  }

  void bad_values_are_named() {
    auto check = [](auto mutate, const std::string& field) {
      Config c;
      mutate(c);
      auto problems = c.validate();
      QVERIFY2(mentions(problems, field + ":"), field.c_str());
    };
    check([](Config& c) { c.task = "chess"; }, "task");
    check([](Config& c) { c.model = "lstm"; }, "model");
    check([](Config& c) { c.batch = 0; }, "batch");
    check([](Config& c) { c.batch = -3; }, "batch");
    check([](Config& c) { c.steps = 0; }, "steps");
    check([](Config& c) { c.lr = 0; }, "lr");
    check([](Config& c) { c.lr = -1e-3; }, "lr");
    check([](Config& c) { c.branch_factor = 1; }, "branch_factor");
    check([](Config& c) { c.seq_len = 3; }, "seq_len");
    check([](Config& c) { c.heads = 3; }, "heads");
    check([](Config& c) { c.reward = "money"; }, "reward");
    check([](Config& c) { c.block = "post-norm"; }, "block");
    check([](Config& c) { c.dropout = -0.1; }, "dropout");
    check([](Config& c) { c.dropout = 0.95; }, "dropout");
    check([](Config& c) { c.adam_beta1 = 1.0; }, "adam_beta1");
    check([](Config& c) { c.adam_beta1 = -0.1; }, "adam_beta1");
    check([](Config& c) { c.device = "tpu"; }, "device");
    check([](Config& c) { c.ordering = "random"; }, "ordering");
    check([](Config& c) { c.leaf_layout = "spread"; }, "leaf_layout");
    check([](Config& c) { c.query_positions = "after"; }, "query_positions");
    check([](Config& c) { c.padding_siblings = "dropped"; }, "padding_siblings");
    check([](Config& c) { c.rl_baseline = "median"; }, "rl_baseline");
    check([](Config& c) { c.precision = "fp16"; }, "precision");
    check([](Config& c) { c.ca_warmup = -1; }, "ca_warmup");
    check([](Config& c) { c.ca_warmup = 100, c.lambda_ca = 0; }, "ca_warmup");  // nothing left to train on
  }

  void every_choice_field_accepts_its_list_and_names_it_when_refusing() {
    const std::vector<std::string> fields = {"task", "model", "ordering", "leaf_layout", "query_positions", "padding_siblings", "reward", "rl_baseline",
                                             "device", "precision", "kernel", "eval_kernel", "eval_split"};
    for (const auto& field : fields) {
      const auto& values = Config::choices(field);
      QVERIFY2(!values.empty(), field.c_str());
      for (const auto& v : values) {
        Config c = Config::from_json("{\"" + field + "\": \"" + v + "\"}");
        QVERIFY2(c.validate().empty(), (field + "=" + v).c_str());
      }
      auto problems = Config::from_json("{\"" + field + "\": \"bogus\"}").validate();
      QCOMPARE(int(problems.size()), 1);
      std::string list;
      for (const auto& v : values) list += (list.empty() ? "" : "|") + v;
      QVERIFY2(problems[0].find(field + ": unknown value 'bogus'. Use one of " + list) == 0, problems[0].c_str());
    }
    QVERIFY(Config::choices("batch").empty());
    std::vector<std::string> names;
    for (const auto& d : decoders()) names.push_back(d.name);
    QVERIFY(names == Config::choices("model"));
  }

  void data_parallel_processes_are_counted_together_for_memory() {
    // A large evaluation set, which every process holds: one process fits, four do not.
    Config c = Config::preset("gp");
    c.eval_batches = 2000;
    c.eval_batch = 64;
    const double one = c.memory_estimate().total();
    QVERIFY(memory_refusal(c, 1.5 * one).empty());
    QVERIFY(memory_refusal(c, 1.5 * one, 1).empty());
    const auto refusal = memory_refusal(c, 1.5 * one, 4);
    QVERIFY2(refusal.find("memory: 4 processes need about") == 0, refusal.c_str());
    QVERIFY(refusal.find("use fewer processes") != std::string::npos);
    QVERIFY(memory_refusal(c, 100 * one, 4).empty());  // room enough for all four
  }

  void only_cpu_runs_are_held_to_the_memory_estimate() {
    QVERIFY(memory_estimated_on("cpu"));
    QVERIFY(!memory_estimated_on("cuda"));
    QVERIFY(!memory_estimated_on("cuda:0"));
    QVERIFY(!memory_estimated_on("cuda:3"));
    QCOMPARE(memory_estimated_on("auto"), cuda_device_count() == 0);  // auto trains on a GPU where there is one
  }

  void one_gpu_of_several_is_named_cuda_k() {
    Config c;
    c.device = "cuda:1";
    QVERIFY(c.validate().empty());
    for (const char* bad : {"cuda:", "cuda:x", "cuda:-1", "gpu"}) {
      c.device = bad;
      QVERIFY2(!c.validate().empty() && c.validate()[0].rfind("device: ", 0) == 0, bad);
    }
    // The menu lists what this machine has: the three names, and cuda:K only with several GPUs.
    const auto names = device_names();
    QCOMPARE(std::vector<std::string>(names.begin(), names.begin() + 3), (std::vector<std::string>{"auto", "cpu", "cuda"}));
    QCOMPARE(int(names.size()), cuda_device_count() > 1 ? 3 + cuda_device_count() : 3);
    if (cuda_device_count() == 0) {
      try {
        resolve_device("cuda:3");
        QFAIL("a GPU that does not exist was accepted");
      } catch (const std::exception& e) {
        QVERIFY2(std::string(e.what()).find("has 0 CUDA GPU(s)") != std::string::npos, e.what());
      }
    }
  }

  void exploration_on_regression_is_warned_about_not_refused() {
    Config c = Config::preset("gp");
    c.explore = 0.05;
    QVERIFY(c.validate().empty());
    QCOMPARE(int(c.warnings().size()), 1);
    QVERIFY(c.warnings()[0].rfind("explore: ", 0) == 0);
    c.model = "ca";  // CA has no policy to explore with
    QVERIFY(c.warnings().empty());
    Config copy = Config::preset("copy");  // 0/1 reward: exploration is allowed, and not warned about
    copy.explore = 0.05;
    QVERIFY(copy.warnings().empty());
    // Every preset trains with the paper's objective and pure sampling (no exploration, no warm-up).
    for (const char* t : {"copy", "gp", "image"}) {
      QVERIFY(Config::preset(t).warnings().empty());
      QCOMPARE(Config::preset(t).explore, 0.0);
      QCOMPARE(Config::preset(t).ca_warmup, int64_t(0));
    }
    // Every preset trains with its task's recipe (copy: the reference script's Adam beta1 and
    // dropout; image: the reference block and the packed leaf layout, as the reference code has them).
    for (const auto& t : tasks()) QCOMPARE(recipe_departures(Config::preset(t.name)), std::vector<std::string>{});
    QCOMPARE(Config::preset("copy").dropout, 0.1);
    QCOMPARE(Config::preset("image").block, std::string("reference"));
    QCOMPARE(Config::preset("image").ordering, std::string("sort_x2"));  // PAPER.md: sort by the second coordinate
  }

  void a_warm_up_as_long_as_the_run_is_warned_about() {
    Config c = Config::preset("gp");
    c.ca_warmup = c.steps - 1;
    QVERIFY(c.validate().empty());
    QVERIFY(c.warnings().empty());
    c.ca_warmup = c.steps;  // the policy would never train
    QCOMPARE(int(c.warnings().size()), 1);
    QVERIFY(c.warnings()[0].rfind("ca_warmup: ", 0) == 0);
    c.model = "ca";  // only TCA reads it
    QVERIFY(c.warnings().empty());
    QVERIFY(c.validate().empty());
  }

  void malformed_json_is_refused_with_the_reason() {
    auto message = [](const std::string& text) {
      try {
        Config::from_json(text);
      } catch (const std::runtime_error& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    QVERIFY(message("{\"steps\": 10,").find("malformed JSON") != std::string::npos);
    QVERIFY(message("[1, 2]").find("JSON object") != std::string::npos);
    QVERIFY(message(R"({"stpes": 10})").find("unknown config key 'stpes'") != std::string::npos);
    QVERIFY(message(R"({"steps": "many"})").find("'steps' must be an integer") != std::string::npos);
    QVERIFY(message(R"({"lr": true})").find("'lr' must be a number") != std::string::npos);
    QVERIFY(message(R"({"lr": 1e400})").find("too large for a double") != std::string::npos);
  }
};

QTEST_GUILESS_MAIN(TestConfig)
#include "test_config.moc"
