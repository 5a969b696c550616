// GGUF Q4_0 / Q8_0 / Q4_K / Q6_K kernels on the raw GGUF block rows: the Q8_1 activation quantizer, the
// dp4a GEMV (llama.cpp MMVQ scheme, kernels.md §3.2), the dequantize-in-register FP16 GEMV and
// the dequantize-to-FP16 kernel. The
// per-block arithmetic is the SLM_HD code of kernels/layout/gguf_layout.h, shared with the CPU
// emulation test.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ptx.cuh"
#include "kernels/layout/gguf_layout.h"

namespace slm::cuda::detail {
namespace {

using layout::kUnitElems;
using ptx::as_h2;

unsigned blocks_for(int64_t work, int threads) { return unsigned((work + threads - 1) / threads); }

// One warp per 32-element block: lane e owns element e. Same arithmetic as
// layout::quantize_q8_1_ref (IEEE division and roundf, fp16 round-to-nearest-even for d and s).
constexpr int kQuantWarps = 4;
__global__ void __launch_bounds__(kQuantWarps * 32)
    quantize_q8_1_kernel(const __half* __restrict__ x, BlockQ8_1* __restrict__ xq, int64_t nblocks) {
  const int lane = threadIdx.x & 31;
  const int64_t b = int64_t(blockIdx.x) * kQuantWarps + (threadIdx.x >> 5);
  if (b >= nblocks) return;  // warp-uniform
  const float v = __half2float(x[b * kUnitElems + lane]);
  const float amax = ptx::warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const int q = amax == 0.0f ? 0 : int(roundf(v / d));
  const int sum = ptx::warp_sum(q);
  xq[b].qs[lane] = int8_t(q);
  if (lane == 0) {
    xq[b].d = __half_as_ushort(__float2half_rn(d));
    xq[b].s = __half_as_ushort(__float2half_rn(d * float(sum)));
  }
}

// dp4a GEMV: one warp per weight row, lanes stride over the row's 32-element units (a Q4_K or
// Q6_K super-block is 8 units, so a warp step covers exactly one super-block per lane-octet); every
// unit's activation block is reused for all M rows of x. 4 warps per block: N = 2048 rows gives
// 512 blocks, plenty for 40 (T4) or 132 (H100) SMs.
constexpr int kDp4aWarps = 4;
template <uint32_t kType, int M>
__global__ void __launch_bounds__(kDp4aWarps * 32)
    gguf_dp4a_kernel(const uint8_t* __restrict__ w, const BlockQ8_1* __restrict__ xq,
                     __half* __restrict__ y, int64_t n, int64_t k, int64_t row_bytes) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kDp4aWarps + (threadIdx.x >> 5);
  if (row >= n) return;  // warp-uniform
  const int64_t units = k / kUnitElems;
  constexpr int upb = layout::gguf_units_per_block(kType);
  constexpr int bb = layout::gguf_block_bytes(kType);
  const uint8_t* wr = w + row * row_bytes;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int64_t u = lane; u < units; u += 32) {
    const uint8_t* blk = wr + (u / upb) * bb;
#pragma unroll
    for (int m = 0; m < M; ++m)
      acc[m] += layout::gguf_unit_dot_q8_1(kType, blk, int(u % upb), xq + m * units + u);
  }
  ptx::warp_store_rows(acc, y, n, row, lane);
}

