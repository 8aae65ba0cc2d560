// A one-line progress bar with rate and ETA on a terminal; plain log lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace retreever::cli {

class Progress {
 public:
  Progress(std::int64_t start, std::int64_t total, bool terminal)
      : start_step_(start), total_(total), terminal_(terminal), t0_(std::chrono::steady_clock::now()) {}

  // Redraws at most ~10 times a second on a terminal.
  void update(std::int64_t step, const std::string& status) {
    const auto now = std::chrono::steady_clock::now();
    if (terminal_ && step < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - t0_).count();
    const double rate = elapsed > 0 ? double(step - start_step_) / elapsed : 0;
    const double eta = rate > 0 ? double(total_ - step) / rate : 0;
    const double frac = total_ > 0 ? double(step) / double(total_) : 1;
    if (terminal_) {
      constexpr int kWidth = 24;
      const int filled = int(frac * kWidth + 0.5);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld %5.1f%% %s | %.1f it/s ETA %s\033[K",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '-').c_str(),
                   (long long)step, (long long)total_, 100 * frac, status.c_str(), rate,
                   clock(eta).c_str());
      std::fflush(stderr);
    }
  }

  // A line that stays (evaluations, messages): clears the bar on a terminal first.
  void line(const std::string& text) {
    std::fprintf(stderr, terminal_ ? "\r\033[K%s\n" : "%s\n", text.c_str());
    std::fflush(stderr);
    last_draw_ = {};
  }

  void finish() {
    if (terminal_) std::fprintf(stderr, "\n");
  }

  static std::string clock(double seconds) {
    const long s = long(seconds + 0.5);
    char buf[32];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else
      std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
  }

 private:
  std::int64_t start_step_, total_;
  bool terminal_;
  std::chrono::steady_clock::time_point t0_, last_draw_{};
};

}  // namespace retreever::cli
