// The CUDA kernels of tree cross attention (kernels.cu), behind a plain C++ interface: raw device
// pointers and sizes, no LibTorch, so that the .cu file builds with nvcc alone. cuda_ops.cpp
// allocates the tensors and calls these on LibTorch's current stream. float32 only.
#pragma once

#include <cstdint>

namespace retreever::cuda {

// Largest branch factor and number of walk levels the walk kernel takes.
constexpr int kMaxBranch = 16;
constexpr int kMaxLevels = 62;

// Head dimensions the kernels are built for (others take the tensor path).
inline bool head_dim_supported(std::int64_t d) { return d == 4 || d == 8 || d == 16 || d == 32 || d == 64 || d == 128; }
// Row widths the layer norm kernels are built for: 32 floats per lane to 1 (D = 32, 64, .. 1024).
inline bool layer_norm_width_supported(std::int64_t D) {
  return D == 32 || D == 64 || D == 128 || D == 256 || D == 512 || D == 1024;
}

struct WalkArgs {
  const float* queries = nullptr;  // [Q,H,d]
  const float* keys = nullptr;     // [B,n,H,d]
  const bool* masks = nullptr;     // [B,n]
  const float* uniform = nullptr;  // [k,Q], or null: greedy
  std::int64_t Q = 0, B = 1, n = 0, H = 1, d = 16, b = 2, k = 0, p = 1;
  std::int64_t offsets[kMaxLevels + 1] = {};  // first row of levels 1..k+1 (the leaves last)
  float explore = 0;
  bool keep_padding_siblings = false;  // a sibling that covers only padding stays in S (Config::padding_siblings zero)
  // Outputs. S = k*b + p.
  std::int64_t* rows = nullptr;  // [Q,S] rows of S in the node table of the query's batch row
  bool* real = nullptr;          // [Q,S] the node is not padding
  bool* keep = nullptr;          // [Q,S] not a chosen child, and real (a sibling: or keep_padding_siblings); the read of S attends to these
  std::int64_t* actions = nullptr;  // [Q,k]
  std::int64_t* path = nullptr;     // [Q,k] node walked to, within its level
  float* pi = nullptr;              // [Q,k,b]
  float* log_prob = nullptr;        // [Q] sum over levels of log pi (or log mu when exploring) of the choice
  float* entropy = nullptr;         // [Q] sum over levels of the policy's entropy, times entropy_scale
  float* head_entropy = nullptr;    // [Q] sum over levels and heads of each head's entropy, times head_entropy_scale
  float entropy_scale = 1, head_entropy_scale = 1;  // 1 / (Q k) and 1 / (Q k H) make the sums over queries means
};

// Returns a cudaError_t as int (0: success).
int walk(const WalkArgs& a, void* stream);

// Attention where every group reads its own few keys: G groups of m queries, nk keys each, H heads.
// Key j of group g is row ((g / groups_per_row) * n + (idx ? idx[g*nk + j] : j)) of keys/values
// [rows,H,d]; mask [G,nk] (null: every key is real). Masked keys score half the lowest float; a group
// with every key masked thus reads its keys uniformly. With drop, the values are mixed by the
// weights times the keep mask (dropout); p keeps the weights before it.
struct GroupArgs {
  const float* q = nullptr;  // [G,m,H,d]
  const float* k = nullptr;  // [rows,H,d]
  const float* v = nullptr;
  const std::int64_t* idx = nullptr;  // [G,nk] or null
  const bool* mask = nullptr;         // [G,nk] or null
  const float* drop = nullptr;        // [G,H,m,nk] dropout's keep mask (0 or 1 / (1 - p)) on the weights, or null
  std::int64_t G = 0, m = 1, nk = 0, H = 1, d = 16, groups_per_row = 1, n = 0;
  float* out = nullptr;  // [G,m,H,d]
  float* p = nullptr;    // [G,m,nk,H] the attention weights, or null: not kept
  float* raw = nullptr;  // [G,m,nk,H] the scores before masking, or null: not kept
};

int group_forward(const GroupArgs& a, void* stream);

// Gradients of group_forward: out and p as it returned them, dout [G,m,H,d] and, where the raw
// scores were read, their gradient dscore [G,m,nk,H] (null: none); dq [G,m,H,d] is written, dk and
// dv [rows,H,d] are added to (atomically: zero them first).
struct GroupGradArgs {
  GroupArgs f;
  const float* dout = nullptr;
  const float* dscore = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};

int group_backward(const GroupGradArgs& a, void* stream);

// Layer norm over rows of D floats (D = 32, 64, .. 1024), one warp per row:
// y = (x - mean) * rstd * w + b, with mean and rstd [R] kept for the backward.
struct LayerNormArgs {
  const float* x = nullptr;  // [R,D]
  const float* w = nullptr;  // [D]
  const float* b = nullptr;  // [D]
  std::int64_t R = 0, D = 0;
  float eps = 1e-5f;
  float* y = nullptr;     // [R,D]
  float* mean = nullptr;  // [R]
  float* rstd = nullptr;  // [R]
};
int layer_norm_forward(const LayerNormArgs& a, void* stream);

// Its gradients: dx [R,D]; the weight's and bias's, dw then db in sums [2,D], from partial sums
// part [2,parts,D] over the rows each warp took, which a second kernel adds up in a fixed order
// (no atomics: deterministic).
struct LayerNormGradArgs {
  LayerNormArgs f;  // x, w, mean, rstd as the forward had them
  const float* dy = nullptr;
  float* dx = nullptr;
  float* part = nullptr;  // [2,parts,D] scratch
  float* sums = nullptr;  // [2,D]
  std::int64_t parts = 0;  // warps: layer_norm_parts(R)
};
std::int64_t layer_norm_parts(std::int64_t R);
int layer_norm_backward(const LayerNormGradArgs& a, void* stream);

// The gradient of a softmax over rows of D floats (D <= 1024), one warp per row and one pass:
// dx = y (dy - sum(dy y)). PyTorch's CUDA backward first writes dy y in a pass of its own.
inline bool softmax_width_supported(std::int64_t D) { return D >= 1 && D <= 1024; }
struct SoftmaxGradArgs {
  const float* y = nullptr;   // [R,D] the softmax's output
  const float* dy = nullptr;  // [R,D]
  float* dx = nullptr;        // [R,D]
  std::int64_t R = 0, D = 0;
};
int softmax_backward(const SoftmaxGradArgs& a, void* stream);

// The GEGLU's product out = value * gelu(gate) (GELU by erf, as torch::gelu) over n floats, and
// its gradients d_value = dout gelu(gate), d_gate = dout value gelu'(gate): one pass each way
// where PyTorch's GELU and products take five passes forward and nine backward.
struct GegluArgs {
  const float* value = nullptr;  // [n]
  const float* gate = nullptr;   // [n]
  float* out = nullptr;          // [n]
  std::int64_t n = 0;
};
int geglu_forward(const GegluArgs& a, void* stream);
struct GegluGradArgs {
  GegluArgs f;                    // f.out unused
  const float* dout = nullptr;    // [n]
  float* d_value = nullptr;       // [n]
  float* d_gate = nullptr;        // [n]
};
int geglu_backward(const GegluGradArgs& a, void* stream);

// Column sums of x [R,C] into out [C]: partial sums part [parts,C] over the rows each block took,
// then a second kernel adds them up in a fixed order (no atomics: deterministic). A linear layer's
// bias gradient: PyTorch's reduction over the rows of a [R,C] tensor reads it at about a quarter
// of the memory's speed, and its sum of the parts ran in one block (about 20 us on an H200).
struct ColumnSumArgs {
  const float* x = nullptr;  // [R,C]
  std::int64_t R = 0, C = 0;
  float* part = nullptr;  // [parts,C] scratch
  float* out = nullptr;   // [C]
  std::int64_t parts = 0;  // column_sum_parts(R)
};
std::int64_t column_sum_parts(std::int64_t R);
int column_sum(const ColumnSumArgs& a, void* stream);

// The weight gradient of a linear layer, out [O,I] = g^T x for g [R,O] and x [R,I] (float32, rows
// contiguous, O and I multiples of 64, both pointers 16-byte aligned), and its bias gradient, the sum
// of g's rows, where bias_part is set: a block sums one 64 x 64 tile of out over one part of the rows
// into part [parts,O,I] (the first column tile's blocks also g's columns into bias_part), then
// sum_rows adds the parts in a fixed order. cuBLAS takes split-K SIMT kernels for these tall, narrow
// products: on an H100, TCA's step at N = 1024 spent about 1.5 ms in them and column_sum, about
// 1.1 ms in this kernel's float32 FMA form, and 0.81 ms in its tensor-core form (docs/cuda.md, the
// thirty-sixth and thirty-seventh sessions).
struct WeightGradArgs {
  const float* g = nullptr;  // [R,O]
  const float* x = nullptr;  // [R,I]
  std::int64_t R = 0, O = 0, I = 0;
  float* part = nullptr;      // [parts,O,I] scratch
  float* out = nullptr;       // [O,I]
  float* bias_part = nullptr;  // [parts,O] scratch, or null: no bias gradient
  float* bias_out = nullptr;   // [O] = the sum of g's rows, when bias_part is set
  std::int64_t parts = 0, rows_per_part = 0;  // weight_grad_split(R, O, I)
  // 3: the products on the tensor cores in three TensorFloat-32 passes (the dense reads' float32
  // split, sm_80 and later: dense_tensor_cores_available()); 0: float32 FMA.
  int tensor_passes = 0;
};
constexpr std::int64_t kWeightGradTile = 64;
// Whether weight_grad takes g [R,O] and x [R,I] (rows contiguous) at these addresses.
bool weight_grad_supported(const float* g, const float* x, std::int64_t O, std::int64_t I);
// Fills parts and rows_per_part for a's R, O and I.
void weight_grad_split(WeightGradArgs& a);
int weight_grad(const WeightGradArgs& a, void* stream);

// The rows' products of a linear layer on the tensor cores, three TensorFloat-32 passes (the dense
// reads' float32 split; sm_80 and later): out [R,N] = x [R,K] w^T (+ bias) with w [N,K] (the layer's
// forward), or out = x w with w [K,N] (its input gradient); with accumulate, out += instead. A block
// of 4 warps takes 64 columns of out and streams over tiles of 64 rows. `chunked` stages x's and w's
// columns 32 at a time by cp.async; `split_w` (K = 64 only) splits the block's w once into shared
// memory and streams x's whole tiles. For these tall, narrow products cuBLAS's float32 kernels run on
// the FMA units at about their arithmetic limit, twice or more the time their bytes take.
// `automatic` takes the kernel timed faster for the shape (rows_matmul_choice); the others force one,
// for scripts/kernel_check's checks and timings.
enum class RowsMatmulKernel : std::uint8_t { automatic, chunked, split_w };
struct RowsMatmulArgs {
  const float* x = nullptr;     // [R,K], rows contiguous
  const float* w = nullptr;     // [N,K] (transposed_w) or [K,N], contiguous
  const float* bias = nullptr;  // [N] or null
  float* out = nullptr;         // [R,N], rows contiguous
  std::int64_t R = 0, K = 0, N = 0;
  bool transposed_w = true;
  bool accumulate = false;
  RowsMatmulKernel kernel = RowsMatmulKernel::automatic;
};
constexpr std::int64_t kRowsMatmulTile = 64, kRowsMatmulChunk = 32;
// Whether rows_matmul takes a: K a multiple of 32, N of 64, 16-byte aligned x, w and out.
bool rows_matmul_supported(const RowsMatmulArgs& a);
// The kernel rows_matmul runs for a: a.kernel where that is not `automatic`, else the one it chooses.
RowsMatmulKernel rows_matmul_choice(const RowsMatmulArgs& a);
int rows_matmul(const RowsMatmulArgs& a, void* stream);

// Dropout drawn inside a kernel: weight i of the [B,H,M,N] attention weights (i counted in that
// layout) is kept, and scaled by `scale` = 1 / (1 - p), where keep_bits(i, key) < threshold =
// keep_threshold(1 - p) (core/nn/keep_hash.h: the CPU's keep masks' hash). The key is read from
// device memory, so that each replay of a CUDA graph reads the key drawn anew in it.
struct DropKey {
  const std::int64_t* key = nullptr;  // one 64-bit key on the device, or null: no dropout
  std::uint32_t threshold = 0;
  float scale = 1;
};
// Dropout without the mask in memory: out[i] = x[i] times element i of the keep mask that d gives
// (scale or 0), forward and backward alike; out may be x. With x null, out is the mask itself.
int dropout_apply(float* out, const float* x, std::int64_t n, const DropKey& d, void* stream);

// Dense attention, fused: every query of a batch row reads every key of that row (masked keys score
// half the lowest float, as in the group kernels), without the [B,H,M,N] scores in memory. Rows
// may be strided (the last dimension contiguous; a batch stride of 0 shares the queries).
inline bool dense_head_dim_supported(std::int64_t d) { return d == 16 || d == 32; }
struct DenseArgs {
  const float* q = nullptr;  // [B,M,H,d] at strides qsb, qsm, qsh
  const float* k = nullptr;  // [B,N,H,d] at strides ksb, ksn, ksh
  const float* v = nullptr;  // [B,N,H,d] at strides vsb, vsn, vsh
  std::int64_t qsb = 0, qsm = 0, qsh = 0, ksb = 0, ksn = 0, ksh = 0, vsb = 0, vsn = 0, vsh = 0;
  const bool* mask = nullptr;  // [B,N] true = read, or null: every key
  std::int64_t B = 0, M = 0, N = 0, H = 1, d = 16;
  float* out = nullptr;    // [B,M,H,d] contiguous
  float* stats = nullptr;  // [B,H,M,2]: each query's largest score and 1 / its sum of exponentials
  // The products: 0 float32 multiply-adds; on the tensor cores (sm_80 and later), 1 in TensorFloat-32
  // (10-bit mantissas, as cuBLAS under float32 matmul precision "high"), 3 as three TensorFloat-32
  // products of each operand split into a big and a small part (differences from the float32
  // kernels on the order of float32 rounding: within their test tolerances).
  int tensor_passes = 0;
  bool rows16 = false;  // set by the launch: every row of q, k, v starts 16-byte aligned
  // Dropout on the weights (the values are mixed by the weights times the keep mask; stats keep the
  // softmax's own): the backward takes the same key.
  DropKey drop;
};
inline bool dense_passes_supported(int p) { return p == 0 || p == 1 || p == 3; }
// Whether the current device runs the tensor-core kernels (compute capability 8.0 or later).
bool dense_tensor_cores_available();
int dense_attention_forward(const DenseArgs& a, void* stream);

// Its gradients: f as the forward had it (out and stats filled), dout [B,M,H,d] contiguous; dq
// [B,M,H,d], dk and dv [B,N,H,d] (contiguous) written; delta [B,H,M] is scratch.
struct DenseGradArgs {
  DenseArgs f;
  const float* dout = nullptr;
  float* delta = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};
int dense_attention_backward(const DenseGradArgs& a, void* stream);

const char* error_string(int code);

}  // namespace retreever::cuda
