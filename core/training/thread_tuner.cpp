#include "thread_tuner.h"

#include <algorithm>
#include <stdexcept>

namespace retreever {

ThreadTuner::ThreadTuner(int most) : candidates_{1, most}, current_(1) {
  if (most < 2) throw std::invalid_argument("ThreadTuner needs at least 2 threads to choose from");
}

void ThreadTuner::start_trial() {
  phase_ = Phase::trial;
  count_ = 0;
  candidate_ = 0;
  times_.clear();
  medians_.clear();
  spent_.clear();
  counted_.clear();
  current_ = candidates_[0];
}

// The candidate being timed is done (its steps, or one step already far slower than the best so far).
void ThreadTuner::next_candidate() {
  auto middle = times_.begin() + std::ptrdiff_t(times_.size() / 2);
  std::nth_element(times_.begin(), middle, times_.end());
  medians_.push_back(*middle);
  counted_.push_back(int(times_.size()));
  times_.clear();
  count_ = 0;
  if (++candidate_ < candidates_.size()) {
    current_ = candidates_[candidate_];
    return;
  }
  const auto best = std::size_t(std::min_element(medians_.begin(), medians_.end()) - medians_.begin());
  current_ = candidates_[best];
  expected_ = medians_[best];
  lost_ = 0;
  for (std::size_t c = 0; c < candidates_.size(); ++c)
    if (c != best) lost_ += std::max(0.0, spent_[c] - expected_ * counted_[c]);
  phase_ = Phase::hold;
  held_ = 0;
  slow_ = 0;
  ++trials_;
}

void ThreadTuner::record(double seconds) {
  ++count_;
  switch (phase_) {
    case Phase::warm_up:
      if (count_ >= kWarmUpSteps) start_trial();
      return;
    case Phase::trial: {
      times_.push_back(seconds);
      if (spent_.size() <= candidate_) spent_.push_back(0);
      spent_[candidate_] += seconds;
      const bool far_slower = !medians_.empty() && seconds > kSlowdown * *std::min_element(medians_.begin(), medians_.end());
      if (count_ >= kTrialSteps || far_slower) next_candidate();
      return;
    }
    case Phase::hold:
      held_ += seconds;
      slow_ = seconds > kSlowdown * expected_ ? slow_ + 1 : 0;
      if (slow_ >= kSlowSteps || (count_ >= kHoldSteps && held_ * kTrialShare >= lost_)) start_trial();
      return;
  }
}

}  // namespace retreever
