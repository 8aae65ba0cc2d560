// The hash behind dropout's keep masks, shared by the CPU (blocks.cpp: keep_mask) and the CUDA
// kernels (kernels.cu: dense attention's dropout, drawn inside the kernel). Plain C++ without
// LibTorch, so that nvcc builds it; on the device the functions are __host__ __device__.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__CUDA__)
#define RETREEVER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RETREEVER_HOST_DEVICE inline
#endif

namespace retreever {

// A 32-bit integer hash with low bias (Chris Wellons' "lowbias32"), a bijection.
RETREEVER_HOST_DEVICE std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  return x ^ (x >> 16);
}

// 24 bits of the hash of element i of a mask keyed by `key`: the element is kept when they fall
// below (1 - p) 2^24 (keep_threshold). Counter-based: any element can be drawn alone, in any order,
// on any thread. 32-bit multiplies, so that a loop over i vectorises on the CPU.
RETREEVER_HOST_DEVICE std::uint32_t keep_bits(std::uint64_t i, std::uint64_t key) {
  const auto low = std::uint32_t(key), high = std::uint32_t(key >> 32);
  return hash32(hash32(std::uint32_t(i) + low) ^ (high + std::uint32_t(i >> 32) * 0x9E3779B9U)) >> 8;
}

// The threshold of keep_bits for keeping a fraction `keep` of the elements.
inline std::uint32_t keep_threshold(double keep) {
  return std::uint32_t(keep * double(1 << 24) + 0.5);
}

}  // namespace retreever
