// The non-matrix kernels of the CUDA forward pass (declared in ops_cuda.h). Each mirrors one
// step of runtime/forward.cpp: activations are FP16 between matrix products, the residual
// stream stays FP32, every reduction accumulates in FP32.
#include <cfloat>
#include <climits>

#include "kernels/cuda/ops_cuda.h"
#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/sample_layout.h"

namespace slm::cuda::ops {
namespace {

unsigned grid_for(int64_t work, int threads) { return unsigned((work + threads - 1) / threads); }

__device__ __forceinline__ float wsum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float wmax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---- get_rows ----

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12, kQ6_K = 14, kBF16 = 30;

__global__ void get_rows_kernel(uint32_t type, const uint8_t* __restrict__ table, int64_t row_bytes,
                                int64_t cols, const int32_t* __restrict__ ids, float* __restrict__ out) {
  const int64_t t = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= cols) return;
  const uint8_t* row = table + int64_t(ids[t]) * row_bytes;
  float v;
  switch (type) {
    case kF32: v = reinterpret_cast<const float*>(row)[i]; break;
    case kF16: v = __half2float(reinterpret_cast<const __half*>(row)[i]); break;
    case kBF16: v = __uint_as_float(uint32_t(reinterpret_cast<const uint16_t*>(row)[i]) << 16); break;
    case kQ4_0:
    case kQ8_0: v = layout::gguf_unit_value(type, row + (i / 32) * layout::gguf_block_bytes(type), 0, int(i % 32)); break;
    case kQ4_K: v = layout::gguf_unit_value(type, row + (i / 256) * 144, int((i % 256) / 32), int(i % 32)); break;
    case kQ6_K:
    default:  // the host allows only Q6_K here; a unit is 32 consecutive elements of the block
      v = layout::gguf_unit_value(kQ6_K, row + (i / 256) * 210, int((i % 256) / 32), int(i % 32));
      break;
  }
  out[t * cols + i] = v;
}

// ---- RMSNorm: one block per row ----

constexpr int kNormThreads = 256;
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, __half* __restrict__ out,
                   int64_t n, float eps) {
  __shared__ float red[kNormThreads / 32];
  const float* xr = x + int64_t(blockIdx.x) * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += kNormThreads) ss += xr[i] * xr[i];
  ss = wsum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  float tot = 0.f;
  for (int i = 0; i < kNormThreads / 32; ++i) tot += red[i];
  const float scale = 1.0f / sqrtf(tot / float(n) + eps);
  __half* o = out + int64_t(blockIdx.x) * n;
  for (int64_t i = threadIdx.x; i < n; i += kNormThreads) o[i] = __float2half_rn((xr[i] * scale) * w[i]);
}

// ---- RoPE: one thread per (token, head, pair) over q heads then k heads ----

__global__ void rope_kernel(__half* __restrict__ q, __half* __restrict__ k, const float* __restrict__ table,
                            const int32_t* __restrict__ pos0, int64_t n_tokens, int n_heads, int n_kv_heads,
                            int head_dim, int n_rot, bool interleaved) {
  const int half = n_rot / 2;
  const int heads = n_heads + n_kv_heads;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_tokens * heads * half) return;
  const int j = int(idx % half);
  const int h = int((idx / half) % heads);
  const int64_t t = idx / (int64_t(half) * heads);
  __half* v = h < n_heads ? q + (t * n_heads + h) * head_dim : k + (t * n_kv_heads + (h - n_heads)) * head_dim;
  const int64_t pos = int64_t(*pos0) + t;
  const float c = table[(pos * half + j) * 2], s = table[(pos * half + j) * 2 + 1];
  const int i0 = interleaved ? 2 * j : j;
  const int i1 = interleaved ? 2 * j + 1 : j + half;
  const float a = __half2float(v[i0]), b = __half2float(v[i1]);
  v[i0] = __float2half_rn(a * c - b * s);
  v[i1] = __float2half_rn(a * s + b * c);
}

__global__ void kv_append_kernel(const __half* __restrict__ k, const __half* __restrict__ v,
                                 __half* __restrict__ kc, __half* __restrict__ vc, const int32_t* __restrict__ pos0,
                                 int64_t total, int64_t kv_dim) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t dst = int64_t(*pos0) * kv_dim + i;
  kc[dst] = k[i];
  vc[dst] = v[i];
}

