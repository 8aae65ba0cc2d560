// The check counter of the Qt-free suites (test_masking, test_cuda), which also build on machines
// without Qt: a failed check prints one line, and the summary sets the exit status.
#pragma once

#include <cstdio>
#include <string>

namespace retreever::testing {

struct Checks {
  int failures = 0, total = 0;

  void expect(bool ok, const std::string& what) {
    ++total;
    if (ok) return;
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
    std::fflush(stdout);
  }
  // "PASSED: 0 of N checks failed"; returns the exit status.
  int summary() const {
    std::printf("%s: %d of %d checks failed\n", failures ? "FAILED" : "PASSED", failures, total);
    return failures ? 1 : 0;
  }
};

inline Checks& checks() {
  static Checks c;
  return c;
}
inline void expect(bool ok, const std::string& what) { checks().expect(ok, what); }

// Whether run() throws an E whose message holds `needle` (a refusal that names the problem).
template <class E, class F>
bool refuses(F&& run, const std::string& needle) {
  try {
    run();
  } catch (const E& e) {
    return std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

}  // namespace retreever::testing
