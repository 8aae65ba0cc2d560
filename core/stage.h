#pragma once
// Named spans of a training step ("embed", "decode/walk", ...): LibTorch's profiler writes them into
// its traces beside the operators (bench --profile; chrome://tracing, ui.perfetto.dev), and a
// StageClock times them on its own. A name with a slash is a part of the stage before the slash.
// With neither running a span costs a thread-local check.
#include <ATen/record_function.h>

#include <string>
#include <vector>

#define RETREEVER_STAGE_PREFIX "retreever::"
// The span lasts to the end of the enclosing block; one per block.
#define RETREEVER_STAGE(name) RECORD_USER_SCOPE(RETREEVER_STAGE_PREFIX name)

namespace retreever {

// Wall time of the spans run on this thread while it lives. It observes the spans alone, not the
// operators, so what it times runs at its usual speed (a profiler adds its cost to every operator).
// On a GPU the spans time the host's launches, not the device's work. One clock a thread at a time:
// a clock made while another lives takes the spans until it goes.
class StageClock {
 public:
  struct Stage {
    std::string name;  // without the prefix
    double ms = 0;     // summed over its spans
  };
  StageClock();
  ~StageClock();
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;
  // In the order the stages first ran.
  const std::vector<Stage>& stages() const { return stages_; }

  // Internal: the callbacks' entry point.
  void add(const char* name, double ms);

 private:
  std::vector<Stage> stages_;
  at::CallbackHandle handle_ = 0;
  StageClock* outer_;
};

}  // namespace retreever
