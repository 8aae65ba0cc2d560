// The contract every registered decoder and task keeps (core/registry.h): a new entry is tested
// here without a line of test code of its own.
#include <QFile>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <set>

#include "core/config.h"
#include "core/registry.h"
#include "core/training/trainer.h"
#include "datasets/tasks.h"

#include "tests/small_config.h"

using retreever::testing::small_config;
using namespace retreever;

namespace {

// The task's preset, shrunk to a few seconds of CPU: width 16, two heads, batch 4.
Config small(const std::string& task, const std::string& model) {
  Config c = small_config(task, model);
  c.seq_len = 8;
  c.encoder_layers = 1;  // every decoder with an encoder in front (Perceiver IO's own, sized by it)
  c.batch = 4;
  c.eval_batch = 4;
  c.steps = 2;
  return c;
}

bool image_data_present() {
  return QFile::exists(QString(datasets::ImageTask::kDefaultFolder) + "/train-images-idx3-ubyte.gz");
}

}  // namespace

class TestRegistry : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void names_are_unique_and_are_the_config_choices() {
    std::vector<std::string> d, t;
    for (const auto& i : decoders()) d.push_back(i.name);
    for (const auto& i : tasks()) t.push_back(i.name);
    QVERIFY(d == Config::choices("model"));
    QVERIFY(t == Config::choices("task"));
    for (auto* list : {&d, &t}) {
      auto sorted = *list;
      std::sort(sorted.begin(), sorted.end());
      QVERIFY(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    }
    QCOMPARE(decoders().front().name, std::string("tca"));  // comparisons size the others from TCA
    try {
      decoder_info("bogus");
      QFAIL("an unknown decoder was found");
    } catch (const std::invalid_argument& e) {
      QVERIFY(std::string(e.what()).find("tca|ca") != std::string::npos);
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, task_info("bogus"));
  }

  void every_decoder_is_described_and_its_fields_are_config_fields() {
    const auto known = config_keys();
    for (const auto& d : decoders()) {
      QVERIFY2(!d.title.empty() && !d.summary.empty() && d.make, d.name.c_str());
      QVERIFY2((d.size_for_tokens == nullptr) == (d.size_label == nullptr), d.name.c_str());
      for (const auto& f : d.fields) QVERIFY2(known.count(f), (d.name + ": " + f).c_str());
    }
  }

  void every_task_has_a_valid_preset_a_factory_and_its_facts() {
    const auto known = config_keys();
    for (const auto& t : tasks()) {
      const Config p = Config::preset(t.name);
      QCOMPARE(p.task, t.name);
      const auto problems = p.validate();
      QVERIFY2(problems.empty(), (t.name + ": " + (problems.empty() ? "" : problems.front())).c_str());
      QVERIFY2(datasets::has_factory(t.name), t.name.c_str());
      QVERIFY2(t.view == "sequence" || t.view == "function" || t.view == "image", t.name.c_str());
      QVERIFY(t.typical_context && (t.largest_row || (t.max_points > t.min_context && t.point_numbers > 0)));
      const auto row = t.largest(p);
      QVERIFY(row.context >= double(t.typical_context(p)) && row.targets >= 1 && row.numbers >= 1);
      if (t.max_context > 0) {
        QVERIFY(t.min_context >= 1 && t.min_context <= t.typical_context(p) && t.typical_context(p) <= t.max_context);
        QCOMPARE(Config::max_eval_context(t.name), t.max_context);
      }
      for (const auto& f : t.fields) QVERIFY2(known.count(f), (t.name + ": " + f).c_str());
      QCOMPARE(p.is_classification(), t.classification);
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, Config::preset("bogus"));
  }

  // A field some models or tasks own is unread by the others, with the readers named; a field every
  // run reads (lr) and each owner's own fields are read.
  void unread_fields_name_their_readers() {
    QCOMPARE(unread_field_reason("latents", "copy", "tca"), std::string("only the perceiver model reads it"));
    QCOMPARE(unread_field_reason("seq_len", "gp", "ca"), std::string("only the copy task reads it"));
    QCOMPARE(unread_field_reason("eval_context", "copy", "ca"), std::string("only the gp and image tasks read it"));
    QCOMPARE(unread_field_reason("block", "copy", "perceiver"), std::string("only the tca and ca models read it"));
    QCOMPARE(unread_field_reason("reward", "gp", "tca"), std::string("only the copy task reads it"));
    QCOMPARE(unread_field_reason("lr", "gp", "perceiver"), std::string());
    for (const auto& d : decoders())
      for (const auto& t : tasks()) {
        for (const auto& f : d.fields)
          if (f != "reward" || t.classification) QVERIFY2(unread_field_reason(f, t.name, d.name).empty(), f.c_str());
        for (const auto& f : t.fields) QVERIFY2(unread_field_reason(f, t.name, d.name).empty(), f.c_str());
      }
  }

  // The paper's recipe is Config's defaults except where a task's reference script trains otherwise
  // (the copy script: Adam beta1 0.1, dropout 0.1), and it is a valid config for every task.
  void paper_recipe_is_the_defaults_plus_the_tasks_reference_settings() {
    const Config defaults;
    for (const auto& t : tasks()) {
      const Config r = paper_recipe_for(t.name);
      QCOMPARE(r.task, t.name);
      QVERIFY2(r.validate().empty(), t.name.c_str());
      QCOMPARE(r.block, defaults.block);
      QCOMPARE(r.explore, defaults.explore);
      if (!t.reference_settings) {
        QCOMPARE(r.adam_beta1, defaults.adam_beta1);
        QCOMPARE(r.dropout, defaults.dropout);
      }
    }
    const Config copy = paper_recipe_for("copy");
    QCOMPARE(copy.adam_beta1, 0.1);
    QCOMPARE(copy.dropout, 0.1);
    QCOMPARE(paper_recipe_for("gp").dropout, 0.0);
    QCOMPARE(paper_recipe_for("gp").bound_std, false);  // its GP script's head; its image script bounds
    QCOMPARE(paper_recipe_for("image").bound_std, true);
  }

