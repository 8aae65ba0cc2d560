// The two products of attention where every group of queries reads its own few keys: the
// aggregator (each node's children attend to each other) and tree cross attention (each query
// reads its own set S). Shapes: G groups, m queries and n keys per group, H heads, dh per head.
//
// On the CPU both run as plain loops with hand-written backward passes. The general paths cost
// far more there at these sizes: batched matmuls of 2x16 by 16x2 matrices run as a loop over
// thousands of tiny BLAS calls, and broadcast products need strided reductions in the backward.
// On other devices both fall back to broadcast products (the same numbers).
#pragma once

#include <torch/types.h>

namespace retreever {

// scores[g,i,j,h] = q[g,i,h,:] . k[g,j,h,:]   q [G,m,H,dh], k [G,n,H,dh] -> [G,m,n,H]
torch::Tensor group_scores(const torch::Tensor& q, const torch::Tensor& k);
// out[g,i,h,:] = sum_j p[g,i,j,h] v[g,j,h,:]  p [G,m,n,H], v [G,n,H,dh] -> [G,m,H,dh]
torch::Tensor group_mix(const torch::Tensor& p, const torch::Tensor& v);

}  // namespace retreever
