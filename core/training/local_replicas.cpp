#include "core/training/local_replicas.h"

#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/files.h"
#include "core/training/distributed.h"
#include "core/training/trainer.h"

namespace retreever {

namespace {

// "cuda:K" -> K; "cuda" and anything else -> 0.
int cuda_index(const std::string& device) {
  const auto colon = device.find(':');
  return colon == std::string::npos ? 0 : std::atoi(device.c_str() + colon + 1);
}

}  // namespace

struct LocalReplicas::Impl {
  struct Replica {
    std::unique_ptr<Trainer> trainer;
    std::thread thread;
    std::exception_ptr error;
  };
  std::vector<std::string> devices;
  std::vector<Replica> replicas;
  Trainer* leader = nullptr;
  std::mutex mutex;
  std::condition_variable wake, done;
  std::function<void(Trainer&)> job;
  std::uint64_t generation = 0;  // one per job
  int pending = 0;
  bool stopping = false;

  void serve(Replica& r) {
    std::uint64_t seen = 0;
    for (;;) {
      std::function<void(Trainer&)> op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
        op = job;
      }
      std::exception_ptr error;
      try {
        op(*r.trainer);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex);
      r.error = error;
      if (--pending == 0) done.notify_all();
    }
  }
};

LocalReplicas::LocalReplicas(Trainer& leader, const std::vector<std::string>& devices, const TaskFactory& tasks,
                             int timeout_seconds)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  if (devices.size() < 2)
    throw std::runtime_error("data-parallel training needs two devices or more; got " + std::to_string(devices.size()));
  const auto why = distributed_unsupported_reason(devices[0].rfind("cuda", 0) == 0 ? "nccl" : "gloo");
  if (!why.empty()) throw std::runtime_error("cannot train on " + std::to_string(devices.size()) + " devices: " + why);
  m.devices = devices;
  m.leader = &leader;
  const int world = int(devices.size());
  TempFolder folder("retreever-replicas");
  const auto state = folder.path() + "/leader.safetensors";
  leader.save(state);
  DistributedSetup setup;
  setup.world_size = setup.local_world_size = world;
  setup.store_file = folder.path() + "/store";
  setup.backend = devices[0].rfind("cuda", 0) == 0 ? "nccl" : "gloo";
  setup.timeout_seconds = timeout_seconds;
  // Every rank joins at the same time: the replicas load the leader's state and join on their
  // threads while the leader joins on this one.
  m.replicas.resize(std::size_t(world - 1));
  std::vector<std::thread> joining;
  for (int rank = 1; rank < world; ++rank) {
    joining.emplace_back([&, rank] {
      auto& r = m.replicas[std::size_t(rank - 1)];
      try {
        r.trainer = Trainer::load(state, tasks, [&](Config& c) { c.device = devices[std::size_t(rank)]; });
        DistributedSetup mine = setup;
        mine.rank = mine.local_rank = rank;
        mine.cuda_device = cuda_index(devices[std::size_t(rank)]);
        r.trainer->set_process_group(join_process_group(mine));
      } catch (...) {
        r.error = std::current_exception();
      }
    });
  }
  std::exception_ptr error;
  try {
    DistributedSetup mine = setup;
    mine.cuda_device = cuda_index(devices[0]);
    leader.set_process_group(join_process_group(mine));
  } catch (...) {
    error = std::current_exception();
  }
  for (auto& t : joining) t.join();
  for (auto& r : m.replicas)
    if (!error && r.error) error = r.error;
  if (error) {
    leader.set_process_group(nullptr);
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("could not start the run on ") + std::to_string(world) + " devices: " + e.what());
    }
  }
  for (auto& r : m.replicas) r.thread = std::thread([&m, &r] { m.serve(r); });
}

LocalReplicas::~LocalReplicas() {
  auto& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    m.stopping = true;
  }
  m.wake.notify_all();
  for (auto& r : m.replicas)
    if (r.thread.joinable()) r.thread.join();
  m.leader->set_process_group(nullptr);
}

int LocalReplicas::size() const { return int(impl_->devices.size()); }
const std::vector<std::string>& LocalReplicas::devices() const { return impl_->devices; }

void LocalReplicas::together(const std::function<void(Trainer&)>& op) {
  auto& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    m.job = op;
    m.pending = int(m.replicas.size());
    for (auto& r : m.replicas) r.error = nullptr;
    ++m.generation;
  }
  m.wake.notify_all();
  std::exception_ptr error;
  try {
    op(*m.leader);
  } catch (...) {
    error = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(m.mutex);
  m.done.wait(lock, [&] { return m.pending == 0; });
  for (auto& r : m.replicas)
    if (!error && r.error) error = r.error;
  if (error) std::rethrow_exception(error);
}

}  // namespace retreever
