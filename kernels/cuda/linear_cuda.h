// The CUDA matrix kernels of the dequantization-overhead study: Y[M][N] = X[M][K] * W^T for FP16
// activations X (row-major, row stride K) and FP16 outputs Y (row-major, row stride N), one named
// variant per strategy (docs/cuda-kernels.md). Every function takes device pointers, shapes and a
// stream, launches asynchronously, never allocates (scratch comes from the caller, sized by the
// *_workspace_bytes helpers) and throws slm::Error on bad arguments or a failed launch.
//
//   fp16_cublas           cublasGemmEx, FP16 in / FP32 accumulate (the baseline)
//   gptq_dequant_cublas   (a) dequantize the checkpoint layout to FP16, then fp16_cublas
//   gptq_naive            (b) one thread per output, scalar unpacking of the checkpoint layout
//   gptq_gemv             (c) fused GEMV, M = 1..8, repacked layout, magic-number dequant
//   gptq_mma              (d) fused tensor-core GEMM (mma.sync), repacked layout, any M
//   gptq8_dp4a            GPTQ 8-bit GEMV via dp4a on Q8_1 activations, M = 1..8 (gptq8 layout)
//   gguf_dp4a             GGUF Q4_0/Q8_0/Q4_K/Q6_K GEMV via dp4a on Q8_1 activations, M = 1..8
//   gguf_f16_gemv         GGUF Q4_0/Q8_0/Q4_K/Q6_K GEMV, codes dequantized in registers to half2 and
//                         multiplied with the FP16 activations directly, M = 1..8
//   gguf_dequant_cublas   GGUF dequantize to FP16, then fp16_cublas
#pragma once
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/weights.h"
#include "kernels/layout/gptq8_layout.h"
#include "kernels/layout/gptq_layout.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

namespace slm::cuda {

// Device copies of a host repack / checkpoint, owning their memory (synchronous upload).
struct GptqFastBuffers {
  DeviceBuffer qweight, scales, zeros, perm;
  GptqFastDev dev;
};
GptqFastBuffers upload_gptq_fast(const layout::GptqRepacked& r);
struct Gptq8Buffers {
  DeviceBuffer codes, scales, offs, perm;
  Gptq8Dev dev;
};
Gptq8Buffers upload_gptq8(const layout::Gptq8Repacked& r);
struct GptqCheckpointBuffers {
  DeviceBuffer qweight, qzeros, scales, g_idx;
  GptqCheckpointDev dev;
};
// Validates (layout::gptq_validate) and uploads; g_idx is uploaded only when the checkpoint has
// one.
GptqCheckpointBuffers upload_gptq_checkpoint(const layout::GptqTensors& t);

// ---- FP16 baseline ----
// w: [N][K] row-major (HF orientation).
void fp16_cublas(cublasHandle_t h, const __half* w, const __half* x, __half* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t s);

// ---- GPTQ (a): dequantize + cuBLAS ----
// Writes W[N][K] in FP16 (original K order, g_idx honoured).
void gptq_dequantize_fp16(const GptqCheckpointDev& w, __half* w_out, cudaStream_t s);
size_t gptq_dequant_cublas_workspace_bytes(int64_t n, int64_t k);
void gptq_dequant_cublas(cublasHandle_t h, const GptqCheckpointDev& w, const __half* x, __half* y,
                         int64_t m, void* workspace, size_t workspace_bytes, cudaStream_t s);

// ---- GPTQ (b): naive fused ----
void gptq_naive(const GptqCheckpointDev& w, const __half* x, __half* y, int64_t m, cudaStream_t s);

// ---- GPTQ (c): fast fused GEMV ----
struct GemvOptions {
  int split_k = 0;  // 1 = no split; 0 = choose from the SM count (enough blocks to fill the GPU)
};
// Scratch: the permuted activation (act-order) and the split-K partial sums.
size_t gptq_gemv_workspace_bytes(int64_t m, int64_t n, int64_t k, int max_split_k = 16);
void gptq_gemv(const GptqFastDev& w, const __half* x, __half* y, int64_t m, void* workspace,
               size_t workspace_bytes, cudaStream_t s, GemvOptions opt = {});
// The split-K factor gptq_gemv will use for these arguments (for reports).
int gptq_gemv_split_k(const GptqFastDev& w, int64_t m, GemvOptions opt = {});

// ---- GPTQ (d): tensor-core GEMM ----
size_t gptq_mma_workspace_bytes(int64_t m, int64_t k);
void gptq_mma(const GptqFastDev& w, const __half* x, __half* y, int64_t m, void* workspace,
              size_t workspace_bytes, cudaStream_t s);

// ---- GPTQ 8-bit: dp4a GEMV ----
// Scratch: the permuted activation (act-order) and its Q8_1 blocks.
size_t gptq8_dp4a_workspace_bytes(int64_t m, int64_t k);
void gptq8_dp4a(const Gptq8Dev& w, const __half* x, __half* y, int64_t m, void* workspace,
                size_t workspace_bytes, cudaStream_t s);

// Act-order helper both fused GPTQ paths use: xp[i][k'] = x[i][perm[k']].
void permute_columns(const __half* x, const int32_t* perm, __half* xp, int64_t m, int64_t k,
                     cudaStream_t s);

// ---- GGUF (Q4_0, Q8_0, Q4_K, Q6_K; raw GGUF rows, N rows of K elements) ----
// Q8_1 activation blocks for x: [M][K/32] BlockQ8_1 (d = amax/127, s = d * sum(q)).
void quantize_q8_1(const __half* x, BlockQ8_1* xq, int64_t m, int64_t k, cudaStream_t s);
size_t gguf_dp4a_workspace_bytes(int64_t m, int64_t k);
// Quantizes x into the workspace, then the dp4a GEMV (M <= kGemvMaxM).
void gguf_dp4a(QType t, const void* w, const __half* x, __half* y, int64_t m, int64_t n, int64_t k,
               void* workspace, size_t workspace_bytes, cudaStream_t s);
// The GEMV alone on already-quantized activations.
void gguf_dp4a_q8_1(QType t, const void* w, const BlockQ8_1* xq, __half* y, int64_t m, int64_t n,
                    int64_t k, cudaStream_t s);
// Dequantize-in-register FP16 GEMV on the raw blocks (M <= kGemvMaxM): one launch, no
// workspace; x must be 16-byte aligned (it is read as 128-bit loads).
void gguf_f16_gemv(QType t, const void* w, const __half* x, __half* y, int64_t m, int64_t n,
                   int64_t k, cudaStream_t s);
void gguf_dequantize_fp16(QType t, const void* w, __half* w_out, int64_t n, int64_t k,
                          cudaStream_t s);
size_t gguf_dequant_cublas_workspace_bytes(int64_t n, int64_t k);
void gguf_dequant_cublas(cublasHandle_t h, QType t, const void* w, const __half* x, __half* y,
                         int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                         cudaStream_t s);

}  // namespace slm::cuda
