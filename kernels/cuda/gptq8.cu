// GPTQ 8-bit dp4a GEMV (M = 1..8) on the repacked layout of kernels/layout/gptq8_layout.h: one
// warp per output row, lanes stride over the row's 32-wide units (two 16-byte loads of codes
// each), the per-unit arithmetic is layout::gptq8_unit_dot_q8_1 (shared with the CPU emulation
// test), every unit's Q8_1 activation block is reused for all M rows, warp-shuffle reduction.
// The same scheme as the GGUF dp4a kernel (gguf.cu); scales and offsets are [N][G], so the lanes
// of a warp read neighbouring entries.
#include "kernels/cuda/launch.h"
#include "kernels/cuda/ptx.cuh"
#include "kernels/layout/gptq8_layout.h"

namespace slm::cuda::detail {
namespace {

using layout::kUnitElems;

constexpr int kGptq8Warps = 4;

template <int M>
__global__ void __launch_bounds__(kGptq8Warps * 32)
    gptq8_dp4a_kernel(Gptq8Dev w, const BlockQ8_1* __restrict__ xq, __half* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kGptq8Warps + (threadIdx.x >> 5);
  if (row >= w.n) return;  // warp-uniform
  const int64_t units = w.k / kUnitElems;
  const int units_per_group = w.group_size / kUnitElems;
  const int8_t* codes = w.codes + row * w.k;
  const __half* sc = w.scales + row * w.groups;
  const int16_t* off = w.offs + row * w.groups;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int64_t u = lane; u < units; u += 32) {
    // 32 codes = two 16-byte loads (rows are K bytes, K % 32 == 0, the buffer 256-byte aligned).
    const uint4* p = reinterpret_cast<const uint4*>(codes + u * kUnitElems);
    const uint4 a = __ldcs(p), b = __ldcs(p + 1);  // read once: evict-first
    const uint32_t words[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    const int64_t g = u / units_per_group;
    const float s = __half2float(sc[g]);
    const int o = off[g];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] += layout::gptq8_unit_dot_q8_1(words, s, o, xq + m * units + u);
  }
  ptx::warp_store_rows(acc, y, w.n, row, lane);
}

}  // namespace

void launch_gptq8_dp4a(const Gptq8Dev& w, const BlockQ8_1* xq, __half* y, int64_t m, cudaStream_t s) {
  const unsigned grid = unsigned((w.n + kGptq8Warps - 1) / kGptq8Warps);
  constexpr int T = kGptq8Warps * 32;
  with_rows_m8(m, [&](auto M) {
    gptq8_dp4a_kernel<decltype(M)::value><<<grid, T, 0, s>>>(w, xq, y);
  });
}

}  // namespace slm::cuda::detail
