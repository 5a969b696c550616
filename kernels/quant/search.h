// Internal to kernels/quant: the error-minimising scale searches of the K-quant and IQ4 encoders
// (llama.cpp make_qkx2_quants / make_qx_quants / quantize_row_iq4_nl_impl) written for kLanes
// independent sub-blocks at a time. Compiled twice: 4 lanes (SSE) in types.cpp and 8 lanes (AVX2)
// in search_avx2.cpp, each TU defining SLM_QUANT_LANES first and getting its own copy (anonymous
// namespace), so no AVX2 code can leak into the baseline path. Both give identical bytes.
// Includers must disable FP contraction before any include (see types.cpp).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

#ifndef SLM_QUANT_LANES
#error "define SLM_QUANT_LANES (4 or 8) before including kernels/quant/search.h"
#endif

namespace slm::qsearch {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // llama.cpp's "all zero" threshold for a group's max

// Round to nearest, ties to even, via the 1.5*2^23 magic constant: exactly llama.cpp's
// nearest_int for |f| < 2^22 (larger or NaN inputs give a garbage int, never UB; callers clamp).
inline int nearest_int(float f) {
  const float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Index of the code-book value closest to x (ties go up); `val` sorted ascending.
inline int best_index_iq4(float x) {
  const int8_t* val = kIQ4NLValues;
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < val[mid]) hi = mid;
    else lo = mid;
  }
  return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

// kLanes independent groups processed in lock step, one per SIMD lane (GCC vector extensions). Every
// lane performs exactly the scalar operation sequence of its group, so the results are
// bit-identical to a one-group-at-a-time loop; this only hides the latency chains of the sequential
// float sums, which dominate the searches (3x faster with 4 lanes, 6x with 8).
constexpr int kLanes = SLM_QUANT_LANES;
static_assert(kLanes == 4 || kLanes == 8);
using VF = float __attribute__((vector_size(4 * kLanes)));
using VI = int32_t __attribute__((vector_size(4 * kLanes)));

[[gnu::always_inline]] inline VI nearest_intv(VF f) {
  const VF v = f + 12582912.f;
  VI i;
  std::memcpy(&i, &v, sizeof(i));
  return (i & 0x007fffff) - 0x00400000;
}
[[gnu::always_inline]] inline VI clampv(VI v, int lo, int hi) {
  v = v < lo ? VI{} + lo : v;
  return v > hi ? VI{} + hi : v;
}
[[gnu::always_inline]] inline VF selectv(VI mask, VF a, VF b) { return mask ? a : b; }
[[gnu::always_inline]] inline VF fabsv(VF v) {
  VI i;
  std::memcpy(&i, &v, sizeof(i));
  i &= 0x7fffffff;
  std::memcpy(&v, &i, sizeof(v));
  return v;
}
[[gnu::always_inline]] inline VF to_vf(VI v) { return __builtin_convertvector(v, VF); }

// Asymmetric (scale, min) fit of n values onto 0..nmax minimising the weighted squared (or
// absolute, use_mad) error (llama.cpp make_qkx2_quants), for kLanes groups at once: x[i], w[i] hold
// element i of every group. Starts from the min/max grid, then tries nstep+1 stretched grids and
// refits scale and min by weighted least squares for each assignment (a better fit also moves the
// min used by the following grids). Returns the scales; *the_min receives -min (>= 0); L[i] the
// levels.
// n <= 32.
VF make_qkx2_quants(int n, int nmax, const VF* x, const VF* w, VI* L, VF* the_min, float rmin,
                    float rdelta, int nstep, bool use_mad) {
  VF mn = x[0], mx = x[0];
  VF sum_w = w[0];
  VF sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    mn = selectv(x[i] < mn, x[i], mn);
    mx = selectv(x[i] > mx, x[i], mx);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  mn = selectv(mn > 0, VF{}, mn);
  const VI flat = mx == mn;  // such a group gets L = 0, scale 0
  VF iscale = float(nmax) / (mx - mn);
  VF scale = 1 / iscale;
  VF best_error{};
  for (int i = 0; i < n; ++i) {
    L[i] = clampv(nearest_intv(iscale * (x[i] - mn)), 0, nmax);
    VF diff = scale * to_vf(L[i]) + mn - x[i];
    diff = use_mad ? fabsv(diff) : diff * diff;
    best_error += w[i] * diff;
  }
  VI Laux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (mx - mn);
    VF sum_l{}, sum_l2{}, sum_xl{};
    for (int i = 0; i < n; ++i) {
      Laux[i] = clampv(nearest_intv(iscale * (x[i] - mn)), 0, nmax);
      const VF fl = to_vf(Laux[i]);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const VF D = sum_w * sum_l2 - sum_l * sum_l;
    VF this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    VF this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    const VI min_pos = this_min > 0;
    this_min = selectv(min_pos, VF{}, this_min);
    this_scale = selectv(min_pos, sum_xl / sum_l2, this_scale);
    VF cur_error{};
    for (int i = 0; i < n; ++i) {
      VF diff = this_scale * to_vf(Laux[i]) + this_min - x[i];
      diff = use_mad ? fabsv(diff) : diff * diff;
      cur_error += w[i] * diff;
    }
    const VI better = (D > 0) & (cur_error < best_error);
    for (int i = 0; i < n; ++i) L[i] = better ? Laux[i] : L[i];
    best_error = selectv(better, cur_error, best_error);
    scale = selectv(better, this_scale, scale);
    mn = selectv(better, this_min, mn);
  }
  for (int i = 0; i < n; ++i) L[i] = flat ? VI{} : L[i];
  *the_min = -mn;
  return selectv(flat, VF{}, scale);
}

// Symmetric fit onto -nmax..nmax-1 (llama.cpp make_qx_quants, rmse_type 1 without importance
// weights: w = x^2) for kLanes groups at once: try 19 grids around -max/nmax and keep the one
// maximising (sum w x l)^2 / sum w l^2. Returns the scales; L[i] gets l + nmax.
VF make_qx_quants(int n, int nmax, const VF* x, VI* L) {  // n <= 16
  VF amax{}, mx{};
  for (int i = 0; i < n; ++i) {
    const VF ax = fabsv(x[i]);
    const VI up = ax > amax;
    amax = selectv(up, ax, amax);
    mx = selectv(up, x[i], mx);
  }
  const VI zero = amax < kGroupMaxEps;  // such a group gets L = 0, scale 0
  VF iscale = float(-nmax) / mx;
  VF sumlx{}, suml2{};
  for (int i = 0; i < n; ++i) {
    const VI l = clampv(nearest_intv(iscale * x[i]), -nmax, nmax - 1);
    L[i] = l + nmax;
    const VF w = x[i] * x[i], fl = to_vf(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  VF scale = selectv(suml2 != 0, sumlx / suml2, VF{});
  VF best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / mx;
    sumlx = VF{};
    suml2 = VF{};
    VI Laux[16];
    for (int i = 0; i < n; ++i) {
      const VI l = clampv(nearest_intv(iscale * x[i]), -nmax, nmax - 1);
      Laux[i] = l + nmax;
      const VF w = x[i] * x[i], fl = to_vf(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    const VI better = (suml2 > 0) & (sumlx * sumlx > best * suml2);
    for (int i = 0; i < n; ++i) L[i] = better ? Laux[i] : L[i];
    const VF new_scale = sumlx / suml2;
    scale = selectv(better, new_scale, scale);
    best = selectv(better, new_scale * sumlx, best);
  }
  for (int i = 0; i < n; ++i) L[i] = zero ? VI{} : L[i];
  return selectv(zero, VF{}, scale);
}

void q_q2_k(const float* x, BlockQ2_K& b) {
  uint8_t L[kQK_K];
  float mins[16], scales[16];
  const float q4scale = 15.f;
  // Sub-blocks 0-7 and 8-15 as two batches of 8 lanes; weights |x|, absolute-error fit.
  for (int g0 = 0; g0 < 16; g0 += kLanes) {
    VF xt[16], wt[16], sc, mn;
    VI Lt[16];
    for (int l = 0; l < 16; ++l)
      for (int j = 0; j < kLanes; ++j) {
        xt[l][j] = x[16 * (g0 + j) + l];
        wt[l][j] = std::fabs(xt[l][j]);
      }
    sc = make_qkx2_quants(16, 3, xt, wt, Lt, &mn, -0.5f, 0.1f, 15, true);
    for (int j = 0; j < kLanes; ++j) {
      scales[g0 + j] = sc[j];
      mins[g0 + j] = mn[j];
      for (int l = 0; l < 16; ++l) L[16 * (g0 + j) + l] = uint8_t(Lt[l][j]);
    }
  }
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < 16; ++j) b.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
    b.d = f32_to_fp16(max_scale / q4scale);
  } else {
    std::memset(b.scales, 0, sizeof(b.scales));
    b.d = f32_to_fp16(0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < 16; ++j) b.scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
    b.dmin = f32_to_fp16(max_min / q4scale);
  } else {
    b.dmin = f32_to_fp16(0.f);
  }
  // Requantize against the scales actually stored (sub-blocks whose scale rounded to 0 keep the
  // search's assignment; their values decode to -min regardless).
  const float dd = fp16_to_f32(b.d), dm_all = fp16_to_f32(b.dmin);
  for (int j = 0; j < 16; ++j) {
    const float d = dd * float(b.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = dm_all * float(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = uint8_t(std::clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      b.qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                (L[j + l + 96] << 6));
}

// Shared by Q4_K and Q5_K: 8 sub-blocks of 32 with a (scale, min) search each, weights
// av_x + |x| (rms of the sub-block plus magnitude), 6-bit scale/min codes relative to the block
// maxima. Writes d, dmin, scales and returns the requantized levels in L.
template <int NMax>
void q_k_scale_min(const float* x, float rmin, int nstep, uint16_t& d_out, uint16_t& dmin_out,
                   uint8_t packed[kKScaleBytes], uint8_t L[kQK_K]) {
  float scales[8], mins[8];
  for (int g0 = 0; g0 < 8; g0 += kLanes) {
    VF xt[32], wt[32], sc, mn;
    VI Lt[32];
    for (int j = 0; j < kLanes; ++j) {
      const float* xs = x + 32 * (g0 + j);
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) {
        xt[l][j] = xs[l];
        wt[l][j] = av_x + std::fabs(xs[l]);
      }
    }
    sc = make_qkx2_quants(32, NMax, xt, wt, Lt, &mn, rmin, 0.1f, nstep, false);
    for (int j = 0; j < kLanes; ++j) {
      for (int l = 0; l < 32; ++l) L[32 * (g0 + j) + l] = uint8_t(Lt[l][j]);
      scales[g0 + j] = sc[j];
      mins[g0 + j] = mn[j];
    }
  }
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    // llama.cpp stores the rounded code in a uint8_t before clamping to 63.
    const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= uint8_t((ls >> 4) << 6);
      packed[j] |= uint8_t((lm >> 4) << 6);
    }
  }
  d_out = f32_to_fp16(max_scale / 63.f);
  dmin_out = f32_to_fp16(max_min / 63.f);
  const float dd = fp16_to_f32(d_out), dm_all = fp16_to_f32(dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    get_scale_min_k4(j, packed, sc, mn);
    const float d = dd * float(sc);
    if (d == 0) continue;
    const float dm = dm_all * float(mn);
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = uint8_t(std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, NMax));
  }
}

void q_q4_k(const float* x, BlockQ4_K& b) {
  uint8_t L[kQK_K];
  std::memset(b.scales, 0, sizeof(b.scales));
  q_k_scale_min<15>(x, -1.f, 20, b.d, b.dmin, b.scales, L);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) b.qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

void q_q5_k(const float* x, BlockQ5_K& b) {
  uint8_t L[kQK_K];
  std::memset(b.scales, 0, sizeof(b.scales));
  q_k_scale_min<31>(x, -0.5f, 15, b.d, b.dmin, b.scales, L);
  std::memset(b.qh, 0, sizeof(b.qh));
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
      b.qh[l] |= uint8_t(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
      b.qs[32 * c + l] = uint8_t((l1 & 0xF) | ((l2 & 0xF) << 4));
    }
  }
}

