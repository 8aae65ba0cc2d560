// The one file that speaks c10d (see distributed.h). CMake defines RETREEVER_HAVE_GLOO when
// LibTorch's Gloo headers and gloo's own are there, RETREEVER_HAVE_NCCL when its NCCL ones and
// nccl.h are (either without the other).
#include "core/training/distributed.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/types.h>
#include <torch/version.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#ifndef RETREEVER_HAVE_GLOO
#define RETREEVER_HAVE_GLOO 0
#endif
#ifndef RETREEVER_HAVE_NCCL
#define RETREEVER_HAVE_NCCL 0
#endif
// Gloo (CPU tensors) and NCCL (CUDA tensors) are independent: a PyTorch wheel ships NCCL's c10d
// backend but not gloo's headers.
#if RETREEVER_HAVE_GLOO || RETREEVER_HAVE_NCCL
#define RETREEVER_HAVE_C10D 1
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if RETREEVER_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if RETREEVER_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace retreever {
namespace {

// A whole number from an environment variable, or std::invalid_argument naming it.
int env_int(const char* name, const std::string& value, int lo, int hi) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  // SLURM writes tasks per node as "2(x3)": the leading count is the one wanted.
  const bool slurm_list = end && *end == '(';
  if (value.empty() || errno || (!slurm_list && *end) || v < lo || v > hi)
    throw std::invalid_argument(std::string(name) + "=" + value + " is not a whole number in " +
                                std::to_string(lo) + ".." + std::to_string(hi));
  return int(v);
}

}  // namespace

std::optional<DistributedSetup> setup_from_environment(
    const std::function<const char*(const char*)>& get) {
  auto str = [&](const char* n) -> std::string {
    const char* v = get(n);
    return v ? v : "";
  };
  const char *world_var = "WORLD_SIZE", *rank_var = "RANK", *local_var = "LOCAL_RANK",
             *local_world_var = "LOCAL_WORLD_SIZE";
  // srun sets its own names; they describe a data-parallel run only where a rendezvous address is
  // given too.
  if (str(world_var).empty() && !str("SLURM_NTASKS").empty() && !str("MASTER_ADDR").empty()) {
    world_var = "SLURM_NTASKS";
    rank_var = "SLURM_PROCID";
    local_var = "SLURM_LOCALID";
    local_world_var = "SLURM_NTASKS_PER_NODE";
  }
  if (str(world_var).empty()) return std::nullopt;
  DistributedSetup s;
  s.world_size = env_int(world_var, str(world_var), 1, 1 << 16);
  if (s.world_size == 1) return std::nullopt;
  if (str(rank_var).empty())
    throw std::invalid_argument(std::string(world_var) + " is set but " + rank_var +
                                " is not: a launcher (torchrun, srun) sets both");
  s.rank = env_int(rank_var, str(rank_var), 0, s.world_size - 1);
  s.local_world_size = str(local_world_var).empty()
                           ? s.world_size
                           : env_int(local_world_var, str(local_world_var), 1, s.world_size);
  s.local_rank = str(local_var).empty() ? s.rank % s.local_world_size
                                        : env_int(local_var, str(local_var), 0, s.world_size - 1);
  s.store_file = str("RETREEVER_STORE_FILE");
  if (s.store_file.empty()) {
    s.master_addr = str("MASTER_ADDR");
    if (s.master_addr.empty() || str("MASTER_PORT").empty())
      throw std::invalid_argument(
          std::string(rank_var) + " and " + world_var +
          " are set but MASTER_ADDR or MASTER_PORT is not: rank 0's address and a free port");
    s.master_port = env_int("MASTER_PORT", str("MASTER_PORT"), 1, 65535);
  }
  if (!str("RETREEVER_DIST_TIMEOUT").empty())
    s.timeout_seconds =
        env_int("RETREEVER_DIST_TIMEOUT", str("RETREEVER_DIST_TIMEOUT"), 1, INT_MAX);
  return s;
}

#if RETREEVER_HAVE_C10D

namespace {

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

// Rank 0 serves the TCP rendezvous: a port another program holds fails here with one clear line
// (c10d's own failure comes as several log lines and a long message). "" when the port is free.
std::string port_problem(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return "";
  int yes = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes,
               sizeof yes);  // as c10d does: TIME_WAIT is no problem
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(std::uint16_t(port));
  const bool taken = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0;
  const int why = errno;
  ::close(s);
  return taken ? std::strerror(why) : "";
}

// c10d's API moved under us: Work left ProcessGroup in 1.13, and 2.0 split ProcessGroup into a
// ProcessGroup and Backends. Holding the concrete backend (ProcessGroupGloo, ProcessGroupNCCL)
// rather than a ProcessGroup keeps the rest the same on all: in 1.x they derive from ProcessGroup,
// in 2.x from Backend, and both have allreduce and broadcast returning a Work.
#if TORCH_VERSION_MAJOR >= 2 || (TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR >= 13)
using Work = c10d::Work;
#else
using Work = c10d::ProcessGroup::Work;
#endif

// Whether a backend has shutdown() (ProcessGroupNCCL from LibTorch 2.x: its communicators are to be
// shut down before they are destroyed, or it warns of leaked resources).
template <class B, class = void>
struct HasShutdown : std::false_type {};
template <class B>
struct HasShutdown<B, std::void_t<decltype(std::declval<B&>().shutdown())>> : std::true_type {};

