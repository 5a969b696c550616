// GPTQ 4-bit matrix kernels: (a) dequantize-to-FP16 (+ cuBLAS, in linear_cuda.cpp), (b) naive
// fused, (c) fast fused GEMV for M = 1..8, (d) tensor-core GEMM. (a) and (b) read the checkpoint
// layout; (c) and (d) read the repacked layout of kernels/layout/gptq_layout.h through the same
// SLM_HD index/bit helpers the CPU emulation test checks.
#include <algorithm>

#include "kernels/cuda/launch.h"
#include "kernels/cuda/ptx.cuh"
#include "kernels/layout/gptq_layout.h"
#include "kernels/layout/mma_layout.h"

namespace slm::cuda::detail {
namespace {

using ::slm::layout::gptq_code_orig;
using ::slm::layout::gptq_fast_group;
using ::slm::layout::gptq_fast_word;
using ::slm::layout::gptq_magic_unpack;
using ::slm::layout::gptq_zero_orig;
using ::slm::layout::kGptqChunkK;
using ::slm::layout::ldsm_a_col;
using ::slm::layout::ldsm_a_row;
using ::slm::layout::ldsm_b_col;
using ::slm::layout::ldsm_b_reg;
using ::slm::layout::ldsm_b_row;
using ::slm::layout::ldsm_b_tile;
using ::slm::layout::mma_c_col;
using ::slm::layout::mma_c_row;
using ptx::as_h2;
using ptx::as_u32;

// ---- act-order activation permutation ----
__global__ void permute_columns_kernel(const __half* __restrict__ x, const int32_t* __restrict__ perm,
                                       __half* __restrict__ xp, int64_t m, int64_t k) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * k) return;
  const int64_t row = i / k, col = i % k;
  xp[i] = x[row * k + perm[col]];
}

// ---- (a) dequantize the checkpoint layout to FP16 W[N][K] ----
// One thread per (output n, pair of 8-wide K words), n fastest: a warp's qweight reads are 32
// consecutive words of one checkpoint row (coalesced), and each thread stores 16 FP16 values =
// one full 32-byte sector of W[n][.] (K % 32 == 0 keeps it sector-aligned).
__global__ void gptq_dequant_kernel(GptqCheckpointDev w, __half* __restrict__ out) {
  const int64_t pairs = w.k / 16;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= pairs * w.n) return;
  const int64_t n = i % w.n, kp = i / w.n;
  alignas(16) __half v[16];
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const int64_t k = kp * 16 + j;
    const int64_t g = w.g_idx ? w.g_idx[k] : k / w.group_size;
    const int q = gptq_code_orig(w.qweight, w.n, k, n);
    const int z = gptq_zero_orig(w.qzeros, w.n, g, n, w.zeros_v1);
    v[j] = __float2half_rn(__half2float(w.scales[g * w.n + n]) * float(q - z));
  }
  uint4* dst = reinterpret_cast<uint4*>(out + n * w.k + kp * 16);
  dst[0] = *reinterpret_cast<const uint4*>(v);
  dst[1] = *reinterpret_cast<const uint4*>(v + 8);
}

// ---- (b) naive fused: one thread per output, scalar unpacking, FP32 accumulation ----
// Deliberately the straightforward kernel (what a first port of the PyTorch reference looks like):
// every weight is unpacked with shifts/masks, its group looked up through g_idx, its zero and
// scale re-read, and the activation read as a scalar. Reads are coalesced along N (consecutive
// threads = consecutive output columns = consecutive qweight words), nothing else is optimised.
constexpr int kNaiveThreads = 128;
__global__ void __launch_bounds__(kNaiveThreads)
    gptq_naive_kernel(GptqCheckpointDev w, const __half* __restrict__ x, __half* __restrict__ y) {
  const int64_t n = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t m = blockIdx.y;
  if (n >= w.n) return;
  const __half* xr = x + m * w.k;
  float acc = 0.0f;
  for (int64_t k = 0; k < w.k; ++k) {
    const int64_t g = w.g_idx ? w.g_idx[k] : k / w.group_size;
    const int q = gptq_code_orig(w.qweight, w.n, k, n);
    const int z = gptq_zero_orig(w.qzeros, w.n, g, n, w.zeros_v1);
    acc = fmaf(__half2float(xr[k]), __half2float(w.scales[g * w.n + n]) * float(q - z), acc);
  }
  y[m * w.n + n] = __float2half_rn(acc);
}

