// Rows of a table picked by an index: what tree cross attention does to read each query's nodes.
//
// On the CPU a plain loop forward (a row copy each) and backward (a sum into the picked rows). At a
// training step's sizes (thousands of rows of 64 floats) LibTorch 1.13's embedding and index_select
// run a copy kernel per row, about 0.2 us each, and its embedding backward sorts the index first:
// a copy-task step spent 2.8 ms in them, a tenth of the step. Elsewhere (a GPU; other dtypes) the
// same numbers come from torch::embedding.
#pragma once

#include <torch/types.h>

namespace retreever {

// out[k,:] = table[index[k],:]   table [R,C], index [K] (each in [0,R)) -> [K,C];
// differentiable in table.
torch::Tensor gather_rows(const torch::Tensor& table, const torch::Tensor& index);

}  // namespace retreever