// ---- attention ----
// grid (splits, n_kv_heads, n_tokens). Shared: qs[group][hd] (FP32 query), acc[group][hd],
// sc[group][kAttnTile] (scores, then probabilities), m/l/alpha[group].
__global__ void __launch_bounds__(kAttnThreads)
    attention_split_kernel(const __half* __restrict__ q, const __half* __restrict__ kc,
                           const __half* __restrict__ vc, const int32_t* __restrict__ pos0, int n_heads,
                           int n_kv_heads, int hd, float scale, int splits, float* __restrict__ partial) {
  extern __shared__ float smem[];
  const int group = n_heads / n_kv_heads;
  const int s = blockIdx.x, kvh = blockIdx.y;
  const int64_t t = blockIdx.z;
  const int64_t kvd = int64_t(n_kv_heads) * hd;
  float* qs = smem;
  float* acc = qs + group * hd;
  float* sc = acc + group * hd;
  float* ms = sc + group * kAttnTile;
  float* ls = ms + group;
  float* al = ls + group;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = kAttnThreads / 32;

  const int64_t n_keys = int64_t(*pos0) + t + 1;
  const int64_t per = (n_keys + splits - 1) / splits;
  const int64_t k0 = int64_t(s) * per;
  const int64_t k1 = min(k0 + per, n_keys);
  // Partial layout: [t][h][s] rows of (hd acc values, m, l).
  auto prow = [&](int g) { return partial + ((t * n_heads + int64_t(kvh) * group + g) * splits + s) * (hd + 2); };
  if (k0 >= k1) {  // empty range (short context, many splits): l = 0 marks it for the merge
    for (int g = tid; g < group; g += kAttnThreads) prow(g)[hd + 1] = 0.f;
    return;
  }
  for (int i = tid; i < group * hd; i += kAttnThreads) {
    const int g = i / hd, d = i % hd;
    qs[i] = __half2float(q[(t * n_heads + int64_t(kvh) * group + g) * hd + d]);
    acc[i] = 0.f;
  }
  for (int g = tid; g < group; g += kAttnThreads) {
    ms[g] = -FLT_MAX;
    ls[g] = 0.f;
  }
  __syncthreads();
  const __half* kbase = kc + int64_t(kvh) * hd;
  const __half* vbase = vc + int64_t(kvh) * hd;
  for (int64_t kt = k0; kt < k1; kt += kAttnTile) {
    const int nt = int(min(int64_t(kAttnTile), k1 - kt));
    // Scores: one warp per key, lanes stride over the head dimension.
    for (int i = warp; i < nt; i += nwarps) {
      const __half* kr = kbase + (kt + i) * kvd;
      for (int g = 0; g < group; ++g) {
        float dot = 0.f;
        for (int d = lane; d < hd; d += 32) dot += qs[g * hd + d] * __half2float(kr[d]);
        dot = wsum(dot);
        if (lane == 0) sc[g * kAttnTile + i] = dot * scale;
      }
    }
    __syncthreads();
    // Online softmax update, one warp per query head.
    for (int g = warp; g < group; g += nwarps) {
      float mx = -FLT_MAX;
      for (int i = lane; i < nt; i += 32) mx = fmaxf(mx, sc[g * kAttnTile + i]);
      mx = wmax(mx);
      const float m_old = ms[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int i = lane; i < nt; i += 32) {
        const float p = __expf(sc[g * kAttnTile + i] - m_new);
        sc[g * kAttnTile + i] = p;
        sum += p;
      }
      sum = wsum(sum);
      if (lane == 0) {
        const float a = __expf(m_old - m_new);  // 0 on the first tile (m_old = -FLT_MAX)
        al[g] = a;
        ls[g] = ls[g] * a + sum;
        ms[g] = m_new;
      }
    }
    __syncthreads();
    // acc = alpha acc + P V: consecutive threads read consecutive dims of a V row (coalesced).
    for (int i = tid; i < group * hd; i += kAttnThreads) {
      const int g = i / hd, d = i % hd;
      float a = acc[i] * al[g];
      const float* p = sc + g * kAttnTile;
      for (int j = 0; j < nt; ++j) a += p[j] * __half2float(vbase[(kt + j) * kvd + d]);
      acc[i] = a;
    }
    __syncthreads();
  }
  for (int i = tid; i < group * hd; i += kAttnThreads) prow(i / hd)[i % hd] = acc[i];
  for (int g = tid; g < group; g += kAttnThreads) {
    prow(g)[hd] = ms[g];
    prow(g)[hd + 1] = ls[g];
  }
}