// ---- (c) fast fused GEMV, M = 1..8 ----
// Launch shape (same on sm_75 and sm_90; see docs/cuda-kernels.md for the arithmetic):
//  * a warp owns kGemvRows outputs and walks K in 32-wide chunks, one chunk per lane per step:
//    each lane issues one 128-bit load per output row (32 weights), so a warp step moves
//    kGemvRows x 512 contiguous bytes per row — fully coalesced, no shared memory needed;
//  * kGemvRows = 4 reuses every activation load 4 times (x comes from L1/L2; with M = 8 the
//    accumulators are M x 4 = 32 floats, register pressure stays < 128/thread);
//  * kGemvWarps = 4 (128 threads) per block so a T4 SM (16 blocks, 32 warps max) can hold enough
//    independent 128-bit loads in flight: N = 2048 gives 128 blocks = 3.2 per T4 SM.
//  * split-K over grid.y when N / 16 blocks would leave SMs idle (small N, H100's 132 SMs).
// Per-architecture values. sm_75 (T4) is the design target (reasoning above). sm_90 (H100:
// 132 SMs, ~3.35 TB/s, 228 KB shared memory/SM) keeps the same shape until measured: its larger
// bandwidth-latency product is covered by split-K (more blocks) rather than by more rows per warp,
// which would cost registers. One instantiation serves both while the values agree.
namespace sm75 {
constexpr int kGemvWarps = 4, kGemvRows = 4;
}
namespace sm90 {
constexpr int kGemvWarps = 4, kGemvRows = 4;
}
static_assert(sm75::kGemvWarps == sm90::kGemvWarps && sm75::kGemvRows == sm90::kGemvRows,
              "give the GEMV an arch template parameter before the per-arch shapes diverge");
constexpr int kGemvWarps = sm75::kGemvWarps;
constexpr int kGemvRows = sm75::kGemvRows;
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kGemvOutputsPerBlock = kGemvWarps * kGemvRows;
static_assert(kGemvOutputsPerBlock == kGemvOutputsPerBlockHost);

template <int M>
__global__ void __launch_bounds__(kGemvThreads)
    gptq_gemv_kernel(GptqFastDev w, const __half* __restrict__ x, __half* __restrict__ y,
                     float* __restrict__ partial, int64_t chunks_per_split) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t n0 = (int64_t(blockIdx.x) * kGemvWarps + warp) * kGemvRows;
  const int64_t nchunks = w.k / kGptqChunkK;
  const int64_t c_begin = int64_t(blockIdx.y) * chunks_per_split;
  const int64_t c_end = min(nchunks, c_begin + chunks_per_split);
  const uint4* qw4 = reinterpret_cast<const uint4*>(w.qweight);

  float acc[M][kGemvRows];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) acc[m][r] = 0.0f;

  for (int64_t c = c_begin + lane; c < c_end; c += 32) {
    const int64_t g = gptq_fast_group(c * kGptqChunkK, w.group_size);
    uint4 wv[kGemvRows];
    __half2 s2[kGemvRows], nz_lo[kGemvRows], nz_hi[kGemvRows];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
      const int64_t n = n0 + r;
      if (n < w.n) {
        // Streamed once: evict-first (ld.global.cs) keeps the activations and scales in L1/L2.
        wv[r] = __ldcs(qw4 + (gptq_fast_word(n, c * 4, w.k) >> 2));
        const __half s = w.scales[g * w.n + n];
        const float z = float(w.zeros[g * w.n + n]);
        s2[r] = __halves2half2(s, s);
        nz_lo[r] = __float2half2_rn(-(1024.0f + z));  // exact: integers below 2048
        nz_hi[r] = __float2half2_rn(-(64.0f + z));
      } else {
        wv[r] = make_uint4(0, 0, 0, 0);
        s2[r] = __float2half2_rn(0.0f);
        nz_lo[r] = nz_hi[r] = __float2half2_rn(0.0f);
      }
    }
    const __half2 inv16 = __float2half2_rn(1.0f / 16.0f);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      // Dequantize word j of every row: 8 weights -> 4 half2 of s*(q - z) in 2 lop3 + 1 shift +
      // 2 HADD2/HFMA2 + 4 HMUL2, with no int->float conversion (gptq_layout.h explains the bits).
      __half2 wd[kGemvRows][4];
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        const uint32_t word = j == 0 ? wv[r].x : j == 1 ? wv[r].y : j == 2 ? wv[r].z : wv[r].w;
        uint32_t h[4];
        gptq_magic_unpack(word, h);
        wd[r][0] = __hmul2(__hadd2(as_h2(h[0]), nz_lo[r]), s2[r]);
        wd[r][1] = __hmul2(__hfma2(as_h2(h[1]), inv16, nz_hi[r]), s2[r]);
        wd[r][2] = __hmul2(__hadd2(as_h2(h[2]), nz_lo[r]), s2[r]);
        wd[r][3] = __hmul2(__hfma2(as_h2(h[3]), inv16, nz_hi[r]), s2[r]);
      }
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + m * w.k + c * kGptqChunkK + 8 * j));
        const __half2 x0 = as_h2(xv.x), x1 = as_h2(xv.y), x2 = as_h2(xv.z), x3 = as_h2(xv.w);
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
          // 8-term dot in half2 (4 products per lane-half), then FP32 accumulation.
          __half2 p = __hmul2(x0, wd[r][0]);
          p = __hfma2(x1, wd[r][1], p);
          p = __hfma2(x2, wd[r][2], p);
          p = __hfma2(x3, wd[r][3], p);
          const float2 f = __half22float2(p);
          acc[m][r] += f.x + f.y;
        }
      }
    }
  }

