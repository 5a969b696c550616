// Internal: the raw kernel launchers of kernels/cuda/*.cu. They validate nothing and do not check
// for launch errors; linear_cuda.cpp wraps each in argument checks, NVTX ranges and CUDA_CHECK.
// Kept free of fmt (nvcc cannot compile fmt's consteval format strings) and of core/error.h.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/weights.h"
#include "kernels/quant/blocks.h"

namespace slm::cuda::detail {

// The GEMV kernels are templated on the activation row count M (1..8: accumulators in
// registers). Calls f(std::integral_constant<int, M>{}) with M = m, m > 8 clamped to 8 (callers
// check m), so each launcher names its kernel once: f launches kernel<decltype(M)::value>.
template <class F>
void with_rows_m8(int64_t m, F&& f) {
  switch (m) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// gptq.cu
inline constexpr int kGemvOutputsPerBlockHost = 16;  // = kGemvWarps * kGemvRows in gptq.cu
void launch_permute_columns(const __half* x, const int32_t* perm, __half* xp, int64_t m, int64_t k,
                            cudaStream_t s);
void launch_gptq_dequant(const GptqCheckpointDev& w, __half* w_out, cudaStream_t s);
void launch_gptq_naive(const GptqCheckpointDev& w, const __half* x, __half* y, int64_t m,
                       cudaStream_t s);
// partial == nullptr (split 1): writes y; else writes partial[split][m][n] floats.
void launch_gptq_gemv(const GptqFastDev& w, const __half* x, __half* y, int64_t m, float* partial,
                      int split, cudaStream_t s);
void launch_splitk_reduce(const float* partial, __half* y, int64_t mn, int splits, cudaStream_t s);
void launch_gptq_mma(const GptqFastDev& w, const __half* x, __half* y, int64_t m, cudaStream_t s);

// gptq8.cu: dp4a GEMV of 8-bit GPTQ weights on Q8_1 activations (of the permuted x when act-order).
void launch_gptq8_dp4a(const Gptq8Dev& w, const BlockQ8_1* xq, __half* y, int64_t m, cudaStream_t s);

// gguf.cu (type = ggml type id: Q4_0, Q8_0, Q4_K or Q6_K)
void launch_quantize_q8_1(const __half* x, BlockQ8_1* xq, int64_t m, int64_t k, cudaStream_t s);
void launch_gguf_dp4a(uint32_t type, const void* w, const BlockQ8_1* xq, __half* y, int64_t m,
                      int64_t n, int64_t k, cudaStream_t s);
// Dequantize-in-register FP16 GEMV on the raw blocks and FP16 x (M = 1..kGemvMaxM); x must be
// 16-byte aligned.
void launch_gguf_f16_gemv(uint32_t type, const void* w, const __half* x, __half* y, int64_t m,
                          int64_t n, int64_t k, cudaStream_t s);
void launch_gguf_dequant(uint32_t type, const void* w, __half* out, int64_t n, int64_t k,
                         cudaStream_t s);

}  // namespace slm::cuda::detail
