// Host-side planning of the CUDA backend, free of CUDA headers so the CPU build and CI test it:
// which device format each weight is uploaded in, which matrix kernel runs for a given type and
// batch size, how the attention splits its keys, and how big every device buffer is. CudaSession
// (runtime/cuda_session.cpp) allocates exactly what plan_cuda_memory() says. GPTQ linears: which
// ones the repacked 4-bit kernels run, the copy of their checkpoint tensors the repack reads, the
// FP16 fallback's dequantization, split-K and workspace sizes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/gptq_linear.h"
#include "kernels/layout/gptq_layout.h"
#include "kernels/quant/types.h"
#include "runtime/config.h"

namespace slm {

// How a weight lives on the device.
enum class CudaWeightFormat {
  RawGguf,  // the GGUF blocks as stored (Q4_0 / Q8_0 / Q4_K / Q6_K for the matrix kernels; also
            // F32 and BF16 for an embedding table that is only looked up)
  Fp16,     // converted to FP16 [rows][cols] at upload (F16 as is; everything else dequantized)
  GptqFast, // GPTQ 4-bit repacked at upload (kernels/layout/gptq_layout.h), act-order as a perm
  Gptq8,    // GPTQ 8-bit repacked at upload (kernels/layout/gptq8_layout.h), act-order as a perm
};

// Matrix-kernel choice per call (kernels/cuda/linear_cuda.h).
enum class CudaMatKernel {
  Fp16Cublas,         // FP16 weights: cublasGemmEx
  GgufDp4a,           // raw Q4_0/Q8_0/Q4_K/Q6_K, M <= 8: Q8_1 activations + dp4a GEMV
  GgufDequantCublas,  // raw Q4_0/Q8_0/Q4_K/Q6_K, M > 8: dequantize row chunks to FP16 + cuBLAS
  GptqGemv,           // GptqFast, M <= kCudaGemvMaxM: fused GEMV (magic-number dequant, split-K)
  GptqMma,            // GptqFast, M > kCudaGemvMaxM: fused tensor-core GEMM (mma.sync)
  Gptq8Dp4a,          // Gptq8, any M (in chunks of kCudaGemvMaxM rows): Q8_1 activations + dp4a GEMV
};

// Largest M of the GEMV-style kernels (= cuda::kGemvMaxM, checked where both are visible).
inline constexpr int64_t kCudaGemvMaxM = 8;

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

// ---- GPTQ linears ----
// GptqFast when the repacked kernels can run the checkpoint: 4-bit codes, FP16 scales, K % 32 == 0,
// N % 8 == 0, group_size -1 or a multiple of 32, and a g_idx whose groups have group_size members
// each but the last (what GPTQ writes; kernels/layout's repack rule). Gptq8 for 8-bit codes under
// the same rules (any N). Otherwise Fp16 (dequantized at upload, fp16_cublas: 2/3-bit codes,
// BF16/F32 scales, odd shapes) with the reason in *why. A bias is neither (throws: Llama linears
// have none and the session has no bias add).
CudaWeightFormat cuda_gptq_format(const cpu::GptqTensors& t, std::string* why = nullptr);

// The checkpoint tensors of a 4-bit GPTQ linear copied into aligned int32 words / FP16 bits (the
// mapping may place them at any offset), as kernels/layout's repack reads them.
struct CudaGptqCopy {
  int64_t k = 0, n = 0;
  int group_size = 128;
  bool zeros_v1 = true;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  layout::GptqTensors view() const;  // spans into this object
};
CudaGptqCopy cuda_gptq_copy(const cpu::GptqTensors& t);  // requires cuda_gptq_format == GptqFast

// FP16 bits of W[n][k] for outputs [n0, n0 + rows) (row-major [rows][K]): the exact dequantized
// value scale·(q − zero) rounded once to FP16 (the Fp16 fallback's upload, done in row slices so
// the host never holds the whole float matrix).
void cuda_gptq_dequant_rows_fp16(const cpu::GptqTensors& t, int64_t n0, int64_t rows, uint16_t* out);

// Split-K factor of gptq_gemv for an N x K weight (what its automatic choice computes, made
// explicit so the plan, the workspace and the captured graph agree): enough blocks of 16 outputs
// for two per SM, each split keeping >= 32 chunks of 32 K values, at most 16 splits.
int cuda_gptq_gemv_splits(int64_t n, int64_t k, int sm_count);
// Matrix workspace a GptqFast weight needs for batches up to max_batch: the permuted activation
// (act-order) and split-K partials of gptq_gemv (M <= 8), the permuted activation of gptq_mma.
size_t cuda_gptq_workspace_bytes(int64_t n, int64_t k, bool act_order, int64_t max_batch, int sm_count);
// The same for a Gptq8 weight (cuda::gptq8_dp4a_workspace_bytes at min(max_batch, 8) rows: the
// permuted activation slot and the Q8_1 blocks).
size_t cuda_gptq8_workspace_bytes(int64_t k, int64_t max_batch);

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
// (0 when none); the lm_head is chunked into the same buffer. `gptq_workspace`: the largest
// cuda_gptq_workspace_bytes of the GptqFast weights (0 when none).
CudaMemoryPlan plan_cuda_memory(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, int sm_count,
                                size_t max_mat_dequant_bytes, size_t gptq_workspace = 0);

}  // namespace slm
