// A check of rows_matmul and weight_grad (core/cuda/kernels.cu) without LibTorch: their results
// against double-precision sums (error over the sum of the terms' magnitudes, below 2e-6 passes),
// then their times against cuBLAS's float32 products of the same shapes (CUDA events, 50 launches).
// nvcc builds it in about a minute, also on a machine without a GPU, and the binary can travel to
// the GPU machine (docs/cuda.md, "Running it on the GPU machine"):
//   nvcc -O3 -arch=sm_90 -std=c++17 -I. -Icore/cuda core/cuda/kernels.cu scripts/kernel_check.cu \
//     -lcublas -o kernel_check
// rows_matmul's two kernels are checked and timed each (RowsMatmulKernel: chunked everywhere,
// split_w at K = 64), and a sweep over the rows times them against each other where rows_matmul
// chooses between them (kernels.cu, rows_matmul_choice), x and out rotating over buffers larger
// than L2. `kernel_check sweep` runs the sweep only (seconds). Exit status 1 when a check fails.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/cuda/kernels.h"
using namespace retreever::cuda;
static int fails = 0;
#define CK(x)                                                     \
  do {                                                            \
    auto e_ = (x);                                                \
    if (e_ != 0) {                                                \
      printf("error %d at %s:%d\n", int(e_), __FILE__, __LINE__); \
      exit(1);                                                    \
    }                                                             \
  } while (0)
float* dev(const std::vector<float>& h) {
  float* p;
  CK(cudaMalloc(&p, h.size() * 4 + 64));
  CK(cudaMemcpy(p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
  return p;
}
std::vector<float> host(const float* p, size_t n) {
  std::vector<float> h(n);
  CK(cudaMemcpy(h.data(), p, n * 4, cudaMemcpyDeviceToHost));
  return h;
}
std::vector<float> rnd(size_t n, float s, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = s * d(g);
  return v;
}

// rows_matmul's arguments for x [R,K], w ([N,K] when tw, else [K,N]), bias or null, out [R,N].
RowsMatmulArgs rows_args(const float* x, const float* w, const float* bias, float* out, long long R,
                         long long K, long long N, bool tw, bool acc,
                         RowsMatmulKernel kernel = RowsMatmulKernel::automatic) {
  RowsMatmulArgs a;
  a.x = x;
  a.w = w;
  a.bias = bias;
  a.out = out;
  a.R = R;
  a.K = K;
  a.N = N;
  a.transposed_w = tw;
  a.accumulate = acc;
  a.kernel = kernel;
  return a;
}

// weight_grad's arguments for g [R,O] and x [R,I], with the bias gradient, the scratch allocated
// here (freed by free_wgrad).
WeightGradArgs wgrad_args(const float* g, const float* x, float* out, float* bias_out, long long R,
                          long long O, long long I, int passes) {
  WeightGradArgs a;
  a.g = g;
  a.x = x;
  a.R = R;
  a.O = O;
  a.I = I;
  a.tensor_passes = passes;
  weight_grad_split(a);
  CK(cudaMalloc(&a.part, (a.parts * (O * I + O)) * 4));
  a.out = out;
  a.bias_part = a.part + a.parts * O * I;
  a.bias_out = bias_out;
  return a;
}
void free_wgrad(const WeightGradArgs& a) {
  cudaFree(a.part);
}

const char* kernel_name(RowsMatmulKernel k) {
  return k == RowsMatmulKernel::split_w   ? "split_w"
         : k == RowsMatmulKernel::chunked ? "chunked"
                                          : "auto";
}

// Each kernel's result against double-precision sums, computed once over a sample of the rows
// (every seventh of a long block, every row of the last 200).
void check_rows(long long R, long long K, long long N, bool tw, bool bias, bool acc) {
  auto x = rnd(R * K, 1, 1), w = rnd(N * K, 0.1f, 2), b = rnd(N, 1, 3), o0 = rnd(R * N, 1, 4);
  struct Ref {
    long long i;
    double sum, terms;
  };
  std::vector<Ref> ref;
  for (long long r = 0; r < R; r += (R > 8192 && r < R - 200 ? 7 : 1)) {
    for (long long n = 0; n < N; ++n) {
      double s = 0, sa = 0;
      for (long long k = 0; k < K; ++k) {
        double wv = tw ? w[n * K + k] : w[k * N + n];
        s += x[r * K + k] * wv;
        sa += std::fabs(x[r * K + k] * wv);
      }
      if (bias) s += b[n], sa += std::fabs(b[n]);
      if (acc) s += o0[r * N + n], sa += std::fabs(o0[r * N + n]);
      ref.push_back({r * N + n, s, sa});
    }
  }
  float *dx = dev(x), *dw = dev(w), *db = dev(b), *dout = dev(o0);
  for (const auto kernel : {RowsMatmulKernel::chunked, RowsMatmulKernel::split_w}) {
    if (kernel == RowsMatmulKernel::split_w && K != 64) continue;
    CK(cudaMemcpy(dout, o0.data(), o0.size() * 4, cudaMemcpyHostToDevice));
    CK(rows_matmul(rows_args(dx, dw, bias ? db : nullptr, dout, R, K, N, tw, acc, kernel),
                   nullptr));
    CK(cudaDeviceSynchronize());
    const auto out = host(dout, R * N);
    double worst = 0;
    for (const Ref& e : ref)
      worst = std::max(worst, std::fabs(out[e.i] - e.sum) / (e.terms + 1e-30));
    const bool ok = worst < 2e-6;
    fails += !ok;
    printf("%s rows_matmul %s R=%lld K=%lld N=%lld %s%s%s: max |err| / sum|terms| %.2e over %zu\n",
           ok ? "ok  " : "FAIL", kernel_name(kernel), R, K, N, tw ? "x w^T" : "x w",
           bias ? " +b" : "", acc ? " (added)" : "", worst, ref.size());
  }
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(db);
  cudaFree(dout);
}

void check_wgrad(long long R, long long O, long long I, int passes) {
  auto g = rnd(R * O, 1, 5), x = rnd(R * I, 1, 6);
  float *dg = dev(g), *dx = dev(x);
  float *out, *bout;
  CK(cudaMalloc(&out, O * I * 4));
  CK(cudaMalloc(&bout, O * 4));
  const auto a = wgrad_args(dg, dx, out, bout, R, O, I, passes);
  CK(weight_grad(a, nullptr));
  CK(cudaDeviceSynchronize());
  auto dw = host(out, O * I), dbias = host(bout, O);
  double worst = 0, worst_b = 0;
  for (long long o = 0; o < O; ++o) {
    double bs = 0, bsa = 0;
    for (long long r = 0; r < R; ++r) bs += g[r * O + o], bsa += std::fabs(g[r * O + o]);
    worst_b = std::max(worst_b, std::fabs(dbias[o] - bs) / bsa);
    for (long long i = 0; i < I; i += (O * I > 8192 ? 3 : 1)) {
      double s = 0, sa = 0;
      for (long long r = 0; r < R; ++r) {
        double p = double(g[r * O + o]) * x[r * I + i];
        s += p;
        sa += std::fabs(p);
      }
      worst = std::max(worst, std::fabs(dw[o * I + i] - s) / sa);
    }
  }
  const bool ok = worst < 2e-6 && worst_b < 2e-6;
  fails += !ok;
  printf("%s weight_grad passes=%d R=%lld O=%lld I=%lld: max |err| / sum|terms| %.2e, bias %.2e\n",
         ok ? "ok  " : "FAIL", passes, R, O, I, worst, worst_b);
  cudaFree(dg);
  cudaFree(dx);
  free_wgrad(a);
  cudaFree(out);
  cudaFree(bout);
}

template <typename F>
float time_us(F f) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 5; ++i) f();
  cudaEventRecord(a);
  for (int i = 0; i < 50; ++i) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms;
  cudaEventElapsedTime(&ms, a, b);
  return ms * 1000 / 50;
}

