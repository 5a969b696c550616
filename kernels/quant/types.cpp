// The tensor-type table and the reference (de)quantizers for every type in QType.
// Dequantizers follow ../shared/specs/gguf.md §4-5 with llama.cpp's float operation order (so the
// outputs equal llama.cpp's dequantized values bit for bit). Quantizers reproduce the encoders
// llama-quantize runs without an importance matrix (ggml-quants.c, Feb 2025) operation for
// operation, so their bytes are llama.cpp's: the legacy types, Q8_K and F16/BF16 by their closed
// formulas, the K-quants and IQ4 by the same error-minimising scale searches (search.h: several
// sub-blocks at a time in SIMD lanes, 8 with AVX2 via search_avx2.cpp, 4 otherwise).
// Bit-exactness with llama.cpp needs every a*b+c rounded twice, as in its non-FMA build of these
// encoders; with FMA available (-march=native, -mfma) both GCC (even in ISO mode) and Clang would
// contract them, so forbid it for this whole file (before any code, headers included).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels/quant/types.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/quant/blocks.h"
#define SLM_QUANT_LANES 4
#include "kernels/quant/search.h"

namespace slm {

namespace detail {
// The searched encoders (Q2_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) with 8 AVX2 lanes
// (search_avx2.cpp; only call when the CPU has AVX2) and with 4 baseline lanes. Both return false
// for other types. Exposed for the test that checks they agree.
bool quantize_searched_avx2(QType t, const float* src, void* dst, int64_t n);
bool quantize_searched_baseline(QType t, const float* src, void* dst, int64_t n) {
  return qsearch::quantize_searched(t, src, dst, n);
}
}  // namespace detail

const int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

namespace {

using qsearch::kGroupMaxEps;
using qsearch::nearest_int;

constexpr QTypeInfo kTypes[] = {
    {QType::F32, "F32", 1, 4, false},
    {QType::F16, "F16", 1, 2, false},
    {QType::BF16, "BF16", 1, 2, false},
    {QType::Q8_0, "Q8_0", kQK, int(sizeof(BlockQ8_0)), false},
    {QType::Q8_1, "Q8_1", kQK, int(sizeof(BlockQ8_1)), true},
    {QType::Q4_0, "Q4_0", kQK, int(sizeof(BlockQ4_0)), false},
    {QType::Q4_1, "Q4_1", kQK, int(sizeof(BlockQ4_1)), false},
    {QType::Q5_0, "Q5_0", kQK, int(sizeof(BlockQ5_0)), false},
    {QType::Q5_1, "Q5_1", kQK, int(sizeof(BlockQ5_1)), false},
    {QType::Q2_K, "Q2_K", kQK_K, int(sizeof(BlockQ2_K)), false},
    {QType::Q3_K, "Q3_K", kQK_K, int(sizeof(BlockQ3_K)), false},
    {QType::Q4_K, "Q4_K", kQK_K, int(sizeof(BlockQ4_K)), false},
    {QType::Q5_K, "Q5_K", kQK_K, int(sizeof(BlockQ5_K)), false},
    {QType::Q6_K, "Q6_K", kQK_K, int(sizeof(BlockQ6_K)), false},
    {QType::Q8_K, "Q8_K", kQK_K, int(sizeof(BlockQ8_K)), true},
    {QType::IQ4_NL, "IQ4_NL", kQK, int(sizeof(BlockIQ4_NL)), false},
    {QType::IQ4_XS, "IQ4_XS", kQK_K, int(sizeof(BlockIQ4_XS)), false},
};

// ggml_type ids as of ggml 2026 (gguf.md §5.15). 4/5 were Q4_2/Q4_3 (removed 2023); 31-33 and
// 36-38 were the repacked Q4_0/IQ4_NL file types (removed); 40-42 exist only in ggml >= 2026.
constexpr std::string_view kGgmlNames[] = {
    "F32",      "F16",      "Q4_0",     "Q4_1",       "Q4_2",       "Q4_3",       "Q5_0",
    "Q5_1",     "Q8_0",     "Q8_1",     "Q2_K",       "Q3_K",       "Q4_K",       "Q5_K",
    "Q6_K",     "Q8_K",     "IQ2_XXS",  "IQ2_XS",     "IQ3_XXS",    "IQ1_S",      "IQ4_NL",
    "IQ3_S",    "IQ2_S",    "IQ4_XS",   "I8",         "I16",        "I32",        "I64",
    "F64",      "IQ1_M",    "BF16",     "Q4_0_4_4",   "Q4_0_4_8",   "Q4_0_8_8",   "TQ1_0",
    "TQ2_0",    "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",  "NVFP4",      "Q1_0",
    "Q2_0",
};

// float -> int conversion of a value the caller has shown to lie in [lo, hi] (C's truncation);
// NaN maps to lo instead of being undefined.
inline int trunc_clamped(float v, int lo, int hi) {
  if (!(v >= float(lo))) return lo;
  if (v >= float(hi)) return hi;
  return int(v);
}

inline void pack_q5_high_bits(const uint8_t* q, uint8_t* qs, uint8_t qh_bytes[4]) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = uint8_t((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= uint32_t((q[j] >> 4) & 1) << j;
    qh |= uint32_t((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// ---------------------------------------------------------------------------------------------
// Dequantizers (one block at a time; y receives block_elems floats).

void deq_q4_0(const BlockQ4_0& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b.qs[j] & 0x0F) - 8) * d;
    y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
  }
}
void deq_q4_1(const BlockQ4_1& b, float* y) {
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b.qs[j] & 0x0F) * d + m;
    y[j + 16] = float(b.qs[j] >> 4) * d + m;
  }
}
void deq_q5_0(const BlockQ5_0& b, float* y) {
  const float d = fp16_to_f32(b.d);
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (b.qs[j] & 0x0F) | int(((qh >> j) & 1) << 4);
    const int q1 = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    y[j] = float(q0 - 16) * d;
    y[j + 16] = float(q1 - 16) * d;
  }
}
void deq_q5_1(const BlockQ5_1& b, float* y) {
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    const int q0 = (b.qs[j] & 0x0F) | int(((qh >> j) & 1) << 4);
    const int q1 = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1) << 4);
    y[j] = float(q0) * d + m;
    y[j + 16] = float(q1) * d + m;
  }
}
void deq_q8_0(const BlockQ8_0& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}
void deq_q8_1(const BlockQ8_1& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}
void deq_q2_k(const BlockQ2_K& b, float* y) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int e = 0; e < kQK_K; e += 16) {
    const int s = e / 16;
    const float dl = d * float(b.scales[s] & 0xF), ml = dmin * float(b.scales[s] >> 4);
    const int half = e / 128, shift = 2 * ((e % 128) / 32), l0 = e % 32;
    const uint8_t* q = b.qs + 32 * half + l0;
    for (int l = 0; l < 16; ++l) y[e + l] = dl * float((q[l] >> shift) & 3) - ml;
  }
}
// The 16 signed 6-bit sub-block scales of a Q3_K block (gguf.md §5.8).
inline void q3k_scales(const uint8_t* sc, int out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low4 = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
    const int high2 = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (low4 | (high2 << 4)) - 32;
  }
}
void deq_q3_k(const BlockQ3_K& b, float* y) {
  const float d = fp16_to_f32(b.d);
  int sc[16];
  q3k_scales(b.scales, sc);
  for (int e = 0; e < kQK_K; e += 16) {
    const float dl = d * float(sc[e / 16]);
    const int half = e / 128, shift = 2 * ((e % 128) / 32), l0 = e % 32, hbit = e / 32;
    const uint8_t* q = b.qs + 32 * half + l0;
    const uint8_t* hm = b.hmask + l0;
    for (int l = 0; l < 16; ++l) {
      const int q3 = ((q[l] >> shift) & 3) - (((hm[l] >> hbit) & 1) ? 0 : 4);
      y[e + l] = dl * float(q3);
    }
  }
}
void deq_q4_k(const BlockQ4_K& b, float* y) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, mn;
    get_scale_min_k4(2 * c, b.scales, sc, mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    get_scale_min_k4(2 * c + 1, b.scales, sc, mn);
    const float d2 = d * float(sc), m2 = dmin * float(mn);
    const uint8_t* q = b.qs + 32 * c;
    float* yc = y + 64 * c;
    for (int l = 0; l < 32; ++l) yc[l] = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) yc[32 + l] = d2 * float(q[l] >> 4) - m2;
  }
}
void deq_q5_k(const BlockQ5_K& b, float* y) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int c = 0; c < 4; ++c) {
    uint8_t sc, mn;
    get_scale_min_k4(2 * c, b.scales, sc, mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    get_scale_min_k4(2 * c + 1, b.scales, sc, mn);
    const float d2 = d * float(sc), m2 = dmin * float(mn);
    const uint8_t* q = b.qs + 32 * c;
    float* yc = y + 64 * c;
    for (int l = 0; l < 32; ++l)
      yc[l] = d1 * float((q[l] & 0xF) + (((b.qh[l] >> (2 * c)) & 1) << 4)) - m1;
    for (int l = 0; l < 32; ++l)
      yc[32 + l] = d2 * float((q[l] >> 4) + (((b.qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
  }
}
void deq_q6_k(const BlockQ6_K& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    const int8_t* sc = b.scales + 8 * h;
    float* yh = y + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      yh[l] = d * float(sc[is]) * float(q1);
      yh[l + 32] = d * float(sc[is + 2]) * float(q2);
      yh[l + 64] = d * float(sc[is + 4]) * float(q3);
      yh[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
  }
}
void deq_q8_k(const BlockQ8_K& b, float* y) {
  float d;
  std::memcpy(&d, &b.d, 4);
  for (int j = 0; j < kQK_K; ++j) y[j] = d * float(b.qs[j]);
}
void deq_iq4_nl(const BlockIQ4_NL& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIQ4NLValues[b.qs[j] & 0xF]);
    y[j + 16] = d * float(kIQ4NLValues[b.qs[j] >> 4]);
  }
}
void deq_iq4_xs(const BlockIQ4_XS& b, float* y) {
  const float d = fp16_to_f32(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    const float dl = d * float(ls - 32);
    const uint8_t* q = b.qs + 16 * ib;
    float* yb = y + 32 * ib;
    for (int j = 0; j < 16; ++j) {
      yb[j] = dl * float(kIQ4NLValues[q[j] & 0xF]);
      yb[j + 16] = dl * float(kIQ4NLValues[q[j] >> 4]);
    }
  }
}

template <class Block, void (*Fn)(const Block&, float*), int N>
void deq_blocks(const void* src, float* dst, int64_t n) {
  const Block* b = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / N; ++i) Fn(b[i], dst + i * N);
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element quantizers (bit-exact with quantize_row_*_ref).

// The value of largest magnitude (first one on ties), keeping its sign.
inline float signed_absmax(const float* x, int n, float* amax_out = nullptr) {
  float amax = 0, mx = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      mx = x[j];
    }
  }
  if (amax_out) *amax_out = amax;
  return mx;
}

