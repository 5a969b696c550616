// GPTQ tile kernel for AVX2+FMA: a 16-column tile is two ymm accumulators per activation row,
// 2 rows per pass (4 group + 4 running accumulators + codes fit the 16 registers).
// Same arithmetic as the AVX-512 kernel: per group accg = sum q·x, acc += s·(accg − z·sum x).
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/gptq_linear.h"

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
  const __m256i mask = _mm256_set1_epi32((1 << CB) - 1);
  const float* xr[MT];
  for (int i = 0; i < MT; ++i) xr[i] = r.xp + (m0 + i) * r.ldx;
  __m256 acc[MT][2];
  for (int i = 0; i < MT; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t w0 = w.group_start[size_t(g)] / PER, w1 = w.group_start[size_t(g) + 1] / PER;
    if (w0 == w1) continue;
    // m = 1 (decode): a second accumulator set for odd codes halves the FMA dependency chain;
    // with 2 rows the chains are already interleaved and the registers are needed.
    constexpr int SPLIT = MT == 1 ? 2 : 1;
    __m256 accg[SPLIT][MT][2];
    for (int p = 0; p < SPLIT; ++p)
      for (int i = 0; i < MT; ++i) accg[p][i][0] = accg[p][i][1] = _mm256_setzero_ps();
    for (int64_t wi = w0; wi < w1; ++wi) {
      __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + wi * NT));
      __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + wi * NT + 8));
      const int64_t k0 = wi * PER;
#pragma GCC unroll 8
      for (int j = 0; j < PER; ++j) {
        const __m256 f0 = _mm256_cvtepi32_ps(_mm256_and_si256(q0, mask));
        const __m256 f1 = _mm256_cvtepi32_ps(_mm256_and_si256(q1, mask));
        q0 = _mm256_srli_epi32(q0, CB);
        q1 = _mm256_srli_epi32(q1, CB);
        for (int i = 0; i < MT; ++i) {
          const __m256 xv = _mm256_broadcast_ss(xr[i] + k0 + j);
          auto& a = accg[j % SPLIT][i];
          a[0] = _mm256_fmadd_ps(f0, xv, a[0]);
          a[1] = _mm256_fmadd_ps(f1, xv, a[1]);
        }
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 s = _mm256_loadu_ps(sc + g * NT + 8 * h), z = _mm256_loadu_ps(zs + g * NT + 8 * h);
      for (int i = 0; i < MT; ++i) {
        const __m256 xs = _mm256_set1_ps(r.xsum[(m0 + i) * w.groups + g]);
        const __m256 qx = SPLIT == 2 ? _mm256_add_ps(accg[0][i][h], accg[SPLIT - 1][i][h]) : accg[0][i][h];
        acc[i][h] = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, xs, qx), acc[i][h]);
      }
    }
  }
  const int64_t n0 = t * NT;
  const int valid = int(std::min<int64_t>(NT, w.n - n0));
  for (int i = 0; i < MT; ++i) {
    alignas(32) float out[NT];
    _mm256_store_ps(out, acc[i][0]);
    _mm256_store_ps(out + 8, acc[i][1]);
    float* yr = r.y + (m0 + i) * r.ldy + n0;
    for (int c = 0; c < valid; ++c) yr[c] = out[c] + (w.bias.empty() ? 0.f : w.bias[size_t(n0 + c)]);
  }
}

template <int CB>
void tiles(const GptqRun& r, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t m0 = 0;
    for (; m0 + 2 <= r.m; m0 += 2) block<2, CB>(r, t, m0);
    if (m0 < r.m) block<1, CB>(r, t, m0);
  }
}

}  // namespace

void gptq_tiles_avx2(const GptqRun& r, int64_t t0, int64_t t1) {
  if (r.w->code_bits == 8) tiles<8>(r, t0, t1);
  else tiles<4>(r, t0, t1);
}

}  // namespace slm::cpu::detail
