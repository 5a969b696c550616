// GPTQ 8-bit repack for the CUDA dp4a GEMV (layout: gptq8_layout.h).
#include "kernels/layout/gptq8_layout.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gptq_linear.h"

namespace slm::layout {

std::string gptq8_unsupported(const cpu::GptqTensors& t) {
  if (t.bits != 8) return fmt::format("{}-bit codes (this kernel is 8-bit)", t.bits);
  if (t.scales_type != cpu::GptqFloat::F16) return "scales not in FP16";
  if (t.bias) return "a bias";
  if (t.k <= 0 || t.n <= 0 || t.k % kUnitElems != 0) return fmt::format("in_features {} (need a multiple of 32)", t.k);
  const int64_t gs = t.group_size == -1 ? t.k : std::min<int64_t>(t.group_size, t.k);
  if (t.group_size != -1 && (t.group_size <= 0 || gs % kUnitElems != 0))
    return fmt::format("group size {} (need -1 or a multiple of 32)", t.group_size);
  const int64_t groups = (t.k + gs - 1) / gs;
  if (t.groups != groups) return fmt::format("{} groups for group size {}", t.groups, t.group_size);
  if (t.g_idx) {
    std::vector<int64_t> count(size_t(groups), 0);
    for (int64_t k = 0; k < t.k; ++k) {
      const int64_t g = cpu::gptq_group(t, k);
      if (g < 0 || g >= groups) return fmt::format("g_idx[{}] = {} out of range", k, g);
      ++count[size_t(g)];
    }
    for (int64_t g = 0; g < groups; ++g)
      if (count[size_t(g)] != std::min(gs, t.k - g * gs))
        return fmt::format("g_idx gives group {} {} columns, not {}", g, count[size_t(g)], gs);
  }
  return {};
}

Gptq8Repacked gptq8_repack(const cpu::GptqTensors& t) {
  if (std::string why = gptq8_unsupported(t); !why.empty()) fail("gptq8 repack: unsupported weight: {}", why);
  Gptq8Repacked r;
  r.k = t.k;
  r.n = t.n;
  r.group_size = int(t.group_size == -1 ? t.k : std::min<int64_t>(t.group_size, t.k));
  r.groups = t.groups;
  // Act-order: stable sort of the columns by group makes every group a contiguous K range (the
  // counts were checked), so a 32-wide unit never straddles two groups.
  std::vector<int32_t> perm(static_cast<size_t>(t.k));
  std::iota(perm.begin(), perm.end(), 0);
  std::vector<int64_t> grp(static_cast<size_t>(t.k));
  for (int64_t k = 0; k < t.k; ++k) grp[size_t(k)] = cpu::gptq_group(t, k);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return grp[size_t(a)] < grp[size_t(b)]; });
  bool identity = true;
  for (int64_t i = 0; i < t.k; ++i) identity = identity && perm[size_t(i)] == i;
  r.codes.resize(size_t(t.n) * size_t(t.k));
  // K outer: each qweight row of N words is read once per 4 columns, in order.
  for (int64_t kp = 0; kp < t.k; ++kp) {
    const int64_t src = perm[size_t(kp)];
    for (int64_t n = 0; n < t.n; ++n)
      r.codes[size_t(n) * size_t(t.k) + size_t(kp)] = int8_t(int(cpu::gptq_code(t, src, n)) - 128);
  }
  r.scales.resize(size_t(t.n) * size_t(r.groups));
  r.offs.resize(r.scales.size());
  for (int64_t g = 0; g < r.groups; ++g)
    for (int64_t n = 0; n < t.n; ++n) {
      r.scales[size_t(n * r.groups + g)] = f32_to_fp16(cpu::gptq_scale(t, g, n));  // exact: FP16 source
      r.offs[size_t(n * r.groups + g)] = int16_t(128 - cpu::gptq_zero(t, g, n));
    }
  if (!identity) r.perm = std::move(perm);
  return r;
}

std::vector<float> gptq8_dequantize_ref(const Gptq8Repacked& r) {
  std::vector<float> w(size_t(r.n) * size_t(r.k));
  for (int64_t n = 0; n < r.n; ++n)
    for (int64_t kp = 0; kp < r.k; ++kp) {
      const int64_t g = kp / r.group_size;
      const float s = fp16_to_f32(r.scales[size_t(n * r.groups + g)]);
      const int q = int(r.codes[size_t(n * r.k + kp)]) + r.offs[size_t(n * r.groups + g)];
      w[size_t(n * r.k + (r.has_perm() ? r.perm[size_t(kp)] : kp))] = s * float(q);
    }
  return w;
}

}  // namespace slm::layout
