// CPU emulation of the tensor-core GEMM's fragment plumbing (kernels/layout/mma_layout.h, used by
// kernels/cuda/gptq.cu): the shared-memory addresses each lane gives ldmatrix.x4, the regrouping
// of the loaded matrices into m16n8k16 A/B fragments and the accumulator placement must together
// compute the plain product of the shared-memory tiles. ldmatrix and mma are emulated from their
// PTX ISA definitions (restated in mma_layout.h). Runs in CI without a GPU.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "kernels/layout/mma_layout.h"

using namespace slm::layout;

TEST_CASE("layout: mma fragment emulation: ldmatrix addressing + m16n8k16 + epilogue = tile product") {
  constexpr int kMT = 2, kBM = 32 * kMT, kBN = 128, kBK = 32;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> dist(-8, 8);
  // Small integers: every product and sum below is exact in double.
  std::vector<double> As(kBM * kBK), Bs(kBN * kBK);  // [m][k], [n][k]
  for (auto& v : As) v = dist(rng);
  for (auto& v : Bs) v = dist(rng);
  std::vector<double> out(kBM * kBN, 0.0);
  std::vector<int> written(kBM * kBN, 0);

  for (int warp = 0; warp < 4; ++warp) {
    const int wm = warp >> 1, wn = warp & 1;
    double acc[32][kMT][8][4] = {};
    for (int ks = 0; ks < kBK / 16; ++ks) {
      // A fragments: a[lane][mt][reg][half]
      double a[32][kMT][4][2];
      for (int mt = 0; mt < kMT; ++mt)
        for (int L = 0; L < 32; ++L)
          for (int j = 0; j < 4; ++j) {
            const int src = 8 * j + L / 4;  // lane that supplied row L/4 of matrix j
            const int row = wm * 16 * kMT + mt * 16 + ldsm_a_row(src);
            const int col = ks * 16 + ldsm_a_col(src) + 2 * (L % 4);
            for (int h = 0; h < 2; ++h) a[L][mt][j][h] = As[row * kBK + col + h];
          }
      for (int np = 0; np < 4; ++np) {
        double bf[32][2][2][2];  // [lane][tile][reg][half]
        for (int L = 0; L < 32; ++L)
          for (int j = 0; j < 4; ++j) {
            const int src = 8 * j + L / 4;
            const int n = wn * 64 + np * 16 + ldsm_b_row(src);
            const int k = ks * 16 + ldsm_b_col(src) + 2 * (L % 4);
            for (int h = 0; h < 2; ++h) bf[L][ldsm_b_tile(j)][ldsm_b_reg(j)][h] = Bs[n * kBK + k + h];
          }
        for (int mt = 0; mt < kMT; ++mt)
          for (int tile = 0; tile < 2; ++tile) {
            // mma.m16n8k16 as the PTX ISA defines it, from the fragments of all 32 lanes.
            double A[16][16], B[16][8];
            for (int L = 0; L < 32; ++L) {
              const int g = L / 4, t = L % 4;
              for (int i = 0; i < 4; ++i)
                for (int h = 0; h < 2; ++h) A[g + 8 * (i & 1)][2 * t + h + 8 * (i >> 1)] = a[L][mt][i][h];
              for (int i = 0; i < 2; ++i)
                for (int h = 0; h < 2; ++h) B[2 * t + h + 8 * i][g] = bf[L][tile][i][h];
            }
            for (int L = 0; L < 32; ++L)
              for (int e = 0; e < 4; ++e) {
                const int r = mma_c_row(L, e), c = mma_c_col(L, e);
                double d = 0;
                for (int kk = 0; kk < 16; ++kk) d += A[r][kk] * B[kk][c];
                acc[L][mt][2 * np + tile][e] += d;
              }
          }
      }
    }
    // Epilogue placement, as in the kernel.
    for (int L = 0; L < 32; ++L)
      for (int mt = 0; mt < kMT; ++mt)
        for (int nt = 0; nt < 8; ++nt)
          for (int e = 0; e < 4; ++e) {
            const int row = wm * 16 * kMT + mt * 16 + mma_c_row(L, e);
            const int col = wn * 64 + nt * 8 + mma_c_col(L, e);
            out[row * kBN + col] = acc[L][mt][nt][e];
            ++written[row * kBN + col];
          }
  }

  int wrong = 0, coverage = 0;
  for (int m = 0; m < kBM; ++m)
    for (int n = 0; n < kBN; ++n) {
      double ref = 0;
      for (int k = 0; k < kBK; ++k) ref += As[m * kBK + k] * Bs[n * kBK + k];
      wrong += out[m * kBN + n] != ref;
      coverage += written[m * kBN + n] != 1;
    }
  CHECK(coverage == 0);  // every output written exactly once
  CHECK(wrong == 0);
}
