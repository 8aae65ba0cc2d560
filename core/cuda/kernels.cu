// CUDA kernels of tree cross attention (kernels.h): the whole walk in one launch, and the
// attention of groups that read their own few keys (the read of S, the aggregator), forward and
// backward. One thread per (query, head) row: the sizes here are tiny (b = 2 children, |S| of a
// few dozen, head dimension 16), so each thread keeps its query and its output in registers and
// the threads of one query's heads read one contiguous node row between them.
#include "kernels.h"

#include "core/nn/keep_hash.h"

#include <cfloat>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cuda_runtime.h>

namespace retreever::cuda {
namespace {

constexpr float kLowest = -FLT_MAX / 2;  // the score of a masked key (blocks.h: masked_score)

// Dropout's factor for weight i (kernels.h: DropKey): scale or 0; `on` false without dropout.
struct Dropper {
  std::uint64_t key;
  std::uint32_t threshold;
  float scale;
  bool on;
  __device__ explicit Dropper(const DropKey& d)
      : key(d.key != nullptr ? std::uint64_t(*d.key) : 0), threshold(d.threshold), scale(d.scale), on(d.key != nullptr) {}
  __device__ __forceinline__ float operator()(long long i) const {
    return keep_bits(std::uint64_t(i), key) < threshold ? scale : 0.f;
  }
};

// p's address is a multiple of `bytes` (the vector loads, stores and atomics need it).
bool aligned_to(const void* p, std::uintptr_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

template <int D>
__device__ __forceinline__ void load_row(float (&r)[D], const float* p) {
#pragma unroll
  for (int e = 0; e < D; e += 4) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(p + e));
    r[e] = x.x;
    r[e + 1] = x.y;
    r[e + 2] = x.z;
    r[e + 3] = x.w;
  }
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

template <int D>
__device__ __forceinline__ float dot_row(const float (&q)[D], const float* p) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma unroll
  for (int e = 0; e < D; e += 4) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(p + e));
    s0 += q[e] * x.x;
    s1 += q[e + 1] * x.y;
    s2 += q[e + 2] * x.z;
    s3 += q[e + 3] * x.w;
  }
  return (s0 + s1) + (s2 + s3);
}

// One block holds qpb queries; each query has b*H threads, one per (child, head). Per level: every
// thread scores its child for its head, then the query's first thread forms the policy, chooses,
// and moves the query to the chosen child.
// NB: the branch factor at compile time (0: a.b at run time), so that the policy's per-child
// arrays live in registers rather than local memory.
template <int D, int NB>
__global__ void walk_kernel(const WalkArgs a, int qpb) {
  extern __shared__ unsigned char smem[];
  constexpr int kB = NB > 0 ? NB : kMaxBranch;  // the per-child arrays' size
  const int H = int(a.H), b = NB > 0 ? NB : int(a.b), P2 = b * H;
  long long* scur = reinterpret_cast<long long*>(smem);    // [qpb] node being expanded
  float* ss = reinterpret_cast<float*>(scur + qpb);          // [qpb][b*H] scores
  bool* skeep = reinterpret_cast<bool*>(ss + qpb * P2);      // [qpb][b] real children

  const int ql = int(threadIdx.x) / P2, pair = int(threadIdx.x) % P2;
  const int c = pair / H, h = pair % H;
  const long long qi = (long long)blockIdx.x * qpb + ql;
  const bool active = qi < a.Q;
  const long long M = a.Q / a.B, bi = active ? qi / M : 0;
  const long long S = a.k * a.b + a.p;

  float qr[D];
  if (active) load_row<D>(qr, a.queries + (qi * H + h) * D);
  if (pair == 0) scur[ql] = 0;
  float logp = 0, ent = 0, hent = 0;
  const float logH = logf(float(H));
  __syncthreads();

  for (int t = 0; t < int(a.k); ++t) {
    const long long cur = scur[ql];
    if (active) {
      const long long row = a.offsets[t] + cur * b + c;
      // Every row exists (padding nodes too): the key loads need not wait for the mask.
      const float dot = dot_row<D>(qr, a.keys + ((bi * a.n + row) * H + h) * D);
      const bool keep = a.masks[bi * a.n + row];
      // The rows this child's subtree reads next, into L2 while the policy decides: the next
      // level then waits for L2 instead of device memory.
      const long long fan = t + 1 < int(a.k) ? b : a.p;
      const long long first = a.offsets[t + 1] + (cur * b + c) * fan;
      for (long long j = 0; j < fan; ++j) prefetch_l2(a.keys + ((bi * a.n + first + j) * H + h) * D);
      if (h == 0) prefetch_l2(a.masks + bi * a.n + first);
      ss[ql * P2 + pair] = keep ? dot : kLowest;
      if (h == 0) {
        skeep[ql * b + c] = keep;
        a.rows[qi * S + t * b + c] = row;
        a.real[qi * S + t * b + c] = keep;
      }
    }
    __syncthreads();
    if (active && pair == 0) {
      const float* s = ss + ql * P2;  // s[c*H + h]
      const bool* kp = skeep + ql * b;
      float p[kB], lmax[kB], lacc[kB], lpv[kB];
      bool kk[kB];
      int real = 0;
#pragma unroll
      for (int j = 0; j < b; ++j) {
        p[j] = 0;
        lmax[j] = -INFINITY;
        lacc[j] = 0;
        kk[j] = kp[j];
        real += kk[j];
      }
      // The policy: each head's softmax over the children, averaged over the heads (as the CPU
      // kernel sums it); log pi by a log-sum-exp over the heads' log-softmax (as the tensor path).
      for (int hh = 0; hh < H; ++hh) {
        float sc[kB];
#pragma unroll
        for (int j = 0; j < b; ++j) sc[j] = s[j * H + hh];
        float top = sc[0];
#pragma unroll
        for (int j = 1; j < b; ++j) top = fmaxf(top, sc[j]);
        float e[kB], sum = 0;
#pragma unroll
        for (int j = 0; j < b; ++j) {
          e[j] = expf(sc[j] - top);
          sum += e[j];
        }
        const float lsum = logf(sum);
#pragma unroll
        for (int j = 0; j < b; ++j) {
          p[j] += e[j] / (sum * float(H));
          const float ls = sc[j] - top - lsum;  // this head's log-softmax
          const float w = e[j] / sum;
          if (w > 0) hent -= w * ls;
          if (ls > lmax[j]) {
            lacc[j] = lacc[j] * expf(lmax[j] - ls) + 1;
            lmax[j] = ls;
          } else {
            lacc[j] += expf(ls - lmax[j]);
          }
        }
      }
#pragma unroll
      for (int j = 0; j < b; ++j) {
        lpv[j] = lmax[j] + logf(lacc[j]) - logH;
        const float w = expf(lpv[j]);
        if (w > 0) ent -= w * lpv[j];
      }
      int action = 0;
      if (a.uniform) {  // invert the CDF of the (exploring) policy at the query's draw
        const float u = a.uniform[(long long)t * a.Q + qi];
        const float explore = a.explore;
        float cdf = 0;
        int below = 0, last_real = b - 1;
#pragma unroll
        for (int j = 0; j < b; ++j) {
          cdf += explore > 0 ? (1 - explore) * p[j] + explore * (kk[j] ? 1.f / float(real > 1 ? real : 1) : 0.f) : p[j];
          below += cdf <= u;
        }
        if (real > 0)
          while (!kp[last_real]) --last_real;
        action = below < last_real ? below : last_real;
      } else {
        float best = p[0];
#pragma unroll
        for (int j = 1; j < b; ++j)
          if (p[j] > best) {
            best = p[j];
            action = j;
          }
      }
      float lp = 0;
      bool keep_a = false;
#pragma unroll
      for (int j = 0; j < b; ++j)
        if (j == action) {
          lp = lpv[j];
          keep_a = kk[j];
        }
      if (a.uniform && a.explore > 0) {
        const float mu = (1 - a.explore) * expf(lp) + a.explore * (1.f / float(real > 1 ? real : 1));
        logp += keep_a ? logf(mu) : 0.f;
      } else {
        logp += lp;
      }
#pragma unroll
      for (int j = 0; j < b; ++j) {
        a.pi[(qi * a.k + t) * b + j] = p[j];
        a.keep[qi * S + t * b + j] = (kk[j] || a.keep_padding_siblings) && j != action;
      }
      const long long next = cur * b + action;
      a.actions[qi * a.k + t] = action;
      a.path[qi * a.k + t] = next;
      scur[ql] = next;
    }
    __syncthreads();
  }
  if (!active) return;
  // The P leaves of the leaf group reached.
  const long long cur = scur[ql];
  for (long long j = pair; j < a.p; j += P2) {
    const long long row = a.offsets[a.k] + cur * a.p + j;
    const bool r = a.masks[bi * a.n + row];
    a.rows[qi * S + a.k * b + j] = row;
    a.real[qi * S + a.k * b + j] = r;
    a.keep[qi * S + a.k * b + j] = r;
  }
  if (pair == 0) {
    a.log_prob[qi] = logp;
    a.entropy[qi] = ent * a.entropy_scale;
    a.head_entropy[qi] = hent * a.head_entropy_scale;
  }
}

// L lanes (a power of two up to 32, the shuffle width) per (group, query, head) row; lane r takes
// keys r, r + L, ... with an online softmax of its own, then the lanes merge their maxima, sums and
// weighted values by shuffles. All lanes run the shuffles, rows past the end included.
template <int D>
__global__ void group_forward_kernel(const GroupArgs a, int L) {
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long rows = a.G * a.m * a.H, lin_raw = tid / L;
  const int lane = int(tid % L);
  const bool active = lin_raw < rows;
  const long long lin = active ? lin_raw : rows - 1;
  const long long H = a.H, h = lin % H, gi = lin / H, g = gi / a.m;
  const float* drop = a.drop ? a.drop + ((g * H + h) * a.m + gi % a.m) * a.nk : nullptr;  // this row's keep mask
  float qr[D], acc[D];
  load_row<D>(qr, a.q + lin * D);
#pragma unroll
  for (int e = 0; e < D; ++e) acc[e] = 0;
  const long long base = (g / a.groups_per_row) * a.n;
  float mx = -INFINITY, l = 0;
  for (long long j = lane; j < a.nk; j += L) {
    const long long row = base + (a.idx ? a.idx[g * a.nk + j] : j);
    const bool keep = a.mask ? a.mask[g * a.nk + j] : true;
    const float dot = dot_row<D>(qr, a.k + (row * H + h) * D);
    float vr[D];
    load_row<D>(vr, a.v + (row * H + h) * D);
    const float s = keep ? dot : kLowest;
    if (a.p && active) a.p[(gi * a.nk + j) * H + h] = s;
    if (a.raw && active) a.raw[(gi * a.nk + j) * H + h] = dot;
    const float mn = fmaxf(mx, s), scale = expf(mx - mn), w = expf(s - mn), wv = drop ? w * drop[j] : w;
    l = l * scale + w;
#pragma unroll
    for (int e = 0; e < D; ++e) acc[e] = acc[e] * scale + wv * vr[e];
    mx = mn;
  }
  // Merge the lanes: the row's maximum, then each lane's sum and values rescaled to it.
  float top = mx;
  for (int off = L / 2; off > 0; off /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, off, L));
  const float scale = mx == -INFINITY ? 0.f : expf(mx - top);
  l *= scale;
#pragma unroll
  for (int e = 0; e < D; ++e) acc[e] *= scale;
  for (int off = L / 2; off > 0; off /= 2) {
    l += __shfl_xor_sync(0xffffffffu, l, off, L);
#pragma unroll
    for (int e = 0; e < D; ++e) acc[e] += __shfl_xor_sync(0xffffffffu, acc[e], off, L);
  }
  if (!active) return;
  const float inv = 1.f / l;
  if (lane == 0) {
    float* o = a.out + lin * D;
#pragma unroll
    for (int e = 0; e < D; e += 4)
      *reinterpret_cast<float4*>(o + e) = make_float4(acc[e] * inv, acc[e + 1] * inv, acc[e + 2] * inv, acc[e + 3] * inv);
  }
  if (a.p)
    for (long long j = lane; j < a.nk; j += L) {
      float* pj = a.p + (gi * a.nk + j) * H + h;
      *pj = expf(*pj - top) * inv;
    }
}

