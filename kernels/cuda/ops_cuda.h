// The non-matrix CUDA kernels of the whole-model backend (runtime/cuda_session.cpp): embedding
// row lookup, RMSNorm, RoPE, KV-cache append, split-K flash attention with GQA, SwiGLU, residual
// add, FP16->FP32 logits, greedy argmax and top-k sampling. Raw launchers: no argument checks (nvcc cannot
// compile fmt, so this header stays free of core/error.h); each returns cudaGetLastError() for
// the caller's CUDA_CHECK, and the caller validates shapes once (CudaSession's constructor,
// runtime/cuda_plan.h). Positions are read from device memory (`pos0` = the cache length before
// the batch) so one captured CUDA graph serves every decode step.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/layout/sample_layout.h"

namespace slm::cuda::ops {

inline constexpr int kAttnTile = 64;      // keys per shared-memory tile of the attention kernel
inline constexpr int kAttnThreads = 128;  // threads per attention block (4 warps)

// out[i][:] = row ids[i] of `table` (n_rows rows of `cols` elements of ggml type `type`, rows
// `row_bytes` apart), decoded to FP32. Types: F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K.
// Ids are trusted (checked on the host before upload).
cudaError_t get_rows(uint32_t type, const void* table, int64_t row_bytes, int64_t cols,
                     const int32_t* ids, int64_t n, float* out, cudaStream_t s);

// out[r][i] = fp16((x[r][i] * 1/sqrt(mean_i x[r]^2 + eps)) * w[i]), r < rows, i < n.
cudaError_t rmsnorm(const float* x, const float* w, __half* out, int64_t rows, int64_t n,
                    float eps, cudaStream_t s);

// Rotates the first n_rot dims of every head of q ([n_tokens][n_heads*head_dim]) and k
// ([n_tokens][n_kv_heads*head_dim]) in place; token t is at position *pos0 + t. `table` is
// ops::rope_table_init's [n_pos][n_rot/2]{cos, sin} (per-pair divisors already applied).
// interleaved: pairs (2j, 2j+1); else half-split pairs (j, j + n_rot/2).
cudaError_t rope(__half* q, __half* k, const float* table, const int32_t* pos0, int64_t n_tokens,
                 int n_heads, int n_kv_heads, int head_dim, int n_rot, bool interleaved,
                 cudaStream_t s);

// k_cache[*pos0 + t][:] = k[t][:], same for v (F16 cache of one layer, rows kv_dim apart).
cudaError_t kv_append(const __half* k, const __half* v, __half* k_cache, __half* v_cache,
                      const int32_t* pos0, int64_t n_tokens, int64_t kv_dim, cudaStream_t s);

// Shared memory of one attention block for `group` query heads per KV head.
inline size_t attention_smem_bytes(int group, int head_dim) {
  return sizeof(float) * (size_t(group) * size_t(head_dim) * 2 + size_t(group) * kAttnTile +
                          size_t(group) * 3);
}
// Floats of the split-K partials for n_tokens queries.
inline size_t attention_partial_floats(int64_t n_tokens, int n_heads, int splits, int head_dim) {
  return size_t(n_tokens) * size_t(n_heads) * size_t(splits) * size_t(head_dim + 2);
}
// Causal attention with GQA: query token t (position *pos0 + t) of head h attends to cache rows
// [0, *pos0 + t] of KV head h / (n_heads / n_kv_heads). One block per (split, KV head, token)
// serves all query heads of the group (each K/V row is read once per group); the keys of a query
// are divided into `splits` equal ranges (flash-decoding), each reduced with an online softmax
// over 64-key tiles into `partial`, then merged. out: [n_tokens][n_heads*head_dim] FP16.
cudaError_t attention(const __half* q, const __half* k_cache, const __half* v_cache,
                      const int32_t* pos0, int64_t n_tokens, int n_heads, int n_kv_heads,
                      int head_dim, float scale, int splits, float* partial, __half* out,
                      cudaStream_t s);

// y = fp16(silu(g) * u), computed in FP32.
cudaError_t swiglu(const __half* g, const __half* u, __half* y, int64_t n, cudaStream_t s);
// x += y (FP32 residual stream, FP16 branch output).
cudaError_t add_residual(float* x, const __half* y, int64_t n, cudaStream_t s);
// out = float(in).
cudaError_t f16_to_f32(const __half* in, float* out, int64_t n, cudaStream_t s);
// *out = index of the largest of x[0..n) (the first one on ties; NaNs are never chosen unless
// all are NaN, then 0).
cudaError_t argmax(const float* x, int64_t n, int32_t* out, cudaStream_t s);

// Bytes of the candidate workspace sample_top_k needs with `blocks` first-pass blocks
// (layout::sample_blocks): kSampleMaxTopK (logit, id) pairs per block.
inline size_t sample_workspace_bytes(int blocks) {
  return size_t(blocks) * size_t(layout::kSampleMaxTopK) * (sizeof(float) + sizeof(int32_t));
}
// *out = the token slm::Sampler picks from x[0..n) for c (1 <= c.top_k <= kSampleMaxTopK,
// temperature > 0, no repetition penalty) and the uniform draw u in [0, 1); see
// kernels/layout/sample_layout.h for what matches exactly. Two launches: `blocks` blocks of
// kSampleThreads each keep the top k of a slice of x in `ws`, then one block keeps the global
// top k and samples. No NaNs in x.
cudaError_t sample_top_k(const float* x, int64_t n, const layout::SampleConfig& c, double u, int blocks, void* ws,
                         int32_t* out, cudaStream_t s);

}  // namespace slm::cuda::ops
