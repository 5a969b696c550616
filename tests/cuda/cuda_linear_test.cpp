// Every CUDA matrix kernel of kernels/cuda/linear_cuda.h against a double-precision CPU reference
// built from the host references in kernels/layout (GPTQ) and slm::dequantize_row (GGUF), on
// awkward shapes (N not a multiple of the tile, M not a multiple of 16, act-order, v1/v2 zeros).
// Skips with a message when no CUDA device is present (CI has none).
//
// Error bounds (per output y = sum_k x_k w_k, exact reference y*, magnitude A = sum_k |x_k w_k|):
//   |y - y*| <= 2^-11 |y*|  (final rounding of the output to FP16, round-to-nearest)
//             + gamma * A   (rounding inside the kernel, bounded term by term)
//             + 2^-24       (FP16 subnormal spacing of the output)
// gamma per variant, u16 = 2^-11 (FP16 unit roundoff), u32 = 2^-24:
//   FP32 accumulation of K exact products: K u32 (standard recursive-summation bound)
//   weights rounded to FP16 (dequant paths, fused GEMV/MMA): + u16
//   fused GEMV's 8-term half2 partial dot (1 multiply + 3 FMAs per half lane, each a rounding
//   relative to at most the sum of the magnitudes so far): + 4 u16
//   tensor cores: FP16 products are exact in FP32, but the accumulation order/rounding inside an
//   MMA is unspecified: 2 K u32.
//   gguf_f16_gemv (dequantize in registers): no weight rounding -- the half codes (q - offset) 2^-s
//   are exact and the FP32 factors d sc 2^s are exact products, so the code term of every weight
//   is exact; each half2 chain sums L = 4 products per half lane (1 HMUL2 + 3 HFMA2, each a
//   rounding relative to at most the chain's sum of magnitudes): + L u16 = 4 u16 relative to the
//   magnitude B of the code terms. For Q4_K the code term d sc q and the min term dmin m can both
//   exceed |w| (they cancel), so the bound uses B_c = sum_k |x_k d sc q_k| and
//   B_m = sum_k |x_k| dmin m instead of A: 4 u16 B_c + 2 u16 B_m (the activation sums are
//   (x0 + x1) + (x2 + x3) per half lane, two roundings deep) + (K + 17) u32 (B_c + B_m) (FP32
//   arithmetic, fewer than K + 16 roundings deep, plus dequantize_row's own rounding of
//   d sc q - dmin m in the reference); for the other types B_c = A and B_m = 0. Underflow: 2^-25
//   per half rounding in code units, times the unit's factor (16 roundings per 16-element scale
//   and 24 activation-sum roundings times dmin m per unit).
// Paths that round weights or partial sums to FP16 can also underflow into the FP16 subnormal
// range, where the rounding error is absolute (at most 2^-25): per weight one such rounding
// (times |x|) and, in the GEMV, at most one per partial-sum step, so they add
// K 2^-24 max(1, max|x|) to the bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "core/half.h"
#include "kernels/cuda/linear_cuda.h"
#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/gptq_layout.h"

using namespace slm;
using namespace slm::cuda;

#define SLM_REQUIRE_CUDA()                                                   \
  if (::slm::cuda::device_count_or_zero() == 0) {                            \
    MESSAGE("SKIP: no CUDA device (cudaGetDeviceCount failed or returned 0)"); \
    return;                                                                  \
  }

