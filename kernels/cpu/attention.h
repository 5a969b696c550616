// The two inner loops of attention over the KV cache, per (token, head): scores = K·q and
// out = Σ p_i v_i, for a cache stored as float32 or float16 (llama.cpp's default KV type, half
// the memory). AVX2 (F16C + FMA) with a scalar fallback, chosen at run time.
#pragma once
#include <cstdint>

namespace slm::cpu {

enum class KvType { F32, F16 };

inline int64_t kv_elem_bytes(KvType t) { return t == KvType::F32 ? 4 : 2; }

// dst[i] = src[i] converted to the cache type, i < n.
void kv_store(const float* src, void* dst, int64_t n, KvType t);

// out[i] = scale * dot(q, key_i) for i < n_keys; key_i = keys + i*stride elements, hd long.
void attn_scores(const float* q, const void* keys, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                 float scale, float* out);

// out[d] = Σ_i p[i] * val_i[d] for d < hd; val_i = vals + i*stride elements.
void attn_weighted_sum(const float* p, const void* vals, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                       float* out);

namespace detail {
void kv_store_avx2(const float* src, void* dst, int64_t n, KvType t);
void attn_scores_avx2(const float* q, const void* keys, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                      float scale, float* out);
void attn_weighted_sum_avx2(const float* p, const void* vals, int64_t n_keys, int64_t stride, int64_t hd,
                            KvType t, float* out);
}  // namespace detail

}  // namespace slm::cpu
