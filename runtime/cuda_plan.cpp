// Host-side planning of the CUDA backend (cuda_plan.h). Pure arithmetic on the model config.
#include "runtime/cuda_plan.h"

#include <algorithm>

#include "kernels/quant/blocks.h"

namespace slm {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool dp4a_type(QType t) { return t == QType::Q4_0 || t == QType::Q8_0 || t == QType::Q4_K; }
int64_t block_elems(QType t) { return t == QType::Q4_K || t == QType::Q6_K ? kQK_K : kQK; }

}  // namespace

const char* cuda_mat_kernel_name(CudaMatKernel k) {
  switch (k) {
    case CudaMatKernel::Fp16Cublas: return "fp16_cublas";
    case CudaMatKernel::GgufDp4a: return "gguf_dp4a";
    case CudaMatKernel::GgufDequantCublas: return "gguf_dequant_cublas";
  }
  return "?";
}

CudaWeightFormat cuda_matrix_format(QType t, int64_t cols) {
  // The dp4a / dequant kernels need whole blocks per row (always true for a valid GGUF row).
  if (dp4a_type(t) && cols % block_elems(t) == 0) return CudaWeightFormat::RawGguf;
  return CudaWeightFormat::Fp16;
}

CudaWeightFormat cuda_lookup_format(QType t, int64_t cols) {
  const bool raw = t == QType::F32 || t == QType::F16 || t == QType::BF16 || t == QType::Q6_K || dp4a_type(t);
  if (raw && cols % (t == QType::F32 || t == QType::F16 || t == QType::BF16 ? 1 : block_elems(t)) == 0)
    return t == QType::F16 ? CudaWeightFormat::Fp16 : CudaWeightFormat::RawGguf;
  return CudaWeightFormat::Fp16;
}

CudaMatKernel cuda_mat_kernel(CudaWeightFormat f, QType t, int64_t m) {
  if (f == CudaWeightFormat::Fp16 || !dp4a_type(t)) return CudaMatKernel::Fp16Cublas;
  // dp4a reads the weights once per call whatever M is, up to its register-tile limit of 8 rows;
  // beyond that a tensor-core GEMM on a dequantized copy amortises the extra pass.
  return m <= 8 ? CudaMatKernel::GgufDp4a : CudaMatKernel::GgufDequantCublas;
}

int cuda_attn_splits(int64_t n_tokens, int64_t max_keys, int64_t n_kv_heads, int sm_count) {
  const int64_t blocks = std::max<int64_t>(1, n_tokens * n_kv_heads);
  const int64_t want = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
  const int64_t by_keys = (std::max<int64_t>(max_keys, 1) + kCudaAttnMinKeysPerSplit - 1) / kCudaAttnMinKeysPerSplit;
  return int(std::clamp<int64_t>(std::min({want, by_keys, int64_t(kCudaAttnMaxSplits)}), 1, kCudaAttnMaxSplits));
}

int64_t cuda_dequant_chunk_rows(int64_t n, int64_t k, size_t chunk_bytes) {
  const size_t row = size_t(k) * 2;
  if (size_t(n) * row <= chunk_bytes) return n;
  const int64_t rows = int64_t(chunk_bytes / row);
  if (rows >= 8) return rows / 8 * 8;
  return std::max<int64_t>(rows, 1);
}

CudaMemoryPlan plan_cuda_memory(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, int sm_count,
                                size_t max_mat_dequant_bytes) {
  CudaMemoryPlan p;
  const size_t B = size_t(max_batch), dim = size_t(c.dim), qd = size_t(c.q_dim()), kvd = size_t(c.kv_dim());
  const size_t hid = size_t(c.hidden_dim), V = size_t(c.n_vocab);
  p.activations = align_up(B * dim * 4)                  // residual x (FP32)
                  + align_up(B * std::max(dim, qd) * 2)  // normed input xb
                  + align_up(B * qd * 2) * 2             // q, attention output
                  + align_up(B * kvd * 2) * 2            // k, v
                  + align_up(B * dim * 2)                // branch output before the residual add
                  + align_up(B * hid * 2) * 2            // gate, up
                  + align_up(B * V * 2) + align_up(B * V * 4)  // logits FP16 and FP32
                  + align_up((B + 2) * 4)                // token ids, position, argmax
                  + align_up(size_t(n_ctx) * size_t(c.n_rot / 2) * 2 * 4);  // RoPE table
  p.kv_cache = 2 * align_up(size_t(c.n_layers) * size_t(n_ctx) * kvd * 2);
  size_t partial = 0;
  for (int64_t n = 1; n <= max_batch; ++n) {
    const size_t s = size_t(cuda_attn_splits(n, n_ctx, c.n_kv_heads, sm_count));
    partial = std::max(partial, size_t(n) * size_t(c.n_heads) * s * size_t(c.head_dim + 2) * 4);
  }
  p.attn_partial = align_up(partial);
  p.decode_splits = cuda_attn_splits(1, n_ctx, c.n_kv_heads, sm_count);
  const size_t maxk = std::max({dim, hid, qd});
  const size_t q8 = align_up(8 * (maxk / kQK) * sizeof(BlockQ8_1));
  const size_t deq = max_mat_dequant_bytes == 0 ? 0 : align_up(std::max(std::min(max_mat_dequant_bytes, kCudaDequantChunkCap), 8 * maxk * 2));
  p.mat_workspace = std::max(q8, deq);
  p.cublas_workspace = size_t(32) << 20;  // NVIDIA's recommendation for Hopper (4 MiB suffices before)
  return p;
}

}  // namespace slm
