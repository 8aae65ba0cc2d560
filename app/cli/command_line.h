// The command line's options, declared once per command: CLI11 parses them and writes the help,
// and the commands read the values through Args (torch-free).
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace retreever::cli {

// A bad command line: the message names the option and the fix (printed as one "error:" line).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;   // without the dashes: "seq-len"
  std::string value;  // the value's placeholder in the help ("N", "FILE"); empty: a flag
  std::string help;   // what it does; `choices` are appended
  std::vector<std::string> choices;  // the values it accepts, listed in the help
};

struct CommandSpec {
  std::string name;         // "train"
  std::string summary;      // one line, for 'retreever --help' and the head of the command's help
  std::string positionals;  // e.g. "OLD.pt NEW.safetensors" (empty: none accepted)
  std::vector<OptionSpec> options;
  std::string footer;       // more text after the options
};

class Args {
 public:
  // Parses argv (the words after the command). Throws UsageError for an unknown option, a
  // missing value, a flag given a value or an unexpected word.
  Args(const CommandSpec& spec, const std::vector<std::string>& argv);

  // The help CLI11 writes for the command: usage line, summary, every option with its choices.
  static std::string help(const CommandSpec& spec);
  // Whether argv asks for the help (--help or -h anywhere).
  static bool wants_help(const std::vector<std::string>& argv);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name, const std::string& fallback = "") const;
  std::string required(const std::string& name) const;
  long long integer(const std::string& name, long long fallback) const;
  double number(const std::string& name, double fallback) const;
  // An on|off option; anything else is a usage error naming the two.
  bool on_off(const std::string& name, bool fallback) const;
  const std::vector<std::string>& positionals() const { return positionals_; }
  // "retreever COMMAND ARGS...", as given (for a report's "reproduce" line).
  std::string command_line() const;

 private:
  std::string command_;
  std::vector<std::string> argv_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
};

// "a|b|c"
std::string join_choices(const std::vector<std::string>& choices);

// --threads T of the commands that train (train, study, report): that many CPU threads for every
// step, the thread tuner off, so that a run repeats bit for bit. threads_value: T, or 0 where the
// option is absent; a UsageError outside 1..1024.
OptionSpec threads_option();
int threads_value(const Args& args);

}  // namespace retreever::cli
