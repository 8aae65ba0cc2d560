// Runs child processes of this executable, up to P at a time: the independent runs of a sweep
// (study --parallel N, --devices cuda:0,cuda:1) and the workers of one data-parallel run
// (train --nproc N), which stop together when one fails. Torch-free.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace retreever::cli {

struct Job {
  std::string name;                                      // in messages: "run tca_acc", "process 1"
  std::vector<std::string> args;                         // the command line after the executable
  std::vector<std::pair<std::string, std::string>> env;  // set in the child only
  std::string log;      // stdout and stderr go to this file (appended); empty: this process's own
  std::string program;  // empty: this executable
};

struct JobResult {
  std::string name;
  int exit_code = -1;    // the child's exit status, or -1 when a signal ended it
  int signal = 0;        // the signal that ended it, 0 if none
  bool stopped = false;  // ended by us (stop_on_failure or an interrupt), not by itself
  std::string error;     // its log's last "error: ..." line, without "error: "
  bool ok() const { return exit_code == 0; }
  std::string describe()
      const;  // "exited with status 2: <error>", "was killed by signal 9 (Killed)"
};

struct RunOptions {
  int parallel = 1;  // at most this many jobs at once (>= 1)
  // The first failure stops the others (SIGTERM, then SIGKILL after grace_seconds) and starts no
  // more.
  bool stop_on_failure = false;
  double grace_seconds = 10;
  // Job i's extra environment for the slot it runs in (0..parallel-1): a device per slot.
  std::vector<std::vector<std::pair<std::string, std::string>>> slot_env;
  // Called from the waiting thread when a job ends (progress lines).
  void (*on_end)(const JobResult&, void* user) = nullptr;
  void* user = nullptr;
};

// Runs every job and returns their results in the jobs' order. SIGINT or SIGTERM to this process
// passes SIGTERM on to the children and stops starting new ones. Throws std::runtime_error when a
// child cannot be started.
std::vector<JobResult> run_jobs(const std::vector<Job>& jobs, const RunOptions& options);

// The signal (SIGINT, SIGTERM) that interrupted the last run_jobs, 0 if none.
int last_interrupt();

// The path of this executable (what the jobs run).
std::string self_executable();

// study --parallel N / --devices L (the options' values, "" when absent): the sweep's independent
// runs (name, config) as child processes 'retreever train --config DIR/NAME/config.json --out
// DIR/NAME', N at a time, or one per device of L ("cuda:K", "cpu"; the runs then use --device auto
// with that GPU alone visible). Each run's output goes to DIR/NAME/train.log; a line per finished
// run. Returns 0, or after one line naming the failed runs and the first one's log, the first
// failure's exit status. Throws UsageError for a bad N or L. threads > 0: each run's --threads
// (otherwise the CPU's cores are shared out among the runs at once).
int train_runs_in_parallel(const std::vector<std::pair<std::string, Config>>& runs,
                           const std::filesystem::path& out, const std::string& parallel,
                           const std::string& devices, int threads = 0);

// "--parallel N": N >= 1, at most max; or "--devices cuda:0,cuda:1": the list, each "cpu" or
// "cuda:K", no repeats. Throw std::invalid_argument naming the option and the fix.
int parse_parallel(const std::string& value, int max);
// Both options checked (UsageError naming the fix): the processes at a time and the devices.
std::pair<int, std::vector<std::string>> parallel_options(const std::string& parallel, const std::string& devices);
std::vector<std::string> parse_devices(const std::string& value, int gpus);  // gpus: how many this process sees

}  // namespace retreever::cli
