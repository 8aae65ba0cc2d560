// Config's JSON form (core/config_fields.h holds the table of fields).
#include "config.h"

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "core/config_fields.h"

namespace retreever {
namespace {

using json = nlohmann::json;
using detail::for_each_field;

const char* type_name(const std::string&) { return "a string"; }
const char* type_name(std::int64_t) { return "an integer"; }
const char* type_name(double) { return "a number"; }
const char* type_name(bool) { return "true or false"; }

bool json_has_type(const json& v, const std::string&) { return v.is_string(); }
bool json_has_type(const json& v, std::int64_t) { return v.is_number_integer(); }
bool json_has_type(const json& v, double) { return v.is_number(); }
bool json_has_type(const json& v, bool) { return v.is_boolean(); }

}  // namespace

std::string Config::to_json() const {
  json j = json::object();
  Config copy = *this;
  for_each_field(copy, [&](const char* key, auto& value) { j[key] = value; });
  return j.dump(2);
}

std::string Config::changes_from(const Config& base) const {
  const json mine = json::parse(to_json()), theirs = json::parse(base.to_json());
  std::string out;
  Config copy = *this;
  for_each_field(copy, [&](const char* key, auto&) {
    const auto& v = mine.at(key);
    if (v == theirs.at(key)) return;
    out += (out.empty() ? "" : ", ") + std::string(key) + " " + (v.is_string() ? v.get<std::string>() : v.dump());
  });
  return out;
}

Config Config::from_json(const std::string& text, const Config& base) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& err) {
    throw std::runtime_error(std::string("malformed JSON (") + err.what() +
                             "); fix the syntax or start from a file written by 'retreever train'");
  } catch (const json::out_of_range& err) {  // a number beyond a double's range, e.g. 1e400
    throw std::runtime_error(std::string("a number in it is too large for a double (") + err.what() +
                             "); write it within about 1e308");
  }
  if (!j.is_object()) throw std::runtime_error("the config must be a JSON object {\"key\": value, ...}");
  Config c = base;
  std::set<std::string> known;
  for_each_field(c, [&](const char* key, auto& value) {
    known.insert(key);
    auto it = j.find(key);
    if (it == j.end()) return;
    if (!json_has_type(*it, value))
      throw std::runtime_error(std::string("config key '") + key + "' must be " + type_name(value) +
                               ", got " + it->dump());
    it->get_to(value);
  });
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      throw std::runtime_error("unknown config key '" + it.key() +
                               "'; check its spelling against 'retreever train --help'");
  return c;
}

Config Config::from_json(const std::string& text) { return from_json(text, Config()); }

Config Config::legacy() {
  Config c;
  c.block = "v1";
  c.leaf_layout = "packed";
  c.query_positions = "after_context";
  c.padding_siblings = "masked";
  c.adam_beta1 = 0.9;
  return c;
}

Config Config::from_saved_json(const std::string& text) {
  auto c = from_json(text, legacy());
  const auto most = max_eval_context(c.task);
  if (most > 0 && c.eval_context == most + 1) c.eval_context = most;
  return c;
}

}  // namespace retreever