namespace {

constexpr double kU16 = 1.0 / 2048.0;
constexpr double kU32 = 1.0 / 16777216.0;

std::vector<uint16_t> random_f16(size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = f32_to_fp16(nd(rng));
  return v;
}

DeviceBuffer upload(const void* p, size_t bytes) {
  DeviceBuffer b(bytes);
  b.upload(p, bytes);
  return b;
}

// Random GGUF weights of type t, n rows of k (Gaussian values times 0.05, quantized): the raw
// rows, their dequantized floats (the reference) and a device copy of the raw rows.
struct GgufRandom {
  size_t rb;  // bytes per row
  std::vector<uint8_t> w;
  std::vector<float> wref;
  DeviceBuffer wd;
};
GgufRandom random_gguf(QType t, int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const size_t rb = row_bytes(t, k);
  std::vector<float> wf(size_t(n * k));
  for (auto& v : wf) v = 0.05f * nd(rng);
  std::vector<uint8_t> w(rb * size_t(n));
  for (int64_t r = 0; r < n; ++r) quantize_row(t, wf.data() + r * k, w.data() + size_t(r) * rb, k);
  std::vector<float> wref(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) dequantize_row(t, w.data() + size_t(r) * rb, wref.data() + r * k, k);
  DeviceBuffer wd = upload(w.data(), w.size());
  return GgufRandom{rb, std::move(w), std::move(wref), std::move(wd)};
}

// y*[m][n] and A[m][n] from float weights W[n][k] and fp16 activations.
void reference(const std::vector<float>& w, const std::vector<uint16_t>& x, int64_t m, int64_t n,
               int64_t k, std::vector<double>& y, std::vector<double>& mag) {
  y.assign(size_t(m * n), 0.0);
  mag.assign(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0, a = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double p = double(fp16_to_f32(x[size_t(i * k + kk)])) * w[size_t(j * k + kk)];
        acc += p;
        a += std::fabs(p);
      }
      y[size_t(i * n + j)] = acc;
      mag[size_t(i * n + j)] = a;
    }
}

// Checks every output against the bound; reports the worst ratio error / bound.
void check_outputs(const char* what, const DeviceBuffer& yd, const std::vector<double>& ref,
                   const std::vector<double>& mag, double gamma, double abs_extra = 0.0) {
  std::vector<uint16_t> y(ref.size());
  CUDA_CHECK(cudaDeviceSynchronize());
  yd.download(y.data(), y.size() * 2);
  double worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double got = fp16_to_f32(y[i]);
    const double bound = kU16 * std::fabs(ref[i]) + gamma * mag[i] + abs_extra + kU32;
    const double err = std::fabs(got - ref[i]);
    worst = std::max(worst, err / bound);
    bad += !(err <= bound);  // also catches NaN
  }
  INFO(what << ": worst error/bound = " << worst);
  CHECK(bad == 0);
}

// The FP16-underflow allowance above, for activations xh and reduction length k.
double underflow_allowance(const std::vector<uint16_t>& xh, int64_t k) {
  double xmax = 1.0;
  for (uint16_t h : xh) xmax = std::max(xmax, double(std::fabs(fp16_to_f32(h))));
  return double(k) * kU32 * xmax;
}

struct GptqCase {
  int64_t k, n;
  int group_size;
  bool act_order, v1;
};

struct GptqHost {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  layout::GptqTensors t;
};

GptqHost make_gptq(const GptqCase& c, std::mt19937& rng) {
  GptqHost h;
  const int64_t gs = c.group_size == -1 ? c.k : c.group_size;
  const int64_t groups = (c.k + gs - 1) / gs;
  h.qweight.resize(size_t(c.k / 8 * c.n));
  for (auto& w : h.qweight) w = int32_t(rng());
  h.qzeros.resize(size_t(groups * c.n / 8));
  for (auto& w : h.qzeros) w = int32_t(rng());
  std::uniform_real_distribution<float> sd(1e-3f, 3e-2f);
  h.scales.resize(size_t(groups * c.n));
  for (auto& s : h.scales) s = f32_to_fp16(sd(rng));
  std::vector<int32_t> order(size_t(c.k));
  for (int64_t i = 0; i < c.k; ++i) order[size_t(i)] = int32_t(i);
  if (c.act_order) std::shuffle(order.begin(), order.end(), rng);
  h.g_idx.resize(size_t(c.k));
  for (int64_t i = 0; i < c.k; ++i) h.g_idx[size_t(order[size_t(i)])] = int32_t(i / gs);
  h.t.k = c.k;
  h.t.n = c.n;
  h.t.group_size = c.group_size;
  h.t.zeros_v1 = c.v1;
  h.t.qweight = h.qweight;
  h.t.qzeros = h.qzeros;
  h.t.scales = h.scales;
  h.t.g_idx = h.g_idx;
  return h;
}

}  // namespace

