// GPTQ tile kernel for AVX-512 (F/BW/VL/DQ only): one 16-column tile = one zmm of accumulators
// per activation row, up to 4 rows per pass so each unpacked code vector feeds 4 FMAs.
// Per group: accg = sum_k q[k]·x[k] in floats, then acc += s·(accg − z·sum_k x[k]) — the zero
// point is applied once per group instead of once per weight.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/gptq_linear.h"

// GCC 12 flags the intrinsics' own _mm512_undefined_*() operands as (maybe-)uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace slm::cpu::detail {
namespace {

template <int MT, int CB>
void block(const GptqRun& r, int64_t t, int64_t m0) {
  constexpr int PER = 32 / CB, NT = kGptqNTile;
  const GptqCpuWeight& w = *r.w;
  const int64_t wpt = w.words_per_tile();
  const uint32_t* codes = w.codes.data() + size_t(t * wpt * NT);
  const float* sc = w.scales.data() + size_t(t * w.groups * NT);
  const float* zs = w.zeros.data() + size_t(t * w.groups * NT);
  const __m512i mask = _mm512_set1_epi32((1 << CB) - 1);
  const float* xr[MT];
  for (int i = 0; i < MT; ++i) xr[i] = r.xp + (m0 + i) * r.ldx;
  __m512 acc[MT];
  for (int i = 0; i < MT; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t w0 = w.group_start[size_t(g)] / PER, w1 = w.group_start[size_t(g) + 1] / PER;
    if (w0 == w1) continue;
    // Two accumulator sets (even / odd codes) halve the FMA dependency chain, which is what
    // bounds the m = 1 (decode) case.
    __m512 accg[2][MT];
    for (int i = 0; i < MT; ++i) accg[0][i] = accg[1][i] = _mm512_setzero_ps();
    for (int64_t wi = w0; wi < w1; ++wi) {
      __m512i q = _mm512_loadu_si512(codes + wi * NT);
      const int64_t k0 = wi * PER;
#pragma GCC unroll 8
      for (int j = 0; j < PER; ++j) {
        const __m512 qf = _mm512_cvtepi32_ps(_mm512_and_si512(q, mask));
        q = _mm512_srli_epi32(q, CB);
        for (int i = 0; i < MT; ++i)
          accg[j & 1][i] = _mm512_fmadd_ps(qf, _mm512_set1_ps(xr[i][k0 + j]), accg[j & 1][i]);
      }
    }
    const __m512 s = _mm512_loadu_ps(sc + g * NT), z = _mm512_loadu_ps(zs + g * NT);
    for (int i = 0; i < MT; ++i) {
      const __m512 xs = _mm512_set1_ps(r.xsum[(m0 + i) * w.groups + g]);
      const __m512 qx = _mm512_add_ps(accg[0][i], accg[1][i]);
      acc[i] = _mm512_fmadd_ps(s, _mm512_fnmadd_ps(z, xs, qx), acc[i]);
    }
  }
  const int64_t n0 = t * NT;
  const int valid = int(std::min<int64_t>(NT, w.n - n0));
  const __mmask16 km = valid == NT ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
  const __m512 b = w.bias.empty() ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(km, w.bias.data() + n0);
  for (int i = 0; i < MT; ++i)
    _mm512_mask_storeu_ps(r.y + (m0 + i) * r.ldy + n0, km, _mm512_add_ps(acc[i], b));
}

template <int CB>
void tiles(const GptqRun& r, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t m0 = 0;
    for (; m0 + 4 <= r.m; m0 += 4) block<4, CB>(r, t, m0);
    switch (r.m - m0) {
      case 3: block<3, CB>(r, t, m0); break;
      case 2: block<2, CB>(r, t, m0); break;
      case 1: block<1, CB>(r, t, m0); break;
      default: break;
    }
  }
}

}  // namespace

void gptq_tiles_avx512(const GptqRun& r, int64_t t0, int64_t t1) {
  if (r.w->code_bits == 8) tiles<8>(r, t0, t1);
  else tiles<4>(r, t0, t1);
}

}  // namespace slm::cpu::detail