// Merge of the split partials: grid (n_heads, n_tokens), threads over the head dimension.
__global__ void attention_merge_kernel(const float* __restrict__ partial, __half* __restrict__ out, int n_heads,
                                       int hd, int splits) {
  const int h = blockIdx.x;
  const int64_t t = blockIdx.y;
  const float* base = partial + (t * n_heads + h) * int64_t(splits) * (hd + 2);
  float M = -FLT_MAX;
  for (int s = 0; s < splits; ++s) {
    const float* r = base + int64_t(s) * (hd + 2);
    if (r[hd + 1] > 0.f) M = fmaxf(M, r[hd]);
  }
  float den = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float* r = base + int64_t(s) * (hd + 2);
    if (r[hd + 1] > 0.f) den += r[hd + 1] * __expf(r[hd] - M);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float* r = base + int64_t(s) * (hd + 2);
      if (r[hd + 1] > 0.f) num += r[d] * __expf(r[hd] - M);
    }
    out[(t * n_heads + h) * hd + d] = __float2half_rn(num / den);
  }
}

// ---- elementwise ----

// g and y may alias (the session writes the product over the gate), hence no __restrict__ there.
__global__ void swiglu_kernel(const __half* g, const __half* __restrict__ u, __half* y,
                              int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float a = __half2float(g[i]);
  y[i] = __float2half_rn(a / (1.f + expf(-a)) * __half2float(u[i]));
}

__global__ void add_kernel(float* __restrict__ x, const __half* __restrict__ y, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += __half2float(y[i]);
}

__global__ void f16_to_f32_kernel(const __half* __restrict__ in, float* __restrict__ out, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __half2float(in[i]);
}

// ---- argmax: one block; (value, index) pairs reduced with "larger, then smaller index" ----

constexpr int kArgmaxThreads = 1024;
__device__ __forceinline__ void better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i) || (v != v && v2 == v2)) {
    v = v2;
    i = i2;
  }
}
__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const float* __restrict__ x, int64_t n, int32_t* out) {
  __shared__ float sv[kArgmaxThreads / 32];
  __shared__ int si[kArgmaxThreads / 32];
  float v = __int_as_float(0x7fc00000);  // NaN: loses to any number
  int idx = INT_MAX;
  for (int64_t i = threadIdx.x; i < n; i += kArgmaxThreads) better(v, idx, x[i], int(i));
  for (int o = 16; o > 0; o >>= 1) better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  if ((threadIdx.x & 31) == 0) {
    sv[threadIdx.x >> 5] = v;
    si[threadIdx.x >> 5] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    v = sv[0];
    idx = si[0];
    for (int w = 1; w < kArgmaxThreads / 32; ++w) better(v, idx, sv[w], si[w]);
    *out = idx == INT_MAX ? 0 : idx;
  }
}

// ---- top-k sampling: two passes over one row of logits (kernels/layout/sample_layout.h) ----
// Pass 1: block b keeps the top k of its slice of the vocabulary; pass 2: one block keeps the top
// k of those blocks x k candidates and samples from them. Both run block_topk: a shared buffer
// holds the running top k, sorted, in [0, k); each round of kSampleThreads entries appends the
// entries that beat the current k-th (the threshold) from slot k on, and the buffer is sorted
// (bitonic, best first) when the next round might not fit and at the end. After the first sort
// the threshold is high, so few entries are appended and most rounds are a load and a compare.
// The slot an entry gets (atomicAdd) varies from run to run; the result does not, because the
// order (layout::cand_before) is total.

struct TopkSmem {
  float v[layout::kSampleBuf];
  int32_t id[layout::kSampleBuf];
  int fill;
};

__device__ __forceinline__ float neg_inf() { return __int_as_float(int(0xff800000u)); }

// Sorts the used prefix of the buffer, then pads [k, end) again and empties the append area.
// Every thread reads `fill` before the barrier that precedes any write of it.
__device__ void topk_flush(TopkSmem& s, int k) {
  const int span = layout::sample_sort_span(k + s.fill);
  __syncthreads();
  for (int size = 2; size <= span; size <<= 1)
    for (int j = size >> 1; j > 0; j >>= 1) {
      if (int(threadIdx.x) < span / 2) layout::bitonic_step(s.v, s.id, int(threadIdx.x), size, j);
      __syncthreads();
    }
  for (int i = k + int(threadIdx.x); i < layout::kSampleBuf; i += layout::kSampleThreads) {
    s.v[i] = neg_inf();
    s.id[i] = layout::kSamplePadId;
  }
  if (threadIdx.x == 0) s.fill = 0;
  __syncthreads();
}

