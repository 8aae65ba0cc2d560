// One table writer for every table the project prints or saves (study, report, comparison
// panel, bench): the same rows as GitHub Markdown or as CSV (RFC 4180 quoting).
#pragma once

#include <string>
#include <vector>

namespace retreever {

struct Table {
  std::vector<std::string> header;
  std::vector<bool> right;  // per column: right-aligned in Markdown (numbers); missing = left
  std::vector<std::vector<std::string>> rows;

  // Throws std::invalid_argument when the row's width differs from the header's.
  void add(std::vector<std::string> row);
  std::string markdown() const;  // '|' in a cell is escaped, newlines become spaces
  std::string csv() const;       // a cell with , " or a newline is quoted, " doubled
};

// printf-style formatting of one number, for table cells ("%.2f").
std::string format_number(const char* format, double value);

}  // namespace retreever
