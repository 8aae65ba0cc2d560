#include "stage.h"

#include <chrono>
#include <cstring>
#include <memory>

namespace retreever {
namespace {

thread_local StageClock* current_clock = nullptr;

struct Started : at::ObserverContext {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (std::strncmp(fn.name(), RETREEVER_STAGE_PREFIX, sizeof(RETREEVER_STAGE_PREFIX) - 1) != 0) return nullptr;
  return std::make_unique<Started>();
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (!context || !current_clock) return;
  const auto start = static_cast<Started*>(context)->at;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  current_clock->add(fn.name() + sizeof(RETREEVER_STAGE_PREFIX) - 1, ms);
}

}  // namespace

StageClock::StageClock() : outer_(current_clock) {
  current_clock = this;
  if (!outer_)  // the first clock's callbacks serve the clocks inside it
    handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(on_start, on_end).scopes({at::RecordScope::USER_SCOPE}));
}

StageClock::~StageClock() {
  if (!outer_) at::removeCallback(handle_);
  current_clock = outer_;
}

void StageClock::add(const char* name, double ms) {
  for (auto& s : stages_)
    if (s.name == name) {
      s.ms += ms;
      return;
    }
  stages_.push_back({name, ms});
}

}  // namespace retreever