void q_q6_k(const float* x, BlockQ6_K& b) {
  int8_t L[kQK_K];
  float scales[16];
  for (int g0 = 0; g0 < 16; g0 += kLanes) {
    VF xt[16];
    VI Lt[16];
    for (int l = 0; l < 16; ++l)
      for (int j = 0; j < kLanes; ++j) xt[l][j] = x[16 * (g0 + j) + l];
    const VF sc = make_qx_quants(16, 32, xt, Lt);
    for (int j = 0; j < kLanes; ++j) {
      scales[g0 + j] = sc[j];
      for (int l = 0; l < 16; ++l) L[16 * (g0 + j) + l] = int8_t(Lt[l][j]);
    }
  }
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float a = std::fabs(scales[ib]);
    if (a > max_abs_scale) {
      max_abs_scale = a;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof(b));
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = f32_to_fp16(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) b.scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  const float dd = fp16_to_f32(b.d);
  for (int j = 0; j < 16; ++j) {
    const float d = dd * float(b.scales[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = int8_t(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
  }
  for (int h = 0; h < 2; ++h) {
    const int8_t* Lh = L + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = uint8_t((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
      ql[l + 32] = uint8_t((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
      qh[l] = uint8_t((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                      ((Lh[l + 96] >> 4) << 6));
    }
  }
}

// IQ4_NL / IQ4_XS (llama.cpp quantize_row_iq4_nl_impl with ntry = 7, no importance matrix).
// Scale search for kLanes groups of 32 at once: weights x^2, start from d = max/127, then try the
// 15 grids id = (t - 127)/max, keeping the least-squares scale of the best assignment. Groups with
// max|x| < 1e-15 get scale 0. The code-book index is computed branch-free as the number of
// midpoints 2x passes, which equals llama.cpp's binary search for every non-NaN input (checked
// exhaustively around every midpoint); here it only feeds the sums.
VF iq4_scale_search(const VF* x) {
  constexpr int kNtry = 7;
  const int8_t* values = kIQ4NLValues;
  auto code = [&](VF al) {
    const VF al2 = al + al;
    VF q = VF{} + float(values[0]);
    for (int t = 0; t < 15; ++t)
      q += selectv(al2 >= float(values[t] + values[t + 1]), VF{} + float(values[t + 1] - values[t]), VF{});
    return q;
  };
  VF amax{}, mx{};
  for (int j = 0; j < 32; ++j) {
    const VF ax = fabsv(x[j]);
    const VI up = ax > amax;
    amax = selectv(up, ax, amax);
    mx = selectv(up, x[j], mx);
  }
  const VI skip = amax < kGroupMaxEps;
  VF d = -mx / float(values[0]);
  VF id = 1 / d;
  VF sumqx{}, sumq2{};
  for (int j = 0; j < 32; ++j) {
    const VF q = code(id * x[j]), w = x[j] * x[j];
    sumqx += w * q * x[j];
    sumq2 += w * q * q;
  }
  d = sumqx / sumq2;
  VF best = d * sumqx;
  for (int itry = -kNtry; itry <= kNtry; ++itry) {
    id = float(itry + values[0]) / mx;
    sumqx = VF{};
    sumq2 = VF{};
    for (int j = 0; j < 32; ++j) {
      const VF q = code(id * x[j]), w = x[j] * x[j];
      sumqx += w * q * x[j];
      sumq2 += w * q * q;
    }
    const VI better = (sumq2 > 0) & (sumqx * sumqx > best * sumq2);
    const VF new_d = sumqx / sumq2;
    d = selectv(better, new_d, d);
    best = selectv(better, new_d * sumqx, best);
  }
  return selectv(skip, VF{}, d);
}

// Transposes up to kLanes groups of 32 (group g at x + 32 g; missing groups read as zeros).
void load_groups32(const float* x, int ngroups, VF* xt) {
  for (int l = 0; l < 32; ++l)
    for (int j = 0; j < kLanes; ++j) xt[l][j] = j < ngroups ? x[32 * j + l] : 0.0f;
}

inline void pack_nibbles32(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t(L[j] | (L[16 + j] << 4));
}

// IQ4_NL blocks: the scale is the block's search result, stored as is; then every element takes
// the nearest code at that scale.
void q_iq4_nl_blocks(const float* x, BlockIQ4_NL* b, int64_t nblocks) {
  for (int64_t i0 = 0; i0 < nblocks; i0 += kLanes) {
    const int ng = int(std::min<int64_t>(kLanes, nblocks - i0));
    VF xt[32];
    load_groups32(x + 32 * i0, ng, xt);
    const VF sc = iq4_scale_search(xt);
    for (int j = 0; j < ng; ++j) {
      const float* xb = x + 32 * (i0 + j);
      const float s = sc[j];
      b[i0 + j].d = f32_to_fp16(s);
      const float id = s != 0 ? 1 / s : 0;
      uint8_t L[32];
      for (int e = 0; e < 32; ++e) L[e] = uint8_t(best_index_iq4(id * xb[e]));
      pack_nibbles32(L, b[i0 + j].qs);
    }
  }
}

// IQ4_XS: the 8 sub-block scales are coded as 6-bit signed multiples of d = -max_scale/32 and every
// sub-block is requantized at its coded scale.
void q_iq4_xs(const float* x, BlockIQ4_XS& b) {
  float scales[8];
  for (int g0 = 0; g0 < 8; g0 += kLanes) {
    VF xt[32];
    load_groups32(x + 32 * g0, kLanes, xt);
    const VF sc = iq4_scale_search(xt);
    for (int j = 0; j < kLanes; ++j) scales[g0 + j] = sc[j];
  }
  float max_scale = 0, amax_scale = 0;
  for (float s : scales) {
    if (std::fabs(s) > amax_scale) {
      amax_scale = std::fabs(s);
      max_scale = s;
    }
  }
  const float d = -max_scale / 32;
  b.d = f32_to_fp16(d);
  const float id = d != 0 ? 1 / d : 0.f;
  uint16_t scales_h = 0;
  for (int ib = 0; ib < 8; ++ib) {
    int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
    const float dl = d * float(l);
    const float idl = dl != 0 ? 1 / dl : 0.f;
    uint8_t L[32];
    for (int j = 0; j < 32; ++j) L[j] = uint8_t(best_index_iq4(idl * x[32 * ib + j]));
    pack_nibbles32(L, b.qs + 16 * ib);
    l += 32;
    if (ib % 2 == 0) b.scales_l[ib / 2] = uint8_t(l & 0xF);
    else b.scales_l[ib / 2] |= uint8_t((l & 0xF) << 4);
    scales_h = uint16_t(scales_h | ((l >> 4) << (2 * ib)));
  }
  b.scales_h = scales_h;
}

template <class Block, void (*Fn)(const float*, Block&)>
void search_blocks(const float* src, void* dst, int64_t n) {
  Block* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i) Fn(src + i * kQK_K, b[i]);
}

// The searched types: Q2_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. n is a block multiple (checked by
// the caller). Returns false for any other type.
bool quantize_searched(QType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case QType::Q2_K: search_blocks<BlockQ2_K, q_q2_k>(src, dst, n); return true;
    case QType::Q4_K: search_blocks<BlockQ4_K, q_q4_k>(src, dst, n); return true;
    case QType::Q5_K: search_blocks<BlockQ5_K, q_q5_k>(src, dst, n); return true;
    case QType::Q6_K: search_blocks<BlockQ6_K, q_q6_k>(src, dst, n); return true;
    case QType::IQ4_XS: search_blocks<BlockIQ4_XS, q_iq4_xs>(src, dst, n); return true;
    case QType::IQ4_NL: q_iq4_nl_blocks(src, static_cast<BlockIQ4_NL*>(dst), n / kQK); return true;
    default: return false;
  }
}

}  // namespace
}  // namespace slm::qsearch
