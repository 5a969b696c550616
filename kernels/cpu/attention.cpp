#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>

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

void attn_head_ref(const float* q, const void* keys, const void* vals, int64_t n_keys,
                   int64_t stride, int64_t hd, KvType t, float scale, float* scratch, float* out) {
  float* p = scratch;
  for (int64_t i = 0; i < n_keys; ++i) {
    float s = 0.f;
    for (int64_t d = 0; d < hd; ++d) s += q[d] * load(keys, i * stride + d, t);
    p[i] = s * scale;
  }
  const float mx = *std::max_element(p, p + n_keys);
  double sum = 0;
  for (int64_t i = 0; i < n_keys; ++i) {
    p[i] = std::exp(p[i] - mx);
    sum += p[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n_keys; ++i) p[i] *= inv;
  std::fill_n(out, hd, 0.f);
  for (int64_t i = 0; i < n_keys; ++i)
    for (int64_t d = 0; d < hd; ++d) out[d] += p[i] * load(vals, i * stride + d, t);
}

void attn_head(const float* q, const void* keys, const void* vals, int64_t n_keys, int64_t stride,
               int64_t hd, KvType t, float scale, float* scratch, float* out) {
  if (active_isa() >= Isa::AVX2)
    return detail::attn_head_avx2(q, keys, vals, n_keys, stride, hd, t, scale, scratch, out);
  attn_head_ref(q, keys, vals, n_keys, stride, hd, t, scale, scratch, out);
}

}  // namespace slm::cpu