// Dequantize-in-register FP16 GEMV: same grid as the dp4a kernel (one warp per weight row, lanes
// over 32-element units, 4 warps per block), but the FP16 activations are used as they are (no
// Q8_1 launch). Per unit a lane turns the raw codes into 16 half2 pairs of consecutive elements
// holding (code - offset) 2^-s (gguf_layout.h: prmt / lop3 magic numbers, one exact HSUB2 per
// pair, no int->float conversion), then per activation row:
//   * kChainPairs = 4 pairs (= one 16-byte activation load, 8 elements) are multiplied and summed
//     in half2: 1 HMUL2 + 3 HFMA2, so each half lane sums 4 products of |code 2^-s| <= 1 with x;
//     overflow needs |x| > 65504 / 4 = 16376, error <= 4 u16 of the chain's sum of |products|.
//     Longer chains would save conversions but grow both; 4 is what gptq_gemv does too;
//   * the chain is converted to float2 and the rest is FP32: the sums of chains sharing a scale
//     are multiplied by the FP32 factor (d 2^s, d sc 2^s; Q6_K has two 16-element scales, i.e.
//     two chains each) and accumulated; Q4_K subtracts dmin m times the unit's activation sum,
//     built from the same 16-byte loads as (x0 + x1) + (x2 + x3) in half2 (2 roundings deep, the
//     same overflow bound) and added in FP32.
// Warp-shuffle reduction and one FP16 rounding of each output, as in the dp4a kernel.
constexpr int kF16Warps = 4;
constexpr int kChainPairs = 4;
template <uint32_t kType, int M>
__global__ void __launch_bounds__(kF16Warps * 32)
    gguf_f16_gemv_kernel(const uint8_t* __restrict__ w, const __half* __restrict__ x,
                         __half* __restrict__ y, int64_t n, int64_t k, int64_t row_bytes) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kF16Warps + (threadIdx.x >> 5);
  if (row >= n) return;  // warp-uniform
  const int64_t units = k / kUnitElems;
  constexpr int upb = layout::gguf_units_per_block(kType);
  constexpr int bb = layout::gguf_block_bytes(kType);
  constexpr bool kTwoScales = kType == uint32_t(QType::Q6_K);
  constexpr bool kMin = kType == uint32_t(QType::Q4_K);
  const __half2 sub = as_h2(layout::gguf_f16_subtrahend(kType));
  const uint8_t* wr = w + row * row_bytes;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int64_t u = lane; u < units; u += 32) {
    const uint8_t* blk = wr + (u / upb) * bb;
    const int ub = int(u % upb);
    uint32_t cw[8];
    layout::gguf_f16_unit_words(kType, blk, ub, cw);
    __half2 wv[16];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      uint32_t h[2];
      layout::gguf_f16_magic_pair(kType, cw[i], h);
      wv[2 * i] = __hsub2(as_h2(h[0]), sub);
      wv[2 * i + 1] = __hsub2(as_h2(h[1]), sub);
    }
    float sc[2], mn;
    layout::gguf_f16_unit_scales(kType, blk, ub, sc, mn);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const uint4* xp = reinterpret_cast<const uint4*>(x + m * k + u * kUnitElems);
      float t[2] = {0.0f, 0.0f}, sx = 0.0f;
#pragma unroll
      for (int c = 0; c < kUnitElems / (2 * kChainPairs); ++c) {
        const uint4 xv = __ldg(xp + c);
        const __half2 x0 = as_h2(xv.x), x1 = as_h2(xv.y), x2 = as_h2(xv.z), x3 = as_h2(xv.w);
        __half2 p = __hmul2(wv[4 * c], x0);
        p = __hfma2(wv[4 * c + 1], x1, p);
        p = __hfma2(wv[4 * c + 2], x2, p);
        p = __hfma2(wv[4 * c + 3], x3, p);
        const float2 f = __half22float2(p);
        t[kTwoScales ? c >> 1 : 0] += f.x + f.y;
        if constexpr (kMin) {
          const float2 g = __half22float2(__hadd2(__hadd2(x0, x1), __hadd2(x2, x3)));
          sx += g.x + g.y;
        }
      }
      acc[m] = fmaf(sc[0], t[0], acc[m]);
      if constexpr (kTwoScales) acc[m] = fmaf(sc[1], t[1], acc[m]);
      if constexpr (kMin) acc[m] = fmaf(-mn, sx, acc[m]);
    }
  }
  ptx::warp_store_rows(acc, y, n, row, lane);
}

// One thread per 32-element unit, 32 FP16 results written as 4 x 16 bytes.
template <uint32_t kType>
__global__ void gguf_dequant_kernel(const uint8_t* __restrict__ w, __half* __restrict__ out,
                                    int64_t n, int64_t k, int64_t row_bytes) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t units = k / kUnitElems;
  if (i >= n * units) return;
  const int64_t row = i / units, u = i % units;
  constexpr int upb = layout::gguf_units_per_block(kType);
  constexpr int bb = layout::gguf_block_bytes(kType);
  const uint8_t* blk = w + row * row_bytes + (u / upb) * bb;
  uint4* dst = reinterpret_cast<uint4*>(out + row * k + u * kUnitElems);
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    alignas(16) __half v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e)
      v[e] = __float2half_rn(layout::gguf_unit_value(kType, blk, int(u % upb), 8 * c + e));
    dst[c] = *reinterpret_cast<const uint4*>(v);
  }
}