#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
      const float v = ptx::warp_sum(acc[m][r]);
      const int64_t n = n0 + r;
      if (lane == (m * kGemvRows + r) % 32 && n < w.n) {
        if (partial)
          partial[(int64_t(blockIdx.y) * M + m) * w.n + n] = v;
        else
          y[m * w.n + n] = __float2half_rn(v);
      }
    }
}

__global__ void splitk_reduce_kernel(const float* __restrict__ partial, __half* __restrict__ y,
                                     int64_t mn, int splits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= mn) return;
  float v = 0.0f;
  for (int s = 0; s < splits; ++s) v += partial[s * mn + i];
  y[i] = __float2half_rn(v);
}

// ---- (d) tensor-core GEMM ----
// Block tile kMmaBM x kMmaBN outputs, K in steps of kMmaBK = 32 (one 128-bit packed load per
// output column per step, never straddling a group). 4 warps in a 2 x 2 grid, each computing
// (kMmaBM/2) x 64 with m16n8k16 fragments (two m16n8k8 on sm_75). Per K step:
//   A (activations): kMmaBM x 32 FP16 -> shared, cp.async on sm_80+, register-staged on sm_75;
//   B (weights): thread t loads output column n0+t's 32 packed codes (16 B), dequantizes them in
//   registers with the magic-number trick and stores 32 FP16 to shared in [n][k] order, which is
//   exactly what ldmatrix (non-transposed) turns into B fragments.
// Double-buffered shared memory: the global loads of step k+1 are issued before the MMAs of step
// k and only stored after them, so their latency hides behind the tensor-core work.
// Tile constants are the same on sm_75 and sm_90: 2 x (64 + 128) x 40 x 2 B = 30 KB of shared
// memory per block, which lets two blocks share a T4 SM's 64 KB (8 warps), and the rows padded
// to 40 halves (80 B) make every ldmatrix phase hit 8 distinct 16-byte bank groups.
// Per-architecture values: sm_75 as reasoned above; sm_90 keeps them until measured (a Hopper
// tile would rather use wgmma with 64-row warpgroups and a deeper cp.async/TMA pipeline in its
// 228 KB of shared memory — a different kernel, not different constants).
namespace sm75 {
constexpr int kMmaBN = 128, kMmaBK = 32, kMmaThreads = 128;
}
namespace sm90 {
constexpr int kMmaBN = 128, kMmaBK = 32, kMmaThreads = 128;
}
static_assert(sm75::kMmaBN == sm90::kMmaBN && sm75::kMmaBK == sm90::kMmaBK &&
              sm75::kMmaThreads == sm90::kMmaThreads);
constexpr int kMmaBN = sm75::kMmaBN;
constexpr int kMmaBK = sm75::kMmaBK;
constexpr int kMmaThreads = sm75::kMmaThreads;
constexpr int kMmaLds = kMmaBK + 8;