// dp_j = r_j dout . v_j; ds_j = p_j (dp_j - dout . out) where key j is real (masked scores get no
// gradient); dq = sum_j ds_j k_j; dk_j += ds_j q; dv_j += p_j r_j dout, where r_j is dropout's keep
// mask (1 without). Lanes over keys as above.
template <int D>
__global__ void group_backward_kernel(const GroupGradArgs a, int L) {
  const GroupArgs& f = a.f;
  const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  const long long rows = f.G * f.m * f.H, lin_raw = tid / L;
  const int lane = int(tid % L);
  const bool active = lin_raw < rows;
  const long long lin = active ? lin_raw : rows - 1;
  const long long H = f.H, h = lin % H, gi = lin / H, g = gi / f.m;
  const float* drop = f.drop ? f.drop + ((g * H + h) * f.m + gi % f.m) * f.nk : nullptr;
  float qr[D], dor[D], dq[D];
  load_row<D>(qr, f.q + lin * D);
  load_row<D>(dor, a.dout + lin * D);
  const float delta = dot_row<D>(dor, f.out + lin * D);
#pragma unroll
  for (int e = 0; e < D; ++e) dq[e] = 0;
  const long long base = (g / f.groups_per_row) * f.n;
  for (long long j = lane; active && j < f.nk; j += L) {
    const long long row = base + (f.idx ? f.idx[g * f.nk + j] : j);
    const bool keep = f.mask ? f.mask[g * f.nk + j] : true;
    const float p = f.p[(gi * f.nk + j) * H + h], dr = drop ? drop[j] : 1.f, pd = p * dr;
    const long long at = (row * H + h) * D;
    if (pd != 0) {
      float* dv = a.dv + at;
#pragma unroll
      for (int e = 0; e < D; ++e) atomicAdd(dv + e, pd * dor[e]);
    }
    float ds = keep ? p * (dr * dot_row<D>(dor, f.v + at) - delta) : 0.f;
    if (a.dscore) ds += a.dscore[(gi * f.nk + j) * H + h];
    if (ds == 0) continue;
    float kr[D];
    load_row<D>(kr, f.k + at);
    float* dk = a.dk + at;
#pragma unroll
    for (int e = 0; e < D; ++e) {
      dq[e] += ds * kr[e];
      atomicAdd(dk + e, ds * qr[e]);
    }
  }
  for (int off = L / 2; off > 0; off /= 2)
#pragma unroll
    for (int e = 0; e < D; ++e) dq[e] += __shfl_xor_sync(0xffffffffu, dq[e], off, L);
  if (!active || lane != 0) return;
  float* o = a.dq + lin * D;
#pragma unroll
  for (int e = 0; e < D; e += 4) *reinterpret_cast<float4*>(o + e) = make_float4(dq[e], dq[e + 1], dq[e + 2], dq[e + 3]);
}

// Sum over each aligned group of W lanes (W = 32: the whole warp). Where lane l holds element
// l + 32 i of a row and D <= 32, the D lanes of a group share a head: W = D sums per head.
template <int W>
__device__ __forceinline__ float lane_group_sum(float x) {
#pragma unroll
  for (int off = W / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// x[0..V) added to at[0..V): scalar atomics, and (_vec) vector ones on sm_90 (float2, float4: one
// operation where the scalar ones take V) where at is aligned to min(4 V, 16) bytes.
template <int V>
__device__ __forceinline__ void atomic_add_each(float* at, const float (&x)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) atomicAdd(at + i, x[i]);
}
template <int V>
__device__ __forceinline__ void atomic_add_vec(float* at, const float (&x)[V]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int i = 0; i < V; i += 4) atomicAdd(reinterpret_cast<float4*>(at + i), make_float4(x[i], x[i + 1], x[i + 2], x[i + 3]));
  } else if constexpr (V == 2) {
    atomicAdd(reinterpret_cast<float2*>(at), make_float2(x[0], x[1]));
  } else
#endif
  {
    atomic_add_each<V>(at, x);
  }
}

// The same gradients with one warp per (group, query) row and every head at once: lane l holds
// the V consecutive elements l V .. l V + V - 1 of the row's H*D = 32 V floats (one head's: V <= D,
// and a head's sums run over D / V lanes). A key's node row is read, and its gradients added to,
// by coalesced accesses, one vector atomic per lane (Vector: the gradients' rows aligned for it);
// one query's keys go in turn (no lanes over keys, no merge of dq). The read of S adds to the same
// upper nodes from every query of a batch row: the other kernel's per-thread scalar atomics on 16
// consecutive floats cost several times more there, and V scalar atomics a lane (an earlier layout,
// lane l holding l, l + 32, ..) about 1.15 times more at V = 2.
template <int D, int V>
__global__ void group_backward_warp_kernel(const GroupGradArgs a, bool vector) {
  static_assert(V <= D, "a lane's elements belong to one head");
  const GroupArgs& f = a.f;
  const long long gi = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;  // warp-uniform
  if (gi >= f.G * f.m) return;
  const int lane = int(threadIdx.x % 32);
  constexpr int HD = 32 * V;
  const long long H = f.H, g = gi / f.m;
  const int h = lane * V / D;
  const long long own = gi * HD + lane * V;
  const float* drop = f.drop ? f.drop + ((g * H + h) * f.m + gi % f.m) * f.nk : nullptr;  // this head's keep mask
  float qr[V], dor[V], dq[V], delta = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    qr[i] = __ldg(f.q + own + i);
    dor[i] = __ldg(a.dout + own + i);
    delta += dor[i] * __ldg(f.out + own + i);
    dq[i] = 0;
  }
  delta = lane_group_sum<D / V>(delta);
  const long long base = (g / f.groups_per_row) * f.n;
  for (long long j = 0; j < f.nk; ++j) {
    const long long row = base + (f.idx ? f.idx[g * f.nk + j] : j);
    const bool keep = f.mask ? f.mask[g * f.nk + j] : true;
    const long long at = row * HD + lane * V, ps = (gi * f.nk + j) * H;
    const float p = __ldg(f.p + ps + h), dr = drop ? __ldg(drop + j) : 1.f, pd = p * dr;
    float dp = 0, add[V];
#pragma unroll
    for (int i = 0; i < V; ++i) dp += dor[i] * __ldg(f.v + at + i);
    dp = lane_group_sum<D / V>(dp) * dr;
    if (pd != 0) {
#pragma unroll
      for (int i = 0; i < V; ++i) add[i] = pd * dor[i];
      vector ? atomic_add_vec<V>(a.dv + at, add) : atomic_add_each<V>(a.dv + at, add);
    }
    float ds = keep ? p * (dp - delta) : 0.f;
    if (a.dscore) ds += __ldg(a.dscore + ps + h);
    if (ds != 0) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        dq[i] += ds * __ldg(f.k + at + i);
        add[i] = ds * qr[i];
      }
      vector ? atomic_add_vec<V>(a.dk + at, add) : atomic_add_each<V>(a.dk + at, add);
    }
  }
#pragma unroll
  for (int i = 0; i < V; ++i) a.dq[own + i] = dq[i];
}

// Lanes per row: enough for every key up to a warp.
int lanes_for(long long nk) {
  int L = 1;
  while (L < 32 && L < nk) L *= 2;
  return L;
}

int blocks_for(long long threads, int per_block) { return int((threads + per_block - 1) / per_block); }

}  // namespace

#define RETREEVER_DISPATCH_D(d, ...)          \
  switch (d) {                                \
    case 4: { constexpr int D = 4; __VA_ARGS__; break; }     \
    case 8: { constexpr int D = 8; __VA_ARGS__; break; }     \
    case 16: { constexpr int D = 16; __VA_ARGS__; break; }   \
    case 32: { constexpr int D = 32; __VA_ARGS__; break; }   \
    case 64: { constexpr int D = 64; __VA_ARGS__; break; }   \
    case 128: { constexpr int D = 128; __VA_ARGS__; break; } \
    default: return int(cudaErrorInvalidValue);              \
  }

int walk(const WalkArgs& a, void* stream) {
  if (a.Q == 0) return 0;
  if (a.b > kMaxBranch || a.k > kMaxLevels || a.b * a.H > 1024 || a.B <= 0 || a.Q % a.B != 0)
    return int(cudaErrorInvalidValue);
  const int P2 = int(a.b * a.H);
  const int qpb = P2 >= 256 ? 1 : 256 / P2;
  const size_t smem = size_t(qpb) * (sizeof(long long) + sizeof(float) * P2 + a.b);
  const int blocks = blocks_for(a.Q, qpb);
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.b) {
    case 2: { RETREEVER_DISPATCH_D(int(a.d), (walk_kernel<D, 2><<<blocks, qpb * P2, smem, s>>>(a, qpb))) break; }
    case 3: { RETREEVER_DISPATCH_D(int(a.d), (walk_kernel<D, 3><<<blocks, qpb * P2, smem, s>>>(a, qpb))) break; }
    case 4: { RETREEVER_DISPATCH_D(int(a.d), (walk_kernel<D, 4><<<blocks, qpb * P2, smem, s>>>(a, qpb))) break; }
    default: { RETREEVER_DISPATCH_D(int(a.d), (walk_kernel<D, 0><<<blocks, qpb * P2, smem, s>>>(a, qpb))) break; }
  }
  return int(cudaGetLastError());
}

int group_forward(const GroupArgs& a, void* stream) {
  // At most 8 lanes a row: the read of S (about 2 log2 N keys) then merges in 3 shuffle rounds, not
  // 5 with idle lanes (H100: 0.18 ms of a 9.4 ms step at copy N = 1024, batch 128; decode 3-4 us).
  const int L = std::min(lanes_for(a.nk), 8);
  const long long threads = a.G * a.m * a.H * L;
  if (threads == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  RETREEVER_DISPATCH_D(int(a.d), (group_forward_kernel<D><<<blocks_for(threads, 128), 128, 0, s>>>(a, L)))
  return int(cudaGetLastError());
}

// The warp kernel for head dimensions up to 32, rows of 32, 64, 128 or 256 floats, and at most a
// head's D floats a lane.
static bool group_backward_warp(const GroupGradArgs& a, cudaStream_t s) {
  const long long d = a.f.d, HD = a.f.H * a.f.d, V = HD / 32;
  if (d > 32 || HD % 32 != 0 || V > d) return false;
  const int blocks = blocks_for(a.f.G * a.f.m * 32, 128);
  const auto bytes = std::uintptr_t(4 * std::min<long long>(V, 4));
  const bool vector = aligned_to(a.dk, bytes) && aligned_to(a.dv, bytes);
#define RETREEVER_WARP(D, V) \
  case D * 100 + V: group_backward_warp_kernel<D, V><<<blocks, 128, 0, s>>>(a, vector); return true;
  switch (d * 100 + V) {
    RETREEVER_WARP(4, 1) RETREEVER_WARP(4, 2) RETREEVER_WARP(4, 4)
    RETREEVER_WARP(8, 1) RETREEVER_WARP(8, 2) RETREEVER_WARP(8, 4) RETREEVER_WARP(8, 8)
    RETREEVER_WARP(16, 1) RETREEVER_WARP(16, 2) RETREEVER_WARP(16, 4) RETREEVER_WARP(16, 8)
    RETREEVER_WARP(32, 1) RETREEVER_WARP(32, 2) RETREEVER_WARP(32, 4) RETREEVER_WARP(32, 8)
    default: return false;
  }
#undef RETREEVER_WARP
}

int group_backward(const GroupGradArgs& a, void* stream) {
  if (a.f.G * a.f.m == 0) return 0;
  if (group_backward_warp(a, static_cast<cudaStream_t>(stream))) return int(cudaGetLastError());
  const int L = lanes_for(a.f.nk);
  const long long threads = a.f.G * a.f.m * a.f.H * L;
  if (threads == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  RETREEVER_DISPATCH_D(int(a.f.d), (group_backward_kernel<D><<<blocks_for(threads, 128), 128, 0, s>>>(a, L)))
  return int(cudaGetLastError());
}

namespace {

// One warp per row; lane l holds elements l + 32 i. Mean first, then the variance of the centred
// values held in registers (two passes over registers, no cancellation).
template <int V>
__global__ void layer_norm_forward_kernel(const LayerNormArgs a) {
  const long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  if (r >= a.R) return;  // warp-uniform
  const int lane = int(threadIdx.x % 32);
  constexpr int D = 32 * V;
  const float* x = a.x + r * D;
  float v[V], s = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) s += v[i] = __ldg(x + lane + 32 * i);
  const float mean = lane_group_sum<32>(s) / D;
  float q = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    v[i] -= mean;
    q += v[i] * v[i];
  }
  const float rstd = rsqrtf(lane_group_sum<32>(q) / D + a.eps);
  float* y = a.y + r * D;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int e = lane + 32 * i;
    y[e] = v[i] * rstd * __ldg(a.w + e) + __ldg(a.b + e);
  }
  if (lane == 0) {
    a.mean[r] = mean;
    a.rstd[r] = rstd;
  }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w; each warp walks rows r, r + parts, ..
// and keeps its sums of dy xhat and dy for the weight's and bias's gradients.
template <int V>
__global__ void layer_norm_backward_kernel(const LayerNormGradArgs a) {
  const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  if (warp >= a.parts) return;
  const int lane = int(threadIdx.x % 32);
  constexpr int D = 32 * V;
  float w[V], dw[V], db[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    w[i] = __ldg(a.f.w + lane + 32 * i);
    dw[i] = db[i] = 0;
  }
  for (long long r = warp; r < a.f.R; r += a.parts) {
    const float mean = __ldg(a.f.mean + r), rstd = __ldg(a.f.rstd + r);
    float xh[V], g[V], s1 = 0, s2 = 0;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const long long e = r * D + lane + 32 * i;
      const float dy = __ldg(a.dy + e);
      xh[i] = (__ldg(a.f.x + e) - mean) * rstd;
      g[i] = dy * w[i];
      s1 += g[i];
      s2 += g[i] * xh[i];
      dw[i] += dy * xh[i];
      db[i] += dy;
    }
    const float m1 = lane_group_sum<32>(s1) / D, m2 = lane_group_sum<32>(s2) / D;
#pragma unroll
    for (int i = 0; i < V; ++i) a.dx[r * D + lane + 32 * i] = rstd * (g[i] - m1 - xh[i] * m2);
  }
#pragma unroll
  for (int i = 0; i < V; ++i) {
    a.part[warp * D + lane + 32 * i] = dw[i];
    a.part[(a.parts + warp) * D + lane + 32 * i] = db[i];
  }
}

