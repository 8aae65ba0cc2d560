#include "args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace retreever::cli {

Args::Args(const std::string& command, const std::vector<std::string>& argv,
           const std::set<std::string>& valued, const std::set<std::string>& flags)
    : command_(command) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const auto& a = argv[i];
    if (a.rfind("--", 0) != 0)
      throw UsageError("unexpected argument '" + a + "' for 'retreever " + command +
                       "'; options start with --. See 'retreever " + command + " --help'");
    auto name = a.substr(2);
    std::string value;
    auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (flags.count(name)) {
      if (inline_value) throw UsageError("--" + name + " takes no value");
      values_[name] = "1";
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argv.size())
          throw UsageError("--" + name + " needs a value, e.g. --" + name + " VALUE");
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      throw UsageError("unknown option '--" + name + "' for 'retreever " + command +
                       "'; see 'retreever " + command + " --help'");
    }
  }
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  if (!has(name))
    throw UsageError("'retreever " + command_ + "' needs --" + name + "; see 'retreever " + command_ +
                     " --help'");
  return str(name);
}

long long Args::integer(const std::string& name, long long fallback) const {
  if (!has(name)) return fallback;
  const auto s = str(name);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError("--" + name + " expects an integer, got '" + s + "'");
  return v;
}

double Args::number(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const auto s = str(name);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
    throw UsageError("--" + name + " expects a number, got '" + s + "'");
  return v;
}

}  // namespace retreever::cli