void q_q4_0(const float* x, BlockQ4_0& b) {
  // d = max/-8 maps the extreme value onto q = 0 exactly and leaves 15 codes for the other side.
  const float d = signed_absmax(x, kQK) / -8;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  for (int j = 0; j < 16; ++j) {
    const int q0 = trunc_clamped(x[j] * id + 8.5f, 0, 15);
    const int q1 = trunc_clamped(x[j + 16] * id + 8.5f, 0, 15);
    b.qs[j] = uint8_t(q0 | (q1 << 4));
  }
}
void q_q4_1(const float* x, BlockQ4_1& b) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < kQK; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float d = (mx - mn) / 15;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  b.m = f32_to_fp16(mn);
  for (int j = 0; j < 16; ++j) {
    const int q0 = trunc_clamped((x[j] - mn) * id + 0.5f, 0, 15);
    const int q1 = trunc_clamped((x[j + 16] - mn) * id + 0.5f, 0, 15);
    b.qs[j] = uint8_t(q0 | (q1 << 4));
  }
}
void q_q5_0(const float* x, BlockQ5_0& b) {
  const float d = signed_absmax(x, kQK) / -16;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = uint8_t(trunc_clamped(x[j] * id + 16.5f, 0, 31));
  pack_q5_high_bits(q, b.qs, b.qh);
}
void q_q5_1(const float* x, BlockQ5_1& b) {
  float mn = x[0], mx = x[0];
  for (int j = 1; j < kQK; ++j) {
    mn = std::min(mn, x[j]);
    mx = std::max(mx, x[j]);
  }
  const float d = (mx - mn) / 31;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  b.m = f32_to_fp16(mn);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = uint8_t(trunc_clamped((x[j] - mn) * id + 0.5f, 0, 31));
  pack_q5_high_bits(q, b.qs, b.qh);
}
// Q8_0/Q8_1: d = amax/127 and round half away from zero (llama.cpp's roundf), so |q| <= 127.
// Written as truncation plus a correction on the exact remainder v - trunc(v) instead of a libm
// call so that the loop vectorizes; identical to roundf for |v| < 2^23 (here |v| <= 127.01).
inline int8_t round_q8(float v) {
  v = std::min(127.0f, std::max(-127.0f, v == v ? v : 0.0f));
  const int i = int(v);
  const float frac = v - float(i);
  return int8_t(i + int(frac >= 0.5f) - int(frac <= -0.5f));
}
void q_q8_0(const float* x, BlockQ8_0& b) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  for (int j = 0; j < kQK; ++j) b.qs[j] = round_q8(x[j] * id);
}
void q_q8_1(const float* x, BlockQ8_1& b) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    b.qs[j] = round_q8(x[j] * id);
    sum += b.qs[j];
  }
  b.s = f32_to_fp16(float(sum) * d);
}
void q_q8_k(const float* x, BlockQ8_K& b) {
  float amax = 0;
  const float mx = signed_absmax(x, kQK_K, &amax);
  if (amax == 0) {
    const float zero = 0;
    std::memcpy(&b.d, &zero, 4);
    std::memset(b.qs, 0, sizeof(b.qs));
    std::memset(b.bsums, 0, sizeof(b.bsums));
    return;
  }
  // -127/max: the extreme value becomes -127 exactly; 127 is the clamp for the other sign.
  const float iscale = -127.f / mx;
  for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(std::clamp(nearest_int(iscale * x[j]), -128, 127));
  for (int g = 0; g < kQK_K / 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
    b.bsums[g] = int16_t(sum);
  }
  const float d = 1 / iscale;
  std::memcpy(&b.d, &d, 4);
}