// Times of the two kernels over the rows, at K = 64 in the four layouts rows_matmul chooses between
// them for, x and out rotating over six buffers (400 MB, past any L2) as in a model's step.
void sweep() {
  constexpr int kBuffers = 6;
  constexpr long long kMaxRows = 262144, kMaxWidth = 128;
  // Random values, as a model's activations and weights are (zeros would let the products' units
  // idle, which can change clocks and times): one draw of x copied into every buffer.
  const auto xs = rnd(kMaxRows * 64, 1.0f, 7);
  float *x[kBuffers], *out[kBuffers];
  for (int i = 0; i < kBuffers; ++i) {
    x[i] = dev(xs);
    CK(cudaMalloc(&out[i], kMaxRows * kMaxWidth * 4));
  }
  float* w = dev(rnd(64 * kMaxWidth, 0.125f, 8));
  float* b = dev(rnd(kMaxWidth, 0.1f, 9));
  struct Layout {
    bool tw;
    long long N;
  };
  for (Layout l : {Layout{true, 64}, Layout{false, 64}, Layout{false, 128}, Layout{true, 128}}) {
    for (long long R : {4096LL, 8192LL, 16384LL, 24576LL, 32768LL, 40960LL, 49152LL, 57344LL,
                        65536LL, 98304LL, 131072LL, kMaxRows}) {
      float t[2];
      for (int k = 0; k < 2; ++k) {
        const auto kernel = k ? RowsMatmulKernel::split_w : RowsMatmulKernel::chunked;
        int i = 0;
        t[k] = time_us([&] {
          i = (i + 1) % kBuffers;
          CK(rows_matmul(
              rows_args(x[i], w, l.tw ? b : nullptr, out[i], R, 64, l.N, l.tw, false, kernel),
              nullptr));
        });
      }
      const auto chosen =
          rows_matmul_choice(rows_args(x[0], w, nullptr, out[0], R, 64, l.N, l.tw, false));
      printf(
          "sweep %s N=%3lld R=%7lld: chunked %6.1f us, split_w %6.1f us (%+5.1f%%); rows_matmul "
          "takes %s\n",
          l.tw ? "x w^T" : "x w  ", l.N, R, t[0], t[1], 100 * (t[1] / t[0] - 1),
          kernel_name(chosen));
    }
  }
  for (int i = 0; i < kBuffers; ++i) cudaFree(x[i]), cudaFree(out[i]);
  cudaFree(w);
  cudaFree(b);
}

