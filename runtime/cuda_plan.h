// Host-side planning of the CUDA backend, free of CUDA headers so the CPU build and CI test it:
// which device format each weight is uploaded in, which matrix kernel runs for a given type and
// batch size, how the attention splits its keys, and how big every device buffer is. CudaSession
// (runtime/cuda_session.cpp) allocates exactly what plan_cuda_memory() says.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/quant/types.h"
#include "runtime/config.h"

namespace slm {

// How a weight lives on the device.
enum class CudaWeightFormat {
  RawGguf,  // the GGUF blocks as stored (Q4_0 / Q8_0 / Q4_K for the matrix kernels; also F32,
            // BF16 and Q6_K for an embedding table that is only looked up)
  Fp16,     // converted to FP16 [rows][cols] at upload (F16 as is; everything else dequantized)
};

// Matrix-kernel choice per call (kernels/cuda/linear_cuda.h).
enum class CudaMatKernel {
  Fp16Cublas,         // FP16 weights: cublasGemmEx
  GgufDp4a,           // raw Q4_0/Q8_0/Q4_K, M <= 8: Q8_1 activations + dp4a GEMV
  GgufDequantCublas,  // raw Q4_0/Q8_0/Q4_K, M > 8: dequantize row chunks to FP16 + cuBLAS
};

const char* cuda_mat_kernel_name(CudaMatKernel k);

// Format of a weight used by the matrix kernels (rows x cols).
CudaWeightFormat cuda_matrix_format(QType t, int64_t cols);
// Format of an embedding table used only for row lookups.
CudaWeightFormat cuda_lookup_format(QType t, int64_t cols);
// Kernel for a weight in format f, element type t (the type on the device) and M rows of input.
CudaMatKernel cuda_mat_kernel(CudaWeightFormat f, QType t, int64_t m);

inline constexpr int kCudaAttnMaxSplits = 64;
inline constexpr int64_t kCudaAttnMinKeysPerSplit = 64;  // one shared-memory tile
// Splits of the attention key range for n_tokens queries with up to max_keys keys each: enough
// (split, KV head, token) blocks for two per SM, but no split shorter than one tile.
int cuda_attn_splits(int64_t n_tokens, int64_t max_keys, int64_t n_kv_heads, int sm_count);

// Rows of the dequantized-weight chunk buffer a GgufDequantCublas call may use for an N x K
// weight when the buffer holds `chunk_bytes`: all N when they fit, else a multiple of 8 rows.
int64_t cuda_dequant_chunk_rows(int64_t n, int64_t k, size_t chunk_bytes);

// Device memory of a CudaSession (bytes; every buffer rounded up to 256 B).
struct CudaMemoryPlan {
  size_t activations = 0;   // residual, normed input, q/k/v, attention out, FFN, logits
  size_t kv_cache = 0;      // K and V, all layers, FP16
  size_t attn_partial = 0;  // split-K partials (max over batch sizes)
  size_t mat_workspace = 0; // Q8_1 activations or a dequantized weight chunk
  size_t cublas_workspace = 0;
  int decode_splits = 1;    // attention splits of the captured decode step
  size_t total() const { return activations + kv_cache + attn_partial + mat_workspace + cublas_workspace; }
};
// Cap of the dequantized-chunk buffer for the lm_head (the layer weights always fit whole).
inline constexpr size_t kCudaDequantChunkCap = size_t(64) << 20;
// `max_mat_dequant_bytes`: N*K*2 of the largest layer weight that runs GgufDequantCublas
// (0 when none); the lm_head is chunked into the same buffer.
CudaMemoryPlan plan_cuda_memory(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, int sm_count,
                                size_t max_mat_dequant_bytes);

}  // namespace slm
