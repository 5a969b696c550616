// Attention over the KV cache, one (token, query head) at a time: scores = scale · K·q, softmax,
// out = Σ p_i v_i, for a cache stored as float32 or float16 (llama.cpp's default KV type, half
// the memory). AVX2 (F16C + FMA) with a scalar reference, chosen at run time.
#pragma once
#include <cstdint>

namespace slm::cpu {

enum class KvType { F32, F16 };

inline int64_t kv_elem_bytes(KvType t) { return t == KvType::F32 ? 4 : 2; }

// dst[i] = src[i] converted to the cache type, i < n.
void kv_store(const float* src, void* dst, int64_t n, KvType t);

// One query head against n_keys >= 1 cached positions: key / value i are the hd elements at
// keys / vals + i * stride (elements of the cache type). out[d] = Σ_i p_i val_i[d] with
// p = softmax(scale · q·key_i). `scratch` holds at least n_keys floats (the scores, then p).
void attn_head(const float* q, const void* keys, const void* vals, int64_t n_keys, int64_t stride,
               int64_t hd, KvType t, float scale, float* scratch, float* out);

// The scalar reference: one dot product per key, std::exp, the softmax sum in double.
void attn_head_ref(const float* q, const void* keys, const void* vals, int64_t n_keys,
                   int64_t stride, int64_t hd, KvType t, float scale, float* scratch, float* out);

namespace detail {
void kv_store_avx2(const float* src, void* dst, int64_t n, KvType t);
void attn_head_avx2(const float* q, const void* keys, const void* vals, int64_t n_keys,
                    int64_t stride, int64_t hd, KvType t, float scale, float* scratch, float* out);
}  // namespace detail

}  // namespace slm::cpu
