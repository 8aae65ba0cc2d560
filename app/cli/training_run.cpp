// The training loop shared by the command-line front ends.
#include "app/cli/training_run.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>

#include "app/cli/data_parallel.h"
#include "app/cli/progress.h"
#include "core/files.h"
#include "core/config.h"
#include "core/devices.h"
#include "core/training/run_folder.h"
#include "core/training/trainer.h"

namespace fs = std::filesystem;

namespace retreever::cli {
namespace {
std::atomic<int> g_signals_seen{0};  // a bit for SIGINT, one for SIGTERM: any asks for a stop
std::atomic<bool> g_announce{true};  // data parallel: rank 0 alone says it

// The first Ctrl-C (or SIGTERM) asks for a stop at the end of the step, with a checkpoint; the same
// signal once more stops at once, for a step that does not end (the files already written stay
// whole: they are written by rename). Only the same signal twice: a data-parallel worker gets the
// terminal's SIGINT and its launcher's SIGTERM for one Ctrl-C. Only async-signal-safe calls.
void on_interrupt(int signal) {
  const int bit = signal == SIGINT ? 1 : 2;
  const int before = g_signals_seen.fetch_or(bit);
  if (!(before & bit)) {
    static const char first[] = "\ninterrupt: stopping after this step, with a checkpoint (again to stop now)\n";
    if (before == 0 && g_announce) (void)!write(STDERR_FILENO, first, sizeof first - 1);
    return;
  }
  static const char second[] = "\ninterrupt again: stopping now; the checkpoint last written stays\n";
  if (g_announce) (void)!write(STDERR_FILENO, second, sizeof second - 1);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}
}  // namespace

void install_interrupt_handlers(bool announce) {
  g_announce = announce;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}

bool interrupt_requested() { return g_signals_seen.load() != 0; }

std::string metric_text(const EvalMetrics& e) {
  char buf[160];
  if (e.metric == "accuracy")
    std::snprintf(buf, sizeof buf, "eval accuracy %.2f%%", 100 * e.value);
  else
    std::snprintf(buf, sizeof buf, "eval log-likelihood %.3f", e.value);
  return buf;
}

// Trains to the end, evaluating and checkpointing on the way; the loop behind 'train' and
// every run of 'study'. Returns the exit status (0, interrupted or diverged).
int run_training(Trainer& trainer, const fs::path& out) {
  // Data parallel: every process trains and evaluates; rank 0 alone writes files and progress.
  const bool writer = trainer.rank() == 0;
  const auto& cfg = trainer.config();
  const RunFolder folder(out.string(), trainer);
  const auto checkpoint = folder.checkpoint();
  install_interrupt_handlers(writer);
  cli::Progress progress(trainer.steps_done(), cfg.steps, writer && isatty(STDERR_FILENO));
  auto say = [&](const std::string& text) {
    if (writer) progress.line(text);
  };
  const auto processes = trainer.world_size() > 1 ? " x " + std::to_string(trainer.world_size()) + " processes" : "";
  const int fixed = trainer.fixed_cpu_threads();
  const auto threads = fixed > 0 ? ", " + cpu_threads_text(fixed) : "";
  say("training " + cfg.model + " on " + cfg.task + " (" + std::to_string(cfg.steps) + " steps, batch " +
      std::to_string(cfg.batch) + ") on " + trainer.device_name() + threads + processes + " -> " + out.string());
  for (const auto& w : cfg.warnings()) say("warning: " + w);
  auto evaluate_and_save = [&] {
    auto e = trainer.evaluate();
    folder.save_evaluated(trainer);
    char buf[200];
    // A task of varying context sizes (GP, images) averages them: "13.6 of 13.6", not "of 14".
    const int context_digits = e.context_size == std::floor(e.context_size) ? 0 : 1;
    std::snprintf(buf, sizeof buf, "step %lld: %s, %.1f of %.*f tokens per query", (long long)e.step,
                  metric_text(e).c_str(), e.tokens_per_query, context_digits, e.context_size);
    say(buf);
  };
  // The run cannot go on (it diverged, or the device's memory ran out): what it wrote stays.
  auto stop = [&](const std::exception& e, int code) {
    folder.write_metrics(trainer);
    progress.finish();
    if (writer)
      std::fprintf(stderr, "error: %s. %s\n", e.what(), kept_checkpoint_text(out.string()).c_str());
    return code;
  };
  double smoothed = 0;
  try {
    while (!trainer.finished()) {
      if (trainer.any_process(interrupt_requested())) {  // all processes stop at the same step
        folder.save(trainer);
        say("interrupted at step " + std::to_string(trainer.steps_done()) + ": saved " + checkpoint +
            " (resume with --resume " + checkpoint + ")");
        return kExitInterrupted;
      }
      auto s = trainer.step();
      smoothed = s.step == 1 ? s.loss : 0.95 * smoothed + 0.05 * s.loss;
      char status[96];
      std::snprintf(status, sizeof status, "loss %.4f", smoothed);
      if (writer) progress.update(s.step, status);
      if (!isatty(STDERR_FILENO) && s.step % (cfg.log_every * 10) == 0)
        say("step " + std::to_string(s.step) + "/" + std::to_string(cfg.steps) + " " + status);
      if (s.step % cfg.eval_every == 0 && !trainer.finished()) evaluate_and_save();
    }
    evaluate_and_save();
    if (trainer.device_name() != "cpu") say(trainer.graph_summary());
  } catch (const CommunicationError& e) {
    progress.finish();
    return lost_contact(e, trainer.rank());
  } catch (const DivergenceError& e) {
    return stop(e, kExitDiverged);
  } catch (const OutOfMemoryError& e) {
    return stop(e, kExitError);
  }
  progress.finish();
  return 0;
}

}  // namespace retreever::cli
