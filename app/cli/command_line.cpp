#include "command_line.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace retreever::cli {
namespace {

std::string description(const OptionSpec& o) {
  return o.choices.empty() ? o.help : o.help + (o.help.empty() ? "" : " ") + "(" + join_choices(o.choices) + ")";
}

// The CLI11 app of a command; `values` and `flags` receive what it parses.
std::unique_ptr<CLI::App> make_app(const CommandSpec& spec, std::map<std::string, std::string>& values,
                                   std::map<std::string, bool>& flags, std::vector<std::string>& positionals) {
  auto app = std::make_unique<CLI::App>(spec.summary, "retreever " + spec.name);
  app->set_help_flag();  // --help is answered by the caller before parsing
  app->footer(spec.footer);
  app->get_formatter()->column_width(34);
  for (const auto& o : spec.options) {
    if (o.value.empty()) {
      app->add_flag("--" + o.name, flags[o.name], description(o));
    } else {
      // Given twice, the last one counts (as a script that appends a flag expects).
      app->add_option("--" + o.name, values[o.name], description(o))
          ->type_name(o.value)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    }
  }
  if (!spec.positionals.empty()) app->add_option("args", positionals, "")->type_name(spec.positionals);
  return app;
}

}  // namespace

std::string join_choices(const std::vector<std::string>& choices) {
  std::string s;
  for (const auto& c : choices) s += (s.empty() ? "" : "|") + c;
  return s;
}

bool Args::wants_help(const std::vector<std::string>& argv) {
  return std::any_of(argv.begin(), argv.end(), [](const std::string& a) { return a == "--help" || a == "-h"; });
}

std::string Args::help(const CommandSpec& spec) {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  std::vector<std::string> positionals;
  auto app = make_app(spec, values, flags, positionals);
  app->set_help_flag("-h,--help", "show this help");
  return app->help();
}

Args::Args(const CommandSpec& spec, const std::vector<std::string>& argv) : command_(spec.name), argv_(argv) {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  auto app = make_app(spec, values, flags, positionals_);
  const std::string see = "; see 'retreever " + spec.name + " --help'";
  // A flag given a value ("--json=1") and a word that is not an option are refused before CLI11,
  // which would take the first as true and the second as a positional.
  for (const auto& a : argv) {
    const auto eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      const auto name = a.substr(2, eq - 2);
      for (const auto& o : spec.options)
        if (o.name == name && o.value.empty()) throw UsageError("--" + name + " takes no value");
    }
  }
  std::vector<std::string> reversed(argv.rbegin(), argv.rend());  // CLI11 takes its words last first
  try {
    app->parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    std::string name;
    for (const auto& o : spec.options)
      if (!o.value.empty() && std::string(e.what()).find("--" + o.name) != std::string::npos) name = o.name;
    throw UsageError(name.empty() ? std::string(e.what()) + see : "--" + name + " needs a value, e.g. --" + name + " VALUE");
  } catch (const CLI::ExtrasError&) {
    for (const auto& a : app->remaining())
      if (a.rfind("-", 0) == 0)
        throw UsageError("unknown option '" + a.substr(0, a.find('=')) + "' for 'retreever " + spec.name + "'" + see);
    const auto extra = app->remaining().empty() ? std::string("?") : app->remaining().front();
    throw UsageError("unexpected argument '" + extra + "' for 'retreever " + spec.name + "'; options start with --" + see);
  } catch (const CLI::ParseError& e) {
    throw UsageError(std::string(e.what()) + see);
  }
  for (const auto& o : spec.options) {
    if (o.value.empty()) {
      if (flags[o.name]) values_[o.name] = "1";
    } else if (app->get_option("--" + o.name)->count() > 0) {
      values_[o.name] = values[o.name];
    }
  }
}

std::string Args::command_line() const {
  std::string s = "retreever " + command_;
  for (const auto& a : argv_)
    s += " " + (a.empty() || a.find_first_of(" \t'\"$") != std::string::npos ? "'" + a + "'" : a);
  return s;
}

bool Args::on_off(const std::string& name, bool fallback) const {
  const auto v = str(name, fallback ? "on" : "off");
  if (v != "on" && v != "off") throw UsageError("--" + name + " must be on or off, got '" + v + "'");
  return v == "on";
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  if (!has(name))
    throw UsageError("'retreever " + command_ + "' needs --" + name + "; see 'retreever " + command_ + " --help'");
  return str(name);
}

long long Args::integer(const std::string& name, long long fallback) const {
  if (!has(name)) return fallback;
  const auto s = str(name);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) throw UsageError("--" + name + " expects an integer, got '" + s + "'");
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

OptionSpec threads_option() {
  return {"threads", "T", "CPU threads for every step (default: chosen from the steps' speed; a fixed count makes a run "
                          "repeat bit for bit)", {}};
}

int threads_value(const Args& args) {
  if (!args.has("threads")) return 0;
  const auto t = args.integer("threads", 0);
  if (t <= 0 || t > 1024) throw UsageError("--threads must be a number of CPU threads from 1 to 1024");
  return int(t);
}

}  // namespace retreever::cli
