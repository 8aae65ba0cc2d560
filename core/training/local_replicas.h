// The other ranks of a data-parallel run held inside this process, one thread each on its own
// device: the studio's "all GPUs". The caller's Trainer is rank 0 (the leader); the replicas start
// from its state and meet it through c10d (distributed.h), as the processes of 'train --nproc' do,
// so the run equals one trainer's step for step up to float rounding. Every leader call that runs
// collectives (a step, an evaluation) or changes what a step does (the learning rate, the number of
// steps) goes through together(), so that each replica makes the same call at the same time.
// Torch-free header.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/task.h"

namespace retreever {

class Trainer;

class LocalReplicas {
 public:
  // The leader trains on devices[0]; a replica starts on each further device from the leader's
  // parameters, optimiser and step. Throws std::runtime_error naming the problem and the fix
  // (fewer than two devices, a build without distributed support, a batch too small to split, the
  // ranks not meeting within `timeout_seconds`). The leader is left as it was when it throws.
  LocalReplicas(Trainer& leader, const std::vector<std::string>& devices, const TaskFactory& tasks,
                int timeout_seconds = 120);
  ~LocalReplicas();  // ends the replicas' threads; the leader leaves the group
  LocalReplicas(const LocalReplicas&) = delete;
  LocalReplicas& operator=(const LocalReplicas&) = delete;

  int size() const;  // trainers in the run, the leader included
  const std::vector<std::string>& devices() const;

  // Calls op on the leader (on this thread) and on every replica (on theirs) at the same time and
  // returns when all have returned. The leader's exception is rethrown first, then a replica's.
  void together(const std::function<void(Trainer&)>& op);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace retreever