// Top k (k <= kSampleMaxTopK) of entries 0..count-1, load(i, value, id), into s.v/s.id[0, k);
// slots the entries cannot fill stay pads.
template <class Load>
__device__ void block_topk(TopkSmem& s, int64_t count, int k, Load load) {
  for (int i = int(threadIdx.x); i < layout::kSampleBuf; i += layout::kSampleThreads) {
    s.v[i] = neg_inf();
    s.id[i] = layout::kSamplePadId;
  }
  if (threadIdx.x == 0) s.fill = 0;
  __syncthreads();
  for (int64_t base = 0; base < count; base += layout::kSampleThreads) {
    // Every thread reads fill before any thread of this round appends (and changes it).
    const bool flush = layout::sample_flush_before_round(s.fill, k);
    __syncthreads();
    if (flush) topk_flush(s, k);
    const float tv = s.v[k - 1];
    const int32_t ti = s.id[k - 1];
    const int64_t i = base + int64_t(threadIdx.x);
    if (i < count) {
      float x;
      int32_t xi;
      load(i, x, xi);
      if (layout::cand_before(x, xi, tv, ti)) {
        const int slot = atomicAdd(&s.fill, 1);
        s.v[k + slot] = x;
        s.id[k + slot] = xi;
      }
    }
    __syncthreads();
  }
  if (s.fill > 0) topk_flush(s, k);
}

__global__ void __launch_bounds__(layout::kSampleThreads)
    topk_pass1_kernel(const float* __restrict__ x, int64_t n, int k, float* __restrict__ cv, int32_t* __restrict__ ci) {
  __shared__ TopkSmem s;
  int64_t b0, b1;
  layout::sample_slice(n, int(gridDim.x), int(blockIdx.x), b0, b1);
  block_topk(s, b1 - b0, k, [&](int64_t i, float& v, int32_t& id) {
    v = x[b0 + i];
    id = int32_t(b0 + i);
  });
  for (int i = int(threadIdx.x); i < k; i += layout::kSampleThreads) {
    cv[int64_t(blockIdx.x) * k + i] = s.v[i];
    ci[int64_t(blockIdx.x) * k + i] = s.id[i];
  }
}

// One block: the global top k, then layout::sample_sorted's steps with one thread per candidate
// for the elementwise ones (exp, normalization) and thread 0 for the ordered double sums, the
// top-p / min-p cuts and the draw, so every sum runs in Sampler's order.
__global__ void __launch_bounds__(layout::kSampleThreads)
    topk_sample_kernel(const float* __restrict__ cv, const int32_t* __restrict__ ci, int blocks, int64_t n,
                       layout::SampleConfig c, double u, int32_t* __restrict__ out) {
  __shared__ TopkSmem s;
  __shared__ float p[layout::kSampleMaxTopK];
  __shared__ double sum;
  __shared__ int kept;
  const int k = c.top_k;
  block_topk(s, int64_t(blocks) * k, k, [&](int64_t i, float& v, int32_t& id) {
    v = cv[i];
    id = ci[i];
  });
  const int t = int(threadIdx.x);
  int m = int(min(int64_t(k), n));
  const float mx = s.v[0];
  if (t < m) p[t] = layout::softmax_term(s.v[t], mx, 1.f);
  __syncthreads();
  if (t == 0) sum = layout::sum_terms(p, m);
  __syncthreads();
  if (t < m) p[t] = layout::normalize_term(p[t], sum);
  __syncthreads();
  if (t == 0) kept = layout::min_p_keep(p, layout::top_p_keep(p, m, c.top_p), c.min_p);
  __syncthreads();
  m = kept;
  if (t < m) p[t] = layout::softmax_term(s.v[t], mx, c.temperature);
  __syncthreads();
  if (t == 0) sum = layout::sum_terms(p, m);
  __syncthreads();
  if (t < m) p[t] = layout::normalize_term(p[t], sum);
  __syncthreads();
  if (t == 0) *out = layout::draw_candidate(p, s.id, m, u);
}

}  // namespace