TEST_CASE("cuda: fp16 cuBLAS baseline") {
  SLM_REQUIRE_CUDA();
  std::mt19937 rng(1);
  CublasHandle h;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 40, 96}, {7, 130, 352}, {33, 64, 1024}}) {
    const auto wh = random_f16(size_t(n * k), rng, 0.05f);
    const auto xh = random_f16(size_t(m * k), rng);
    std::vector<float> wf(wh.size());
    for (size_t i = 0; i < wh.size(); ++i) wf[i] = fp16_to_f32(wh[i]);
    std::vector<double> ref, mag;
    reference(wf, xh, m, n, k, ref, mag);
    auto wd = upload(wh.data(), wh.size() * 2), xd = upload(xh.data(), xh.size() * 2);
    DeviceBuffer yd(size_t(m * n) * 2);
    fp16_cublas(h.get(), wd.as<__half>(), xd.as<__half>(), yd.as<__half>(), m, n, k, nullptr);
    check_outputs("fp16_cublas", yd, ref, mag, double(k) * kU32);
  }
}

TEST_CASE("cuda: GPTQ variants vs the CPU reference") {
  SLM_REQUIRE_CUDA();
  const GptqCase cases[] = {
      {96, 40, 32, false, true},    {352, 136, 32, true, true},  {1024, 264, 128, true, false},
      {2048, 520, 128, false, true}, {256, 8, -1, false, true},
  };
  std::mt19937 rng(7);
  CublasHandle h;
  for (const auto& c : cases) {
    CAPTURE(c.k);
    CAPTURE(c.n);
    CAPTURE(c.act_order);
    const auto host = make_gptq(c, rng);
    const auto wref = layout::gptq_dequantize_ref(host.t);
    const auto rep = layout::gptq_repack(host.t);
    auto ck = upload_gptq_checkpoint(host.t);
    auto fast = upload_gptq_fast(rep);

    // (a)'s first half on its own: FP16 weights equal the rounded reference exactly (the float
    // product s * (q - z) is exact, both sides round it to nearest-even).
    {
      DeviceBuffer wd(size_t(c.n * c.k) * 2);
      gptq_dequantize_fp16(ck.dev, wd.as<__half>(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint16_t> got(size_t(c.n * c.k));
      wd.download(got.data(), got.size() * 2);
      size_t mismatch = 0;
      for (size_t i = 0; i < got.size(); ++i) mismatch += got[i] != f32_to_fp16(wref[i]);
      CHECK(mismatch == 0);
    }

    for (int64_t m : {1, 3, 8, 17, 70}) {
      CAPTURE(m);
      const auto xh = random_f16(size_t(m * c.k), rng);
      std::vector<double> ref, mag;
      reference(wref, xh, m, c.n, c.k, ref, mag);
      auto xd = upload(xh.data(), xh.size() * 2);
      DeviceBuffer yd(size_t(m * c.n) * 2);
      const double kacc = double(c.k) * kU32;
      const double uf = underflow_allowance(xh, c.k);

      DeviceBuffer ws(gptq_dequant_cublas_workspace_bytes(c.n, c.k));
      gptq_dequant_cublas(h.get(), ck.dev, xd.as<__half>(), yd.as<__half>(), m, ws.get(), ws.bytes(), nullptr);
      check_outputs("gptq_dequant_cublas", yd, ref, mag, kU16 + kacc, uf);

      gptq_naive(ck.dev, xd.as<__half>(), yd.as<__half>(), m, nullptr);
      check_outputs("gptq_naive", yd, ref, mag, kacc + kU32);

      if (m <= kGemvMaxM) {
        DeviceBuffer gws(gptq_gemv_workspace_bytes(m, c.n, c.k));
        for (int split : {1, 0, 3}) {
          CAPTURE(split);
          GemvOptions opt;
          opt.split_k = split;
          gptq_gemv(fast.dev, xd.as<__half>(), yd.as<__half>(), m, gws.get(), gws.bytes(), nullptr, opt);
          check_outputs("gptq_gemv", yd, ref, mag, 5 * kU16 + kacc, uf);
        }
      }

      DeviceBuffer mws(gptq_mma_workspace_bytes(m, c.k));
      gptq_mma(fast.dev, xd.as<__half>(), yd.as<__half>(), m, mws.get(), mws.bytes(), nullptr);
      check_outputs("gptq_mma", yd, ref, mag, kU16 + 2 * kacc, uf);
    }
  }
}

TEST_CASE("cuda: GPTQ kernels reject bad arguments with slm::Error") {
  SLM_REQUIRE_CUDA();
  GptqFastDev w;
  CHECK_THROWS_AS(gptq_gemv(w, nullptr, nullptr, 1, nullptr, 0, nullptr), slm::Error);
  std::mt19937 rng(3);
  const auto host = make_gptq({64, 16, 32, true, true}, rng);
  auto fast = upload_gptq_fast(layout::gptq_repack(host.t));
  // act-order needs the permuted-activation workspace.
  CHECK_THROWS_AS(gptq_gemv(fast.dev, nullptr, nullptr, 1, nullptr, 0, nullptr), slm::Error);
  CHECK_THROWS_AS(gptq_gemv(fast.dev, nullptr, nullptr, 9, nullptr, 0, nullptr), slm::Error);
}

TEST_CASE("cuda: GGUF dp4a and dequant paths vs the CPU reference") {
  SLM_REQUIRE_CUDA();
  std::mt19937 rng(11);
  CublasHandle h;
  struct Case {
    QType t;
    int64_t n, k;
  };
  for (const Case c : {Case{QType::Q4_0, 37, 352}, Case{QType::Q8_0, 70, 160}, Case{QType::Q4_K, 29, 512},
                       Case{QType::Q4_K, 300, 2048}, Case{QType::Q6_K, 29, 512}, Case{QType::Q6_K, 300, 2048}}) {
    CAPTURE(qtype_name(c.t));
    CAPTURE(c.n);
    const GgufRandom g = random_gguf(c.t, c.n, c.k, rng);
    const size_t rb = g.rb;
    const std::vector<uint8_t>& w = g.w;
    const std::vector<float>& wref = g.wref;
    const DeviceBuffer& wd = g.wd;

    {  // dequantize-to-FP16 kernel: exactly the rounded reference
      DeviceBuffer fd(size_t(c.n * c.k) * 2);
      gguf_dequantize_fp16(c.t, wd.get(), fd.as<__half>(), c.n, c.k, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint16_t> got(size_t(c.n * c.k));
      fd.download(got.data(), got.size() * 2);
      size_t mismatch = 0;
      for (size_t i = 0; i < got.size(); ++i) mismatch += got[i] != f32_to_fp16(wref[i]);
      CHECK(mismatch == 0);
    }

    for (int64_t m : {1, 4, 8, 20}) {
      CAPTURE(m);
      const auto xh = random_f16(size_t(m * c.k), rng);
      auto xd = upload(xh.data(), xh.size() * 2);
      DeviceBuffer yd(size_t(m * c.n) * 2);
      std::vector<double> ref, mag;
      reference(wref, xh, m, c.n, c.k, ref, mag);
      DeviceBuffer ws(gguf_dequant_cublas_workspace_bytes(c.n, c.k));
      gguf_dequant_cublas(h.get(), c.t, wd.get(), xd.as<__half>(), yd.as<__half>(), m, c.n, c.k,
                          ws.get(), ws.bytes(), nullptr);
      check_outputs("gguf_dequant_cublas", yd, ref, mag, kU16 + double(c.k) * kU32,
                    underflow_allowance(xh, c.k));
      if (m > kGemvMaxM) continue;

      // dp4a: the device Q8_1 quantizer must reproduce the host mirror bit for bit; the GEMV is
      // then compared with the double reference on those quantized activations.
      const int64_t units = c.k / layout::kUnitElems;
      std::vector<BlockQ8_1> xq(size_t(m * units));
      for (int64_t i = 0; i < m; ++i) layout::quantize_q8_1_ref(xh.data() + i * c.k, xq.data() + i * units, c.k);
      DeviceBuffer qws(gguf_dp4a_workspace_bytes(m, c.k));
      gguf_dp4a(c.t, wd.get(), xd.as<__half>(), yd.as<__half>(), m, c.n, c.k, qws.get(), qws.bytes(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<BlockQ8_1> xq_dev(xq.size());
      qws.download(xq_dev.data(), xq_dev.size() * sizeof(BlockQ8_1));
      CHECK(std::memcmp(xq.data(), xq_dev.data(), xq.size() * sizeof(BlockQ8_1)) == 0);

      std::vector<double> qref(size_t(m * c.n));
      layout::gguf_linear_q8_1_ref(c.t, w.data(), c.n, c.k, xq.data(), m, qref.data());
      // Bound: per unit, the fp16-stored s in the offset/min term (2^-11 of that term) and a few
      // float ulps of each term, as derived in tests/kernels/layout_test.cpp; plus FP32
      // accumulation over the units (units * u32 of the magnitudes).
      std::vector<double> qmag(size_t(m * c.n), 0.0);
      const int upb = layout::gguf_units_per_block(uint32_t(c.t));
      const int bb = layout::gguf_block_bytes(uint32_t(c.t));
      std::vector<double> extra(size_t(m * c.n), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t r = 0; r < c.n; ++r)
          for (int64_t u = 0; u < units; ++u) {
            const uint8_t* blk = w.data() + size_t(r) * rb + (u / upb) * bb;
            const BlockQ8_1& xb = xq[size_t(i * units + u)];
            const double dx = fp16_to_f32(xb.d);
            double dot = 0, sq = 0, saq = 0;
            for (int e = 0; e < 32; ++e) {
              dot += std::fabs(double(wref[size_t(r * c.k + u * 32 + e)]) * dx * xb.qs[e]);
              sq += xb.qs[e];
              saq += std::abs(xb.qs[e]);
            }
            double off_scale = 0;
            if (c.t == QType::Q4_0) off_scale = 8.0 * std::fabs(layout::h2f(layout::load_u16(blk)));
            if (c.t == QType::Q4_K) {
              int sc, mn;
              layout::q4k_scale_min(int(u % upb), blk + 4, sc, mn);
              off_scale = std::fabs(double(layout::h2f(layout::load_u16(blk + 2)))) * mn;
            }
            const double off = off_scale * dx * std::fabs(sq), off_abs = off_scale * dx * saq;
            qmag[size_t(i * c.n + r)] += dot + 2 * off_abs;
            extra[size_t(i * c.n + r)] += off * kU16;
          }
      std::vector<uint16_t> y(size_t(m * c.n));
      yd.download(y.data(), y.size() * 2);
      size_t bad = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        const double bound = kU16 * std::fabs(qref[i]) + extra[i] +
                             (4.0 * kU32 + double(units) * kU32) * qmag[i] + kU32;
        bad += !(std::fabs(fp16_to_f32(y[i]) - qref[i]) <= bound);
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("cuda: GGUF f16 GEMV (dequantize in registers) vs the CPU reference") {
  SLM_REQUIRE_CUDA();
  std::mt19937 rng(13);
  struct Case {
    QType t;
    int64_t n, k;
  };
  for (const Case c : {Case{QType::Q4_0, 37, 352}, Case{QType::Q8_0, 70, 160}, Case{QType::Q4_K, 29, 512},
                       Case{QType::Q4_K, 300, 2048}, Case{QType::Q6_K, 29, 512}, Case{QType::Q6_K, 300, 2048},
                       Case{QType::Q4_0, 130, 2048}, Case{QType::Q8_0, 9, 1024}}) {
    CAPTURE(qtype_name(c.t));
    CAPTURE(c.n);
    const uint32_t ty = uint32_t(c.t);
    const GgufRandom g = random_gguf(c.t, c.n, c.k, rng);
    const size_t rb = g.rb;
    const std::vector<uint8_t>& w = g.w;
    const std::vector<float>& wref = g.wref;
    const DeviceBuffer& wd = g.wd;

    // Per weight the magnitudes of its code term |sc c 2^-s| and its min term, per row the
    // underflow allowance, from the host mirror of the kernel's decode (checked against
    // dequantize_row in tests/kernels/layout_test.cpp).
    const int64_t units = c.k / layout::kUnitElems;
    const int upb = layout::gguf_units_per_block(ty);
    const int bb = layout::gguf_block_bytes(ty);
    std::vector<float> code_mag(size_t(c.n * c.k)), min_mag(size_t(c.n * c.k));
    std::vector<double> uf_row(size_t(c.n), 0.0);
    for (int64_t r = 0; r < c.n; ++r)
      for (int64_t u = 0; u < units; ++u) {
        const uint8_t* blk = w.data() + size_t(r) * rb + size_t(u / upb) * size_t(bb);
        float sc[2], mn;
        layout::gguf_f16_unit_scales(ty, blk, int(u % upb), sc, mn);
        for (int p = 0; p < 16; ++p) {
          const uint32_t bits = layout::gguf_unit_codes_h2(ty, blk, int(u % upb), p);
          for (int lane = 0; lane < 2; ++lane) {
            const int e = 2 * p + lane;
            const size_t idx = size_t(r * c.k + u * 32 + e);
            code_mag[idx] = std::fabs(sc[e / 16] * fp16_to_f32(uint16_t(bits >> (16 * lane))));
            min_mag[idx] = mn;
          }
        }
        uf_row[size_t(r)] += std::ldexp(16.0 * (std::fabs(sc[0]) + std::fabs(sc[1])) + 24.0 * mn, -25);
      }

    for (int64_t m : {1, 2, 3, 8}) {
      CAPTURE(m);
      auto xh = random_f16(size_t(m * c.k), rng);
      if (m == 3) {
        // Outlier activations: with |code 2^-s| <= 1 a 4-term half chain stays below 4 * 12000,
        // where integer Q8_0 codes (|c| <= 128) would overflow FP16.
        xh[7] = f32_to_fp16(8000.0f);
        xh[size_t(c.k + 100)] = f32_to_fp16(-12000.0f);
      }
      auto xd = upload(xh.data(), xh.size() * 2);
      DeviceBuffer yd(size_t(m * c.n) * 2);
      std::vector<double> ref, mag;
      reference(wref, xh, m, c.n, c.k, ref, mag);
      std::vector<double> bmag(ref.size());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t r = 0; r < c.n; ++r) {
          double bc = 0, bm = 0;
          for (int64_t kk = 0; kk < c.k; ++kk) {
            const double ax = std::fabs(fp16_to_f32(xh[size_t(i * c.k + kk)]));
            bc += ax * code_mag[size_t(r * c.k + kk)];
            bm += ax * min_mag[size_t(r * c.k + kk)];
          }
          bmag[size_t(i * c.n + r)] =
              4 * kU16 * bc + 2 * kU16 * bm + double(c.k + 17) * kU32 * (bc + bm) + uf_row[size_t(r)];
        }
      gguf_f16_gemv(c.t, wd.get(), xd.as<__half>(), yd.as<__half>(), m, c.n, c.k, nullptr);
      check_outputs("gguf_f16_gemv", yd, ref, bmag, 1.0);
    }
  }
}

TEST_CASE("cuda: gguf_f16_gemv rejects bad arguments with slm::Error") {
  SLM_REQUIRE_CUDA();
  DeviceBuffer w(size_t(row_bytes(QType::Q4_K, 256)) * 8), x(256 * 9 * 2 + 16), y(8 * 9 * 2);
  CHECK_NOTHROW(gguf_f16_gemv(QType::Q4_K, w.get(), x.as<__half>(), y.as<__half>(), 8, 8, 256, nullptr));
  CHECK_THROWS_AS(gguf_f16_gemv(QType::Q4_K, w.get(), x.as<__half>(), y.as<__half>(), 9, 8, 256, nullptr),
                  slm::Error);  // m > kGemvMaxM
  CHECK_THROWS_AS(gguf_f16_gemv(QType::Q4_K, w.get(), x.as<__half>() + 1, y.as<__half>(), 1, 8, 256, nullptr),
                  slm::Error);  // x not 16-byte aligned
  CHECK_THROWS_AS(gguf_f16_gemv(QType::Q4_K, w.get(), x.as<__half>(), y.as<__half>(), 1, 8, 224, nullptr),
                  slm::Error);  // k not a multiple of 256
  CHECK_THROWS_AS(gguf_f16_gemv(QType::Q5_K, w.get(), x.as<__half>(), y.as<__half>(), 1, 8, 256, nullptr),
                  slm::Error);  // type without a kernel
  CUDA_CHECK(cudaDeviceSynchronize());
}
