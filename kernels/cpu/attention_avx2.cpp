// AVX2 + F16C + FMA versions of the attention loops (compiled with -mavx2 -mfma -mf16c).
#include <immintrin.h>

#include <algorithm>

#include "core/half.h"
#include "kernels/cpu/attention.h"

namespace slm::cpu::detail {
namespace {

inline __m256 load8(const void* base, int64_t i, KvType t) {
  if (t == KvType::F32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
}
inline float load1(const void* base, int64_t i, KvType t) {
  return t == KvType::F32 ? static_cast<const float*>(base)[i] : fp16_to_f32(static_cast<const uint16_t*>(base)[i]);
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
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

void attn_scores_avx2(const float* q, const void* keys, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                      float scale, float* out) {
  const int64_t hd8 = hd & ~int64_t(7);
  for (int64_t i = 0; i < n_keys; ++i) {
    __m256 acc = _mm256_setzero_ps();
    const int64_t base = i * stride;
    for (int64_t d = 0; d < hd8; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8(keys, base + d, t), acc);
    float s = hsum(acc);
    for (int64_t d = hd8; d < hd; ++d) s += q[d] * load1(keys, base + d, t);
    out[i] = s * scale;
  }
}

void attn_weighted_sum_avx2(const float* p, const void* vals, int64_t n_keys, int64_t stride, int64_t hd,
                            KvType t, float* out) {
  const int64_t hd8 = hd & ~int64_t(7);
  for (int64_t d = 0; d < hd8; d += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n_keys; ++i) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[i]), load8(vals, i * stride + d, t), acc);
    _mm256_storeu_ps(out + d, acc);
  }
  for (int64_t d = hd8; d < hd; ++d) {
    float s = 0.f;
    for (int64_t i = 0; i < n_keys; ++i) s += p[i] * load1(vals, i * stride + d, t);
    out[d] = s;
  }
}

}  // namespace slm::cpu::detail
