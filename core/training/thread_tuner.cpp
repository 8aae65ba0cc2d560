#include "thread_tuner.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace retreever {

ThreadTuner::ThreadTuner(int most) : candidates_{1, most}, current_(1) {
  if (most < 2) throw std::invalid_argument("ThreadTuner needs at least 2 threads to choose from");
}

void ThreadTuner::start_trial() {
  phase_ = Phase::trial;
  candidate_ = 0;
  times_.clear();
  timed_.clear();
  current_ = candidates_[0];
}

// The candidate being timed is done (its steps, or one step already far slower than the best so far).
void ThreadTuner::next_candidate() {
  const double total = std::accumulate(times_.begin(), times_.end(), 0.0);
  auto middle = times_.begin() + std::ptrdiff_t(times_.size() / 2);
  std::nth_element(times_.begin(), middle, times_.end());
  timed_.push_back({*middle, total, int(times_.size())});
  times_.clear();
  if (++candidate_ < candidates_.size()) {
    current_ = candidates_[candidate_];
    return;
  }
  const auto best = std::size_t(std::min_element(timed_.begin(), timed_.end(), [](const Timed& a, const Timed& b) {
                                  return a.median < b.median;
                                }) - timed_.begin());
  current_ = candidates_[best];
  expected_ = timed_[best].median;
  lost_ = 0;  // what the other candidates' steps cost against the winner's pace
  for (std::size_t c = 0; c < timed_.size(); ++c)
    if (c != best) lost_ += std::max(0.0, timed_[c].total - expected_ * timed_[c].steps);
  phase_ = Phase::hold;
  count_ = 0;
  held_ = 0;
  slow_ = 0;
  ++trials_;
}

void ThreadTuner::record(double seconds) {
  switch (phase_) {
    case Phase::warm_up:
      if (++count_ >= kWarmUpSteps) start_trial();
      return;
    case Phase::trial: {
      times_.push_back(seconds);
      bool far_slower = false;  // than a candidate timed before
      for (const auto& t : timed_) far_slower = far_slower || seconds > kSlowdown * t.median;
      if (int(times_.size()) >= kTrialSteps || far_slower) next_candidate();
      return;
    }
    case Phase::hold:
      ++count_;
      held_ += seconds;
      slow_ = seconds > kSlowdown * expected_ ? slow_ + 1 : 0;
      if (slow_ >= kSlowSteps || (count_ >= kHoldSteps && held_ * kTrialShare >= lost_)) start_trial();
      return;
  }
}

}  // namespace retreever
