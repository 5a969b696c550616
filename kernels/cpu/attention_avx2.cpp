// AVX2 + F16C + FMA attention (attention.h), compiled with -mavx2 -mfma -mf16c. Per (token, head):
//  * scores: eight keys at a time, one accumulator per key over the head's 8-float vectors, the
//    eight reduced together by one transpose-add (instead of a horizontal sum per key);
//  * softmax: vector max, libmvec's 8-lane expf (within 4 ulp, see act.h), float sum;
//  * out: the whole head (up to 64 floats) in 8 accumulators while the keys stream past, so each
//    value vector is loaded (and converted from fp16) once and the FMA chains are independent.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/half.h"
#include "kernels/cpu/attention.h"

extern "C" __m256 _ZGVdN8v_expf(__m256 x);

namespace slm::cpu::detail {
namespace {

template <KvType T>
inline __m256 load8(const void* base, int64_t i) {
  if constexpr (T == KvType::F32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  return _mm256_cvtph_ps(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
}
template <KvType T>
inline float load1(const void* base, int64_t i) {
  if constexpr (T == KvType::F32) return static_cast<const float*>(base)[i];
  return fp16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane j = sum of the 8 lanes of a[j].
inline __m256 hsum_8x8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  // [u0.lo, u1.lo] + [u0.hi, u1.hi] with insert/extract: vperm2f128 is 8 uops on Zen 1.
  return _mm256_add_ps(_mm256_insertf128_ps(u0, _mm256_castps256_ps128(u1), 1),
                       _mm256_insertf128_ps(u1, _mm256_extractf128_ps(u0, 1), 0));
}

template <KvType T>
float dot_key(const float* q, const void* keys, int64_t base, int64_t hd) {
  const int64_t hd8 = hd & ~int64_t(7);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t d = 0; d < hd8; d += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8<T>(keys, base + d), acc);
  float s = hsum(acc);
  for (int64_t d = hd8; d < hd; ++d) s += q[d] * load1<T>(keys, base + d);
  return s;
}

template <KvType T>
void scores(const float* q, const void* keys, int64_t n, int64_t stride, int64_t hd, float scale,
            float* s) {
  const int64_t hd8 = hd & ~int64_t(7);
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd8; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j)
        acc[j] = _mm256_fmadd_ps(qv, load8<T>(keys, (i + j) * stride + d), acc[j]);
    }
    __m256 r = hsum_8x8(acc);
    if (hd8 < hd) {
      alignas(32) float tail[8] = {};
      for (int j = 0; j < 8; ++j)
        for (int64_t d = hd8; d < hd; ++d) tail[j] += q[d] * load1<T>(keys, (i + j) * stride + d);
      r = _mm256_add_ps(r, _mm256_load_ps(tail));
    }
    _mm256_storeu_ps(s + i, _mm256_mul_ps(r, vs));
  }
  for (; i < n; ++i) s[i] = dot_key<T>(q, keys, i * stride, hd) * scale;
}

// p = softmax(s) in place, n >= 1.
void softmax(float* p, int64_t n) {
  const int64_t n8 = n & ~int64_t(7);
  float mx = p[0];
  if (n8 > 0) {
    __m256 vm = _mm256_loadu_ps(p);
    for (int64_t i = 8; i < n8; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    mx = _mm_cvtss_f32(m4);
  }
  for (int64_t i = n8; i < n; ++i) mx = std::max(mx, p[i]);
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 e = _ZGVdN8v_expf(_mm256_sub_ps(_mm256_loadu_ps(p + i), vmx));
    _mm256_storeu_ps(p + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (int64_t i = n8; i < n; ++i) {
    p[i] = std::exp(p[i] - mx);
    sum += p[i];
  }
  const float inv = 1.f / sum;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), vinv));
  for (int64_t i = n8; i < n; ++i) p[i] *= inv;
}

// out[d0 .. d0 + 8 NV) = Σ_i p_i val_i[d0 ..].
template <KvType T, int NV>
void weighted_block(const float* p, const void* vals, int64_t n, int64_t stride, int64_t d0,
                    float* out) {
  __m256 acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; ++i) {
    const __m256 pv = _mm256_broadcast_ss(p + i);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      acc[v] = _mm256_fmadd_ps(pv, load8<T>(vals, i * stride + d0 + 8 * v), acc[v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + d0 + 8 * v, acc[v]);
}

template <KvType T, int NV = 8>
void weighted_vectors(const float* p, const void* vals, int64_t n, int64_t stride, int64_t d0,
                      int64_t nv, float* out) {
  if constexpr (NV >= 1) {
    if (nv == NV) return weighted_block<T, NV>(p, vals, n, stride, d0, out);
    return weighted_vectors<T, NV - 1>(p, vals, n, stride, d0, nv, out);
  }
}

template <KvType T>
void head(const float* q, const void* keys, const void* vals, int64_t n, int64_t stride,
          int64_t hd, float scale, float* p, float* out) {
  scores<T>(q, keys, n, stride, hd, scale, p);
  softmax(p, n);
  const int64_t hd8 = hd & ~int64_t(7);
  for (int64_t d0 = 0; d0 < hd8; d0 += 64)
    weighted_vectors<T>(p, vals, n, stride, d0, std::min<int64_t>(8, (hd8 - d0) / 8), out);
  for (int64_t d = hd8; d < hd; ++d) {
    float s = 0.f;
    for (int64_t i = 0; i < n; ++i) s += p[i] * load1<T>(vals, i * stride + d);
    out[d] = s;
  }
}

}  // namespace

void kv_store_avx2(const float* src, void* dst, int64_t n, KvType t) {
  if (t == KvType::F32) {
    std::copy_n(src, n, static_cast<float*>(dst));
    return;
  }
  auto* h = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) h[i] = f32_to_fp16(src[i]);
}

void attn_head_avx2(const float* q, const void* keys, const void* vals, int64_t n_keys,
                    int64_t stride, int64_t hd, KvType t, float scale, float* scratch, float* out) {
  if (t == KvType::F32)
    head<KvType::F32>(q, keys, vals, n_keys, stride, hd, scale, scratch, out);
  else
    head<KvType::F16>(q, keys, vals, n_keys, stride, hd, scale, scratch, out);
}

}  // namespace slm::cpu::detail