// One warp per row; lane l holds elements l + 32 i (i < V, element < D) of y and dy in registers.
template <int V>
__global__ void softmax_backward_kernel(const SoftmaxGradArgs a) {
  const long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  if (r >= a.R) return;  // warp-uniform
  const int lane = int(threadIdx.x % 32);
  const long long D = a.D;
  const float* y = a.y + r * D;
  const float* dy = a.dy + r * D;
  float yv[V], gv[V], s = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const long long e = lane + 32 * i;
    yv[i] = e < D ? __ldg(y + e) : 0.f;
    gv[i] = e < D ? __ldg(dy + e) : 0.f;
    s += yv[i] * gv[i];
  }
  s = lane_group_sum<32>(s);
  float* dx = a.dx + r * D;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const long long e = lane + 32 * i;
    if (e < D) dx[e] = yv[i] * (gv[i] - s);
  }
}

// Block p sums rows p, p + parts, .. ; thread t of the block takes columns t, t + blockDim, ..
// (a warp reads 128 consecutive bytes of a row).
__global__ void column_sum_kernel(const ColumnSumArgs a) {
  const long long P = a.parts, C = a.C;
  for (long long c = threadIdx.x; c < C; c += blockDim.x) {
    // Four rows in flight per thread (one chain of loads would leave the memory idle).
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    long long r = blockIdx.x;
    for (; r + 3 * P < a.R; r += 4 * P) {
      s0 += __ldg(a.x + r * C + c);
      s1 += __ldg(a.x + (r + P) * C + c);
      s2 += __ldg(a.x + (r + 2 * P) * C + c);
      s3 += __ldg(a.x + (r + 3 * P) * C + c);
    }
    for (; r < a.R; r += P) s0 += __ldg(a.x + r * C + c);
    a.part[blockIdx.x * C + c] = (s0 + s1) + (s2 + s3);
  }
}

// Row sums of the partial sums: out[m * C + c] = sum over r of x[(m * R + r) * C + c], for the
// matrices m = blockIdx.y. A block of 32 x 32 threads takes 32 columns; thread (c, y) sums rows
// y, y + 32, .. (four loads in flight), then the block's first row of threads adds the 32 sums of
// its column in order.
__global__ void sum_rows_kernel(const float* x, long long R, long long C, float* out) {
  __shared__ float t[32][33];
  const long long c = blockIdx.x * 32LL + threadIdx.x;
  const float* m = x + blockIdx.y * R * C;
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  if (c < C) {
    long long r = threadIdx.y;
    for (; r + 96 < R; r += 128) {
      s0 += __ldg(m + r * C + c);
      s1 += __ldg(m + (r + 32) * C + c);
      s2 += __ldg(m + (r + 64) * C + c);
      s3 += __ldg(m + (r + 96) * C + c);
    }
    for (; r < R; r += 32) s0 += __ldg(m + r * C + c);
  }
  t[threadIdx.y][threadIdx.x] = (s0 + s1) + (s2 + s3);
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return;
  float sum = 0;
  for (int y = 0; y < 32; ++y) sum += t[y][threadIdx.x];
  out[blockIdx.y * C + c] = sum;
}

int sum_rows(const float* x, long long R, long long C, int matrices, float* out, cudaStream_t s) {
  sum_rows_kernel<<<dim3(unsigned((C + 31) / 32), unsigned(matrices)), dim3(32, 32), 0, s>>>(x, R, C, out);
  return int(cudaGetLastError());
}

}  // namespace

#define RETREEVER_DISPATCH_V(D, KERNEL, ...)            \
  switch ((D) / 32) {                                   \
    case 1: KERNEL<1><<<__VA_ARGS__>>>(a); break;       \
    case 2: KERNEL<2><<<__VA_ARGS__>>>(a); break;       \
    case 4: KERNEL<4><<<__VA_ARGS__>>>(a); break;       \
    case 8: KERNEL<8><<<__VA_ARGS__>>>(a); break;       \
    case 16: KERNEL<16><<<__VA_ARGS__>>>(a); break;     \
    case 32: KERNEL<32><<<__VA_ARGS__>>>(a); break;     \
    default: return int(cudaErrorInvalidValue);         \
  }

int layer_norm_forward(const LayerNormArgs& a, void* stream) {
  if (a.R == 0) return 0;
  if (!layer_norm_width_supported(a.D)) return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  RETREEVER_DISPATCH_V(a.D, layer_norm_forward_kernel, blocks_for(a.R * 32, 256), 256, 0, s)
  return int(cudaGetLastError());
}

std::int64_t layer_norm_parts(std::int64_t R) { return R < 2048 ? (R > 0 ? R : 1) : 2048; }

int layer_norm_backward(const LayerNormGradArgs& a, void* stream) {
  if (!layer_norm_width_supported(a.f.D)) return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  RETREEVER_DISPATCH_V(a.f.D, layer_norm_backward_kernel, blocks_for(a.parts * 32, 256), 256, 0, s)
  if (const int e = int(cudaGetLastError())) return e;
  return sum_rows(a.part, a.parts, a.f.D, 2, a.sums, s);
}

int softmax_backward(const SoftmaxGradArgs& a, void* stream) {
  if (a.R == 0) return 0;
  if (!softmax_width_supported(a.D)) return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  // V = the power of two of lanes' elements that covers D.
  int v = 1;
  while (32 * v < a.D) v *= 2;
  RETREEVER_DISPATCH_V(32 * v, softmax_backward_kernel, blocks_for(a.R * 32, 256), 256, 0, s)
  return int(cudaGetLastError());
}

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// Phi(x), the standard normal's distribution function: gelu(x) = x Phi(x).
__device__ __forceinline__ float normal_cdf(float x) { return 0.5f * (1.f + erff(x * kInvSqrt2)); }

// Four floats a thread where every pointer is 16-byte aligned and n a multiple of 4 (Vec4), one otherwise.
template <bool Vec4>
__global__ void geglu_forward_kernel(const GegluArgs a) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (Vec4) {
    if (4 * i >= a.n) return;
    const float4 v = __ldg(reinterpret_cast<const float4*>(a.value) + i), g = __ldg(reinterpret_cast<const float4*>(a.gate) + i);
    reinterpret_cast<float4*>(a.out)[i] = make_float4(v.x * g.x * normal_cdf(g.x), v.y * g.y * normal_cdf(g.y),
                                                      v.z * g.z * normal_cdf(g.z), v.w * g.w * normal_cdf(g.w));
  } else if (i < a.n) {
    const float g = __ldg(a.gate + i);
    a.out[i] = __ldg(a.value + i) * g * normal_cdf(g);
  }
}

// (d_value, d_gate) of one element.
__device__ __forceinline__ float2 geglu_grad(float dout, float value, float gate) {
  const float cdf = normal_cdf(gate), pdf = kInvSqrt2Pi * expf(-0.5f * gate * gate);
  return make_float2(dout * gate * cdf, dout * value * (cdf + gate * pdf));
}

template <bool Vec4>
__global__ void geglu_backward_kernel(const GegluGradArgs a) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (Vec4) {
    if (4 * i >= a.f.n) return;
    const float4 d = __ldg(reinterpret_cast<const float4*>(a.dout) + i);
    const float4 v = __ldg(reinterpret_cast<const float4*>(a.f.value) + i);
    const float4 g = __ldg(reinterpret_cast<const float4*>(a.f.gate) + i);
    const float2 x = geglu_grad(d.x, v.x, g.x), y = geglu_grad(d.y, v.y, g.y), z = geglu_grad(d.z, v.z, g.z),
                 w = geglu_grad(d.w, v.w, g.w);
    reinterpret_cast<float4*>(a.d_value)[i] = make_float4(x.x, y.x, z.x, w.x);
    reinterpret_cast<float4*>(a.d_gate)[i] = make_float4(x.y, y.y, z.y, w.y);
  } else if (i < a.f.n) {
    const float2 x = geglu_grad(__ldg(a.dout + i), __ldg(a.f.value + i), __ldg(a.f.gate + i));
    a.d_value[i] = x.x;
    a.d_gate[i] = x.y;
  }
}

}  // namespace