constexpr uint32_t kQ4_0 = uint32_t(QType::Q4_0);
constexpr uint32_t kQ8_0 = uint32_t(QType::Q8_0);
constexpr uint32_t kQ4_K = uint32_t(QType::Q4_K);
constexpr uint32_t kQ6_K = uint32_t(QType::Q6_K);

int64_t gguf_row_bytes(uint32_t type, int64_t k) {
  return k / (kUnitElems * layout::gguf_units_per_block(type)) * layout::gguf_block_bytes(type);
}

template <uint32_t kType>
void dp4a_for_type(const void* w, const BlockQ8_1* xq, __half* y, int64_t m, int64_t n, int64_t k,
                   cudaStream_t s) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const unsigned grid = blocks_for(n, kDp4aWarps);
  const int64_t rb = gguf_row_bytes(kType, k);
  constexpr int T = kDp4aWarps * 32;
  with_rows_m8(m, [&](auto M) {
    gguf_dp4a_kernel<kType, decltype(M)::value><<<grid, T, 0, s>>>(wb, xq, y, n, k, rb);
  });
}

template <uint32_t kType>
void f16_gemv_for_type(const void* w, const __half* x, __half* y, int64_t m, int64_t n, int64_t k,
                       cudaStream_t s) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const unsigned grid = blocks_for(n, kF16Warps);
  const int64_t rb = gguf_row_bytes(kType, k);
  constexpr int T = kF16Warps * 32;
  with_rows_m8(m, [&](auto M) {
    gguf_f16_gemv_kernel<kType, decltype(M)::value><<<grid, T, 0, s>>>(wb, x, y, n, k, rb);
  });
}

}  // namespace

void launch_quantize_q8_1(const __half* x, BlockQ8_1* xq, int64_t m, int64_t k, cudaStream_t s) {
  const int64_t nblocks = m * k / kUnitElems;
  quantize_q8_1_kernel<<<blocks_for(nblocks, kQuantWarps), kQuantWarps * 32, 0, s>>>(x, xq, nblocks);
}

void launch_gguf_dp4a(uint32_t type, const void* w, const BlockQ8_1* xq, __half* y, int64_t m,
                      int64_t n, int64_t k, cudaStream_t s) {
  if (type == kQ4_0) dp4a_for_type<kQ4_0>(w, xq, y, m, n, k, s);
  else if (type == kQ8_0) dp4a_for_type<kQ8_0>(w, xq, y, m, n, k, s);
  else if (type == kQ4_K) dp4a_for_type<kQ4_K>(w, xq, y, m, n, k, s);
  else dp4a_for_type<kQ6_K>(w, xq, y, m, n, k, s);
}

void launch_gguf_f16_gemv(uint32_t type, const void* w, const __half* x, __half* y, int64_t m,
                          int64_t n, int64_t k, cudaStream_t s) {
  if (type == kQ4_0) f16_gemv_for_type<kQ4_0>(w, x, y, m, n, k, s);
  else if (type == kQ8_0) f16_gemv_for_type<kQ8_0>(w, x, y, m, n, k, s);
  else if (type == kQ4_K) f16_gemv_for_type<kQ4_K>(w, x, y, m, n, k, s);
  else f16_gemv_for_type<kQ6_K>(w, x, y, m, n, k, s);
}

void launch_gguf_dequant(uint32_t type, const void* w, __half* out, int64_t n, int64_t k,
                         cudaStream_t s) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const unsigned grid = blocks_for(n * (k / kUnitElems), 256);
  const int64_t rb = gguf_row_bytes(type, k);
  if (type == kQ4_0) gguf_dequant_kernel<kQ4_0><<<grid, 256, 0, s>>>(wb, out, n, k, rb);
  else if (type == kQ8_0) gguf_dequant_kernel<kQ8_0><<<grid, 256, 0, s>>>(wb, out, n, k, rb);
  else if (type == kQ4_K) gguf_dequant_kernel<kQ4_K><<<grid, 256, 0, s>>>(wb, out, n, k, rb);
  else gguf_dequant_kernel<kQ6_K><<<grid, 256, 0, s>>>(wb, out, n, k, rb);
}

}  // namespace slm::cuda::detail