// ---------------------------------------------------------------------------------------------
// K-quant scale searches (llama.cpp make_qkx2_quants / make_q3_quants / make_qx_quants).

// Symmetric fit onto -nmax..nmax-1 (Q3_K): start from scale = -max/nmax, then coordinate
// descent on single quants maximising (sum w x l)^2 / sum w l^2 with w = x^2. L gets l + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0;
  const float mx = signed_absmax(x, n, &amax);
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, size_t(n));
    return 0.f;
  }
  const float iscale = float(-nmax) / mx;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

void q_q3_k(const float* x, BlockQ3_K& b) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float a = std::fabs(scales[j]);
    if (a > amax) {
      amax = a;
      max_scale = scales[j];
    }
  }
  std::memset(b.scales, 0, sizeof(b.scales));
  if (max_scale != 0) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
      const int l = std::clamp(int(int8_t(nearest_int(iscale * scales[j]))), -32, 31) + 32;
      if (j < 8) b.scales[j] = uint8_t(l & 0xF);
      else b.scales[j - 8] |= uint8_t((l & 0xF) << 4);
      b.scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
    }
    b.d = f32_to_fp16(1 / iscale);
  } else {
    b.d = f32_to_fp16(0.f);
  }
  int sc[16];
  q3k_scales(b.scales, sc);
  const float dd = fp16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    const float d = dd * float(sc[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
  }
  // High bit of element e goes to bit e/32 of hmask[e%32]; low 2 bits as Q2_K.
  std::memset(b.hmask, 0, sizeof(b.hmask));
  for (int e = 0; e < kQK_K; ++e) {
    if (L[e] > 3) {
      b.hmask[e % 32] |= uint8_t(1 << (e / 32));
      L[e] = int8_t(L[e] - 4);
    }
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      b.qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                (L[j + l + 96] << 6));
}