  // recipe_departures names each recipe setting a config changes, and only those; with_recipe
  // puts them back and keeps the run's budget (sizes, steps, batch, seed).
  void departures_from_the_recipe_are_named_and_undone() {
    Config c = paper_recipe_for("copy");
    QVERIFY(recipe_departures(c).empty());
    c.block = "v1";
    c.dropout = 0;
    c.explore = 0.05;
    c.query_positions = "after_context";
    c.steps = 123;
    c.batch = 7;
    c.seq_len = 32;
    QCOMPARE(recipe_departures(c), (std::vector<std::string>{"block", "dropout", "explore", "query_positions"}));
    const Config back = with_recipe(c);
    QVERIFY(recipe_departures(back).empty());
    QCOMPARE(back.block, std::string("reference"));
    QCOMPARE(back.dropout, 0.1);  // the copy script's, not Config's default
    QCOMPARE(back.explore, 0.0);
    QCOMPARE(back.query_positions, std::string("from_zero"));
    QCOMPARE(back.steps, std::int64_t(123));
    QCOMPARE(back.batch, std::int64_t(7));
    QCOMPARE(back.seq_len, std::int64_t(32));
    // Every recipe setting is a config key a departure can be named by.
    const auto text = paper_recipe_for("gp").to_json();
    for (const auto& key : recipe_settings())
      QVERIFY2(text.find("\"" + key + "\"") != std::string::npos, key.c_str());
    Config gp = paper_recipe_for("gp");
    gp.leaf_layout = "balanced";
    gp.lambda_ca = 0.5;
    QCOMPARE(recipe_departures(gp), (std::vector<std::string>{"leaf_layout", "lambda_ca"}));
  }

  void every_task_samples_what_its_entry_says() {
    for (const auto& t : tasks()) {
      if (t.view == "image" && !image_data_present()) continue;  // checked where the dataset is installed
      const Config c = small(t.name, "tca");
      auto task = datasets::make_task(c);
      QCOMPARE(task->spec().classification(), t.classification);
      const auto b = task->sample(3, 1, false);
      QCOMPARE(b.size(), std::int64_t(3));
      if (t.max_context > 0) QVERIFY(b.xc.size(1) >= t.min_context && b.xc.size(1) <= t.max_context);
      QVERIFY(double(b.xc.size(1)) <= t.largest(c).context);
      QVERIFY(double(b.xt.size(1)) <= t.largest(c).targets);
    }
  }

  // Every decoder trains and evaluates on every task: finite losses, a metric of the task's kind,
  // and (unsized decoders) no more tokens read than the context holds.
  void every_decoder_trains_on_every_task() {
    for (const auto& t : tasks()) {
      if (t.view == "image" && !image_data_present()) continue;
      for (const auto& d : decoders()) {
        const std::string what = d.name + " on " + t.name;
        Trainer trainer(small(t.name, d.name), datasets::make_task);
        const auto s = trainer.step();
        QVERIFY2(std::isfinite(s.loss), what.c_str());
        const auto e = trainer.evaluate();
        QVERIFY2(std::isfinite(e.value), what.c_str());
        QCOMPARE(e.metric, t.metric());
        QVERIFY2(e.tokens_per_query > 0, what.c_str());
        // A decoder without a size reads from the context alone: never more than it holds.
        if (!d.size_for_tokens) QVERIFY2(e.tokens_per_query <= e.context_size + 1e-9, what.c_str());
      }
    }
  }

  // Sized for an equal-token comparison, a decoder with a size reads about what it was asked to.
  void sized_decoders_read_about_the_tokens_asked() {
    for (const auto& d : decoders()) {
      Config c = sized_like(small("copy", "tca"), d.name, 4);
      QCOMPARE(c.model, d.name);
      if (!d.size_for_tokens) {
        QCOMPARE(c.to_json(), sized_like(small("copy", "tca"), d.name, 0).to_json());  // nothing to size
        continue;
      }
      c.seq_len = 32;  // a context of 16 tokens
      Trainer trainer(c, datasets::make_task);
      const auto e = trainer.evaluate();
      QVERIFY2(e.tokens_per_query >= 2 && e.tokens_per_query <= 8, d.name.c_str());
      QVERIFY(!d.size_label(c).empty());
      QVERIFY(model_label(c).find(d.size_label(c)) != std::string::npos);
    }
  }

 private:
  // The keys of a config's JSON form.
  static std::set<std::string> config_keys() {
    std::set<std::string> keys;
    const std::string json = Config().to_json();
    for (std::size_t at = 0; (at = json.find('"', at)) != std::string::npos;) {
      const auto end = json.find('"', at + 1);
      const auto colon = json.find_first_not_of(' ', end + 1);
      if (colon != std::string::npos && json[colon] == ':') keys.insert(json.substr(at + 1, end - at - 1));
      at = end + 1;
    }
    return keys;
  }
};

QTEST_MAIN(TestRegistry)
#include "test_registry.moc"