template <int kMT>  // m16 tiles per warp: BM = 32 * kMT (kMT = 1 for M <= 32)
__global__ void __launch_bounds__(kMmaThreads)
    gptq_mma_kernel(GptqFastDev w, const __half* __restrict__ x, __half* __restrict__ y, int64_t M) {
  constexpr int kBM = 32 * kMT;
  constexpr int kAIters = kBM * (kMmaBK / 8) / kMmaThreads;  // 16-byte A chunks per thread
  static_assert(kAIters >= 1 && kMmaBN == kMmaThreads);
  __shared__ alignas(16) __half As[2][kBM][kMmaLds];
  __shared__ alignas(16) __half Bs[2][kMmaBN][kMmaLds];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = int64_t(blockIdx.y) * kBM;
  const int64_t n0 = int64_t(blockIdx.x) * kMmaBN;
  const int64_t K = w.k, N = w.n;
  const int64_t ktiles = K / kMmaBK;
  const uint4* qw4 = reinterpret_cast<const uint4*>(w.qweight);
  const int64_t bn = n0 + tid;  // this thread's B column
  const bool bn_ok = bn < N;

  float acc[kMT][8][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  [[maybe_unused]] uint4 a_reg[kAIters];
  uint4 b_reg;
  __half b_s = __float2half_rn(0.0f);
  float b_z = 0.0f;

  auto a_src = [&](int i, int64_t kt, int& row, int& col, bool& ok) {
    const int idx = tid + i * kMmaThreads;
    row = idx >> 2;
    col = (idx & 3) * 8;
    ok = m0 + row < M;
    return x + (ok ? (m0 + row) * K + kt * kMmaBK + col : 0);
  };
  auto load_a = [&](int64_t kt, int buf) {
#pragma unroll
    for (int i = 0; i < kAIters; ++i) {
      int row, col;
      bool ok;
      const __half* src = a_src(i, kt, row, col, ok);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
      ptx::cp_async_16(&As[buf][row][col], src, ok ? 16 : 0);
#else
      (void)buf;
      a_reg[i] = ok ? __ldg(reinterpret_cast<const uint4*>(src)) : make_uint4(0, 0, 0, 0);
#endif
    }
  };
  auto store_a = [&](int buf) {
#if !(defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#pragma unroll
    for (int i = 0; i < kAIters; ++i) {
      const int idx = tid + i * kMmaThreads;
      *reinterpret_cast<uint4*>(&As[buf][idx >> 2][(idx & 3) * 8]) = a_reg[i];
    }
#else
    (void)buf;
#endif
  };
  auto load_b = [&](int64_t kt) {
    if (bn_ok) {
      const int64_t g = gptq_fast_group(kt * kMmaBK, w.group_size);
      b_reg = __ldcs(qw4 + (gptq_fast_word(bn, kt * 4, K) >> 2));
      b_s = w.scales[g * N + bn];
      b_z = float(w.zeros[g * N + bn]);
    } else {
      b_reg = make_uint4(0, 0, 0, 0);
      b_s = __float2half_rn(0.0f);
    }
  };
  auto store_b = [&](int buf) {
    const __half2 s2 = __halves2half2(b_s, b_s);
    const __half2 nz_lo = __float2half2_rn(-(1024.0f + b_z));
    const __half2 nz_hi = __float2half2_rn(-(64.0f + b_z));
    const __half2 inv16 = __float2half2_rn(1.0f / 16.0f);
    const uint32_t words[4] = {b_reg.x, b_reg.y, b_reg.z, b_reg.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t h[4];
      gptq_magic_unpack(words[j], h);
      uint4 out;
      out.x = as_u32(__hmul2(__hadd2(as_h2(h[0]), nz_lo), s2));
      out.y = as_u32(__hmul2(__hfma2(as_h2(h[1]), inv16, nz_hi), s2));
      out.z = as_u32(__hmul2(__hadd2(as_h2(h[2]), nz_lo), s2));
      out.w = as_u32(__hmul2(__hfma2(as_h2(h[3]), inv16, nz_hi), s2));
      *reinterpret_cast<uint4*>(&Bs[buf][tid][8 * j]) = out;
    }
  };
  auto compute = [&](int buf) {
#pragma unroll
    for (int ks = 0; ks < kMmaBK / 16; ++ks) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        const int row = wm * 16 * kMT + mt * 16 + ldsm_a_row(lane);
        ptx::ldmatrix_x4(a[mt], &As[buf][row][ks * 16 + ldsm_a_col(lane)]);
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        const int col = wn * 64 + np * 16 + ldsm_b_row(lane);
        ptx::ldmatrix_x4(b, &Bs[buf][col][ks * 16 + ldsm_b_col(lane)]);
        uint32_t bf[2][2];
#pragma unroll
        for (int j = 0; j < 4; ++j) bf[ldsm_b_tile(j)][ldsm_b_reg(j)] = b[j];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          ptx::mma_16816(acc[mt][2 * np], a[mt], bf[0]);
          ptx::mma_16816(acc[mt][2 * np + 1], a[mt], bf[1]);
        }
      }
    }
  };

  load_a(0, 0);
  load_b(0);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  ptx::cp_async_commit();
