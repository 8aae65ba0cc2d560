// The padded shape of a tree over N leaves with branch factor b (PAPER.md, "Tree construction"):
// k = floor(log_b(N - 1)) internal levels below the root, P = ceil(N / b^k) leaves per leaf group,
// N padded to b^k * P. Levels are numbered from the root (0) down to the leaves (k + 1); level
// l <= k holds b^l nodes, the leaf level b^k * P. Node ids number the levels root first.
// Torch-free: the GUI draws trees from it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace retreever {

struct TreeShape {
  std::int64_t n = 0;  // real leaves (context tokens)
  std::int64_t b = 2;  // branch factor
  std::int64_t k = 0;  // levels between the root and the leaf groups (depth of the walk)
  std::int64_t p = 0;  // leaves per leaf group

  static TreeShape of(std::int64_t n, std::int64_t b) {
    if (b < 2) throw std::invalid_argument("branch factor must be at least 2, got " + std::to_string(b));
    if (n < 2) throw std::invalid_argument("a tree needs at least 2 context tokens, got " + std::to_string(n));
    TreeShape s;
    s.n = n;
    s.b = b;
    // Largest k with b^k <= n - 1, in integers (no floating-point log).
    std::int64_t power = 1;
    while (power <= (n - 1) / b) {
      power *= b;
      ++s.k;
    }
    s.p = (n + power - 1) / power;
    return s;
  }

  std::int64_t groups() const { return level_size(k); }  // b^k leaf groups
  std::int64_t padded() const { return groups() * p; }   // leaves after padding
  std::int64_t levels() const { return k + 2; }          // root .. leaves
  // |S| = k (b - 1) + P: nodes each query attends to.
  std::int64_t tokens_per_query() const { return k * (b - 1) + p; }
  std::int64_t level_size(std::int64_t level) const {
    if (level > k) return groups() * p;
    std::int64_t s = 1;
    for (std::int64_t i = 0; i < level; ++i) s *= b;
    return s;
  }
  std::int64_t level_offset(std::int64_t level) const {
    std::int64_t off = 0;
    for (std::int64_t l = 0; l < level; ++l) off += level_size(l);
    return off;
  }
  std::int64_t node_id(std::int64_t level, std::int64_t index) const { return level_offset(level) + index; }
  std::int64_t node_count() const { return level_offset(k + 2); }
  // Children of node `index` at `level` occupy [first, first + fan_out) on level + 1.
  std::int64_t fan_out(std::int64_t level) const { return level == k ? p : b; }
};

}  // namespace retreever
