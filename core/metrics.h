// Numbers a training run reports, as plain values (torch-free: the GUI receives these).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace retreever {

struct StepMetrics {
  std::int64_t step = 0;       // steps completed after this one
  double loss = 0;             // total objective
  double tca_loss = 0;         // L_TCA (task loss of the prediction the model makes)
  double ca_loss = 0;          // L_CA (TCA only)
  double rl_loss = 0;          // L_RL incl. entropy bonus (TCA only)
  double entropy = 0;          // policy entropy (TCA only)
  double train_metric = 0;     // accuracy or log-likelihood on the training batch
  double lr = 0;               // learning rate used for this step
  double grad_norm = 0;        // global gradient norm before clipping
  double seconds = 0;          // wall time of this step
  int cpu_threads = 0;         // the CPU threads it ran on (0 on a GPU; not in metrics.csv)
};

struct EvalMetrics {
  std::int64_t step = 0;
  std::string metric;            // "accuracy" or "log_likelihood"
  // The paper's metric: the mean over each batch's target points (a batch's tasks share their
  // context and target counts), then the mean over batches.
  double value = 0;
  // The mean over every target point of the set: batches with many targets weigh more. Equal to
  // value when every batch has the same number of targets (the copy task).
  double per_point = 0;
  double tokens_per_query = 0;   // |S| for TCA, N for CA, L for Perceiver IO
  double context_size = 0;       // N (mean over the evaluation set)
  // The metric per target position, where every evaluation batch has the same targets (the
  // copy task): shows which positions a policy fails. Not kept in the history.
  std::vector<double> per_target;
  double tokens_fraction() const { return context_size > 0 ? tokens_per_query / context_size : 0; }
};

struct MetricsHistory {
  std::vector<StepMetrics> steps;
  std::vector<EvalMetrics> evals;

  static const char* csv_header();
  static std::string csv_row(const StepMetrics& m, const EvalMetrics* eval);
  // Whole history as CSV: one row per logged step, evaluation columns where one happened.
  std::string to_csv() const;
  std::string to_json() const;
  static MetricsHistory from_json(const std::string& text);
};

}  // namespace retreever
