// The avx2 instantiation of the matrix kernels in linear_simd.inc:
// AVX2 + FMA + F16C: int8 dots with vpmaddubsw/vpmaddwd, 256-bit float kernels.
// Compiled with the ISA flags of kernels/CMakeLists.txt; entered only after the CPUID check.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/linear_internal.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

namespace slm::cpu::detail::avx2 {

#define SLM_SIMD_VNNI 0
#define SLM_SIMD_512 0
#include "kernels/cpu/linear_simd.inc"
#undef SLM_SIMD_VNNI
#undef SLM_SIMD_512

}  // namespace slm::cpu::detail::avx2

// ---- Activation quantization (AVX2; also used on AVX-512 machines). Bit-identical to the scalar
// quantizers in act_convert.cpp: the same float operations in the same order per element; only
// the max search and the integer sums are vectorised. ----
namespace slm::cpu::detail::avx2 {
namespace {

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x55));
  return _mm_cvtsi128_si32(s);
}

// roundf(v): round half away from zero. trunc(v) plus sign(v) where |v - trunc(v)| >= 0.5 (the
// difference is exact), which matches roundf for every float.
inline __m256 round_away(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
  const __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.f));
  const __m256 big = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(big, one));
}

// 4 x 8 int32 (each in -127..127) -> 32 int8 in element order.
inline __m256i pack_i32x32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i p = _mm256_packs_epi16(ab, cd);
  // packs interleave 128-bit lanes: dword order is a0 b0 c0 d0 a1 b1 c1 d1 (4 bytes each).
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace

void quant_row_q8_32(const float* x, int64_t k, int8_t* qs, float* d_out, float* s_out,
                     int32_t* xsum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t b = 0; b < k / 32; ++b) {
    const float* xb = x + 32 * b;
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], abs_mask));
    }
    const float amax = hmax8(mx);
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      q[i] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[i], idv)));
      sum = _mm256_add_epi32(sum, q[i]);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(qs + 32 * b),
                       pack_i32x32(q[0], q[1], q[2], q[3]));
    const int isum = hsum_i32(sum);
    d_out[b] = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    xsum[b] = isum;
    if (s_out) s_out[b] = _cvtsh_ss(_cvtss_sh(float(isum) * d, _MM_FROUND_TO_NEAREST_INT));
  }
}

void quant_row_q8_k(const float* x, int64_t k, int8_t* qs, float* d_out, int16_t* bsums) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t b = 0; b < k / 256; ++b) {
    const float* xb = x + 256 * b;
    __m256 mx = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i)
      mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(xb + 8 * i), abs_mask));
    const float amax = hmax8(mx);
    int8_t* q = qs + 256 * b;
    if (amax == 0.f) {
      d_out[b] = 0.f;
      std::memset(q, 0, 256);
      std::memset(bsums + 16 * b, 0, 32);
      continue;
    }
    // The scalar quantizer takes the first element of largest magnitude, with its sign.
    int j = 0;
    while (std::fabs(xb[j]) != amax) ++j;
    const float iscale = -127.f / xb[j];
    const __m256 isv = _mm256_set1_ps(iscale);
    const __m256i hi = _mm256_set1_epi32(127);
    for (int g = 0; g < 8; ++g) {
      __m256i qi[4];
      for (int i = 0; i < 4; ++i) {
        const __m256 v = _mm256_mul_ps(isv, _mm256_loadu_ps(xb + 32 * g + 8 * i));
        qi[i] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
            hi);
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * g),
                         pack_i32x32(qi[0], qi[1], qi[2], qi[3]));
      bsums[16 * b + 2 * g] = int16_t(hsum_i32(_mm256_add_epi32(qi[0], qi[1])));
      bsums[16 * b + 2 * g + 1] = int16_t(hsum_i32(_mm256_add_epi32(qi[2], qi[3])));
    }
    d_out[b] = 1.f / iscale;
  }
}

void round_row_half(const float* x, int64_t k, bool bf16, uint16_t* xb, float* xf) {
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    if (!_mm256_testz_ps(nan, nan)) {  // NaN payloads: the scalar rules (rare, garbage input)
      for (int j = 0; j < 8; ++j) {
        xb[i + j] = bf16 ? f32_to_bf16(x[i + j]) : f32_to_fp16(x[i + j]);
        xf[i + j] = bf16 ? bf16_to_f32(xb[i + j]) : fp16_to_f32(xb[i + j]);
      }
      continue;
    }
    if (bf16) {
      // Round to nearest even on the upper half: u + 0x7FFF + (bit 16 of u), then >> 16.
      const __m256i u = _mm256_castps_si256(v);
      const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
      const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
      _mm256_storeu_ps(xf + i, _mm256_castsi256_ps(_mm256_slli_epi32(r, 16)));
      // r < 2^16: the unsigned pack is exact; it interleaves the 128-bit lanes (fixed by the permute).
      const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(xb + i), _mm256_castsi256_si128(p));
    } else {
      const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(xb + i), h);
      _mm256_storeu_ps(xf + i, _mm256_cvtph_ps(h));
    }
  }
  for (; i < k; ++i) {
    xb[i] = bf16 ? f32_to_bf16(x[i]) : f32_to_fp16(x[i]);
    xf[i] = bf16 ? bf16_to_f32(xb[i]) : fp16_to_f32(xb[i]);
  }
}

}  // namespace slm::cpu::detail::avx2
