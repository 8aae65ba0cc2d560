#include "core/table.h"

#include <cstdio>
#include <stdexcept>

namespace retreever {

void Table::add(std::vector<std::string> row) {
  if (row.size() != header.size())
    throw std::invalid_argument("table row has " + std::to_string(row.size()) + " cells, the header " +
                                std::to_string(header.size()));
  rows.push_back(std::move(row));
}

std::string Table::markdown() const {
  auto cell = [](std::string s) {
    std::string out;
    for (char ch : s) {
      if (ch == '|') out += "\\|";
      else if (ch == '\n' || ch == '\r') out += ' ';
      else out += ch;
    }
    return out;
  };
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (const auto& c : cells) s += " " + cell(c) + " |";
    return s + "\n";
  };
  std::string s = line(header) + "|";
  for (std::size_t i = 0; i < header.size(); ++i) s += i < right.size() && right[i] ? "---:|" : "---|";
  s += "\n";
  for (const auto& r : rows) s += line(r);
  return s;
}

std::string Table::csv() const {
  auto cell = [](const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string out = "\"";
    for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
  };
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t i = 0; i < cells.size(); ++i) s += (i ? "," : "") + cell(cells[i]);
    return s + "\n";
  };
  std::string s = line(header);
  for (const auto& r : rows) s += line(r);
  return s;
}

std::string format_number(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

}  // namespace retreever
