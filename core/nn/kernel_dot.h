// The dot product the CPU attention kernels share (group_attention.cpp, tree_walk.cpp).
#pragma once

#include <cstdint>

namespace retreever {

// x . y over d numbers, with eight partial sums so that the compiler can vectorise it.
template <typename T>
inline T kernel_dot(const T* x, const T* y, std::int64_t d) {
  T a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t c = 0;
  for (; c + 8 <= d; c += 8)
    for (int u = 0; u < 8; ++u) a[u] += x[c + u] * y[c + u];
  T s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
  for (; c < d; ++c) s += x[c] * y[c];
  return s;
}

}  // namespace retreever
