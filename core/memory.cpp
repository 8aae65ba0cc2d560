#include "memory.h"

#include "core/devices.h"

#include <cstdio>
#include <fstream>

namespace retreever {

double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  double kb = 0;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

bool memory_estimated_on(const std::string& device) {
  return device == "cpu" || (device == "auto" && cuda_device_count() == 0);
}

std::string memory_text(double bytes) {
  char buf[32];
  if (bytes >= 1e12) std::snprintf(buf, sizeof buf, "%.3g TB", bytes / 1e12);
  else if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  else std::snprintf(buf, sizeof buf, "%.0f MB", bytes / 1e6);
  return buf;
}

std::string memory_refusal(const Config& c, double available, int processes) {
  if (processes > 1) {  // data parallel on one machine: each process holds a share of the batch
    Config share = c;
    share.batch = (c.batch + processes - 1) / processes;
    const double each = share.memory_estimate().total(), need = processes * each;
    if (available <= 0 || need <= 0.9 * available) return "";
    return "memory: " + std::to_string(processes) + " processes need about " + memory_text(need) + " together (" +
           memory_text(each) + " each: every process holds the parameters, the optimiser and the evaluation set) but " +
           memory_text(available) + " is available; use fewer processes or lower " + share.memory_estimate().largest_share() + ".";
  }
  const auto need = c.memory_estimate();
  if (available <= 0 || need.total() <= 0.9 * available) return "";
  return "memory: this run needs about " + memory_text(need.total()) + " (parameters and optimiser " +
         memory_text(need.parameters) + ", one step's activations " + memory_text(need.activations) +
         ", the evaluation set " + memory_text(need.eval_set) + ") but " + memory_text(available) +
         " is available; lower " + need.largest_share() + ".";
}

}  // namespace retreever