cudaError_t get_rows(uint32_t type, const void* table, int64_t row_bytes, int64_t cols, const int32_t* ids,
                     int64_t n, float* out, cudaStream_t s) {
  if (n > 0) {
    const dim3 grid{grid_for(cols, 256), unsigned(n)};
    get_rows_kernel<<<grid, 256, 0, s>>>(type, static_cast<const uint8_t*>(table), row_bytes, cols, ids, out);
  }
  return cudaGetLastError();
}

cudaError_t rmsnorm(const float* x, const float* w, __half* out, int64_t rows, int64_t n, float eps,
                    cudaStream_t s) {
  if (rows > 0) rmsnorm_kernel<<<unsigned(rows), kNormThreads, 0, s>>>(x, w, out, n, eps);
  return cudaGetLastError();
}

cudaError_t rope(__half* q, __half* k, const float* table, const int32_t* pos0, int64_t n_tokens, int n_heads,
                 int n_kv_heads, int head_dim, int n_rot, bool interleaved, cudaStream_t s) {
  const int64_t work = n_tokens * (n_heads + n_kv_heads) * (n_rot / 2);
  if (work > 0)
    rope_kernel<<<grid_for(work, 256), 256, 0, s>>>(q, k, table, pos0, n_tokens, n_heads, n_kv_heads, head_dim,
                                                     n_rot, interleaved);
  return cudaGetLastError();
}

cudaError_t kv_append(const __half* k, const __half* v, __half* k_cache, __half* v_cache, const int32_t* pos0,
                      int64_t n_tokens, int64_t kv_dim, cudaStream_t s) {
  const int64_t total = n_tokens * kv_dim;
  if (total > 0) kv_append_kernel<<<grid_for(total, 256), 256, 0, s>>>(k, v, k_cache, v_cache, pos0, total, kv_dim);
  return cudaGetLastError();
}

cudaError_t attention(const __half* q, const __half* k_cache, const __half* v_cache, const int32_t* pos0,
                      int64_t n_tokens, int n_heads, int n_kv_heads, int head_dim, float scale, int splits,
                      float* partial, __half* out, cudaStream_t s) {
  if (n_tokens <= 0) return cudaGetLastError();
  const size_t smem = attention_smem_bytes(n_heads / n_kv_heads, head_dim);
  const dim3 grid{unsigned(splits), unsigned(n_kv_heads), unsigned(n_tokens)};
  attention_split_kernel<<<grid, kAttnThreads, smem, s>>>(q, k_cache, v_cache, pos0, n_heads, n_kv_heads, head_dim,
                                                          scale, splits, partial);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  attention_merge_kernel<<<dim3(unsigned(n_heads), unsigned(n_tokens)), head_dim < 128 ? 64 : 128, 0, s>>>(
      partial, out, n_heads, head_dim, splits);
  return cudaGetLastError();
}

cudaError_t swiglu(const __half* g, const __half* u, __half* y, int64_t n, cudaStream_t s) {
  if (n > 0) swiglu_kernel<<<grid_for(n, 256), 256, 0, s>>>(g, u, y, n);
  return cudaGetLastError();
}

cudaError_t add_residual(float* x, const __half* y, int64_t n, cudaStream_t s) {
  if (n > 0) add_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t f16_to_f32(const __half* in, float* out, int64_t n, cudaStream_t s) {
  if (n > 0) f16_to_f32_kernel<<<grid_for(n, 256), 256, 0, s>>>(in, out, n);
  return cudaGetLastError();
}

cudaError_t argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s) {
  argmax_kernel<<<1, kArgmaxThreads, 0, s>>>(x, n, out);
  return cudaGetLastError();
}

cudaError_t sample_top_k(const float* logits, int64_t n, const layout::SampleConfig& c, double u, int blocks,
                         void* ws, int32_t* out, cudaStream_t s) {
  float* cv = static_cast<float*>(ws);
  int32_t* ci = reinterpret_cast<int32_t*>(cv + size_t(blocks) * layout::kSampleMaxTopK);
  topk_pass1_kernel<<<unsigned(blocks), layout::kSampleThreads, 0, s>>>(logits, n, c.top_k, cv, ci);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  topk_sample_kernel<<<1, layout::kSampleThreads, 0, s>>>(cv, ci, blocks, n, c, u, out);
  return cudaGetLastError();
}

}  // namespace slm::cuda::ops
