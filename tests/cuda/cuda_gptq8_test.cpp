// The 8-bit GPTQ dp4a GEMV (kernels/cuda/gptq8.cu) against a double reference: random 8-bit
// checkpoints (random codes, v1 zeros up to 256, act-order g_idx), repacked by
// layout::gptq8_repack, run at M = 1..8 on the device. Skips without a device.
//
// Bound per output (reference: exact weights times the dequantized Q8_1 activations of the
// permuted x, in double; A = sum |w x| of those): per 32-element unit the integer sums are
// exact, s * d_x and the product with the integer round once each (2 u32 of the unit's
// magnitude); FP32 accumulation over the units (units * u32 of A); the FP16 output rounding
// (u16 of |y|) and its subnormal spacing (u32).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "formats/gptq.h"
#include "kernels/cuda/linear_cuda.h"
#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/gptq8_layout.h"

using namespace slm;
using namespace slm::cuda;

TEST_CASE("cuda: GPTQ 8-bit dp4a GEMV vs the CPU reference (act-order, v1 zeros, M = 1..8)") {
  if (device_count_or_zero() == 0) {
    MESSAGE("SKIP: no CUDA device (cudaGetDeviceCount failed or returned 0)");
    return;
  }
  constexpr double kU16 = 1.0 / 2048.0, kU32 = 1.0 / 16777216.0;
  std::mt19937 rng(17);
  struct Case {
    int64_t k, n;
    int gs;
    bool act;
  };
  for (const Case c : {Case{512, 72, 128, false}, Case{512, 36, 128, true}, Case{256, 20, -1, false},
                       Case{2048, 132, 32, true}}) {
    CAPTURE(c.k);
    CAPTURE(c.n);
    CAPTURE(c.act);
    const int64_t gsz = c.gs == -1 ? c.k : c.gs, groups = (c.k + gsz - 1) / gsz;
    std::vector<int32_t> qweight(size_t(c.k / 4 * c.n)), qzeros(size_t(groups * c.n / 4)), g_idx(size_t(c.k));
    for (auto& w : qweight) w = int32_t(rng());
    for (auto& w : qzeros) w = int32_t(rng());
    std::vector<uint16_t> scales(size_t(groups * c.n));
    std::uniform_real_distribution<float> sd(1e-4f, 2e-3f);
    for (auto& s : scales) s = f32_to_fp16(sd(rng));
    std::vector<int32_t> order(size_t(c.k));
    for (int64_t i = 0; i < c.k; ++i) order[size_t(i)] = int32_t(i);
    if (c.act) std::shuffle(order.begin(), order.end(), rng);
    for (int64_t i = 0; i < c.k; ++i) g_idx[size_t(order[size_t(i)])] = int32_t(i / gsz);
    cpu::GptqTensors t;
    t.bits = 8;
    t.k = c.k;
    t.n = c.n;
    t.groups = groups;
    t.group_size = c.gs;
    t.zero_plus_one = true;
    t.qweight = qweight.data();
    t.qzeros = qzeros.data();
    t.scales = scales.data();
    t.g_idx = g_idx.data();
    const std::vector<float> w = gptq_dequantize(t);
    const layout::Gptq8Repacked r = layout::gptq8_repack(t);
    const Gptq8Buffers b = upload_gptq8(r);

    for (int64_t m = 1; m <= kGemvMaxM; ++m) {
      CAPTURE(m);
      std::normal_distribution<float> nd;
      std::vector<uint16_t> x(size_t(m * c.k)), xp(x.size());
      for (auto& v : x) v = f32_to_fp16(nd(rng));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t kp = 0; kp < c.k; ++kp)
          xp[size_t(i * c.k + kp)] = x[size_t(i * c.k + (r.has_perm() ? r.perm[size_t(kp)] : kp))];
      const int64_t units = c.k / 32;
      std::vector<BlockQ8_1> xq(size_t(m * units));
      for (int64_t i = 0; i < m; ++i) layout::quantize_q8_1_ref(xp.data() + i * c.k, xq.data() + i * units, c.k);

      DeviceBuffer xd(x.size() * 2), yd(size_t(m * c.n) * 2), ws(gptq8_dp4a_workspace_bytes(m, c.k));
      xd.upload(x.data(), x.size() * 2);
      gptq8_dp4a(b.dev, xd.as<__half>(), yd.as<__half>(), m, ws.get(), ws.bytes(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      // The device's Q8_1 blocks of the permuted x sit after the permuted-activation slot.
      std::vector<BlockQ8_1> xq_dev(xq.size());
      const size_t off = (size_t(m * c.k) * 2 + 255) / 256 * 256;
      CUDA_CHECK(cudaMemcpy(xq_dev.data(), ws.as<uint8_t>() + off, xq_dev.size() * sizeof(BlockQ8_1),
                            cudaMemcpyDeviceToHost));
      CHECK(std::memcmp(xq.data(), xq_dev.data(), xq.size() * sizeof(BlockQ8_1)) == 0);

      std::vector<uint16_t> y(size_t(m * c.n));
      yd.download(y.data(), y.size() * 2);
      size_t bad = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t n = 0; n < c.n; ++n) {
          double ref = 0, mag = 0;
          for (int64_t kp = 0; kp < c.k; ++kp) {
            const BlockQ8_1& xb = xq[size_t(i * units + kp / 32)];
            const double xv = double(fp16_to_f32(xb.d)) * xb.qs[kp % 32];
            const double p = double(w[size_t(n * c.k + (r.has_perm() ? r.perm[size_t(kp)] : kp))]) * xv;
            ref += p;
            mag += std::fabs(p);
          }
          const double bound = kU16 * std::fabs(ref) + (2 + double(units)) * kU32 * mag + kU32;
          bad += !(std::fabs(fp16_to_f32(y[size_t(i * c.n + n)]) - ref) <= bound);
        }
      CHECK(bad == 0);
    }
  }
  // Arguments: M above the GEMV limit, a workspace too small.
  DeviceBuffer ws(16);
  Gptq8Dev bad_dev;
  CHECK_THROWS_AS(gptq8_dp4a(bad_dev, nullptr, nullptr, 1, ws.get(), ws.bytes(), nullptr), Error);
}