#endif
  store_a(0);
  store_b(0);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  ptx::cp_async_wait_all();
#endif
  __syncthreads();
  for (int64_t kt = 0; kt < ktiles; ++kt) {
    const int buf = int(kt & 1);
    const bool more = kt + 1 < ktiles;
    if (more) {
      load_a(kt + 1, buf ^ 1);
      load_b(kt + 1);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
      ptx::cp_async_commit();
#endif
    }
    compute(buf);
    if (more) {
      store_a(buf ^ 1);
      store_b(buf ^ 1);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
      ptx::cp_async_wait_all();
#endif
    }
    __syncthreads();
  }

  // Epilogue: C fragment c0,c1 = (row g, cols 2t, 2t+1), c2,c3 = (row g+8, same cols). N is a
  // multiple of 8, so a column pair is either fully inside or fully outside.
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {  // elements (e, e+1) are adjacent columns of one row
        const int64_t col = n0 + wn * 64 + nt * 8 + mma_c_col(lane, e);
        const int64_t row = m0 + wm * 16 * kMT + mt * 16 + mma_c_row(lane, e);
        if (col < N && row < M)
          *reinterpret_cast<__half2*>(y + row * N + col) =
              __floats2half2_rn(acc[mt][nt][e], acc[mt][nt][e + 1]);
      }
}

unsigned blocks_for(int64_t work, int threads) { return unsigned((work + threads - 1) / threads); }

template <int M>
void launch_gemv(const GptqFastDev& w, const __half* x, __half* y, float* partial, int split,
                 int64_t chunks_per_split, cudaStream_t s) {
  const dim3 grid(blocks_for(w.n, kGemvOutputsPerBlock), unsigned(split));
  gptq_gemv_kernel<M><<<grid, kGemvThreads, 0, s>>>(w, x, y, partial, chunks_per_split);
}

}  // namespace

void launch_permute_columns(const __half* x, const int32_t* perm, __half* xp, int64_t m, int64_t k,
                            cudaStream_t s) {
  permute_columns_kernel<<<blocks_for(m * k, 256), 256, 0, s>>>(x, perm, xp, m, k);
}

void launch_gptq_dequant(const GptqCheckpointDev& w, __half* w_out, cudaStream_t s) {
  gptq_dequant_kernel<<<blocks_for(w.n * (w.k / 16), 256), 256, 0, s>>>(w, w_out);
}

void launch_gptq_naive(const GptqCheckpointDev& w, const __half* x, __half* y, int64_t m,
                       cudaStream_t s) {
  gptq_naive_kernel<<<dim3(blocks_for(w.n, kNaiveThreads), unsigned(m)), kNaiveThreads, 0, s>>>(w, x, y);
}

void launch_gptq_gemv(const GptqFastDev& w, const __half* x, __half* y, int64_t m, float* partial,
                      int split, cudaStream_t s) {
  const int64_t nchunks = w.k / kGptqChunkK;
  const int64_t per = (nchunks + split - 1) / split;
  with_rows_m8(m, [&](auto M) {
    launch_gemv<decltype(M)::value>(w, x, y, partial, split, per, s);
  });
}

void launch_splitk_reduce(const float* partial, __half* y, int64_t mn, int splits, cudaStream_t s) {
  splitk_reduce_kernel<<<blocks_for(mn, 256), 256, 0, s>>>(partial, y, mn, splits);
}

void launch_gptq_mma(const GptqFastDev& w, const __half* x, __half* y, int64_t m, cudaStream_t s) {
  const unsigned gx = blocks_for(w.n, kMmaBN);
  if (m <= 32)
    gptq_mma_kernel<1><<<dim3(gx, blocks_for(m, 32)), kMmaThreads, 0, s>>>(w, x, y, m);
  else
    gptq_mma_kernel<2><<<dim3(gx, blocks_for(m, 64)), kMmaThreads, 0, s>>>(w, x, y, m);
}

}  // namespace slm::cuda::detail
