// Trains a ReTreever model: one step at a time, evaluation on a fixed set, checkpoints.
// Torch-free header (pimpl): the command line and the GUI's worker thread drive it.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/metrics.h"
#include "core/task.h"

namespace retreever {

class ProcessGroup;  // core/training/distributed.h

// Training produced a non-finite loss or gradient; the model was not updated.
struct DivergenceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A step, an evaluation or the building of the model ran out of the device's memory; the model was
// not updated. The message names the device, when it happened and the settings to lower.
struct OutOfMemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A frozen copy of a model for inspection: never shares memory with the training model.
struct Snapshot {
  Config config;
  std::string parameters;  // the model's parameters, serialised
  std::int64_t step = 0;
};

class Trainer {
 public:
  // Throws std::invalid_argument listing every invalid config field.
  Trainer(const Config& config, const TaskFactory& tasks);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Resumes from a checkpoint (config, parameters, optimiser, step, history). `adjust` may change
  // settings that do not alter the model's shape (device, steps, evaluation set) before the
  // trainer is built. Throws std::runtime_error naming what is wrong with the file.
  // trust_legacy: also read the old torch-archive format, which runs code from the file (only
  // `retreever convert --trust` sets it).
  static std::unique_ptr<Trainer> load(const std::string& path, const TaskFactory& tasks,
                                       const std::function<void(Config&)>& adjust = {}, bool trust_legacy = false);

  // One optimiser step; throws DivergenceError on NaN/inf, OutOfMemoryError (as evaluate() and
  // the constructor do) when the device's memory runs out.
  StepMetrics step();
  EvalMetrics evaluate();  // greedy retrieval over the fixed evaluation set; appended to history
  // Writes the checkpoint atomically (temporary file, then rename).
  void save(const std::string& path) const;
  Snapshot snapshot() const;

  std::int64_t steps_done() const;
  bool finished() const { return steps_done() >= config().steps; }
  const Config& config() const;
  const MetricsHistory& history() const;
  bool last_eval_was_best() const;
  double learning_rate() const;   // the rate the next step will use
  void set_peak_learning_rate(double lr);  // rescales the cosine schedule
  void set_total_steps(std::int64_t steps);  // extends or shortens the run
  std::string device_name() const;
  // How the steps ran on a GPU: "12 steps replayed from 1 CUDA graph, 1 eager", and why a capture
  // failed where one did.
  std::string graph_summary() const;

  // On the CPU the steps' threads are chosen from their speed (thread_tuner.h) unless
  // OMP_NUM_THREADS fixes them; after this call they stay as torch::set_num_threads left them (the
  // bench times fixed settings). threads_in_use(): the count the last step ran with.
  void keep_cpu_threads();
  int threads_in_use() const;
  // n CPU threads for every step, without the tuner (train --threads: runs that repeat bit for bit,
  // whatever else the machine does); fixed_cpu_threads() is that n, 0 where none was set.
  // n = 0: from the machine's count (default_cpu_threads), tuned again as a new trainer's steps are
  // (the studio's setting, changed mid-run; under OMP_NUM_THREADS its count, untuned).
  void use_cpu_threads(int n);
  int fixed_cpu_threads() const;
  bool tunes_cpu_threads() const;  // the steps' threads come from the tuner

  // Data-parallel training (core/training/distributed.h): this trainer becomes one process of
  // `group`. Each step trains on its rows of the global batch (every process draws the same batch)
  // and all-reduces the gradients and the batch statistics, so that the run equals one process's
  // step for step up to float rounding; evaluate() splits the evaluation set and adds up the sums. Checks that every process holds the same config and step,
  // and starts them from rank 0's parameters. Throws CommunicationError (distributed.h).
  void set_process_group(std::shared_ptr<ProcessGroup> group);
  int rank() const;        // 0 without a group
  int world_size() const;  // 1 without a group
  // true on every process when any process passes true (one collective with a group).
  bool any_process(bool flag);

 private:
  Trainer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Learning rate of the cosine schedule at step t of T.
double cosine_lr(double peak, std::int64_t t, std::int64_t total);

}  // namespace retreever
