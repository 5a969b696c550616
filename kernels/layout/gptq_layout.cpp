// GPTQ 4-bit checkpoint validation, reference dequantization and the load-time repack into the
// layout of the fast CUDA kernels (layout and bit diagram: gptq_layout.h).
#include "kernels/layout/gptq_layout.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/half.h"

namespace slm::layout {

int gptq_group_size(const GptqTensors& t) {
  SLM_CHECK(t.k > 0 && t.n > 0, "gptq: bad shape k={} n={}", t.k, t.n);
  SLM_CHECK(t.k % kGptqChunkK == 0, "gptq: in_features {} is not a multiple of {}", t.k,
            kGptqChunkK);
  SLM_CHECK(t.n % 8 == 0, "gptq: out_features {} is not a multiple of 8 (qzeros packing)", t.n);
  SLM_CHECK(t.k <= (int64_t(1) << 30) && t.n <= (int64_t(1) << 30), "gptq: shape k={} n={} too large",
            t.k, t.n);
  const int64_t gs = t.group_size == -1 ? t.k : t.group_size;
  SLM_CHECK(gs > 0 && gs % kGptqChunkK == 0,
            "gptq: group_size {} unsupported (need -1 or a positive multiple of {})", t.group_size,
            kGptqChunkK);
  return int(std::min<int64_t>(gs, t.k));
}

int64_t gptq_groups(const GptqTensors& t) {
  const int64_t gs = gptq_group_size(t);
  return (t.k + gs - 1) / gs;
}

void gptq_validate(const GptqTensors& t) {
  const int64_t groups = gptq_groups(t);
  const size_t words = size_t(t.k / 8) * size_t(t.n);
  SLM_CHECK(t.qweight.size() == words, "gptq: qweight has {} words, expected {} ([{}][{}])",
            t.qweight.size(), words, t.k / 8, t.n);
  SLM_CHECK(t.qzeros.size() == size_t(groups) * size_t(t.n / 8),
            "gptq: qzeros has {} words, expected {} ([{}][{}])", t.qzeros.size(),
            size_t(groups) * size_t(t.n / 8), groups, t.n / 8);
  SLM_CHECK(t.scales.size() == size_t(groups) * size_t(t.n),
            "gptq: scales has {} values, expected {} ([{}][{}])", t.scales.size(),
            size_t(groups) * size_t(t.n), groups, t.n);
  if (t.g_idx.empty()) return;
  SLM_CHECK(t.g_idx.size() == size_t(t.k), "gptq: g_idx has {} entries, expected {}",
            t.g_idx.size(), t.k);
  const int64_t gs = gptq_group_size(t);
  std::vector<int64_t> count(size_t(groups), 0);
  for (int64_t k = 0; k < t.k; ++k) {
    const int32_t g = t.g_idx[size_t(k)];
    SLM_CHECK(g >= 0 && g < groups, "gptq: g_idx[{}] = {} outside [0, {})", k, g, groups);
    ++count[size_t(g)];
  }
  // GPTQ starts a new group every group_size columns in processing order (gptq.md §5), so each
  // group but the last has exactly group_size members; the repack relies on it.
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t want = std::min(gs, t.k - g * gs);
    SLM_CHECK(count[size_t(g)] == want, "gptq: g_idx assigns {} columns to group {}, expected {}",
              count[size_t(g)], g, want);
  }
}

std::vector<float> gptq_dequantize_ref(const GptqTensors& t) {
  gptq_validate(t);
  const int64_t gs = gptq_group_size(t);
  std::vector<float> w(size_t(t.n) * size_t(t.k));
  for (int64_t k = 0; k < t.k; ++k) {
    const int64_t g = t.g_idx.empty() ? k / gs : t.g_idx[size_t(k)];
    for (int64_t n = 0; n < t.n; ++n) {
      const uint32_t word = uint32_t(t.qweight[size_t((k / 8) * t.n + n)]);
      const int q = int((word >> (4 * (k % 8))) & 0xF);
      const uint32_t zword = uint32_t(t.qzeros[size_t(g * (t.n / 8) + n / 8)]);
      const int z = int((zword >> (4 * (n % 8))) & 0xF) + (t.zeros_v1 ? 1 : 0);
      const float s = fp16_to_f32(t.scales[size_t(g * t.n + n)]);
      w[size_t(n * t.k + k)] = s * float(q - z);
    }
  }
  return w;
}

GptqRepacked gptq_repack(const GptqTensors& t) {
  gptq_validate(t);
  GptqRepacked r;
  r.k = t.k;
  r.n = t.n;
  r.group_size = gptq_group_size(t);
  r.groups = gptq_groups(t);

  // Act-order: stable sort of the input columns by group. Monotone g_idx (desc_act=False,
  // static groups, GAR) gives the identity, for which no permutation is kept.
  std::vector<int32_t> perm(size_t(t.k));
  std::iota(perm.begin(), perm.end(), 0);
  if (!t.g_idx.empty()) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return t.g_idx[size_t(a)] < t.g_idx[size_t(b)]; });
    bool identity = true;
    for (int64_t i = 0; i < t.k; ++i) identity = identity && perm[size_t(i)] == i;
    // The sorted order puts group g at [g*gs, (g+1)*gs) because the counts were validated; the
    // identity case still has to agree with k / group_size to be usable without a g_idx.
    for (int64_t i = 0; i < t.k; ++i)
      SLM_ASSERT(t.g_idx[size_t(perm[size_t(i)])] == i / r.group_size);
    if (!identity) r.perm = std::move(perm);
  }

  const int64_t kw = t.k / 8;
  r.qweight.assign(size_t(t.n) * size_t(kw), 0);
  for (int64_t w = 0; w < kw; ++w) {
    for (int64_t n = 0; n < t.n; ++n) {
      uint32_t plain = 0;
      for (int j = 0; j < 8; ++j) {
        const int64_t kp = w * 8 + j;
        const int64_t src_k = r.has_perm() ? r.perm[size_t(kp)] : kp;
        plain |= uint32_t(gptq_code_orig(t.qweight.data(), t.n, src_k, n)) << (4 * j);
      }
      r.qweight[size_t(gptq_fast_word(n, w, t.k))] = gptq_shuffle_word(plain);
    }
  }
  r.scales.assign(t.scales.begin(), t.scales.end());
  r.zeros.resize(size_t(r.groups) * size_t(t.n));
  for (int64_t g = 0; g < r.groups; ++g)
    for (int64_t n = 0; n < t.n; ++n)
      r.zeros[size_t(g * t.n + n)] = uint8_t(gptq_zero_orig(t.qzeros.data(), t.n, g, n, t.zeros_v1));
  return r;
}

}  // namespace slm::layout