int geglu_forward(const GegluArgs& a, void* stream) {
  if (a.n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (a.n % 4 == 0 && aligned_to(a.value, 16) && aligned_to(a.gate, 16) && aligned_to(a.out, 16))
    geglu_forward_kernel<true><<<blocks_for(a.n / 4, 256), 256, 0, s>>>(a);
  else
    geglu_forward_kernel<false><<<blocks_for(a.n, 256), 256, 0, s>>>(a);
  return int(cudaGetLastError());
}

int geglu_backward(const GegluGradArgs& a, void* stream) {
  if (a.f.n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (a.f.n % 4 == 0 && aligned_to(a.f.value, 16) && aligned_to(a.f.gate, 16) && aligned_to(a.dout, 16) &&
      aligned_to(a.d_value, 16) && aligned_to(a.d_gate, 16))
    geglu_backward_kernel<true><<<blocks_for(a.f.n / 4, 256), 256, 0, s>>>(a);
  else
    geglu_backward_kernel<false><<<blocks_for(a.f.n, 256), 256, 0, s>>>(a);
  return int(cudaGetLastError());
}

std::int64_t column_sum_parts(std::int64_t R) { return R < 1024 ? (R > 0 ? R : 1) : 1024; }

int column_sum(const ColumnSumArgs& a, void* stream) {
  if (a.C == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = a.C >= 256 ? 256 : int((a.C + 31) / 32 * 32);
  column_sum_kernel<<<unsigned(a.parts), threads, 0, s>>>(a);
  if (const int e = int(cudaGetLastError())) return e;
  return sum_rows(a.part, a.parts, a.C, 1, a.out, s);
}

namespace {

// Each thread of weight_grad sums an 8 x 8 block of out, 64 threads a 64 x 64 tile: a third fewer
// shared-memory reads for each multiply-add than 4 x 4 with 256 threads, which was 0.14 ms a step
// slower at N = 1024 (H100, docs/cuda.md, the thirty-sixth session).
constexpr int kWgPerThread = 8;
// Rows a part's chunks stage at a time (the tensor-core kernel's; the float32 kernel's 16 divide it):
// the parts' rows are a multiple of it, so that only the last part has a short chunk.
constexpr int kWgRows = 32;

// The 64 x 64 tile of out (rows o0.., columns i0..) and the rows [r_begin, r_end) of the part that
// block (blockIdx.x, blockIdx.y) of either weight_grad kernel sums.
struct WgBlock {
  long long o0, i0, r_begin, r_end;
};
__device__ __forceinline__ WgBlock wg_block(const WeightGradArgs& a) {
  const long long T = kWeightGradTile, tiles_i = a.I / T, r_begin = blockIdx.y * a.rows_per_part;
  return {(blockIdx.x / tiles_i) * T, (blockIdx.x % tiles_i) * T, r_begin,
          r_begin + a.rows_per_part < a.R ? r_begin + a.rows_per_part : a.R};
}

// weight_grad's first pass, TM x TM of out per thread: (64 / TM)^2 threads take a 64 x 64 tile of out
// over the rows of one part, staged RC at a time in shared memory with 16-byte loads, two buffers: a
// thread fetches the next rows into registers while it multiplies the staged ones. A thread's rows
// and columns are groups of 4, CW apart, so that a quarter warp's 16-byte reads of a staged row are
// consecutive (no bank conflicts). Blocks of the first column tile also sum g's columns (the bias).
template <int TM>
__global__ void __launch_bounds__((64 / TM) * (64 / TM)) weight_grad_kernel(const WeightGradArgs a) {
  constexpr int T = int(kWeightGradTile), NT = (T / TM) * (T / TM), RC = TM == 4 ? 32 : 16;
  constexpr int LOADS = RC * T / 4 / NT, CW = T / (TM / 4);
  __shared__ __align__(16) float gs[2][RC][T];
  __shared__ __align__(16) float xs[2][RC][T];
  const WgBlock blk = wg_block(a);
  const long long o0 = blk.o0, i0 = blk.i0, r_begin = blk.r_begin, r_end = blk.r_end;
  const int tid = threadIdx.x, ty = tid / (T / TM), tx = tid % (T / TM);
  const bool bias = a.bias_part != nullptr && i0 == 0 && tid < T;
  float acc[TM][TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) acc[i][j] = 0.f;
  float bsum = 0.f;
  float4 pg[LOADS], px[LOADS];
  const auto fetch = [&](long long r0) {
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
      const int k = tid + l * NT, row = k / (T / 4), c = (k % (T / 4)) * 4;
      const long long r = r0 + row;
      pg[l] = make_float4(0.f, 0.f, 0.f, 0.f);
      px[l] = pg[l];
      if (r < r_end) {
        pg[l] = __ldg(reinterpret_cast<const float4*>(a.g + r * a.O + o0 + c));
        px[l] = __ldg(reinterpret_cast<const float4*>(a.x + r * a.I + i0 + c));
      }
    }
  };
  fetch(r_begin);
  int buf = 0;
  for (long long r0 = r_begin; r0 < r_end; r0 += RC, buf ^= 1) {
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
      const int k = tid + l * NT, row = k / (T / 4), c = (k % (T / 4)) * 4;
      *reinterpret_cast<float4*>(&gs[buf][row][c]) = pg[l];
      *reinterpret_cast<float4*>(&xs[buf][row][c]) = px[l];
    }
    // One barrier a chunk: a thread storing into a buffer has passed the barrier that every thread
    // reached after multiplying that buffer's previous rows.
    __syncthreads();
    if (r0 + RC < r_end) fetch(r0 + RC);
    if (bias)
#pragma unroll
      for (int row = 0; row < RC; ++row) bsum += gs[buf][row][tid];
#pragma unroll 8
    for (int row = 0; row < RC; ++row) {
      float gr[TM], xr[TM];
#pragma unroll
      for (int q = 0; q < TM / 4; ++q) {
        const float4 gv = *reinterpret_cast<const float4*>(&gs[buf][row][q * CW + ty * 4]);
        const float4 xv = *reinterpret_cast<const float4*>(&xs[buf][row][q * CW + tx * 4]);
        gr[q * 4] = gv.x, gr[q * 4 + 1] = gv.y, gr[q * 4 + 2] = gv.z, gr[q * 4 + 3] = gv.w;
        xr[q * 4] = xv.x, xr[q * 4 + 1] = xv.y, xr[q * 4 + 2] = xv.z, xr[q * 4 + 3] = xv.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) acc[i][j] += gr[i] * xr[j];  // one FMA (nvcc contracts)
    }
  }
  float* part = a.part + blockIdx.y * a.O * a.I;
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int q = 0; q < TM / 4; ++q)
      *reinterpret_cast<float4*>(part + (o0 + (i / 4) * CW + ty * 4 + i % 4) * a.I + i0 + q * CW + tx * 4) =
          make_float4(acc[i][q * 4], acc[i][q * 4 + 1], acc[i][q * 4 + 2], acc[i][q * 4 + 3]);
  if (bias) a.bias_part[blockIdx.y * a.O + o0 + tid] = bsum;
}

}  // namespace

bool weight_grad_supported(const float* g, const float* x, std::int64_t O, std::int64_t I) {
  return O % kWeightGradTile == 0 && I % kWeightGradTile == 0 && aligned_to(g, 16) && aligned_to(x, 16);
}

void weight_grad_split(WeightGradArgs& a) {
  // About four blocks (tiles times parts) for each of an H100's 132 SMs, each at least 256 rows (the
  // parts' sums are written and read again: at 256 rows an eighth of what the rows themselves take).
  const std::int64_t tiles = (a.O / kWeightGradTile) * (a.I / kWeightGradTile);
  const std::int64_t want = std::max<std::int64_t>(1, 528 / std::max<std::int64_t>(1, tiles));
  std::int64_t rows = std::max<std::int64_t>(256, (a.R + want - 1) / want);
  rows = std::max<std::int64_t>(rows, (a.R + 65534) / 65535);  // the parts are the grid's y: at most 65535
  rows = (rows + kWgRows - 1) / kWgRows * kWgRows;
  a.rows_per_part = rows;
  a.parts = std::max<std::int64_t>(1, (a.R + rows - 1) / rows);
}

namespace {

// Dense attention of every query over every key of its batch row (dense_attention_forward in
// kernels.h). A block takes R * kDenseThreads queries of one (batch row, head); each thread keeps R
// queries, their outputs and their running maxima and sums in registers, and the block walks the
// keys in tiles held in shared memory (every thread reads the same key: a broadcast).
constexpr int kDenseThreads = 128, kDenseTile = 64, kDenseChunk = 16;

// Stages rows [n0, n0 + kDenseTile) of x (row stride sn) into t, zeros past the last row.
template <int D>
__device__ __forceinline__ void stage_rows(float (*t)[D], const float* x, long long sn, long long n0, long long N) {
  for (int i = threadIdx.x; i < kDenseTile * D; i += blockDim.x) {
    const int j = i / D, e = i % D;
    const long long n = n0 + j;
    t[j][e] = n < N ? __ldg(x + n * sn + e) : 0.f;
  }
}

// A row of shared memory into registers (16-byte loads; every thread of the block reads the same
// row: a broadcast).
template <int D>
__device__ __forceinline__ void smem_row(float (&r)[D], const float* p) {
#pragma unroll
  for (int e = 0; e < D; e += 4) {
    const float4 x = *reinterpret_cast<const float4*>(p + e);
    r[e] = x.x;
    r[e + 1] = x.y;
    r[e + 2] = x.z;
    r[e + 3] = x.w;
  }
}

template <int D>
__device__ __forceinline__ float dot(const float (&a)[D], const float (&b)[D]) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma unroll
  for (int e = 0; e < D; e += 4) {
    s0 += a[e] * b[e];
    s1 += a[e + 1] * b[e + 1];
    s2 += a[e + 2] * b[e + 2];
    s3 += a[e + 3] * b[e + 3];
  }
  return (s0 + s1) + (s2 + s3);
}

template <int D>
__device__ __forceinline__ void axpy(float (&acc)[D], float p, const float (&x)[D]) {
#pragma unroll
  for (int e = 0; e < D; ++e) acc[e] += p * x[e];
}

// The keys and values of one (batch row, head), kDenseTile at a time in shared memory, and which
// of them are read (real and unmasked). Every thread of the block calls stage().
template <int D>
struct KeyTile {
  float k[kDenseTile][D], v[kDenseTile][D];
  bool keep[kDenseTile];

  // Rows [n0, n0 + kDenseTile) of this block's (batch row, head); returns how many are real.
  __device__ int stage(const DenseArgs& a, long long n0) {
    const long long b = blockIdx.y / a.H, h = blockIdx.y % a.H;
    __syncthreads();  // every thread is done with the last tile
    stage_rows<D>(k, a.k + b * a.ksb + h * a.ksh, a.ksn, n0, a.N);
    stage_rows<D>(v, a.v + b * a.vsb + h * a.vsh, a.vsn, n0, a.N);
    for (int j = threadIdx.x; j < kDenseTile; j += blockDim.x) {
      const long long n = n0 + j;
      keep[j] = n < a.N && (a.mask == nullptr || a.mask[b * a.N + n]);
    }
    __syncthreads();
    return int(a.N - n0 < kDenseTile ? a.N - n0 : kDenseTile);
  }
};