template <class Block, void (*Fn)(const float*, Block&), int N>
void q_blocks(const float* src, void* dst, int64_t n) {
  Block* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / N; ++i) Fn(src + i * N, b[i]);
}

int64_t check_multiple(const QTypeInfo& info, int64_t n, const char* what) {
  SLM_CHECK(n >= 0 && n % info.block_elems == 0, "{}: {} elements is not a multiple of the {} block size {}",
            what, n, info.name, info.block_elems);
  return n / info.block_elems;
}

}  // namespace

std::span<const QTypeInfo> all_qtypes() { return kTypes; }

const QTypeInfo* find_qtype(uint32_t raw_id) {
  for (const QTypeInfo& t : kTypes)
    if (uint32_t(t.type) == raw_id) return &t;
  return nullptr;
}

const QTypeInfo& qtype_info(QType t) {
  if (const QTypeInfo* i = find_qtype(uint32_t(t))) return *i;
  const uint32_t id = uint32_t(t);
  if (id < std::size(kGgmlNames))
    fail("unsupported tensor type {} ({})", ggml_type_name(id), id);
  fail("unknown tensor type id {}", id);
}

std::string_view ggml_type_name(uint32_t raw_id) {
  return raw_id < std::size(kGgmlNames) ? kGgmlNames[raw_id] : std::string_view("?");
}