template <class Backend>
class C10dGroup : public ProcessGroup {
 public:
  C10dGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<Backend> backend, int rank,
            int size, torch::Device device)
      : store_(std::move(store)),
        backend_(std::move(backend)),
        rank_(rank),
        size_(size),
        device_(device) {}

  ~C10dGroup() override {
#if RETREEVER_HAVE_NCCL
    if constexpr (std::is_same_v<Backend, c10d::ProcessGroupNCCL> && HasShutdown<Backend>::value) {
      try {
        backend_->shutdown();
      } catch (...) {  // a rank that lost contact: nothing more to do
      }
    }
#endif
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(at::Tensor& tensor) override {
    std::vector<at::Tensor> v{tensor};
    wait("an all-reduce", [&] { return backend_->allreduce(v); });
  }
  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> v{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait("a broadcast", [&] { return backend_->broadcast(v, options); });
  }
  bool any(bool flag) override {
    auto t = torch::full({1}, flag ? 1.0f : 0.0f, torch::TensorOptions().device(device_));
    all_reduce_sum(t);
    return t.item<float>() > 0;
  }

 private:
  template <class Start>
  void wait(const char* what, Start&& start) {
    try {
      c10::intrusive_ptr<Work> work = start();
      work->wait();
    } catch (const c10::Error& e) {
      throw lost(what, e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw lost(what, e.what());
    }
  }
  CommunicationError lost(const char* what, const std::string& why) const {
    return CommunicationError("process " + std::to_string(rank_) + " of " + std::to_string(size_) +
                              " lost contact with the others in " + what +
                              " (a process died or stayed silent): " + first_line(why));
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Backend> backend_;
  int rank_, size_;
  torch::Device device_;
};

}  // namespace

std::string distributed_unsupported_reason(const std::string& backend) {
  if (backend == "nccl")
    return RETREEVER_HAVE_NCCL ? ""
                               : "LibTorch's c10d NCCL headers (ProcessGroupNCCL.hpp) or nccl.h were not found when "
                                 "this program was built (--device cpu trains on CPU processes)";
  return RETREEVER_HAVE_GLOO ? ""
                             : "LibTorch's c10d Gloo headers (ProcessGroupGloo.hpp) or gloo's own (Debian: "
                               "libgloo-dev) were not found when this program was built";
}

std::shared_ptr<ProcessGroup> join_process_group(const DistributedSetup& s) {
  const std::chrono::milliseconds timeout(std::int64_t(s.timeout_seconds) * 1000);
  const std::string where = s.store_file.empty()
                                ? s.master_addr + ":" + std::to_string(s.master_port)
                                : "the file " + s.store_file;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    if (!s.store_file.empty()) {
      store = c10::make_intrusive<c10d::FileStore>(s.store_file, s.world_size);
    } else {
      const auto problem = s.rank == 0 ? port_problem(s.master_port) : "";
      if (!problem.empty())
        throw CommunicationError("process 0 cannot serve the rendezvous on port " +
                                 std::to_string(s.master_port) + " (" + problem +
                                 "; is the port in use?): choose another MASTER_PORT");
      c10d::TCPStoreOptions o;
      o.port = std::uint16_t(s.master_port);
      o.isServer = s.rank == 0;
      o.numWorkers = std::size_t(s.world_size);
      o.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(s.master_addr, o);
    }
    store->setTimeout(timeout);
  } catch (const CommunicationError&) {
    throw;
  } catch (const c10::Error& e) {
    throw CommunicationError("process " + std::to_string(s.rank) +
                             " could not reach the rendezvous at " + where + ": " +
                             first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw CommunicationError("process " + std::to_string(s.rank) +
                             " could not reach the rendezvous at " + where + ": " +
                             first_line(e.what()));
  }
  try {
    if (s.backend == "nccl") {
#if RETREEVER_HAVE_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      auto backend =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(store, s.rank, s.world_size, options);
      return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(
          store, backend, s.rank, s.world_size, torch::Device(torch::kCUDA, torch::DeviceIndex(s.cuda_device)));
#else
      throw std::runtime_error(
          "this build has no NCCL support: train on the CPU processes (--device cpu) or "
          "build against a LibTorch with CUDA and NCCL");
#endif
    }
#if RETREEVER_HAVE_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // On one machine the loopback interface always works; across machines GLOO_SOCKET_IFNAME picks
    // the interface, as it does for PyTorch.
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    const bool local = !s.store_file.empty() || s.local_world_size == s.world_size;
    if (ifname && *ifname)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (local)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 2;
    auto backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, s.rank, s.world_size, options);
    return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(store, backend, s.rank, s.world_size,
                                                               torch::kCPU);
#else
    throw std::runtime_error("this build has no Gloo support: " + distributed_unsupported_reason("gloo") +
                             "; train on GPUs (--device cuda) or with one process");
#endif
  } catch (const c10::Error& e) {
    throw CommunicationError(
        "process " + std::to_string(s.rank) + " of " + std::to_string(s.world_size) +
        " could not connect to the others through " + where + " within " +
        std::to_string(s.timeout_seconds) + " s: " + first_line(e.what_without_backtrace()));
  } catch (const CommunicationError&) {
    throw;
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).rfind("this build", 0) == 0) throw;
    throw CommunicationError(
        "process " + std::to_string(s.rank) + " of " + std::to_string(s.world_size) +
        " could not connect to the others through " + where + ": " + first_line(e.what()));
  }
}

#else  // no c10d in this build

std::string distributed_unsupported_reason(const std::string&) {
  return "LibTorch's c10d Gloo headers (torch/csrc/distributed/c10d/ProcessGroupGloo.hpp) or "
         "gloo's own (Debian: libgloo-dev), and its NCCL ones, were not found when this program was built";
}

std::shared_ptr<ProcessGroup> join_process_group(const DistributedSetup&) {
  throw std::runtime_error(
      "this build has no distributed support: " + distributed_unsupported_reason() +
      "; train with one process (leave out --nproc) or rebuild");
}

#endif

}  // namespace retreever
