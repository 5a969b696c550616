#include "kernels/cpu/attention.h"

#include <algorithm>

#include "core/half.h"
#include "kernels/cpu/isa.h"

namespace slm::cpu {
namespace {

inline float load(const void* base, int64_t i, KvType t) {
  return t == KvType::F32 ? static_cast<const float*>(base)[i] : fp16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

}  // namespace

void kv_store(const float* src, void* dst, int64_t n, KvType t) {
  if (active_isa() >= Isa::AVX2) return detail::kv_store_avx2(src, dst, n, t);
  if (t == KvType::F32) {
    std::copy_n(src, n, static_cast<float*>(dst));
    return;
  }
  auto* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = f32_to_fp16(src[i]);
}

void attn_scores(const float* q, const void* keys, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                 float scale, float* out) {
  if (active_isa() >= Isa::AVX2) return detail::attn_scores_avx2(q, keys, n_keys, stride, hd, t, scale, out);
  for (int64_t i = 0; i < n_keys; ++i) {
    float s = 0.f;
    for (int64_t d = 0; d < hd; ++d) s += q[d] * load(keys, i * stride + d, t);
    out[i] = s * scale;
  }
}

void attn_weighted_sum(const float* p, const void* vals, int64_t n_keys, int64_t stride, int64_t hd, KvType t,
                       float* out) {
  if (active_isa() >= Isa::AVX2) return detail::attn_weighted_sum_avx2(p, vals, n_keys, stride, hd, t, out);
  std::fill_n(out, hd, 0.f);
  for (int64_t i = 0; i < n_keys; ++i)
    for (int64_t d = 0; d < hd; ++d) out[d] += p[i] * load(vals, i * stride + d, t);
}

}  // namespace slm::cpu