int main(int argc, char** argv) {
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  printf("%s\n", p.name);
  if (argc > 1 && std::string(argv[1]) == "sweep") return sweep(), 0;
  check_rows(65536, 64, 64, true, true, false);
  check_rows(4100, 128, 64, false, false, true);
  check_rows(70001, 64, 64, true, false, false);
  check_rows(8192, 256, 256, true, true, false);
  check_rows(131072, 64, 128, false, false, false);
  check_rows(5000, 32, 192, true, true, true);
  check_rows(4100, 32, 64, false, true, true);
  check_rows(65536, 64, 128, false, false, true);
  check_rows(70001, 64, 64, false, false, true);
  check_wgrad(131072, 64, 128, 3);
  check_wgrad(4100, 128, 64, 3);
  check_wgrad(131072, 64, 128, 0);
  cublasHandle_t h;
  cublasCreate(&h);
  struct S {
    long long R, K, N;
    bool tw;
  };
  for (S s : {S{65536, 64, 64, true}, S{131072, 64, 64, true}, S{65536, 64, 128, true},
              S{65536, 128, 64, false}, S{131072, 64, 128, false}, S{65536, 256, 64, true}}) {
    auto x = rnd(s.R * s.K, 1, 1), w = rnd(s.N * s.K, 0.1f, 2), b = rnd(s.N, 1, 3);
    float *dx = dev(x), *dw = dev(w), *db = dev(b), *dout;
    CK(cudaMalloc(&dout, s.R * s.N * 4));
    const auto a = rows_args(dx, dw, s.tw ? db : nullptr, dout, s.R, s.K, s.N, s.tw, false,
                             RowsMatmulKernel::chunked);
    auto split = a;
    split.kernel = RowsMatmulKernel::split_w;
    const float ours = time_us([&] { rows_matmul(a, nullptr); });
    char split_us[32] = "n/a (K != 64)";
    if (s.K == 64)
      snprintf(split_us, sizeof split_us, "%.1f us", time_us([&] { rows_matmul(split, nullptr); }));
    const float one = 1, zero = 0;
    const float cub = time_us([&] {
      if (s.tw)
        cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, s.N, s.R, s.K, &one, dw, s.K, dx, s.K, &zero, dout,
                    s.N);
      else
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, s.N, s.R, s.K, &one, dw, s.N, dx, s.K, &zero, dout,
                    s.N);
    });
    const double mb = (s.R * s.K + s.R * s.N) * 4e-6;
    printf(
        "time rows_matmul R=%lld K=%lld N=%lld %s: chunked %.1f us (%.0f GB/s), split_w %s, "
        "cuBLAS fp32 %.1f us\n",
        s.R, s.K, s.N, s.tw ? "x w^T" : "x w", ours, mb / ours * 1e3, split_us, cub);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(db);
    cudaFree(dout);
  }
  for (S s : {S{131072, 64, 64, true}, S{131072, 64, 128, true}, S{65536, 128, 64, true}}) {
    const long long R = s.R, O = s.K, I = s.N;
    auto g = rnd(R * O, 1, 5), x = rnd(R * I, 1, 6);
    float *dg = dev(g), *dx = dev(x), *out;
    CK(cudaMalloc(&out, O * I * 4));
    float times[2];
    for (int k = 0; k < 2; ++k) {
      float* bo;
      CK(cudaMalloc(&bo, O * 4));
      const auto a = wgrad_args(dg, dx, out, bo, R, O, I, k ? 3 : 0);
      times[k] = time_us([&] { weight_grad(a, nullptr); });
      free_wgrad(a);
      cudaFree(bo);
    }
    const float one = 1, zero = 0;
    const float cub = time_us([&] {
      cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, I, O, R, &one, dx, I, dg, O, &zero, out, I);
    });
    printf(
        "time weight_grad R=%lld O=%lld I=%lld (with bias): fma %.1f us, 3xtf32 %.1f us; cuBLAS "
        "fp32 (no bias) %.1f us\n",
        R, O, I, times[0], times[1], cub);
    cudaFree(dg);
    cudaFree(dx);
    cudaFree(out);
  }
  printf("%d failed\n", fails);
  return fails != 0;
}