std::optional<QType> qtype_from_name(std::string_view name) {
  for (const QTypeInfo& t : kTypes) {
    if (t.name.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < name.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == t.name[i];
    if (eq) return t.type;
  }
  return std::nullopt;
}

size_t row_bytes(QType t, int64_t n) {
  const QTypeInfo& info = qtype_info(t);
  return size_t(check_multiple(info, n, "row_bytes")) * size_t(info.block_bytes);
}

void dequantize_row(QType t, const void* src, float* dst, int64_t n) {
  check_multiple(qtype_info(t), n, "dequantize_row");
  switch (t) {
    case QType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case QType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(s[i]);
      return;
    }
    case QType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case QType::Q4_0: return deq_blocks<BlockQ4_0, deq_q4_0, kQK>(src, dst, n);
    case QType::Q4_1: return deq_blocks<BlockQ4_1, deq_q4_1, kQK>(src, dst, n);
    case QType::Q5_0: return deq_blocks<BlockQ5_0, deq_q5_0, kQK>(src, dst, n);
    case QType::Q5_1: return deq_blocks<BlockQ5_1, deq_q5_1, kQK>(src, dst, n);
    case QType::Q8_0: return deq_blocks<BlockQ8_0, deq_q8_0, kQK>(src, dst, n);
    case QType::Q8_1: return deq_blocks<BlockQ8_1, deq_q8_1, kQK>(src, dst, n);
    case QType::Q2_K: return deq_blocks<BlockQ2_K, deq_q2_k, kQK_K>(src, dst, n);
    case QType::Q3_K: return deq_blocks<BlockQ3_K, deq_q3_k, kQK_K>(src, dst, n);
    case QType::Q4_K: return deq_blocks<BlockQ4_K, deq_q4_k, kQK_K>(src, dst, n);
    case QType::Q5_K: return deq_blocks<BlockQ5_K, deq_q5_k, kQK_K>(src, dst, n);
    case QType::Q6_K: return deq_blocks<BlockQ6_K, deq_q6_k, kQK_K>(src, dst, n);
    case QType::Q8_K: return deq_blocks<BlockQ8_K, deq_q8_k, kQK_K>(src, dst, n);
    case QType::IQ4_NL: return deq_blocks<BlockIQ4_NL, deq_iq4_nl, kQK>(src, dst, n);
    case QType::IQ4_XS: return deq_blocks<BlockIQ4_XS, deq_iq4_xs, kQK_K>(src, dst, n);
  }
  fail("dequantize_row: unhandled type {}", uint32_t(t));
}

void quantize_row(QType t, const float* src, void* dst, int64_t n) {
  check_multiple(qtype_info(t), n, "quantize_row");
  switch (t) {
    case QType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case QType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_fp16(src[i]);
      return;
    }
    case QType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case QType::Q4_0: return q_blocks<BlockQ4_0, q_q4_0, kQK>(src, dst, n);
    case QType::Q4_1: return q_blocks<BlockQ4_1, q_q4_1, kQK>(src, dst, n);
    case QType::Q5_0: return q_blocks<BlockQ5_0, q_q5_0, kQK>(src, dst, n);
    case QType::Q5_1: return q_blocks<BlockQ5_1, q_q5_1, kQK>(src, dst, n);
    case QType::Q8_0: return q_blocks<BlockQ8_0, q_q8_0, kQK>(src, dst, n);
    case QType::Q8_1: return q_blocks<BlockQ8_1, q_q8_1, kQK>(src, dst, n);
    case QType::Q3_K: return q_blocks<BlockQ3_K, q_q3_k, kQK_K>(src, dst, n);
    case QType::Q8_K: return q_blocks<BlockQ8_K, q_q8_k, kQK_K>(src, dst, n);
    case QType::Q2_K:
    case QType::Q4_K:
    case QType::Q5_K:
    case QType::Q6_K:
    case QType::IQ4_NL:
    case QType::IQ4_XS: {
      // __builtin_cpu_supports also checks that the OS saves the AVX state.
      static const bool avx2 = __builtin_cpu_supports("avx2");
      if (avx2 ? detail::quantize_searched_avx2(t, src, dst, n)
               : detail::quantize_searched_baseline(t, src, dst, n))
        return;
      break;
    }
  }
  fail("quantize_row: unhandled type {}", uint32_t(t));
}

