// The walk of tree cross attention (PAPER.md, Algorithm 1) for every query at once, as one CPU
// kernel: at each level the query scores the b children of its current node with every head, the
// policy is the head-averaged attention over the real children, and one child is drawn (or the
// most likely taken). It runs without autograd: the decoder recomputes the chosen levels'
// log-probabilities with gradients afterwards. On a GPU the CUDA walk kernel serves
// (core/cuda/cuda_ops.h).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace retreever {

struct WalkInput {
  torch::Tensor queries;  // [Q,H,dh] projected queries, Q = B*M (query q belongs to batch row q / M)
  torch::Tensor keys;     // [B,n,H,dh] every node's key, levels one after another
  torch::Tensor masks;    // [B,n] bool, false = padding
  std::vector<std::int64_t> offsets;  // first row of levels 1..k in keys
  std::int64_t b = 2, k = 0;
  torch::Tensor uniform;  // [k,Q] draws in [0,1) to sample with; undefined: take the argmax
  double explore = 0;     // sampling: share of each draw made uniformly over the real children
};

struct WalkResult {
  torch::Tensor rows;     // [Q,k,b] long: the rows in keys of each level's children
  torch::Tensor actions;  // [Q,k,1] long: the child taken at each level
  torch::Tensor path;     // [Q,k] long: the node walked to, as its index within its level
  torch::Tensor pi;       // [Q,k,b] the policy's probabilities
  torch::Tensor scores;   // [Q,k,b,H] the children's attention scores, padding children's too (unmasked)
};

WalkResult walk_cpu(const WalkInput& in);

}  // namespace retreever
