#include "app/cli/data_parallel.h"

#include "core/memory.h"

#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "app/cli/command_line.h"
#include "app/cli/parallel_runs.h"
#include "app/cli/training_run.h"
#include "core/files.h"
#include "core/training/run_folder.h"
#include "core/training/trainer.h"

namespace fs = std::filesystem;

namespace retreever::cli {
namespace {

// Our launcher's own variables: its folder (the rendezvous file, the workers' logs).
constexpr const char* kRunDirVariable = "RETREEVER_RUN_DIR";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int cores() {
  return std::max(1, int(std::thread::hardware_concurrency()));
}

// This process's command line after the program, without --nproc (what the workers run).
std::vector<std::string> worker_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> words;
  for (std::size_t at = 0; at < all.size();) {
    const auto end = all.find('\0', at);
    words.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    at = end == std::string::npos ? all.size() : end + 1;
  }
  if (words.empty())
    throw std::runtime_error("cannot read this program's command line (/proc/self/cmdline)");
  std::vector<std::string> args;
  for (std::size_t i = 1; i < words.size(); ++i) {
    if (words[i] == "--nproc")
      ++i;
    else if (words[i].rfind("--nproc=", 0) != 0)
      args.push_back(words[i]);
  }
  return args;
}

// A worker started by torchrun or srun with several processes on its machine: its own GPU, the
// LOCAL_RANK-th visible one (before anything touches CUDA). Our launcher sets it itself.
void select_local_gpu(const DistributedSetup& setup) {
  if (!env(kRunDirVariable).empty() || setup.local_world_size <= 1) return;
  const auto list = env("CUDA_VISIBLE_DEVICES");
  std::vector<std::string> visible;
  for (std::size_t at = 0, comma; !list.empty(); at = comma + 1) {
    comma = list.find(',', at);
    visible.push_back(list.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
  }
  const auto mine = std::size_t(setup.local_rank) < visible.size()
                        ? visible[std::size_t(setup.local_rank)]
                        : std::to_string(setup.local_rank);
  ::setenv("CUDA_VISIBLE_DEVICES", mine.c_str(), 1);
}

void check_process_count(long long nproc, long long batch, const std::string& device) {
  if (nproc < 1) throw UsageError("--nproc must be 1 or more (the number of training processes)");
  const long long most = device == "cuda" ? 1024 : (long long)kMaxProcessesPerCore * cores();
  if (nproc > batch)
    throw UsageError(
        "--nproc " + std::to_string(nproc) + " is more than the batch (" + std::to_string(batch) +
        " rows): every process needs at least one row; use a larger --batch or fewer processes");
  if (nproc > most)
    throw UsageError("--nproc " + std::to_string(nproc) +
                     " is more than this machine can use (at most " + std::to_string(most) +
                     (device == "cuda" ? "" : ": 4 per CPU core") + ")");
  if (nproc > 1) {
    const auto why = distributed_unsupported_reason(device == "cuda" ? "nccl" : "gloo");
    if (!why.empty())
      throw std::runtime_error("this build has no distributed support: " + why +
                               "; train on one process (leave out --nproc)");
  }
}

int run_workers(int nproc, const std::vector<std::string>& train_args, bool cuda,
                const fs::path& out) {
  const TempFolder folder("retreever-nproc");  // the workers' rendezvous and logs
  const fs::path run_dir = folder.path();
  std::vector<std::string> visible;  // CUDA_VISIBLE_DEVICES as given: worker r gets the r-th
  for (std::size_t at = 0, comma; !env("CUDA_VISIBLE_DEVICES").empty(); at = comma + 1) {
    const auto list = env("CUDA_VISIBLE_DEVICES");
    comma = list.find(',', at);
    visible.push_back(list.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
  }
  std::vector<Job> jobs;
  for (int r = 0; r < nproc; ++r) {
    Job job;
    job.name = "process " + std::to_string(r);
    job.args = train_args;
    job.env = {{"RANK", std::to_string(r)},
               {"WORLD_SIZE", std::to_string(nproc)},
               {"LOCAL_RANK", std::to_string(r)},
               {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
               {"RETREEVER_STORE_FILE", (run_dir / "store").string()},
               {kRunDirVariable, run_dir.string()}};
    // c10d's glog warnings would repeat what our one error line says.
    if (env("GLOG_minloglevel").empty()) job.env.emplace_back("GLOG_minloglevel", "3");
    // The cores shared out, unless the user chose the threads per process.
    if (env("OMP_NUM_THREADS").empty())
      job.env.emplace_back("OMP_NUM_THREADS", std::to_string(std::max(1, cores() / nproc)));
    if (cuda)
      job.env.emplace_back("CUDA_VISIBLE_DEVICES", std::size_t(r) < visible.size()
                                                       ? visible[std::size_t(r)]
                                                       : std::to_string(r));
    // Rank 0 keeps the terminal (progress, messages); the others write to a log the launcher reads.
    if (r > 0) job.log = (run_dir / ("rank" + std::to_string(r) + ".log")).string();
    jobs.push_back(std::move(job));
  }
  RunOptions options;
  options.parallel = nproc;
  options.stop_on_failure = true;
  options.grace_seconds = 30;  // time for rank 0 to finish a checkpoint it was writing
  auto results = run_jobs(jobs, options);
  // Rank 0 reports a lost peer into its own file (its stderr is the terminal's).
  results[0].error = [&] {
    std::FILE* f = std::fopen((run_dir / "rank0.log").c_str(), "r");
    std::string last;
    if (!f) return last;
    char line[4096];
    while (std::fgets(line, sizeof line, f))
      if (std::string(line).rfind("error: ", 0) == 0) last = std::string(line + 7);
    std::fclose(f);
    if (!last.empty() && last.back() == '\n') last.pop_back();
    return last;
  }();

  if (std::all_of(results.begin(), results.end(), [](const JobResult& r) { return r.ok(); }))
    return 0;
  if (last_interrupt()) return kExitInterrupted;
  // The cause: a process killed by a signal, else one that failed by itself, else one that lost
  // contact.
  auto rank_of = [](const JobResult& r) {
    return r.signal ? 0 : r.exit_code != kExitLostContact ? 1 : 2;
  };
  const JobResult* cause = nullptr;
  int rank = 0;
  for (int r = 0; r < nproc; ++r) {
    const auto& res = results[std::size_t(r)];
    if (res.ok() || res.stopped) continue;
    if (!cause || rank_of(res) < rank_of(*cause)) cause = &res, rank = r;
  }
  if (!cause) cause = &results[0];  // (every failure came after our stop)
  // Every process failed the same way by itself (a divergence, a bad file): rank 0 said why
  // already.
  if (rank == 0 && !cause->signal && cause->exit_code != kExitLostContact) return cause->exit_code;
  // A lost contact names itself ("process 0 of 2 lost contact ..."); anything else is named here.
  const auto what = cause->exit_code == kExitLostContact && !cause->error.empty()
                        ? cause->error
                        : "training process " + std::to_string(rank) + " of " +
                              std::to_string(nproc) + " " + cause->describe();
  std::fprintf(stderr, "error: %s; the other processes were stopped. %s\n", what.c_str(),
               kept_checkpoint_text(out.string()).c_str());
  return cause->exit_code > 0 && cause->exit_code != kExitLostContact ? cause->exit_code
                                                                      : kExitError;
}

}  // namespace

std::optional<DistributedSetup> worker_setup(bool nproc_given) {
  std::optional<DistributedSetup> setup;
  try {
    setup = setup_from_environment([](const char* n) { return std::getenv(n); });
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("the launcher variables are inconsistent: ") + e.what());
  }
  if (setup && nproc_given)
    throw UsageError(
        "--nproc starts its own processes; under torchrun or srun (RANK and WORLD_SIZE are set) "
        "leave it out");
  if (setup) select_local_gpu(*setup);
  return setup;
}

std::optional<int> launch_workers(long long nproc, const Config& config, const fs::path& out) {
  const bool cuda =
      config.device == "cuda" || (config.device == "auto" && torch::cuda::is_available());
  if (cuda && nproc > 1 && nproc > static_cast<long long>(torch::cuda::device_count()))
    throw UsageError("--nproc " + std::to_string(nproc) + " on --device " + config.device +
                     " needs a GPU per process; " + std::to_string(torch::cuda::device_count()) +
                     " are visible");
  check_process_count(nproc, config.batch, cuda ? "cuda" : "cpu");
  if (nproc == 1) return std::nullopt;
  if (memory_estimated_on(config.device))  // the processes share this machine's memory
    if (const auto refusal = memory_refusal(config, available_memory_bytes(), int(nproc)); !refusal.empty())
      throw UsageError(refusal);
  return run_workers(int(nproc), worker_arguments(), cuda, out);
}

int join_run(Trainer& trainer, DistributedSetup setup) {
  setup.backend = trainer.device_name().rfind("cuda", 0) == 0 ? "nccl" : "gloo";
  try {
    trainer.set_process_group(join_process_group(setup));
  } catch (const CommunicationError& e) {
    return lost_contact(e, setup.rank);
  }
  return 0;
}

int lost_contact(const CommunicationError& e, int rank) {
  const auto dir = env(kRunDirVariable);
  if (!dir.empty() && rank == 0) {  // launched by us: the launcher's one line names the cause
    if (std::FILE* f = std::fopen((fs::path(dir) / "rank0.log").c_str(), "a")) {
      std::fprintf(f, "error: %s\n", e.what());
      std::fclose(f);
    }
  } else {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return kExitLostContact;
}

}  // namespace retreever::cli
