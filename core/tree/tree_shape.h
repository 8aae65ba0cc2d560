// The padded shape of a tree over N leaves with branch factor b (PAPER.md, "Tree construction"):
// k = floor(log_b(N - 1)) internal levels below the root, P = ceil(N / b^k) leaves per leaf group,
// N padded to b^k * P. Two layouts of the real leaves in the groups, real ones first in each:
// packed (the paper's reading): the groups fill in order and the padding comes last, so the last
// groups (and whole subtrees) can be all padding; balanced: each group holds floor or ceil of
// N / b^k real leaves, so the nodes of a level cover equal shares of the context, give or take
// one per group below them, and no node is padding.
// Levels are numbered from the root (0) down to the leaves (k + 1); level l <= k holds b^l nodes,
// the leaf level b^k * P. Node ids number the levels root first.
// Torch-free: the GUI draws trees from it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace retreever {

struct TreeShape {
  std::int64_t n = 0;  // real leaves (context tokens)
  std::int64_t b = 2;  // branch factor
  std::int64_t k = 0;  // levels between the root and the leaf groups (depth of the walk)
  std::int64_t p = 0;  // leaves per leaf group
  bool balanced = false;  // leaf layout: see above

  static TreeShape of(std::int64_t n, std::int64_t b, bool balanced = false) {
    if (b < 2) throw std::invalid_argument("branch factor must be at least 2, got " + std::to_string(b));
    if (n < 2) throw std::invalid_argument("a tree needs at least 2 context tokens, got " + std::to_string(n));
    TreeShape s;
    s.n = n;
    s.b = b;
    s.balanced = balanced;
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
  bool has_padding() const { return padded() > n; }       // some leaf slots are padding (masked)
  std::int64_t levels() const { return k + 2; }          // root .. leaves
  // Leaf group g holds the ordered context positions [first_in_group(g), first_in_group(g + 1)).
  // Balanced: position i goes to group floor(i * b^k / N), so level l's node j holds the positions
  // with floor(i * b^l / N) = j (a k-d split into b^l equal parts lines up with it).
  std::int64_t first_in_group(std::int64_t g) const {
    return balanced ? (g * n + groups() - 1) / groups() : std::min(g * p, n);
  }
  std::int64_t real_in_group(std::int64_t g) const { return first_in_group(g + 1) - first_in_group(g); }
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