template <int D, int R, int MB = 1>
__global__ void __launch_bounds__(kDenseThreads, MB) dense_forward_kernel(const DenseArgs a) {
  __shared__ __align__(16) KeyTile<D> t;
  const long long b = blockIdx.y / a.H, h = blockIdx.y % a.H;
  const Dropper drop(a.drop);
  float q[R][D], acc[R][D], mx[R], l[R];
  long long m[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = ((long long)blockIdx.x * R + r) * kDenseThreads + threadIdx.x;
    const float* qr = a.q + b * a.qsb + m[r] * a.qsm + h * a.qsh;
#pragma unroll
    for (int e = 0; e < D; ++e) {
      q[r][e] = m[r] < a.M ? __ldg(qr + e) : 0.f;
      acc[r][e] = 0;
    }
    mx[r] = -INFINITY;
    l[r] = 0;
  }
  for (long long n0 = 0; n0 < a.N; n0 += kDenseTile) {
    const int tile = t.stage(a, n0);
    for (int c0 = 0; c0 < tile; c0 += kDenseChunk) {
      float s[R][kDenseChunk], row[D];
#pragma unroll
      for (int jj = 0; jj < kDenseChunk; ++jj) {
        const int j = c0 + jj;
        smem_row<D>(row, t.k[j]);
#pragma unroll
        for (int r = 0; r < R; ++r) s[r][jj] = j < tile ? (t.keep[j] ? dot<D>(q[r], row) : kLowest) : -INFINITY;
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float cm = s[r][0];
#pragma unroll
        for (int jj = 1; jj < kDenseChunk; ++jj) cm = fmaxf(cm, s[r][jj]);
        const float nm = fmaxf(mx[r], cm), corr = __expf(mx[r] - nm);
        mx[r] = nm;
        l[r] *= corr;
#pragma unroll
        for (int e = 0; e < D; ++e) acc[r][e] *= corr;
#pragma unroll
        for (int jj = 0; jj < kDenseChunk; ++jj) {
          s[r][jj] = __expf(s[r][jj] - nm);  // the weight, before the division by the sum
          l[r] += s[r][jj];
        }
        if (drop.on) {
          const long long i0 = ((b * a.H + h) * a.M + m[r]) * a.N + n0 + c0;  // weight (b, h, m, n) in [B,H,M,N]
#pragma unroll
          for (int jj = 0; jj < kDenseChunk; ++jj) s[r][jj] *= drop(i0 + jj);
        }
      }
#pragma unroll
      for (int jj = 0; jj < kDenseChunk; ++jj) {
        smem_row<D>(row, t.v[c0 + jj]);
#pragma unroll
        for (int r = 0; r < R; ++r) axpy<D>(acc[r], s[r][jj], row);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (m[r] >= a.M) continue;
    const float il = 1.f / l[r];
    float* o = a.out + ((b * a.M + m[r]) * a.H + h) * D;
#pragma unroll
    for (int e = 0; e < D; ++e) o[e] = acc[r][e] * il;
    float* st = a.stats + ((b * a.H + h) * a.M + m[r]) * 2;
    st[0] = mx[r];
    st[1] = il;
  }
}

// dq of R queries per thread, over every key: p = exp(s - max) / sum as the forward had them,
// dp = dout . v (times the keep factor under dropout), ds = p (dp - delta), dq += ds k. Writes
// delta = dout . out for the keys' kernel.
template <int D, int R, int U = 1>
__global__ void __launch_bounds__(kDenseThreads) dense_backward_query_kernel(const DenseGradArgs g) {
  const DenseArgs& a = g.f;
  __shared__ __align__(16) KeyTile<D> t;
  const long long b = blockIdx.y / a.H, h = blockIdx.y % a.H;
  const Dropper drop(a.drop);
  float q[R][D], go[R][D], dq[R][D], mx[R], il[R], delta[R];
  long long m[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = ((long long)blockIdx.x * R + r) * kDenseThreads + threadIdx.x;
    const bool live = m[r] < a.M;
    const float* qr = a.q + b * a.qsb + m[r] * a.qsm + h * a.qsh;
    const long long row = ((b * a.M + m[r]) * a.H + h) * D;
    float d = 0;
#pragma unroll
    for (int e = 0; e < D; ++e) {
      q[r][e] = live ? __ldg(qr + e) : 0.f;
      go[r][e] = live ? __ldg(g.dout + row + e) : 0.f;
      d += live ? go[r][e] * __ldg(a.out + row + e) : 0.f;
      dq[r][e] = 0;
    }
    delta[r] = d;
    const long long st = ((b * a.H + h) * a.M + m[r]) * 2;
    mx[r] = live ? __ldg(a.stats + st) : 0.f;
    il[r] = live ? __ldg(a.stats + st + 1) : 0.f;
    if (live) g.delta[(b * a.H + h) * a.M + m[r]] = d;
  }
  for (long long n0 = 0; n0 < a.N; n0 += kDenseTile) {
    const int tile = t.stage(a, n0);
#pragma unroll U
    for (int j = 0; j < tile; ++j) {
      if (!t.keep[j]) continue;  // block-uniform; a masked key's score takes no gradient
      float kr[D], vr[D];
      smem_row<D>(kr, t.k[j]);
      smem_row<D>(vr, t.v[j]);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float p = __expf(dot<D>(q[r], kr) - mx[r]) * il[r];
        const float kept = drop.on ? drop(((b * a.H + h) * a.M + m[r]) * a.N + n0 + j) : 1.f;
        axpy<D>(dq[r], p * (kept * dot<D>(go[r], vr) - delta[r]), kr);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (m[r] >= a.M) continue;
    float* o = g.dq + ((b * a.M + m[r]) * a.H + h) * D;
#pragma unroll
    for (int e = 0; e < D; ++e) o[e] = dq[r][e];
  }
}

// dk and dv of R keys per thread, over every query: dv += p dout, dk += ds q (p times the keep
// factor in dv and dp under dropout).
template <int D, int R>
__global__ void __launch_bounds__(kDenseThreads) dense_backward_key_kernel(const DenseGradArgs g) {
  const DenseArgs& a = g.f;
  __shared__ __align__(16) float qs[kDenseTile][D];
  __shared__ __align__(16) float gs[kDenseTile][D];
  __shared__ float2 st[kDenseTile];  // (max, 1 / sum)
  __shared__ float dl[kDenseTile];
  const long long b = blockIdx.y / a.H, h = blockIdx.y % a.H;
  const Dropper drop(a.drop);
  float k[R][D], v[R][D], dk[R][D], dv[R][D];
  long long n[R];
  bool keep[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    n[r] = ((long long)blockIdx.x * R + r) * kDenseThreads + threadIdx.x;
    const bool live = n[r] < a.N;
    keep[r] = live && (a.mask == nullptr || a.mask[b * a.N + n[r]]);
    const float* kr = a.k + b * a.ksb + n[r] * a.ksn + h * a.ksh;
    const float* vr = a.v + b * a.vsb + n[r] * a.vsn + h * a.vsh;
#pragma unroll
    for (int e = 0; e < D; ++e) {
      k[r][e] = live ? __ldg(kr + e) : 0.f;
      v[r][e] = live ? __ldg(vr + e) : 0.f;
      dk[r][e] = dv[r][e] = 0;
    }
  }
  const float* q = a.q + b * a.qsb + h * a.qsh;
  const float* go = g.dout + b * a.M * a.H * D + h * D;
  const long long bh = (b * a.H + h) * a.M;
  for (long long m0 = 0; m0 < a.M; m0 += kDenseTile) {
    __syncthreads();
    stage_rows<D>(qs, q, a.qsm, m0, a.M);
    stage_rows<D>(gs, go, a.H * D, m0, a.M);
    for (int i = threadIdx.x; i < kDenseTile; i += blockDim.x) {
      const long long m = m0 + i;
      st[i] = m < a.M ? make_float2(__ldg(a.stats + (bh + m) * 2), __ldg(a.stats + (bh + m) * 2 + 1))
                      : make_float2(0.f, 0.f);
      dl[i] = m < a.M ? g.delta[bh + m] : 0.f;
    }
    __syncthreads();
    const int tile = int(a.M - m0 < kDenseTile ? a.M - m0 : kDenseTile);
#pragma unroll 1  // unrolled, it ran slower (H200)
    for (int i = 0; i < tile; ++i) {
      const float2 s = st[i];
      float qr[D], gr[D];
      smem_row<D>(qr, qs[i]);
      smem_row<D>(gr, gs[i]);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float p = __expf((keep[r] ? dot<D>(k[r], qr) : kLowest) - s.x) * s.y;
        const float kept = drop.on ? drop((bh + m0 + i) * a.N + n[r]) : 1.f;
        axpy<D>(dv[r], p * kept, gr);
        axpy<D>(dk[r], keep[r] ? p * (kept * dot<D>(v[r], gr) - dl[i]) : 0.f, qr);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (n[r] >= a.N) continue;
    const long long row = ((b * a.N + n[r]) * a.H + h) * D;
#pragma unroll
    for (int e = 0; e < D; ++e) {
      g.dk[row + e] = dk[r][e];
      g.dv[row + e] = dv[r][e];
    }
  }
}

// The same three kernels on the tensor cores (mma.sync m16n8k8, TensorFloat-32 operands, float32
// accumulators; FlashAttention 2's scheme). A warp takes 16 rows (queries, or keys in the keys'
// kernel), a block 4 warps; the other side is staged kDenseTile rows at a time in shared memory
// (rows padded to D + 4 floats: the fragments' loads then hit 32 different banks). Fragment layout
// (PTX ISA, m16n8k8 .tf32), lane = 4 g + t: A (16 x 8) a0 (g, t), a1 (g + 8, t), a2 (g, t + 4),
// a3 (g + 8, t + 4); B (8 x 8) b0 (t, g), b1 (t + 4, g); C (16 x 8) c0 (g, 2t), c1 (g, 2t + 1),
// c2 (g + 8, 2t), c3 (g + 8, 2t + 1). The weights of a score tile feed the next product as its A
// operand without shuffles: the product's k index t stands for the tile's column 2t and t + 4 for
// 2t + 1 (a sum over keys does not care about their order), so a = (c0, c2, c1, c3) and the B
// operand reads the rows 2t and 2t + 1.
constexpr int kMmaWarps = 4, kMmaRows = 16 * kMmaWarps;

// The tensor cores read a float32 register as TensorFloat-32 by its upper 19 bits (rounding toward
// zero). The big part of a split is x rounded to the nearest TensorFloat-32, the small part the rest
// rounded the same way: both roundings are unbiased, where truncating biases every term one way. Against
// cuBLAS float32 at K = 256 the split differed by 2.3e-5 truncated and 1.9e-5 rounded (much of that is
// float32's own error over such sums); against exact sums the rounded split errs by at most 1.0e-6 of
// the terms' magnitudes (H100, scripts/kernel_check, docs/cuda.md's thirty-eighth session).
__device__ __forceinline__ unsigned tf32_round(float x) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  return __float_as_uint(x);
#endif
}
__device__ __forceinline__ unsigned tf32_big(float x) { return tf32_round(x); }
__device__ __forceinline__ unsigned tf32_small(float x, unsigned big) { return tf32_round(x - __uint_as_float(big)); }

__device__ __forceinline__ void mma_tf32(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();  // dense_tensor_cores_available() keeps these kernels off older devices
#endif
}

// An A operand: with P = 1 the float32 bits as they are, with P = 3 the big and the small parts.
template <int P>
struct TfA {
  unsigned hi[4], lo[P == 3 ? 4 : 1];
  __device__ __forceinline__ void set(float x0, float x1, float x2, float x3) {
    const float x[4] = {x0, x1, x2, x3};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      hi[i] = P == 3 ? tf32_big(x[i]) : __float_as_uint(x[i]);
      if (P == 3) lo[P == 3 ? i : 0] = tf32_small(x[i], hi[i]);
    }
  }
};

// c += a b for b already split: big parts (h0, h1), small parts (l0, l1); the small terms first.
__device__ __forceinline__ void mma_split(float (&c)[4], const TfA<3>& a, unsigned h0, unsigned h1, unsigned l0,
                                          unsigned l1) {
  mma_tf32(c, reinterpret_cast<const unsigned(&)[4]>(a.lo), h0, h1);
  mma_tf32(c, a.hi, l0, l1);
  mma_tf32(c, a.hi, h0, h1);
}

// c += a b, b = (b0, b1) in float32: one product, or three: small a times big b, big a times small b,
// then big a times big b (the small terms first; small times small is left out, 2^-20 of a b).
template <int P>
__device__ __forceinline__ void mma(float (&c)[4], const TfA<P>& a, float b0, float b1) {
  if constexpr (P == 1) {
    mma_tf32(c, a.hi, __float_as_uint(b0), __float_as_uint(b1));
  } else {
    const unsigned h0 = tf32_big(b0), h1 = tf32_big(b1);
    mma_split(c, a, h0, h1, tf32_small(b0, h0), tf32_small(b1, h1));
  }
}

// The A operands of 16 rows of x (row stride sx) from global memory: rows r0 + g and r0 + g + 8,
// D / 8 chunks of 8 columns; rows past `rows` read zeros.
template <int D, int P>
__device__ __forceinline__ void load_a(TfA<P> (&f)[D / 8], const float* x, long long sx, long long r0, long long rows) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const long long ra = r0 + g, rb = r0 + g + 8;
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    auto at = [&](long long r, int e) { return r < rows ? __ldg(x + r * sx + 8 * c + e) : 0.f; };
    f[c].set(at(ra, t), at(rb, t), at(ra, t + 4), at(rb, t + 4));
  }
}

// s[j] (16 x 8, rows of the warp, columns 8j .. 8j + 7 of the tile) = a . rows of y (a tile in shared
// memory) for the tile's 64 rows.
template <int D, int P>
__device__ __forceinline__ void scores(float (&s)[kDenseTile / 8][4], const TfA<P> (&a)[D / 8], const float (*y)[D + 4]) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < kDenseTile / 8; ++j) {
    s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) mma<P>(s[j], a[c], y[8 * j + g][8 * c + t], y[8 * j + g][8 * c + t + 4]);
  }
}

// acc (16 x D) += w (16 x 64, the layout of scores()) . y (a 64 x D tile in shared memory).
template <int D, int P>
__device__ __forceinline__ void accumulate(float (&acc)[D / 8][4], const float (&w)[kDenseTile / 8][4],
                                           const float (*y)[D + 4]) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < kDenseTile / 8; ++j) {
    TfA<P> a;
    a.set(w[j][0], w[j][2], w[j][1], w[j][3]);
#pragma unroll
    for (int c = 0; c < D / 8; ++c) mma<P>(acc[c], a, y[8 * j + 2 * t][8 * c + g], y[8 * j + 2 * t + 1][8 * c + g]);
  }
}

// A 16 x D accumulator of the warp into rows r0 .. r0 + 15 of out (contiguous rows of D at stride so).
template <int D>
__device__ __forceinline__ void store_rows(float* out, long long so, const float (&acc)[D / 8][4], long long r0,
                                           long long rows) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int c = 0; c < D / 8; ++c) {
    if (r0 + g < rows) *reinterpret_cast<float2*>(out + (r0 + g) * so + 8 * c + 2 * t) = make_float2(acc[c][0], acc[c][1]);
    if (r0 + g + 8 < rows)
      *reinterpret_cast<float2*>(out + (r0 + g + 8) * so + 8 * c + 2 * t) = make_float2(acc[c][2], acc[c][3]);
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Asynchronous copies into shared memory (cp.async, sm_80 and later): 16 bytes, or 4 where rows are
// not 16-byte aligned; a source size of 0 writes zeros.
template <int bytes>
__device__ __forceinline__ void copy_async(void* dst, const float* src, bool real) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  const unsigned d = unsigned(__cvta_generic_to_shared(dst));
  if (bytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(real ? 16 : 0));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(d), "l"(src), "n"(bytes), "r"(real ? bytes : 0));
#else
  __trap();
#endif
}
__device__ __forceinline__ void copy_async_commit() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending>
__device__ __forceinline__ void copy_async_wait() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(pending));
#endif
}

