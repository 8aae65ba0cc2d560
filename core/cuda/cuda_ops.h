// Tree cross attention's CUDA kernels (kernels.cu) as LibTorch operations, and the switch that
// the decoders' hooks read. Built everywhere: without CUDA (the option RETREEVER_CUDA off, see
// CMakeLists.txt) cuda_kernels_available() is false and the hooks keep the tensor paths.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace retreever {

// The kernels were compiled in (CMake found nvcc and a LibTorch with CUDA).
bool cuda_kernels_available();
// Process-wide switch, on by default: off, CUDA tensors take the tensor paths (tests compare them).
bool cuda_kernels_enabled();
void set_cuda_kernels_enabled(bool on);
// The hooks' test: kernels available and enabled, x on a CUDA device, float32 or bfloat16 (the
// walk and the group attention compute it in float32, converting), a supported head dimension.
bool use_cuda_kernels(const torch::Tensor& x, std::int64_t head_dim);

// The walk of tree cross attention for every query in one launch (tree_walk.h has the CPU one).
struct CudaWalk {
  torch::Tensor rows;     // [Q,S] long, S = k*b + P: each level's children, then the leaf group's leaves
  torch::Tensor real;     // [Q,S] bool: not padding
  torch::Tensor keep;     // [Q,S] bool: not a chosen child, and real (a sibling: or kept padding); what the read of S attends to
  torch::Tensor actions;  // [Q,k] long
  torch::Tensor path;     // [Q,k] long
  torch::Tensor pi;       // [Q,k,b]
  torch::Tensor log_prob;      // [Q]: sum over levels of log pi (sampling with exploration: log mu)
  // Entropies summed over levels (and heads), divided by Q k (Q k H): their sums over the queries
  // are the means the decoder reports.
  torch::Tensor entropy;       // [Q]: the policy's entropy
  torch::Tensor head_entropy;  // [Q]: each head's entropy
};

// queries [Q,H,dh] (Q = B*M), keys [B,n,H,dh] (float32, or bfloat16 read as float32), masks [B,n],
// offsets: first row of levels 1..k+1; uniform [k,Q] (undefined: greedy).
CudaWalk walk_cuda(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& masks,
                   const std::vector<std::int64_t>& offsets, std::int64_t b, std::int64_t k, std::int64_t p,
                   const torch::Tensor& uniform, double explore, bool keep_padding_siblings);

// Attention of groups over their own few keys, differentiable in q, k and v (one kernel each way).
// q [G,m,H,dh]. Without idx: k, v [G,nk,H,dh] (each group its own keys). With idx [G,nk] long:
// k, v [B,n,H,dh] tables and key j of group g is row idx[g,j] of batch row g / (G / B). mask [G,nk]
// bool (true = keep) or undefined. drop [G,H,m,nk] (undefined: none): dropout on the weights, the
// keep mask (0 or 1 / (1 - p)) the tensor path's [G,H,m,nk] weights would be multiplied by. Returns
// [G,m,H,dh]. Computed in float32; bfloat16 inputs are converted (differentiably) and the result
// comes back in q's dtype.
torch::Tensor group_attention_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& idx, const torch::Tensor& mask,
                                   const torch::Tensor& drop = {});
// The same, and with scores the keys' scores before masking, [G,m,nk,H], differentiable as well
// (tree cross attention's policy reads the children's scores of the same read of S).
struct GroupRead {
  torch::Tensor out, scores;
};
// Layer norm over the last dimension in one kernel each way (one warp per row): PyTorch's own
// takes a block of threads per row, mostly idle on rows of 64. For float32 CUDA tensors with a
// last dimension of 32, 64, .. 1024 and an affine weight and bias (the test).
bool use_cuda_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
torch::Tensor layer_norm_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps);

// Softmax over the last dimension whose backward is one kernel (one pass over y and dy): for
// float32 CUDA tensors with rows of 1 to 1024 (the test). The dense reads' [B,H,M,N] weights.
bool use_cuda_softmax(const torch::Tensor& x);
torch::Tensor softmax_cuda(const torch::Tensor& x);

// value * gelu(gate), the GEGLU's product, forward and backward by one kernel each (kernels.h):
// for contiguous float32 CUDA tensors of one shape outside autocast (the test).
bool use_cuda_geglu(const torch::Tensor& value, const torch::Tensor& gate);
torch::Tensor geglu_cuda(const torch::Tensor& value, const torch::Tensor& gate);

