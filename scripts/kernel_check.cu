// A check of rows_matmul and weight_grad (core/cuda/kernels.cu) without LibTorch: their results
// against double-precision sums (error over the sum of the terms' magnitudes, below 2e-6 passes),
// then their times against cuBLAS's float32 products of the same shapes (CUDA events, 50 launches).
// nvcc builds it in about a minute, also on a machine without a GPU, and the binary can travel to
// the GPU machine (docs/cuda.md, "Running it on the GPU machine"):
//   nvcc -O3 -arch=sm_90 -std=c++17 -I. -Icore/cuda core/cuda/kernels.cu scripts/kernel_check.cu \
//     -lcublas -o kernel_check
// With -DRETREEVER_ROWS_MATMUL_SPLIT_W=0 rows_matmul leaves rows_matmul_w_kernel out (at K = 64 it takes
// it where it was timed faster, kernels.cu), for an A/B of the two in two binaries.
// Exit status 1 when a check fails.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
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
                         long long K, long long N, bool tw, bool acc) {
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

void check_rows(long long R, long long K, long long N, bool tw, bool bias, bool acc) {
  auto x = rnd(R * K, 1, 1), w = rnd(N * K, 0.1f, 2), b = rnd(N, 1, 3), o0 = rnd(R * N, 1, 4);
  float *dx = dev(x), *dw = dev(w), *db = dev(b), *dout = dev(o0);
  const auto a = rows_args(dx, dw, bias ? db : nullptr, dout, R, K, N, tw, acc);
  CK(rows_matmul(a, nullptr));
  CK(cudaDeviceSynchronize());
  auto out = host(dout, R * N);
  double worst = 0;
  long long checked = 0;
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
      worst = std::max(worst, std::fabs(out[r * N + n] - s) / (sa + 1e-30));
      ++checked;
    }
  }
  const bool ok = worst < 2e-6;
  fails += !ok;
  printf("%s rows_matmul R=%lld K=%lld N=%lld %s%s%s: max |err| / sum|terms| %.2e over %lld\n",
         ok ? "ok  " : "FAIL", R, K, N, tw ? "x w^T" : "x w", bias ? " +b" : "",
         acc ? " (added)" : "", worst, checked);
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

int main() {
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  printf("%s\n", p.name);
  check_rows(65536, 64, 64, true, true, false);
  check_rows(4100, 128, 64, false, false, true);
  check_rows(70001, 64, 64, true, false, false);
  check_rows(8192, 256, 256, true, true, false);
  check_rows(131072, 64, 128, false, false, false);
  check_rows(5000, 32, 192, true, true, true);
  check_rows(4100, 32, 64, false, true, true);
  check_rows(65536, 64, 128, false, false, true);
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
    const auto a = rows_args(dx, dw, s.tw ? db : nullptr, dout, s.R, s.K, s.N, s.tw, false);
    const float ours = time_us([&] { rows_matmul(a, nullptr); });
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
        "time rows_matmul R=%lld K=%lld N=%lld %s: ours %.1f us (%.0f GB/s), cuBLAS fp32 %.1f us\n",
        s.R, s.K, s.N, s.tw ? "x w^T" : "x w", ours, mb / ours * 1e3, cub);
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