// Rows [n0, n0 + kDenseTile) of x (row stride sx, D floats; zeros past row N) into t, asynchronously.
template <int D, int W>
__device__ __forceinline__ void copy_rows_async(float (*t)[W], const float* x, long long sx, long long n0, long long N,
                                                bool rows16) {
  if (rows16) {
    for (int i = threadIdx.x; i < kDenseTile * D / 4; i += blockDim.x) {
      const int j = i / (D / 4), e = 4 * (i % (D / 4));
      const bool real = n0 + j < N;
      copy_async<16>(&t[j][e], x + (real ? n0 + j : 0) * sx + e, real);
    }
  } else {
    for (int i = threadIdx.x; i < kDenseTile * D; i += blockDim.x) {
      const int j = i / D, e = i % D;
      const bool real = n0 + j < N;
      copy_async<4>(&t[j][e], x + (real ? n0 + j : 0) * sx + e, real);
    }
  }
}

// Two buffers in shared memory, filled by cp.async: the next chunk's copies run while the warps work
// on this one. Before this chunk is read: where there is a next one (`more`), stage_next() issues and
// commits its copies into the other buffer (last read before the barrier that ended the previous
// chunk); then waits for this chunk's copies and syncs the block. Every thread calls it.
template <class StageNext>
__device__ __forceinline__ void await_chunk(bool more, const StageNext& stage_next) {
  if (more) {
    stage_next();
    copy_async_wait<1>();
  } else {
    copy_async_wait<0>();
  }
  __syncthreads();
}
// The dense kernels' form: the tile at n0 (of `rows`) in buffer buf; stage(n0, buf) stages a tile.
template <class Stage>
__device__ __forceinline__ void next_tile(const Stage& stage, long long n0, long long rows, int buf) {
  await_chunk(n0 + kDenseTile < rows, [&] { stage(n0 + kDenseTile, buf ^ 1); });
}

// Where a warp of these kernels works: its block's batch row b and head h, its lane's fragment
// coordinates (g, tq), and its first row r0.
struct MmaWarp {
  long long b, h, r0;
  int g, tq;
  __device__ explicit MmaWarp(long long H)
      : b(blockIdx.y / H),
        h(blockIdx.y % H),
        r0((long long)blockIdx.x * kMmaRows + (threadIdx.x >> 5) * 16),
        g((threadIdx.x & 31) >> 2),
        tq(threadIdx.x & 3) {}
};

// The keys and values of a block's (batch row, head) in two buffers, rows padded to D + 4 floats,
// and with a mask which of them are read.
template <int D>
struct KeyValueRing {
  float x[2][2][kDenseTile][D + 4];  // [buffer][keys, values]
  bool keep[2][kDenseTile];
  // Rows [n0, n0 + kDenseTile) of the warp's (batch row, head) into buffer buf.
  __device__ __forceinline__ void stage(const DenseArgs& a, const MmaWarp& w, long long n0, int buf) {
    copy_rows_async<D, D + 4>(x[buf][0], a.k + w.b * a.ksb + w.h * a.ksh, a.ksn, n0, a.N, a.rows16);
    copy_rows_async<D, D + 4>(x[buf][1], a.v + w.b * a.vsb + w.h * a.vsh, a.vsn, n0, a.N, a.rows16);
    if (a.mask != nullptr)
      for (int j = threadIdx.x; j < kDenseTile; j += blockDim.x) keep[buf][j] = n0 + j < a.N && a.mask[w.b * a.N + n0 + j];
    copy_async_commit();
  }
};

// Marks the scores of columns past the tile (-inf) and of masked keys (kLowest), as the FMA kernels.
__device__ __forceinline__ void mask_scores(float (&s)[kDenseTile / 8][4], const bool* keep, int tile) {
  const int t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = 8 * j + 2 * t + (i & 1);
      s[j][i] = col < tile ? (keep == nullptr || keep[col] ? s[j][i] : kLowest) : -INFINITY;
    }
}

template <int D, int P>
__global__ void __launch_bounds__(32 * kMmaWarps) dense_forward_mma_kernel(const DenseArgs a) {
  __shared__ __align__(16) KeyValueRing<D> r;
  const MmaWarp w(a.H);
  const Dropper drop(a.drop);
  const auto stage = [&](long long n0, int buf) { r.stage(a, w, n0, buf); };
  stage(0, 0);
  TfA<P> q[D / 8];
  load_a<D, P>(q, a.q + w.b * a.qsb + w.h * a.qsh, a.qsm, w.r0, a.M);
  float acc[D / 8][4] = {}, mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (long long n0 = 0, it = 0; n0 < a.N; n0 += kDenseTile, ++it) {
    const int buf = int(it & 1);
    next_tile(stage, n0, a.N, buf);
    const int tile = int(a.N - n0 < kDenseTile ? a.N - n0 : kDenseTile);
    float s[kDenseTile / 8][4];
    scores<D, P>(s, q, r.x[buf][0]);
    if (a.mask != nullptr || tile < kDenseTile) mask_scores(s, a.mask != nullptr ? r.keep[buf] : nullptr, tile);
    float cm[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) cm[i >> 1] = fmaxf(cm[i >> 1], s[j][i]);
    float corr[2];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const float nm = fmaxf(mx[k], quad_max(cm[k]));  // finite: the tile has a real key
      corr[k] = __expf(mx[k] - nm);
      mx[k] = nm;
      l[k] *= corr[k];
    }
#pragma unroll
    for (int c = 0; c < D / 8; ++c)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[c][i] *= corr[i >> 1];
#pragma unroll
    for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[j][i] = __expf(s[j][i] - mx[i >> 1]);
        l[i >> 1] += s[j][i];
      }
    if (drop.on) {
      const long long i0 = ((w.b * a.H + w.h) * a.M + w.r0 + w.g) * a.N + n0 + 2 * w.tq;  // weight (row g, column 2 tq)
#pragma unroll
      for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[j][i] *= drop(i0 + 8 * (i >> 1) * a.N + 8 * j + (i & 1));
    }
    accumulate<D, P>(acc, s, r.x[buf][1]);
    __syncthreads();  // every warp is done with buf before it is staged again
  }
  const float il[2] = {1.f / quad_sum(l[0]), 1.f / quad_sum(l[1])};
#pragma unroll
  for (int c = 0; c < D / 8; ++c)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[c][i] *= il[i >> 1];
  store_rows<D>(a.out + (w.b * a.M * a.H + w.h) * D, a.H * D, acc, w.r0, a.M);
  if (w.tq == 0) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const long long m = w.r0 + w.g + 8 * k;
      if (m < a.M) *reinterpret_cast<float2*>(a.stats + ((w.b * a.H + w.h) * a.M + m) * 2) = make_float2(mx[k], il[k]);
    }
  }
}

// dq of the warp's 16 queries (and delta = dout . out for the keys' kernel).
template <int D, int P>
__global__ void __launch_bounds__(32 * kMmaWarps) dense_backward_query_mma_kernel(const DenseGradArgs gr) {
  const DenseArgs& a = gr.f;
  __shared__ __align__(16) KeyValueRing<D> r;
  const MmaWarp w(a.H);
  const Dropper drop(a.drop);
  const auto stage = [&](long long n0, int buf) { r.stage(a, w, n0, buf); };
  stage(0, 0);
  const long long orow = w.b * a.M * a.H * D + w.h * D, ostride = a.H * D;  // out, dout, dq: [B,M,H,D]
  TfA<P> q[D / 8], go[D / 8];
  load_a<D, P>(q, a.q + w.b * a.qsb + w.h * a.qsh, a.qsm, w.r0, a.M);
  load_a<D, P>(go, gr.dout + orow, ostride, w.r0, a.M);
  float mx[2], il[2], delta[2];
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const long long m = w.r0 + w.g + 8 * k;
    const bool live = m < a.M;
    float d = 0;
#pragma unroll
    for (int c = 0; c < D / 8; ++c)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const long long at = orow + m * ostride + 8 * c + w.tq + 4 * e;
        d += live ? __ldg(gr.dout + at) * __ldg(a.out + at) : 0.f;
      }
    delta[k] = quad_sum(d);
    const long long st = ((w.b * a.H + w.h) * a.M + m) * 2;
    mx[k] = live ? __ldg(a.stats + st) : 0.f;
    il[k] = live ? __ldg(a.stats + st + 1) : 0.f;
    if (live && w.tq == 0) gr.delta[(w.b * a.H + w.h) * a.M + m] = delta[k];
  }
  float dq[D / 8][4] = {};
  for (long long n0 = 0, it = 0; n0 < a.N; n0 += kDenseTile, ++it) {
    const int buf = int(it & 1);
    next_tile(stage, n0, a.N, buf);
    const int tile = int(a.N - n0 < kDenseTile ? a.N - n0 : kDenseTile);
    float s[kDenseTile / 8][4], dp[kDenseTile / 8][4];
    scores<D, P>(s, q, r.x[buf][0]);
    scores<D, P>(dp, go, r.x[buf][1]);
    const bool plain = a.mask == nullptr && tile == kDenseTile;
#pragma unroll
    for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * j + 2 * w.tq + (i & 1), k = i >> 1;
        // a masked key's score takes no gradient (nor does a column past the tile)
        const bool read = plain || (col < tile && (a.mask == nullptr || r.keep[buf][col]));
        const float kept = drop.on ? drop(((w.b * a.H + w.h) * a.M + w.r0 + w.g + 8 * k) * a.N + n0 + col) : 1.f;
        dp[j][i] = read ? __expf(s[j][i] - mx[k]) * il[k] * (kept * dp[j][i] - delta[k]) : 0.f;
      }
    accumulate<D, P>(dq, dp, r.x[buf][0]);
    __syncthreads();
  }
  store_rows<D>(gr.dq + orow, ostride, dq, w.r0, a.M);
}

// dk and dv of the warp's 16 keys, over every query: dv += p dout, dk += ds q.
template <int D, int P>
__global__ void __launch_bounds__(32 * kMmaWarps) dense_backward_key_mma_kernel(const DenseGradArgs gr) {
  const DenseArgs& a = gr.f;
  __shared__ __align__(16) float x[2][2][kDenseTile][D + 4];  // [buffer][queries, dout]
  __shared__ float2 st[2][kDenseTile];                          // (max, 1 / sum)
  __shared__ float dl[2][kDenseTile];
  const MmaWarp w(a.H);
  const Dropper drop(a.drop);
  const float* q = a.q + w.b * a.qsb + w.h * a.qsh;
  const float* go = gr.dout + w.b * a.M * a.H * D + w.h * D;
  const long long bh = (w.b * a.H + w.h) * a.M;
  const auto stage = [&](long long m0, int buf) {
    copy_rows_async<D, D + 4>(x[buf][0], q, a.qsm, m0, a.M, a.rows16);
    copy_rows_async<D, D + 4>(x[buf][1], go, a.H * D, m0, a.M, a.rows16);
    for (int i = threadIdx.x; i < kDenseTile; i += blockDim.x) {
      const bool real = m0 + i < a.M;
      copy_async<8>(&st[buf][i], a.stats + (bh + (real ? m0 + i : 0)) * 2, real);
      copy_async<4>(&dl[buf][i], gr.delta + bh + (real ? m0 + i : 0), real);
    }
    copy_async_commit();
  };
  stage(0, 0);
  TfA<P> k[D / 8], v[D / 8];
  load_a<D, P>(k, a.k + w.b * a.ksb + w.h * a.ksh, a.ksn, w.r0, a.N);
  load_a<D, P>(v, a.v + w.b * a.vsb + w.h * a.vsh, a.vsn, w.r0, a.N);
  bool keep[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const long long n = w.r0 + w.g + 8 * e;
    keep[e] = n < a.N && (a.mask == nullptr || a.mask[w.b * a.N + n]);
  }
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  for (long long m0 = 0, it = 0; m0 < a.M; m0 += kDenseTile, ++it) {
    const int buf = int(it & 1);
    next_tile(stage, m0, a.M, buf);
    float s[kDenseTile / 8][4], dp[kDenseTile / 8][4];
    scores<D, P>(s, k, x[buf][0]);   // s^T: the warp's keys by the tile's queries
    scores<D, P>(dp, v, x[buf][1]);  // dp^T = v . dout
#pragma unroll
    for (int j = 0; j < kDenseTile / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * j + 2 * w.tq + (i & 1), e = i >> 1;
        const float2 sc = st[buf][col];  // a query past the tile has (0, 0): its weight is 0
        const float p = __expf((keep[e] ? s[j][i] : kLowest) - sc.x) * sc.y;
        const float kept = drop.on ? drop((bh + m0 + col) * a.N + w.r0 + w.g + 8 * e) : 1.f;
        s[j][i] = p * kept;
        dp[j][i] = keep[e] ? p * (kept * dp[j][i] - dl[buf][col]) : 0.f;
      }
    accumulate<D, P>(dv, s, x[buf][1]);
    accumulate<D, P>(dk, dp, x[buf][0]);
    __syncthreads();
  }
  const long long out0 = w.b * a.N * a.H * D + w.h * D;  // dk, dv: [B,N,H,D]
  store_rows<D>(gr.dk + out0, a.H * D, dk, w.r0, a.N);
  store_rows<D>(gr.dv + out0, a.H * D, dv, w.r0, a.N);
}