// torch::linear whose products and gradients run in our kernels where they take the shapes
// (rows_product, weight_gradient_into): for float32 CUDA tensors with a bias and at least
// kCudaLinearMinRows rows (the test).
constexpr std::int64_t kCudaLinearMinRows = 4096;
// out [C] (a contiguous tensor or view) = the sum of g's rows, g [R,C]: that kernel for a float32
// contiguous CUDA g of at least kCudaLinearMinRows rows, PyTorch's sum otherwise.
void column_sum_into(const torch::Tensor& g, torch::Tensor out);
// out [C_g, C_x] (a contiguous tensor or view) = g^T x, the weight gradient of a linear layer, for g
// [R, C_g] and x [R, C_x], and bias_out [C_g] = the sum of g's rows where bias_out is defined.
// weight_grad (kernels.h) for float32 contiguous CUDA rows of at least kCudaLinearMinRows whose widths
// are multiples of 64, cuBLAS's product (and column_sum_into) otherwise and under --precision tf32.
void weight_gradient_into(const torch::Tensor& g, const torch::Tensor& x, torch::Tensor out,
                          torch::Tensor bias_out = {});
// x [.., K] w^T + bias for w [N,K] (a linear layer's forward), or x w + bias for w [K,N] with
// transposed_w false (its input gradient); with add_to (x's sizes but N, contiguous), the product is
// added into it and it is returned. rows_matmul (kernels.h, three TensorFloat-32 passes on the tensor
// cores) for float32 contiguous CUDA rows of at least kCudaLinearMinRows whose widths it takes,
// outside autocast and --precision tf32, on GPUs with tensor cores; torch's product otherwise. Not
// differentiable: it serves the forward and backward of autograd Functions (LinearFunction,
// paired_linear), which run without gradient tracking.
torch::Tensor rows_product(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias, bool transposed_w,
                           torch::Tensor add_to = {});
bool use_cuda_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
torch::Tensor linear_cuda(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// Dense attention of every query over every key of its batch row, one kernel forward and two
// backward, without the [B,H,M,N] scores and weights in memory: q [B,M,H,dh] (a batch stride of 0
// shares the queries), k, v [B,N,H,dh], mask [B,N] bool (true = read) or undefined; returns
// [B,M,H,dh]. Masked keys score as masked_score's, so a row with every key masked reads them all
// evenly, as the tensor path does. The test: float32 CUDA tensors outside autocast, head dimension
// 16 or 32, at most 65535 (batch row, head) pairs, and at least kCudaDenseMinQueries (batch row,
// head, query) triples: with fewer, the kernels' blocks would not fill the GPU (each block walks
// every key of its row), and the chunked matmuls serve better (inference over a long context).
// The products run on the tensor cores where the GPU has them (compute capability 8.0 and later):
// in TensorFloat-32 while float32 matmul precision allows it (`--precision tf32`), otherwise each
// operand split in a TensorFloat-32 big part and a small rest, three products (float32's accuracy).
// `passes` picks the kind (0: float32 FMA kernels, 1: TensorFloat-32, 3: the split; -1:
// dense_tensor_passes()); a kind the GPU cannot run throws std::invalid_argument.
constexpr std::int64_t kCudaDenseMinQueries = 16384;
bool use_cuda_dense_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& mask);
int dense_tensor_passes();
// Dropout inside the dense kernels: a key drawn on the device (one int64: draw_kernel_dropout, from
// the generator given, as keep_mask draws from the dropout stream's) and the rate. Weight (b, h, m,
// n) is kept where keep_bits of its index in [B,H,M,N] falls below keep_threshold(1 - p)
// (core/nn/keep_hash.h); keep_mask_cuda writes that mask out (the tests' reference).
struct KernelDropout {
  torch::Tensor key;
  double p = 0;
};
KernelDropout draw_kernel_dropout(double p, const torch::Device& device, c10::optional<at::Generator> generator);
torch::Tensor keep_mask_cuda(at::IntArrayRef sizes, const KernelDropout& dropout);
// x times keep_mask_cuda(x.sizes(), dropout) (x's elements in row-major order), in one kernel with
// no mask in memory; its backward multiplies by the same bits. For float32 CUDA tensors with the
// kernels enabled (use_cuda_dropout).
bool use_cuda_dropout(const torch::Tensor& x);
torch::Tensor dropout_cuda(const torch::Tensor& x, const KernelDropout& dropout);
torch::Tensor dense_attention_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& mask, int passes = -1, const KernelDropout& dropout = {});

GroupRead group_attention_scores_cuda(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& idx, const torch::Tensor& mask, bool scores);

}  // namespace retreever
