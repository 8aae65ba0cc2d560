#include "app/cli/parallel_runs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

#include "app/cli/command_line.h"
#include "app/cli/training_run.h"
#include "core/devices.h"
#include "core/files.h"

extern char** environ;

namespace retreever::cli {
namespace {

volatile sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

constexpr auto kPoll = std::chrono::milliseconds(20);  // how often the children's states are read

std::string last_error_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (line.rfind("error: ", 0) == 0) last = line.substr(7);
  return last;
}

// Starts `job` with `extra` in its environment. Everything the child needs is built before fork, so
// that the child only calls async-signal-safe functions until execve.
pid_t start(const Job& job, const std::vector<std::pair<std::string, std::string>>& extra,
            std::string exe) {
  if (!job.program.empty()) exe = job.program;
  std::vector<std::string> args{exe};
  args.insert(args.end(), job.args.begin(), job.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  std::set<std::string> replaced;
  for (const auto* list : {&job.env, &extra})
    for (const auto& [k, v] : *list) replaced.insert(k);
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    if (!replaced.count(entry.substr(0, entry.find('=')))) env.push_back(entry);
  }
  for (const auto* list : {&job.env, &extra})
    for (const auto& [k, v] : *list) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  int log_fd = -1;
  if (!job.log.empty()) {
    log_fd = ::open(job.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
      throw std::runtime_error("cannot write the log " + job.log + ": " + std::strerror(errno));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    throw std::runtime_error("cannot start " + job.name + ": " + std::strerror(errno));
  }
  if (pid == 0) {
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    // A child must not outlive this process (killed, crashed): it gets SIGTERM when we go.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    ::execve(exe.c_str(), argv.data(), envp.data());
    const char msg[] = "error: cannot start the child process (execve failed)\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  return pid;
}

}  // namespace

std::string JobResult::describe() const {
  if (signal != 0) {
    const char* what = strsignal(signal);
    return "was killed by signal " + std::to_string(signal) +
           (what ? std::string(" (") + what + ")" : "");
  }
  return "exited with status " + std::to_string(exit_code) + (error.empty() ? "" : ": " + error);
}

std::vector<JobResult> run_jobs(const std::vector<Job>& jobs, const RunOptions& options) {
  const int parallel = std::max(1, options.parallel);
  const auto exe = self_executable();
  std::vector<JobResult> results(jobs.size());
  struct Running {
    std::size_t job;
    pid_t pid;
    int slot;
  };
  std::vector<Running> running;
  std::vector<bool> slot_busy(std::size_t(parallel), false);

  // Our SIGINT/SIGTERM stop the children (a terminal's Ctrl-C reaches them too), then we wait for
  // them.
  g_stop_signal = 0;
  struct sigaction action {
  }, old_int{}, old_term{};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  std::size_t next = 0;
  bool stopping = false, killed = false;
  auto deadline = std::chrono::steady_clock::now();
  auto stop_all = [&] {
    stopping = true;
    deadline = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(std::int64_t(options.grace_seconds * 1000));
    for (const auto& r : running) {
      results[r.job].stopped = true;
      ::kill(r.pid, SIGTERM);
      ::kill(r.pid, SIGCONT);  // a stopped child handles the SIGTERM too
    }
  };
  try {
    while ((!stopping && next < jobs.size()) || !running.empty()) {
      if (g_stop_signal && !stopping) stop_all();
      while (!stopping && next < jobs.size() && int(running.size()) < parallel) {
        int slot = 0;
        while (slot_busy[std::size_t(slot)]) ++slot;
        static const std::vector<std::pair<std::string, std::string>> none;
        const auto& extra = std::size_t(slot) < options.slot_env.size()
                                ? options.slot_env[std::size_t(slot)]
                                : none;
        results[next].name = jobs[next].name;
        const pid_t pid = start(jobs[next], extra, exe);
        slot_busy[std::size_t(slot)] = true;
        running.push_back({next++, pid, slot});
      }
      bool failed = false;
      for (auto it = running.begin(); it != running.end();) {
        int status = 0;
        const pid_t r = ::waitpid(it->pid, &status, WNOHANG);
        if (r != it->pid) {
          ++it;
          continue;
        }
        auto& res = results[it->job];
        if (WIFSIGNALED(status))
          res.signal = WTERMSIG(status);
        else
          res.exit_code = WEXITSTATUS(status);
        if (!jobs[it->job].log.empty()) res.error = last_error_line(jobs[it->job].log);
        failed = failed || (!res.ok() && !res.stopped);
        if (options.on_end) options.on_end(res, options.user);
        slot_busy[std::size_t(it->slot)] = false;
        it = running.erase(it);
      }
      if (failed && options.stop_on_failure && !stopping) stop_all();
      if (stopping && !killed && std::chrono::steady_clock::now() > deadline) {
        for (const auto& r : running) ::kill(r.pid, SIGKILL);
        killed = true;
      }
      if (!running.empty()) std::this_thread::sleep_for(kPoll);
    }
  } catch (...) {
    for (const auto& r : running) ::kill(r.pid, SIGKILL);
    for (const auto& r : running) ::waitpid(r.pid, nullptr, 0);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    throw;
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  // Jobs never started (a stop came first) count as stopped.
  for (std::size_t i = next; i < jobs.size(); ++i) {
    results[i].name = jobs[i].name;
    results[i].stopped = true;
  }
  return results;
}

int train_runs_in_parallel(const std::vector<std::pair<std::string, Config>>& runs,
                           const std::filesystem::path& out, const std::string& parallel_option,
                           const std::string& devices_option, int threads) {
  const auto [parallel, devices] = parallel_options(parallel_option, devices_option);
  namespace fs = std::filesystem;
  std::vector<Job> jobs;
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  for (const auto& [name, config] : runs) {
    const auto dir = out / name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
      throw std::runtime_error("cannot create output folder '" + dir.string() +
                               "': " + ec.message());
    Config c = config;
    if (!devices.empty()) c.device = "auto";  // with one GPU visible, or none for "cpu"
    write_file_atomic((dir / "config.json").string(), c.to_json() + "\n");
    fs::remove(dir / "train.log", ec);
    Job job;
    job.name = name;
    job.args = {"train", "--task",    c.task, "--config", (dir / "config.json").string(),
                "--out", dir.string()};
    job.log = (dir / "train.log").string();
    if (threads > 0) job.args.insert(job.args.end(), {"--threads", std::to_string(threads)});
    // The cores shared out among the runs at once, unless the user chose the threads per run.
    if (threads == 0 && devices.empty() && !std::getenv("OMP_NUM_THREADS"))
      job.env.emplace_back("OMP_NUM_THREADS", std::to_string(std::max(1, cores / parallel)));
    jobs.push_back(std::move(job));
  }
  RunOptions options;
  options.parallel = devices.empty() ? parallel : int(devices.size());
  // cuda:K is the K-th GPU this process sees: through CUDA_VISIBLE_DEVICES when that is set
  // already.
  std::vector<std::string> visible;
  const std::string list =
      std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "";
  for (std::size_t at = 0, comma; !list.empty(); at = comma + 1) {
    comma = list.find(',', at);
    visible.push_back(list.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
  }
  for (const auto& d : devices) {
    const auto k = d == "cpu" ? std::string() : d.substr(5);
    const auto index = k.empty() ? 0 : std::stoul(k);
    options.slot_env.push_back(
        {{"CUDA_VISIBLE_DEVICES", k.empty() || index >= visible.size() ? k : visible[index]}});
  }
  struct Tally {
    std::size_t done = 0, total = 0;
  } tally{0, jobs.size()};
  options.user = &tally;
  options.on_end = [](const JobResult& r, void* user) {
    auto& t = *static_cast<Tally*>(user);
    ++t.done;
    const auto how = r.ok()     ? std::string("finished")
                     : r.signal ? "was killed by signal " + std::to_string(r.signal)
                                : "failed with status " + std::to_string(r.exit_code);
    std::fprintf(stderr, "run %s %s (%zu of %zu)\n", r.name.c_str(), how.c_str(), t.done, t.total);
  };
  std::fprintf(stderr, "training %zu runs, %d at a time; each run's output: %s/NAME/train.log\n",
               jobs.size(), options.parallel, out.string().c_str());
  const auto results = run_jobs(jobs, options);
  if (last_interrupt()) return kExitInterrupted;
  std::size_t failed = 0, first = 0;
  for (std::size_t i = 0; i < results.size(); ++i)
    if (!results[i].ok() && !failed++) first = i;
  if (!failed) return 0;
  std::fprintf(stderr, "error: %zu of %zu runs failed; the first, %s, %s (its log: %s)\n", failed,
               results.size(), results[first].name.c_str(), results[first].describe().c_str(),
               jobs[first].log.c_str());
  return results[first].exit_code > 0 ? results[first].exit_code : kExitError;
}

int last_interrupt() {
  return int(g_stop_signal);
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's own path (/proc/self/exe)");
  return std::string(buf, std::size_t(n));
}

std::pair<int, std::vector<std::string>> parallel_options(const std::string& parallel_option,
                                                         const std::string& devices_option) {
  int parallel = 1;
  std::vector<std::string> devices;
  try {
    if (!devices_option.empty()) devices = parse_devices(devices_option, cuda_device_count());
    if (!parallel_option.empty())
      parallel = parse_parallel(parallel_option, 4 * std::max(1, int(std::thread::hardware_concurrency())));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return {parallel, devices};
}

int parse_parallel(const std::string& value, int max) {
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end || errno || n < 1)
    throw std::invalid_argument("--parallel takes a whole number of processes, 1 or more (got '" +
                                value + "')");
  if (n > max)
    throw std::invalid_argument("--parallel " + value +
                                " is more than this machine can use (at most " +
                                std::to_string(max) + "); use fewer");
  return int(n);
}

std::vector<std::string> parse_devices(const std::string& value, int gpus) {
  std::vector<std::string> devices;
  std::set<std::string> seen;
  std::size_t at = 0;
  while (at <= value.size()) {
    const auto comma = value.find(',', at);
    const auto d = value.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const bool cuda = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                      d.find_first_not_of("0123456789", 5) == std::string::npos && d.size() <= 9;
    if (d != "cpu" && !cuda)
      throw std::invalid_argument(
          "--devices takes a comma-separated list like cuda:0,cuda:1 (or cpu); '" + d +
          "' is neither");
    if (!seen.insert(d).second) throw std::invalid_argument("--devices names " + d + " twice");
    // A GPU that is not there would leave its runs to train on the CPU, unasked.
    if (cuda && std::stoul(d.substr(5)) >= unsigned(gpus))
      throw std::invalid_argument(
          "--devices names " + d + ", but " +
          (gpus == 0 ? std::string("this machine sees no CUDA GPU; use --devices cpu or leave the option out")
                     : "this machine sees " + std::to_string(gpus) + " CUDA GPU(s); use cuda:0.." + "cuda:" +
                           std::to_string(gpus - 1) + " or cpu"));
    devices.push_back(d);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return devices;
}

}  // namespace retreever::cli