template <int R>
dim3 dense_grid(long long rows, const DenseArgs& a) {
  return dim3(unsigned((rows + R * kDenseThreads - 1) / (R * kDenseThreads)), unsigned(a.B * a.H));
}

}  // namespace

bool dense_tensor_cores_available() {
  int device = 0, major = 0;
  return cudaGetDevice(&device) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8;
}

namespace {
template <int D, int P>
void dense_mma(const DenseGradArgs* g, const DenseArgs& a, cudaStream_t s) {
  const auto grid = [&](long long rows) { return dim3(unsigned((rows + kMmaRows - 1) / kMmaRows), unsigned(a.B * a.H)); };
  if (g == nullptr) {
    dense_forward_mma_kernel<D, P><<<grid(a.M), 32 * kMmaWarps, 0, s>>>(a);
    return;
  }
  dense_backward_query_mma_kernel<D, P><<<grid(a.M), 32 * kMmaWarps, 0, s>>>(*g);
  dense_backward_key_mma_kernel<D, P><<<grid(a.N), 32 * kMmaWarps, 0, s>>>(*g);
}

bool aligned16(const float* p, std::int64_t s0, std::int64_t s1, std::int64_t s2) {
  return aligned_to(p, 16) && s0 % 4 == 0 && s1 % 4 == 0 && s2 % 4 == 0;
}

// The tensor-core kernels for a.tensor_passes (1 or 3); g null: the forward.
void dense_mma(const DenseGradArgs* grad, DenseArgs a, cudaStream_t s) {
  a.rows16 = aligned16(a.q, a.qsb, a.qsm, a.qsh) && aligned16(a.k, a.ksb, a.ksn, a.ksh) &&
             aligned16(a.v, a.vsb, a.vsn, a.vsh) && (grad == nullptr || aligned16(grad->dout, 0, 0, 0));
  DenseGradArgs gcopy;
  const DenseGradArgs* g = nullptr;
  if (grad != nullptr) {
    gcopy = *grad;
    gcopy.f = a;
    g = &gcopy;
  }
  if (a.d == 16) a.tensor_passes == 1 ? dense_mma<16, 1>(g, a, s) : dense_mma<16, 3>(g, a, s);
  else a.tensor_passes == 1 ? dense_mma<32, 1>(g, a, s) : dense_mma<32, 3>(g, a, s);
}
}  // namespace

// The FMA kernels (tensor_passes 0): two queries a thread where each (batch row, head) has at
// least 512 of them, one below (the blocks would stand half idle); the keys' kernel one key a
// thread. Measured on an H200 (copy task, 128 rows of 4 heads of 16): the fastest of 1, 2 and 4
// rows a thread, unrolled 1, 2 or 4 times, at 128 and 512 queries and keys.
int dense_attention_forward(const DenseArgs& a, void* stream) {
  if (a.B * a.H * a.M == 0) return 0;
  if (a.N == 0 || !dense_head_dim_supported(a.d) || !dense_passes_supported(a.tensor_passes))
    return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  if (a.tensor_passes != 0) {
    dense_mma(nullptr, a, s);
    return int(cudaGetLastError());
  }
  if (a.d == 32) dense_forward_kernel<32, 1><<<dense_grid<1>(a.M, a), kDenseThreads, 0, s>>>(a);
  else if (a.M >= 512) dense_forward_kernel<16, 2, 4><<<dense_grid<2>(a.M, a), kDenseThreads, 0, s>>>(a);
  else dense_forward_kernel<16, 1><<<dense_grid<1>(a.M, a), kDenseThreads, 0, s>>>(a);
  return int(cudaGetLastError());
}

int dense_attention_backward(const DenseGradArgs& g, void* stream) {
  const DenseArgs& a = g.f;
  if (a.B * a.H * a.M == 0) return 0;
  if (a.N == 0 || !dense_head_dim_supported(a.d) || !dense_passes_supported(a.tensor_passes))
    return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  if (a.tensor_passes != 0) {
    dense_mma(&g, a, s);
    return int(cudaGetLastError());
  }
  if (a.d == 32) {
    dense_backward_query_kernel<32, 1><<<dense_grid<1>(a.M, a), kDenseThreads, 0, s>>>(g);
    dense_backward_key_kernel<32, 1><<<dense_grid<1>(a.N, a), kDenseThreads, 0, s>>>(g);
    return int(cudaGetLastError());
  }
  if (a.M >= 512) dense_backward_query_kernel<16, 2, 4><<<dense_grid<2>(a.M, a), kDenseThreads, 0, s>>>(g);
  else dense_backward_query_kernel<16, 1, 4><<<dense_grid<1>(a.M, a), kDenseThreads, 0, s>>>(g);
  dense_backward_key_kernel<16, 1><<<dense_grid<1>(a.N, a), kDenseThreads, 0, s>>>(g);
  return int(cudaGetLastError());
}

namespace {
__global__ void dropout_apply_kernel(float* out, const float* x, long long n, const DropKey d) {
  const Dropper drop(d);
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = x != nullptr ? x[i] * drop(i) : drop(i);
}
}  // namespace

int dropout_apply(float* out, const float* x, std::int64_t n, const DropKey& d, void* stream) {
  if (n == 0) return 0;
  if (d.key == nullptr) return int(cudaErrorInvalidValue);
  const auto blocks = unsigned(std::min<long long>((n + 255) / 256, 65536));
  dropout_apply_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(out, x, n, d);
  return int(cudaGetLastError());
}

