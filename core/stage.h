#pragma once
// Named spans of a training step ("embed", "decode/walk", ...): LibTorch's profiler writes them into
// its traces beside the operators (bench --profile; chrome://tracing, ui.perfetto.dev), and a
// StageClock times them on its own. A name with a slash is a part of the stage before the slash.
// With neither running a span costs a thread-local check.
#include <ATen/record_function.h>

#include <cstdint>
#include <string>
#include <vector>

#define RETREEVER_STAGE_PREFIX "retreever::"
// The span lasts to the end of the enclosing block; one per block.
#define RETREEVER_STAGE(name) RECORD_USER_SCOPE(RETREEVER_STAGE_PREFIX name)

namespace retreever {

// Wall time of the spans run on this thread while it lives, and of the backward's autograd nodes run
// on it, each a part of "backward" named by the node's type ("backward/Addmm", "backward/PairedLinear":
// backward_node_stage). On the CPU the backward's nodes run on the thread that called it; the
// engine's work between them (summing gradients, scheduling) is in "backward" but in no node. It
// observes these alone, not the operators, so what it times runs at nearly its usual speed (a profiler
// adds its cost to every operator). On a GPU the spans time the host's launches, not the device's
// work, and the nodes run on autograd's device threads, unseen. One clock a thread at a time: a clock
// made while another lives takes the spans until it goes.
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
  // In the order their first spans ended (a stage's parts before it).
  const std::vector<Stage>& stages() const { return stages_; }

  // Internal: the callbacks' entry point.
  void add(const char* name, double ms);

 private:
  std::vector<Stage> stages_;
  at::CallbackHandle handle_ = 0;
  StageClock* outer_;
};

// The stage an autograd node of that name counts for: "AddmmBackward0" -> "backward/Addmm", a custom
// function's "torch::autograd::CppNode<ns::PairedLinear>" -> "backward/PairedLinear".
std::string backward_node_stage(const std::string& node);

// One event of a profiler's trace, as device_stages reads it: a host operator or span (device false),
// or a kernel or copy on the device with the correlation id of the host operator that launched it.
struct TraceEvent {
  std::string name;
  bool device = false;
  double start_us = 0, duration_us = 0;
  std::uint64_t correlation = 0;  // host: the operator's id; device: its launcher's (0: none)
};

// Removes the device's copies of the spans: LibTorch 2.x's Kineto projects each host span onto the
// GPU's timeline as an event of the same name ("gpu_user_annotation"), lasting from its first kernel
// to its last. It is not work, so it is not counted in a device's time.
void drop_span_copies(std::vector<TraceEvent>& events);

// The device time of each stage (the spans' device copies left out, as drop_span_copies does): a
// kernel counts for every stage whose span was open on the host when the operator that launched it
// started, on any thread (the backward's operators run on autograd's device thread while the step's
// thread waits inside "backward"). Kernels traced to no operator, or launched outside every
// top-level stage (the batch's copies, a CUDA graph's replay), make the last entry, "rest". In the
// order the stages started; empty when no kernel was traced to an operator.
std::vector<StageClock::Stage> device_stages(std::vector<TraceEvent> events);

}  // namespace retreever
