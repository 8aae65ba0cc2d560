#include "stage.h"

#include <cctype>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <memory>
#include <unordered_map>
#include <unordered_set>

namespace retreever {
namespace {

thread_local StageClock* current_clock = nullptr;

// Where the stage of that name is in `stages`, appended with 0 ms if it is not there yet.
std::size_t stage_index(std::vector<StageClock::Stage>& stages, const std::string& name) {
  std::size_t i = 0;
  while (i < stages.size() && stages[i].name != name) ++i;
  if (i == stages.size()) stages.push_back({name, 0});
  return i;
}

struct Started : at::ObserverContext {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};

bool is_node(const at::RecordFunction& fn) { return fn.scope() == at::RecordScope::BACKWARD_FUNCTION; }

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!is_node(fn) && std::strncmp(fn.name(), RETREEVER_STAGE_PREFIX, sizeof(RETREEVER_STAGE_PREFIX) - 1) != 0)
    return nullptr;
  return std::make_unique<Started>();
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (!context || !current_clock) return;  // no clock on this thread (autograd's device threads)
  const auto start = static_cast<Started*>(context)->at;
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (is_node(fn))
    current_clock->add(backward_node_stage(fn.name()).c_str(), ms);
  else
    current_clock->add(fn.name() + sizeof(RETREEVER_STAGE_PREFIX) - 1, ms);
}

}  // namespace

StageClock::StageClock() : outer_(current_clock) {
  current_clock = this;
  if (!outer_)  // the first clock's callbacks serve the clocks inside it
    handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(on_start, on_end)
                                             .scopes({at::RecordScope::USER_SCOPE, at::RecordScope::BACKWARD_FUNCTION}));
}

StageClock::~StageClock() {
  if (!outer_) at::removeCallback(handle_);
  current_clock = outer_;
}

void StageClock::add(const char* name, double ms) { stages_[stage_index(stages_, name)].ms += ms; }

std::string backward_node_stage(const std::string& node) {
  std::string name = node;
  const std::string custom = "CppNode<";
  if (const auto at = name.find(custom); at != std::string::npos && name.back() == '>')
    name = name.substr(at + custom.size(), name.size() - at - custom.size() - 1);
  if (const auto cut = name.rfind("::"); cut != std::string::npos) name = name.substr(cut + 2);
  auto end = name.size();
  while (end > 0 && std::isdigit(static_cast<unsigned char>(name[end - 1]))) --end;
  const std::string suffix = "Backward";
  if (end > suffix.size() && name.compare(end - suffix.size(), suffix.size(), suffix) == 0)
    name = name.substr(0, end - suffix.size());
  return "backward/" + name;
}

void drop_span_copies(std::vector<TraceEvent>& events) {
  std::unordered_set<std::string> spans;
  for (const auto& e : events)
    if (!e.device && e.name.rfind(RETREEVER_STAGE_PREFIX, 0) == 0) spans.insert(e.name);
  events.erase(std::remove_if(events.begin(), events.end(),
                              [&](const TraceEvent& e) { return e.device && spans.count(e.name) != 0; }),
               events.end());
}

std::vector<StageClock::Stage> device_stages(std::vector<TraceEvent> events) {
  drop_span_copies(events);
  struct Span {
    std::size_t stage;
    double start, end;
    bool part;
  };
  const std::string prefix = RETREEVER_STAGE_PREFIX;
  std::vector<const TraceEvent*> host_spans;
  std::unordered_map<std::uint64_t, double> op_start;  // a host operator's correlation id: its start
  for (const auto& e : events) {
    if (e.device) continue;
    if (e.name.rfind(prefix, 0) == 0) host_spans.push_back(&e);
    else if (e.correlation) op_start.emplace(e.correlation, e.start_us);
  }
  std::sort(host_spans.begin(), host_spans.end(),
            [](const TraceEvent* a, const TraceEvent* b) { return a->start_us < b->start_us; });
  std::vector<StageClock::Stage> stages;
  std::vector<Span> spans;
  for (const auto* e : host_spans) {
    const auto name = e->name.substr(prefix.size());
    spans.push_back({stage_index(stages, name), e->start_us, e->start_us + e->duration_us, name.find('/') != std::string::npos});
  }
  double rest = 0;
  bool traced = false;
  for (const auto& e : events) {
    if (!e.device) continue;
    const auto op = op_start.find(e.correlation);
    bool in_stage = false;
    if (e.correlation && op != op_start.end()) {
      traced = true;
      for (const auto& s : spans)
        if (s.start <= op->second && op->second <= s.end) {
          stages[s.stage].ms += e.duration_us / 1e3;
          in_stage = in_stage || !s.part;
        }
    }
    if (!in_stage) rest += e.duration_us / 1e3;
  }
  if (!traced) return {};
  stages.push_back({"rest", rest});
  return stages;
}

}  // namespace retreever
