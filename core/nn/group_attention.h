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

// The same where group g's keys are rows of a table shared by the groups of one context: key j of
// group g is table[g / (G / B), rows[g,j]]. table [B,T,H,dh], rows [G,n] (int64, G a multiple of B).
// On the CPU the kernels read the table in place and the backward adds into its gradient, instead of
// a [G,n,H,dh] copy of the keys and its gradient scattered back (tree cross attention's S: the table
// of all nodes fits in cache, its copy per query does not). Elsewhere: picked_rows, then the above.
torch::Tensor group_scores_at(const torch::Tensor& q, const torch::Tensor& table, const torch::Tensor& rows);
torch::Tensor group_mix_at(const torch::Tensor& p, const torch::Tensor& table, const torch::Tensor& rows);
// The picked keys themselves: [G,n,H,dh] (gather_rows.h, with gradients on every device).
torch::Tensor picked_rows(const torch::Tensor& table, const torch::Tensor& rows);

}  // namespace retreever