namespace {
// weight_grad on the tensor cores (tensor_passes 3): 4 warps take a 64 x 64 tile of out over the rows
// of one part, warp w its rows 16w .. 16w + 15 (of g's columns) and all 64 columns (of x's). The
// rows arrive 32 at a time by cp.async into two buffers, rows padded to 72 floats so that the
// fragments' reads (8 apart in a row, 4 rows apart) hit 32 banks; the copy of the next 32 rows runs
// while these multiply. Blocks of the first column tile also sum g's columns (the bias).
constexpr int kWgPad = int(kWeightGradTile) + 8;
__global__ void __launch_bounds__(32 * kMmaWarps) weight_grad_mma_kernel(const WeightGradArgs a) {
  constexpr int T = int(kWeightGradTile), NT = 32 * kMmaWarps, LOADS = kWgRows * T / 4 / NT;
  __shared__ __align__(16) float gs[2][kWgRows][kWgPad];
  __shared__ __align__(16) float xs[2][kWgRows][kWgPad];
  const WgBlock blk = wg_block(a);
  const long long o0 = blk.o0, i0 = blk.i0, r_begin = blk.r_begin, r_end = blk.r_end;
  const int tid = threadIdx.x, w = tid / 32, g = (tid & 31) >> 2, t = tid & 3;
  const bool bias = a.bias_part != nullptr && i0 == 0 && tid < T;
  const auto stage = [&](int b, long long r0) {
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
      const int k = tid + l * NT, row = k / (T / 4), c = (k % (T / 4)) * 4;
      const long long r = r0 + row;
      const bool real = r < r_end;
      copy_async<16>(&gs[b][row][c], a.g + (real ? r : r_begin) * a.O + o0 + c, real);
      copy_async<16>(&xs[b][row][c], a.x + (real ? r : r_begin) * a.I + i0 + c, real);
    }
    copy_async_commit();
  };
  float acc[T / 8][4];
#pragma unroll
  for (int j = 0; j < T / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  float bsum = 0.f;
  stage(0, r_begin);
  int b = 0;
  for (long long r0 = r_begin; r0 < r_end; r0 += kWgRows, b ^= 1) {
    await_chunk(r0 + kWgRows < r_end, [&] { stage(b ^ 1, r0 + kWgRows); });
    if (bias)
#pragma unroll 8
      for (int row = 0; row < kWgRows; ++row) bsum += gs[b][row][tid];
#pragma unroll
    for (int k = 0; k < kWgRows; k += 8) {
      // A [16 x 8]: a[m][kk] = g[row k + kk][column 16w + m]; B [8 x 8]: x's rows k .. k + 7.
      TfA<3> fa;
      fa.set(gs[b][k + t][16 * w + g], gs[b][k + t][16 * w + g + 8], gs[b][k + t + 4][16 * w + g],
             gs[b][k + t + 4][16 * w + g + 8]);
#pragma unroll
      for (int j = 0; j < T / 8; ++j) mma<3>(acc[j], fa, xs[b][k + t][8 * j + g], xs[b][k + t + 4][8 * j + g]);
    }
    __syncthreads();
  }
  float* part = a.part + blockIdx.y * a.O * a.I;
#pragma unroll
  for (int j = 0; j < T / 8; ++j) {
    float* p = part + (o0 + 16 * w + g) * a.I + i0 + 8 * j + 2 * t;
    *reinterpret_cast<float2*>(p) = make_float2(acc[j][0], acc[j][1]);
    *reinterpret_cast<float2*>(p + 8 * a.I) = make_float2(acc[j][2], acc[j][3]);
  }
  if (bias) a.bias_part[blockIdx.y * a.O + o0 + tid] = bsum;
}

// A warp's sums of a rows_matmul tile into out: rows ra and ra + 8 (a lane's fragment rows), columns
// c0 + 8 j and c0 + 8 j + 1 (c0 = the tile's first column + 2 t), the bias added, added into out with
// accumulate; rows past R are left alone.
__device__ __forceinline__ void store_tile_rows(const RowsMatmulArgs& a, const float (&acc)[kRowsMatmulTile / 8][4],
                                                long long ra, long long c0) {
#pragma unroll
  for (int j = 0; j < int(kRowsMatmulTile) / 8; ++j) {
    const long long c = c0 + 8 * j;
    float2 bv = make_float2(0.f, 0.f);
    if (a.bias != nullptr) bv = make_float2(a.bias[c], a.bias[c + 1]);
    const auto put = [&](long long r, float v0, float v1) {
      if (r >= a.R) return;
      auto* p = reinterpret_cast<float2*>(a.out + r * a.N + c);
      float2 o = make_float2(v0 + bv.x, v1 + bv.y);
      if (a.accumulate) {
        const float2 before = *p;
        o.x += before.x, o.y += before.y;
      }
      *p = o;
    };
    put(ra, acc[j][0], acc[j][1]);
    put(ra + 8, acc[j][2], acc[j][3]);
  }
}

// rows_matmul: a block takes one 64-column tile of out and row tiles blockIdx.y, + gridDim.y, ...;
// warp w takes rows 16w .. 16w + 15 of a tile and all 64 columns. x's rows and w's 64 columns of out
// are staged kRowsMatmulChunk of K at a time, two buffers, in one stream of copies across the
// block's tiles: the next tile's first rows arrive while this tile multiplies and stores (with K = 64
// a tile is two chunks, and a block of one tile waited on its loads: 26 us for 65536 rows of 64 on
// an H100, two and a half times what its bytes take). x's rows pad to 36 floats, w's to 36 ([N,K], a
// row per column of out) or 72 ([K,N]): the fragments' reads hit 32 banks.
template <bool TW>
__global__ void __launch_bounds__(32 * kMmaWarps) rows_matmul_kernel(const RowsMatmulArgs a) {
  constexpr int T = int(kRowsMatmulTile), KC = int(kRowsMatmulChunk), NT = 32 * kMmaWarps;
  constexpr int XS = KC + 4, WR = TW ? T : KC, WS = TW ? KC + 4 : T + 8;
  __shared__ __align__(16) float xs[2][T][XS];
  __shared__ __align__(16) float ws[2][WR][WS];
  const long long n0 = blockIdx.x * T, tiles = (a.R + T - 1) / T, chunks = a.K / KC;
  const long long mine = blockIdx.y < tiles ? (tiles - 1 - blockIdx.y) / gridDim.y + 1 : 0;
  const int tid = threadIdx.x, w = tid / 32, g = (tid & 31) >> 2, t = tid & 3;
  // The first row of the block's step-th chunk's tile.
  const auto tile_row = [&](long long step) { return (blockIdx.y + (step / chunks) * gridDim.y) * T; };
  const auto stage = [&](int b, long long step) {
    const long long r0 = tile_row(step), k0 = (step % chunks) * KC;
#pragma unroll
    for (int l = 0; l < T * KC / 4 / NT; ++l) {
      const int k = tid + l * NT, row = k / (KC / 4), c = (k % (KC / 4)) * 4;
      const bool real = r0 + row < a.R;
      copy_async<16>(&xs[b][row][c], a.x + (real ? r0 + row : 0) * a.K + k0 + c, real);
      if (TW) {
        copy_async<16>(&ws[b][row][c], a.w + (n0 + row) * a.K + k0 + c, true);
      } else {
        const int wr = k / (T / 4), wc = (k % (T / 4)) * 4;
        copy_async<16>(&ws[b][wr][wc], a.w + (k0 + wr) * a.N + n0 + wc, true);
      }
    }
    copy_async_commit();
  };
  float acc[T / 8][4];
#pragma unroll
  for (int j = 0; j < T / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  const long long steps = mine * chunks;
  if (steps > 0) stage(0, 0);
  for (long long step = 0; step < steps; ++step) {
    const int b = int(step & 1);
    await_chunk(step + 1 < steps, [&] { stage(b ^ 1, step + 1); });
#pragma unroll
    for (int k = 0; k < KC; k += 8) {
      const int m = 16 * w + g;
      TfA<3> fa;
      fa.set(xs[b][m][k + t], xs[b][m + 8][k + t], xs[b][m][k + t + 4], xs[b][m + 8][k + t + 4]);
#pragma unroll
      for (int j = 0; j < T / 8; ++j) {
        if (TW) mma<3>(acc[j], fa, ws[b][8 * j + g][k + t], ws[b][8 * j + g][k + t + 4]);
        else mma<3>(acc[j], fa, ws[b][k + t][8 * j + g], ws[b][k + t + 4][8 * j + g]);
      }
    }
    __syncthreads();
    if (step % chunks != chunks - 1) continue;
    // The tile's last chunk: its rows out, and the sums start again for the next tile.
    store_tile_rows(a, acc, tile_row(step) + 16 * w + g, n0 + 2 * t);
#pragma unroll
    for (int j = 0; j < T / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  }
}

// rows_matmul for K = 32 or 64 (taken at 64, below): the block's 64 columns of w are split once into
// their big and small TensorFloat-32 parts, held in shared memory for all its row tiles ([column of
// out][k], padded to K + 4 so the fragments' reads hit 32 banks), and x's tiles (all K at once)
// stream through NS buffers, NS - 1 tiles ahead. The kernel above reloads w's chunk from L2 and
// splits it in every warp, for every chunk.
template <bool TW, int K, int NS>
__global__ void __launch_bounds__(32 * kMmaWarps) rows_matmul_w_kernel(const RowsMatmulArgs a) {
  constexpr int T = int(kRowsMatmulTile), NT = 32 * kMmaWarps, KP = K + 4;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* wbig = reinterpret_cast<unsigned(*)[KP]>(smem);  // [T][KP]
  auto* wsmall = wbig + T;                               // [T][KP]
  auto* xs = reinterpret_cast<float(*)[T][KP]>(wsmall + T);  // [NS][T][KP]
  const long long n0 = blockIdx.x * T, tiles = (a.R + T - 1) / T;
  const long long mine = blockIdx.y < tiles ? (tiles - 1 - blockIdx.y) / gridDim.y + 1 : 0;
  const int tid = threadIdx.x, w = tid / 32, g = (tid & 31) >> 2, t = tid & 3;
  const auto tile_row = [&](long long i) { return (blockIdx.y + i * gridDim.y) * T; };
  const auto stage = [&](long long i) {  // the block's tile i into buffer i % NS
    float(*dst)[KP] = xs[i % NS];
    const long long r0 = tile_row(i);
#pragma unroll
    for (int l = 0; l < T * K / 4 / NT; ++l) {
      const int k = tid + l * NT, row = k / (K / 4), c = (k % (K / 4)) * 4;
      const bool real = r0 + row < a.R;
      copy_async<16>(&dst[row][c], a.x + (real ? r0 + row : 0) * K + c, real);
    }
  };
  // One commit per tile slot, empty ones too: the wait below then always allows NS - 1 in flight.
#pragma unroll
  for (int i = 0; i < NS - 1; ++i) {
    if (i < mine) stage(i);
    copy_async_commit();
  }
  for (int e = tid; e < T * K; e += NT) {
    const int n = TW ? e / K : e % T, k = TW ? e % K : e / T;
    const float v = TW ? a.w[(n0 + n) * K + k] : a.w[(long long)k * a.N + n0 + n];
    const unsigned big = tf32_big(v);
    wbig[n][k] = big;
    wsmall[n][k] = tf32_small(v, big);
  }
  for (long long i = 0; i < mine; ++i) {
    // Buffer (i + NS - 1) % NS was last read in tile i - 1, before the barrier that ended it.
    if (i + NS - 1 < mine) stage(i + NS - 1);
    copy_async_commit();
    copy_async_wait<NS - 1>();
    __syncthreads();
    const float(*xt)[KP] = xs[i % NS];
    float acc[T / 8][4];
#pragma unroll
    for (int j = 0; j < T / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
    for (int k = 0; k < K; k += 8) {
      const int m = 16 * w + g;
      TfA<3> fa;
      fa.set(xt[m][k + t], xt[m + 8][k + t], xt[m][k + t + 4], xt[m + 8][k + t + 4]);
#pragma unroll
      for (int j = 0; j < T / 8; ++j) {
        const int n = 8 * j + g;
        mma_split(acc[j], fa, wbig[n][k + t], wbig[n][k + t + 4], wsmall[n][k + t], wsmall[n][k + t + 4]);
      }
    }
    __syncthreads();
    store_tile_rows(a, acc, tile_row(i) + 16 * w + g, n0 + 2 * t);
  }
}
// rows_matmul takes rows_matmul_w_kernel (two x buffers) at K = 64 where the model's step ran it faster
// (the fortieth session: an H100, `bench --profile` of the copy step at N = 256 and 1024, batch 128,
// each launch against the chunked kernel; the rows are the model's shapes). Transposed w of one
// column tile, every d_model -> d_model projection: 65,536 and 130,816 rows 28.7 -> 24.8 us a launch,
// but 16,384 rows 8.6-9.0 -> 9.7-9.9 and 32,256 to 32,768 rows 13.3-14.4 -> 14.2-15.0 (docs/cuda.md,
// the fortieth session, has every shape). Untransposed w of two column tiles, the
// GEGLU contraction's input gradient: 65,536 and 131,072 rows 41.9 -> 36.4 us, but 16,384 rows
// 11.0 -> 14.6 and 32,768 rows 18.5 -> 20.5. Where a block streams few row tiles, splitting w costs
// more than it saves; so from kSplitWMinRows, between the 32,768 rows where it lost and the 65,536
// where it won. Untransposed w of one column tile lost even at 65,536 and 130,816 rows
// (26.5 -> 28.7 us), transposed w of two column tiles in the thirty-ninth session's kernel_check
// (40.3 -> 41.0 us at 65,536 rows); three x buffers gained nothing.
// -DRETREEVER_ROWS_MATMUL_SPLIT_W=0 builds the chunked kernel's choice everywhere, for an A/B.
#ifndef RETREEVER_ROWS_MATMUL_SPLIT_W
#define RETREEVER_ROWS_MATMUL_SPLIT_W 1
#endif
constexpr std::int64_t kSplitWMinRows = 49152;
constexpr int kRowsMatmulStages = 2;
// rows_matmul_w_kernel's shared memory: w's big and small parts, and NS tiles of x.
template <int K, int NS>
constexpr int rows_matmul_w_smem() {
  return int(sizeof(unsigned) * 2 + sizeof(float) * NS) * int(kRowsMatmulTile) * (K + 4);
}
}  // namespace

namespace {
// How many blocks of 32 * kMmaWarps threads of `kernel` the current device runs at once (its SMs
// times the blocks one holds), asked once per device and slot, so that a launch asks nothing (as
// under graph capture).
// A kernel of more than 48 KiB of dynamic shared memory (smem) is allowed it there first.
template <typename Kernel>
int resident_blocks(Kernel kernel, int slot, int smem, int* out) {
  constexpr int kDevices = 64, kSlots = 4;
  static std::atomic<int> known[kSlots][kDevices];
  int device = 0, sms = 0, per_sm = 0;
  if (const int e = int(cudaGetDevice(&device))) return e;
  if (device < kDevices && (*out = known[slot][device].load()) > 0) return 0;
  if (const int e = int(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device))) return e;
  if (smem > 48 * 1024)
    if (const int e = int(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem))) return e;
  if (const int e = int(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * kMmaWarps, smem))) return e;
  *out = std::max(1, sms * per_sm);
  if (device < kDevices) known[slot][device].store(*out);
  return 0;
}
}  // namespace

int weight_grad(const WeightGradArgs& a, void* stream) {
  if (a.O == 0 || a.I == 0) return 0;
  if (!weight_grad_supported(a.g, a.x, a.O, a.I) || (a.tensor_passes != 0 && a.tensor_passes != 3) ||
      a.rows_per_part % kWgRows != 0)
    return int(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(unsigned((a.O / kWeightGradTile) * (a.I / kWeightGradTile)), unsigned(a.parts));
  if (a.tensor_passes == 3)
    weight_grad_mma_kernel<<<grid, 32 * kMmaWarps, 0, s>>>(a);
  else
    weight_grad_kernel<kWgPerThread><<<grid, (64 / kWgPerThread) * (64 / kWgPerThread), 0, s>>>(a);
  if (const int e = int(cudaGetLastError())) return e;
  if (const int e = sum_rows(a.part, a.parts, a.O * a.I, 1, a.out, s)) return e;
  return a.bias_part ? sum_rows(a.bias_part, a.parts, a.O, 1, a.bias_out, s) : 0;
}

RowsMatmulKernel rows_matmul_choice(const RowsMatmulArgs& a) {
  if (a.kernel != RowsMatmulKernel::automatic) return a.kernel;
  const bool split = RETREEVER_ROWS_MATMUL_SPLIT_W && a.K == 64 && a.R >= kSplitWMinRows &&
                     a.N == (a.transposed_w ? 1 : 2) * kRowsMatmulTile;
  return split ? RowsMatmulKernel::split_w : RowsMatmulKernel::chunked;
}

bool rows_matmul_supported(const RowsMatmulArgs& a) {
  return a.K % kRowsMatmulChunk == 0 && a.N % kRowsMatmulTile == 0 && aligned_to(a.x, 16) && aligned_to(a.w, 16) &&
         aligned_to(a.out, 16);
}

int rows_matmul(const RowsMatmulArgs& a, void* stream) {
  if (a.R == 0 || a.N == 0) return 0;
  if (a.K == 0 || !rows_matmul_supported(a)) return int(cudaErrorInvalidValue);
  // As many blocks as the GPU holds at once (each then streams over several row tiles), column
  // tiles varying fastest: the blocks running together read the same rows of x (from L2).
  const auto launch = [&](auto kernel, int slot, int smem) {
    int resident = 0;
    if (const int e = resident_blocks(kernel, slot, smem, &resident)) return e;
    const long long col_tiles = a.N / kRowsMatmulTile, row_tiles = (a.R + kRowsMatmulTile - 1) / kRowsMatmulTile;
    const long long rows = std::min(row_tiles, std::max(1LL, resident / col_tiles));
    kernel<<<dim3(unsigned(col_tiles), unsigned(rows)), 32 * kMmaWarps, smem, static_cast<cudaStream_t>(stream)>>>(a);
    return int(cudaGetLastError());
  };
  constexpr int S = kRowsMatmulStages, w_smem = rows_matmul_w_smem<64, S>();
  if (rows_matmul_choice(a) == RowsMatmulKernel::split_w) {
    if (a.K != 64) return int(cudaErrorInvalidValue);
    return a.transposed_w ? launch(rows_matmul_w_kernel<true, 64, S>, 2, w_smem)
                          : launch(rows_matmul_w_kernel<false, 64, S>, 3, w_smem);
  }
  return a.transposed_w ? launch(rows_matmul_kernel<true>, 1, 0) : launch(rows_matmul_kernel<false>, 0, 0);
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace retreever::cuda