void quantize_rows(QType t, const float* src, void* dst, int64_t nrows, int64_t ncols) {
  SLM_CHECK(nrows >= 0, "quantize_rows: negative row count {}", nrows);
  const size_t rb = row_bytes(t, ncols);
  uint8_t* out = static_cast<uint8_t*>(dst);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < nrows; ++r) quantize_row(t, src + r * ncols, out + size_t(r) * rb, ncols);
}

void dequantize_rows(QType t, const void* src, float* dst, int64_t nrows, int64_t ncols) {
  SLM_CHECK(nrows >= 0, "dequantize_rows: negative row count {}", nrows);
  const size_t rb = row_bytes(t, ncols);
  const uint8_t* in = static_cast<const uint8_t*>(src);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nrows; ++r) dequantize_row(t, in + size_t(r) * rb, dst + r * ncols, ncols);
}

namespace {
// llama.cpp's CPU activation conversion to Q8_0/Q8_1 on x86 (the AVX/AVX2/AVX-512 paths of
// quantize_row_q8_0 / quantize_row_q8_1 in ggml-cpu-quants.c, which produced the fixtures' logits):
// unlike the _ref encoders it multiplies by 127/amax and rounds half to even (_mm256_round_ps).
// Returns d * sum(q) (float d), which Q8_1 stores as s.
float act_q8_block(const float* x, int8_t* qs, uint16_t& d16) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  d16 = f32_to_fp16(d);
  const float id = amax != 0.0f ? 127.f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = int8_t(std::clamp(nearest_int(x[j] * id), -128, 127));  // |x * id| <= 127.00002
    sum += qs[j];
  }
  return d * float(sum);
}
}  // namespace

void quantize_activations_ref(QType act_type, const float* x, void* dst, int64_t n) {
  SLM_CHECK(act_type == QType::Q8_0 || act_type == QType::Q8_1 || act_type == QType::Q8_K ||
                act_type == QType::F16 || act_type == QType::BF16 || act_type == QType::F32,
            "quantize_activations_ref: {} is not an activation type", qtype_info(act_type).name);
  quantize_row(act_type, x, dst, n);
}

void quantize_activations_x86(QType act_type, const float* x, void* dst, int64_t n) {
  const int64_t nb = check_multiple(qtype_info(act_type), n, "quantize_activations_x86");
  if (act_type == QType::Q8_0) {
    BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
    for (int64_t i = 0; i < nb; ++i) act_q8_block(x + i * kQK, b[i].qs, b[i].d);
  } else if (act_type == QType::Q8_1) {
    BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
    for (int64_t i = 0; i < nb; ++i) b[i].s = f32_to_fp16(act_q8_block(x + i * kQK, b[i].qs, b[i].d));
  } else {
    // Q8_K: x86 runs quantize_row_q8_K_ref; F16/BF16 round to nearest even; F32 copies.
    quantize_activations_ref(act_type, x, dst, n);
  }
}

QType activation_type_for(QType weight_type) {
  switch (weight_type) {
    case QType::Q4_0:
    case QType::Q5_0:
    case QType::Q8_0:
    case QType::IQ4_NL: return QType::Q8_0;
    case QType::Q4_1:
    case QType::Q5_1: return QType::Q8_1;
    case QType::Q2_K:
    case QType::Q3_K:
    case QType::Q4_K:
    case QType::Q5_K:
    case QType::Q6_K:
    case QType::IQ4_XS: return QType::Q8_K;
    case QType::F16: return QType::F16;
    case QType::BF16: return QType::BF16;
    case QType::F32: return QType::F32;
    case QType::Q8_1:
    case QType::Q8_K: break;
  }
  fail("activation_type_for: {} is an activation type, not a weight type", qtype_info(weight_type).name);
}

}  // namespace slm
