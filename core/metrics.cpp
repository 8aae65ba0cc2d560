#include "metrics.h"

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

namespace retreever {

const char* MetricsHistory::csv_header() {
  return "step,loss,tca_loss,ca_loss,rl_loss,entropy,train_metric,lr,grad_norm,seconds,"
         "eval_metric,eval_value,tokens_per_query,context_size,eval_per_point";
}

std::string MetricsHistory::csv_row(const StepMetrics& m, const EvalMetrics* e) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,", (long long)m.step,
                m.loss, m.tca_loss, m.ca_loss, m.rl_loss, m.entropy, m.train_metric, m.lr,
                m.grad_norm, m.seconds);
  std::string row = buf;
  if (e) {
    std::snprintf(buf, sizeof buf, "%s,%.6g,%.6g,%.6g,%.6g", e->metric.c_str(), e->value,
                  e->tokens_per_query, e->context_size, e->per_point);
    row += buf;
  } else {
    row += ",,,,";
  }
  return row;
}

std::string MetricsHistory::to_csv() const {
  std::map<std::int64_t, const EvalMetrics*> by_step;
  for (const auto& e : evals) by_step[e.step] = &e;
  std::string out = std::string(csv_header()) + "\n";
  for (const auto& s : steps) {
    auto it = by_step.find(s.step);
    out += csv_row(s, it == by_step.end() ? nullptr : it->second) + "\n";
  }
  return out;
}

std::string MetricsHistory::to_json() const {
  nlohmann::json j;
  j["steps"] = nlohmann::json::array();
  for (const auto& s : steps)
    j["steps"].push_back({s.step, s.loss, s.tca_loss, s.ca_loss, s.rl_loss, s.entropy, s.train_metric,
                          s.lr, s.grad_norm, s.seconds});
  j["evals"] = nlohmann::json::array();
  for (const auto& e : evals)
    j["evals"].push_back({{"step", e.step}, {"metric", e.metric}, {"value", e.value},
                          {"per_point", e.per_point}, {"tokens_per_query", e.tokens_per_query}, {"context_size", e.context_size}});
  // The last evaluation's metric per target position, for the studio's per-position plot of a run
  // restored or opened from its checkpoint (the earlier ones' would grow the header with the run).
  if (!evals.empty() && !evals.back().per_target.empty()) j["evals"].back()["per_target"] = evals.back().per_target;
  return j.dump();
}

MetricsHistory MetricsHistory::from_json(const std::string& text) {
  MetricsHistory h;
  auto j = nlohmann::json::parse(text);
  for (const auto& r : j.at("steps")) {
    StepMetrics s;
    s.step = r.at(0);
    s.loss = r.at(1);
    s.tca_loss = r.at(2);
    s.ca_loss = r.at(3);
    s.rl_loss = r.at(4);
    s.entropy = r.at(5);
    s.train_metric = r.at(6);
    s.lr = r.at(7);
    s.grad_norm = r.at(8);
    s.seconds = r.at(9);
    h.steps.push_back(s);
  }
  for (const auto& r : j.at("evals")) {
    EvalMetrics e;
    e.step = r.at("step");
    e.metric = r.at("metric");
    e.value = r.at("value");
    e.per_point = r.value("per_point", e.value);
    e.tokens_per_query = r.at("tokens_per_query");
    e.context_size = r.at("context_size");
    if (r.contains("per_target")) e.per_target = r.at("per_target").get<std::vector<double>>();
    h.evals.push_back(e);
  }
  return h;
}

}  // namespace retreever
