// A small, strict parser for "retreever COMMAND --flag value ..." (torch-free).
#pragma once

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace retreever::cli {

// A bad command line: the message names the option and the fix.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  // flags: options that take no value (e.g. "json"); valued: options that take one.
  Args(const std::string& command, const std::vector<std::string>& argv,
       const std::set<std::string>& valued, const std::set<std::string>& flags);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name, const std::string& fallback = "") const;
  std::string required(const std::string& name) const;
  long long integer(const std::string& name, long long fallback) const;
  double number(const std::string& name, double fallback) const;

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
};

}  // namespace retreever::cli
