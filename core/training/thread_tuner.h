// Chooses how many CPU threads the training steps use, from how fast the steps run.
//
// On a machine whose cores are also busy with other work (a browser, a second run), a step that
// splits its operations over every core waits at each operation for a thread the system has not
// scheduled: on this project's 2-core VM, with one other process on each core, a GP step took
// 30 times longer with 2 threads than with 1. Idle, more threads are faster. So the trainer tries
// both from time to time and keeps the faster: a few steps with one thread, then with every core
// (cut short when its first step is already far slower), then the winner for a while, and a new
// trial as soon as the steps slow down. The hold lasts long enough that the trials' slower steps
// cost at most a twentieth of the time. Torch-free: the trainer sets the count it returns and
// reports each step's time.
#pragma once

#include <vector>

namespace retreever {

class ThreadTuner {
 public:
  static constexpr int kWarmUpSteps = 3;     // the first steps allocate: not timed (one thread)
  static constexpr int kTrialSteps = 3;      // steps per count in a trial (their median counts)
  static constexpr int kHoldSteps = 150;     // at least this many steps with the winner...
  static constexpr double kTrialShare = 0.05;  // ...and long enough for the trial's loss to be this share
  static constexpr double kSlowdown = 2.0;   // a step this much slower than the best so far...
  static constexpr int kSlowSteps = 3;       // ...this many times in a row (held) starts a new trial

  // most: the threads the machine has (> 1 for there to be a choice).
  explicit ThreadTuner(int most);

  int threads() const { return current_; }  // the count to run the next step with
  void record(double seconds);              // the step just run with threads() took this long

  int trials() const { return trials_; }    // trials finished so far

 private:
  void start_trial();
  void next_candidate();
  std::vector<int> candidates_;  // 1, then all the cores
  int current_;
  enum class Phase { warm_up, trial, hold } phase_ = Phase::warm_up;
  int count_ = 0;                // warm-up, hold: steps in this phase
  std::size_t candidate_ = 0;    // trial: the candidate being timed
  std::vector<double> times_;    // trial: this candidate's step times
  struct Timed {
    double median, total;
    int steps;
  };
  std::vector<Timed> timed_;     // trial: the candidates timed so far
  double expected_ = 0;          // hold: the winner's median
  double held_ = 0;              // hold: seconds so far
  double lost_ = 0;              // hold: what the trial's slower steps cost against the winner
  int slow_ = 0;                 // hold: slow steps in a row
  int trials_ = 0;
};

}  // namespace retreever
