// Every non-matrix kernel of kernels/cuda/ops_cuda.h against a CPU reference (runtime/ops.h,
// slm::dequantize_row, or a double-precision loop) on awkward shapes. Skips without a device.
// Notation: u16 = 2^-11 (FP16 unit roundoff), u32 = 2^-24 (FP32). Bounds are derived per test.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/half.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/quant/types.h"
#include "runtime/ops.h"
#include "runtime/sampler.h"

using namespace slm;
using slm::cuda::DeviceBuffer;
namespace cops = slm::cuda::ops;

#define SLM_REQUIRE_CUDA_OPS()                                                 \
  if (::slm::cuda::device_count_or_zero() == 0) {                              \
    MESSAGE("SKIP: no CUDA device (cudaGetDeviceCount failed or returned 0)"); \
    return;                                                                    \
  }

namespace {

constexpr double kU16 = 1.0 / 2048.0;
constexpr double kU32 = 1.0 / 16777216.0;

template <class T>
DeviceBuffer to_dev(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(T));
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(T));
  return b;
}
template <class T>
std::vector<T> from_dev(const DeviceBuffer& b, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(n);
  b.download(v.data(), n * sizeof(T));
  return v;
}
std::vector<float> randn(size_t n, std::mt19937& rng, float sigma = 1.f) {
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
std::vector<uint16_t> to_h(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_fp16(v[i]);
  return h;
}
float hf(uint16_t h) { return fp16_to_f32(h); }

}  // namespace

TEST_CASE("cuda ops: get_rows decodes every table type like dequantize_row") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(1);
  // cols: a multiple of 256 for the K types, an odd multiple of 32 / arbitrary for the others.
  const struct { QType t; int64_t cols; } cases[] = {{QType::F32, 75},    {QType::F16, 75},   {QType::BF16, 75},
                                                     {QType::Q4_0, 96},   {QType::Q8_0, 160}, {QType::Q4_K, 512},
                                                     {QType::Q6_K, 768}};
  const int64_t rows = 13;
  for (const auto& c : cases) {
    const auto src = randn(size_t(rows * c.cols), rng);
    std::vector<uint8_t> table(row_bytes(c.t, c.cols) * rows);
    quantize_rows(c.t, src.data(), table.data(), rows, c.cols);
    const std::vector<int32_t> ids = {12, 0, 5, 5, 7};
    DeviceBuffer dt = to_dev(table), di = to_dev(ids), dout(ids.size() * size_t(c.cols) * 4);
    CUDA_CHECK(cops::get_rows(uint32_t(c.t), dt.get(), int64_t(row_bytes(c.t, c.cols)), c.cols, di.as<int32_t>(),
                             int64_t(ids.size()), dout.as<float>(), nullptr));
    const auto got = from_dev<float>(dout, ids.size() * size_t(c.cols));
    std::vector<float> ref(size_t(c.cols));
    double worst = 0;
    for (size_t r = 0; r < ids.size(); ++r) {
      dequantize_row(c.t, table.data() + row_bytes(c.t, c.cols) * size_t(ids[r]), ref.data(), c.cols);
      // Both sides evaluate d*sc*q - dmin*m (at most 4 FP32 roundings, possibly in another
      // order); every term is bounded by the largest decoded magnitude of the row plus the
      // min offset, which the 8 u32 x (row max + 1) allowance covers. Float types are exact.
      double rmax = 0;
      for (float v : ref) rmax = std::max(rmax, double(std::fabs(v)));
      for (int64_t i = 0; i < c.cols; ++i) {
        const double err = std::fabs(double(got[r * size_t(c.cols) + size_t(i)]) - double(ref[size_t(i)]));
        worst = std::max(worst, err);
        CHECK(err <= 8 * kU32 * (rmax + 1.0));
      }
    }
    INFO(qtype_name(c.t) << " worst abs error " << worst);
  }
}

TEST_CASE("cuda ops: rmsnorm") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(2);
  const int64_t rows = 3, n = 1000;
  const auto x = randn(size_t(rows * n), rng, 3.f);
  const auto w = randn(size_t(n), rng);
  DeviceBuffer dx = to_dev(x), dw = to_dev(w), dout(size_t(rows * n) * 2);
  CUDA_CHECK(cops::rmsnorm(dx.as<float>(), dw.as<float>(), dout.as<__half>(), rows, n, 1e-5f, nullptr));
  const auto got = from_dev<uint16_t>(dout, size_t(rows * n));
  std::vector<float> ref(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    ops::rmsnorm(ref.data(), &x[size_t(r * n)], w.data(), n, 1e-5f);
    for (int64_t i = 0; i < n; ++i) {
      // FP32 sum of n squares vs the reference's double sum: relative n u32 on the mean, half of
      // it on 1/sqrt, plus a few roundings (4 u32); then the FP16 rounding of the output (u16).
      const double r_i = ref[size_t(i)];
      const double bound = kU16 * std::fabs(r_i) + (double(n) * kU32 + 4 * kU32) * std::fabs(r_i) + kU32;
      CHECK(std::fabs(hf(got[size_t(r * n + i)]) - r_i) <= bound);
    }
  }
}

TEST_CASE("cuda ops: rope, both pairings, partial rotation, per-pair divisors") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(3);
  ModelConfig c;
  c.n_heads = 5;
  c.n_kv_heads = 1;
  c.head_dim = 64;
  c.n_rot = 48;
  c.rope_theta = 500000.f;
  std::uniform_real_distribution<float> U(1.f, 8.f);
  for (int64_t j = 0; j < c.n_rot / 2; ++j) c.rope_divisors.push_back(U(rng));
  const int64_t n_pos = 40, n_tok = 3;
  const int32_t pos0 = 31;
  std::vector<float> table(ops::rope_table_floats(n_pos, c.n_rot));
  ops::RopeTable rt;
  rt.data = table.data();
  ops::rope_table_init(rt, c, n_pos);
  for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::HalfSplit}) {
    const auto q = to_h(randn(size_t(n_tok * c.n_heads * c.head_dim), rng));
    const auto k = to_h(randn(size_t(n_tok * c.n_kv_heads * c.head_dim), rng));
    DeviceBuffer dq = to_dev(q), dk = to_dev(k), dt = to_dev(table), dp = to_dev(std::vector<int32_t>{pos0});
    CUDA_CHECK(cops::rope(dq.as<__half>(), dk.as<__half>(), dt.as<float>(), dp.as<int32_t>(), n_tok, int(c.n_heads),
                         int(c.n_kv_heads), int(c.head_dim), int(c.n_rot), style == RopeStyle::Interleaved, nullptr));
    const auto gq = from_dev<uint16_t>(dq, q.size()), gk = from_dev<uint16_t>(dk, k.size());
    auto check = [&](const std::vector<uint16_t>& in, const std::vector<uint16_t>& got, int64_t heads) {
      for (int64_t t = 0; t < n_tok; ++t) {
        std::vector<float> ref(size_t(heads * c.head_dim));
        for (size_t i = 0; i < ref.size(); ++i) ref[i] = hf(in[size_t(t * heads * c.head_dim) + i]);
        ops::rope_apply(ref.data(), heads, c.head_dim, c.n_rot, style, rt, pos0 + t);
        for (size_t i = 0; i < ref.size(); ++i) {
          // a c - b s in FP32 (2 roundings, or 1 when contracted to an FMA) on both sides, then the
          // device rounds to FP16: u16 |ref| + 4 u32 (|a| + |b|) with |a|, |b| <= max |input| of
          // the head, bounded here by 8 (Gaussian inputs of sigma 1, FP16-rounded).
          const double bound = kU16 * std::fabs(ref[i]) + 4 * kU32 * 16.0 + kU32;
          CHECK(std::fabs(hf(got[size_t(t * heads * c.head_dim) + i]) - ref[i]) <= bound);
        }
      }
    };
    check(q, gq, c.n_heads);
    check(k, gk, c.n_kv_heads);
  }
}

TEST_CASE("cuda ops: kv_append, residual add, f16_to_f32 are exact") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(4);
  const int64_t kvd = 96, n_ctx = 20, n = 3;
  const int32_t pos0 = 11;
  const auto k = to_h(randn(size_t(n * kvd), rng)), v = to_h(randn(size_t(n * kvd), rng));
  std::vector<uint16_t> zeros(size_t(n_ctx * kvd), 0);
  DeviceBuffer dk = to_dev(k), dv = to_dev(v), kc = to_dev(zeros), vc = to_dev(zeros),
               dp = to_dev(std::vector<int32_t>{pos0});
  CUDA_CHECK(cops::kv_append(dk.as<__half>(), dv.as<__half>(), kc.as<__half>(), vc.as<__half>(), dp.as<int32_t>(), n, kvd,
                            nullptr));
  const auto gk = from_dev<uint16_t>(kc, zeros.size()), gv = from_dev<uint16_t>(vc, zeros.size());
  for (int64_t p = 0; p < n_ctx; ++p)
    for (int64_t i = 0; i < kvd; ++i) {
      const bool in = p >= pos0 && p < pos0 + n;
      CHECK(gk[size_t(p * kvd + i)] == (in ? k[size_t((p - pos0) * kvd + i)] : 0));
      CHECK(gv[size_t(p * kvd + i)] == (in ? v[size_t((p - pos0) * kvd + i)] : 0));
    }
  const auto x = randn(1001, rng);
  const auto y = to_h(randn(1001, rng));
  DeviceBuffer dx = to_dev(x), dy = to_dev(y), df(1001 * 4);
  CUDA_CHECK(cops::add_residual(dx.as<float>(), dy.as<__half>(), 1001, nullptr));
  CUDA_CHECK(cops::f16_to_f32(dy.as<__half>(), df.as<float>(), 1001, nullptr));
  const auto gx = from_dev<float>(dx, 1001), gf = from_dev<float>(df, 1001);
  for (size_t i = 0; i < 1001; ++i) {
    CHECK(gx[i] == x[i] + hf(y[i]));  // one FP32 addition, same on both sides
    CHECK(gf[i] == hf(y[i]));
  }
}

TEST_CASE("cuda ops: swiglu") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(5);
  const int64_t n = 777;
  const auto g = to_h(randn(size_t(n), rng, 3.f)), u = to_h(randn(size_t(n), rng));
  DeviceBuffer dg = to_dev(g), du = to_dev(u), dy(size_t(n) * 2);
  CUDA_CHECK(cops::swiglu(dg.as<__half>(), du.as<__half>(), dy.as<__half>(), n, nullptr));
  const auto gy = from_dev<uint16_t>(dy, size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const double a = hf(g[size_t(i)]), b = hf(u[size_t(i)]);
    const double ref = a / (1.0 + std::exp(-a)) * b;
    // expf (2 ulp on the device), one add, one divide, one multiply in FP32: 6 u32 relative;
    // then the FP16 output rounding.
    CHECK(std::fabs(hf(gy[size_t(i)]) - ref) <= (kU16 + 6 * kU32) * std::fabs(ref) + kU32);
  }
}

TEST_CASE("cuda ops: attention (GQA, causal, split-K) against a double reference") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(6);
  const int n_heads = 6, n_kv = 2, hd = 64, group = n_heads / n_kv;
  const int64_t n_ctx = 300, n_tok = 5, kvd = int64_t(n_kv) * hd;
  const int32_t pos0 = 197;  // keys per query: 198..202, i.e. 4 tiles of 64 with a ragged last tile
  const float scale = 1.f / std::sqrt(float(hd));
  const auto q = to_h(randn(size_t(n_tok * n_heads * hd), rng));
  const auto kc = to_h(randn(size_t(n_ctx * kvd), rng));
  const auto vc = to_h(randn(size_t(n_ctx * kvd), rng));
  DeviceBuffer dq = to_dev(q), dkc = to_dev(kc), dvc = to_dev(vc), dp = to_dev(std::vector<int32_t>{pos0});
  for (int splits : {1, 3, 7, 64}) {
    DeviceBuffer part(cops::attention_partial_floats(n_tok, n_heads, splits, hd) * 4), out(size_t(n_tok * n_heads * hd) * 2);
    CUDA_CHECK(cops::attention(dq.as<__half>(), dkc.as<__half>(), dvc.as<__half>(), dp.as<int32_t>(), n_tok, n_heads, n_kv,
                              hd, scale, splits, part.as<float>(), out.as<__half>(), nullptr));
    const auto got = from_dev<uint16_t>(out, size_t(n_tok * n_heads * hd));
    size_t bad = 0;
    for (int64_t t = 0; t < n_tok; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const int64_t keys = pos0 + t + 1, kvh = h / group;
        std::vector<double> s(static_cast<size_t>(keys));
        double smax = -1e300, smin = 1e300, dot_mag = 0;
        for (int64_t i = 0; i < keys; ++i) {
          double d = 0, mag = 0;
          for (int j = 0; j < hd; ++j) {
            const double p = double(hf(q[size_t((t * n_heads + h) * hd + j)])) * hf(kc[size_t(i * kvd + kvh * hd + j)]);
            d += p;
            mag += std::fabs(p);
          }
          s[size_t(i)] = d * scale;
          dot_mag = std::max(dot_mag, mag * scale);
          smax = std::max(smax, s[size_t(i)]);
          smin = std::min(smin, s[size_t(i)]);
        }
        double den = 0;
        for (double& x : s) den += (x = std::exp(x - smax));
        double vmax = 0;
        for (int j = 0; j < hd; ++j) {
          double o = 0;
          for (int64_t i = 0; i < keys; ++i) {
            const double vv = hf(vc[size_t(i * kvd + kvh * hd + j)]);
            o += s[size_t(i)] * vv;
            vmax = std::max(vmax, std::fabs(vv));
          }
          const double ref = o / den;
          // Score error delta <= hd u32 * sum|q k| * scale (FP32 dot); a probability's relative
          // error <= 2 delta (numerator and max shift) + __expf's (2 + 1.2 |x|) ulp with |x| <= the
          // score range, + keys u32 for the FP32 sums of p and p v and the split merge (3 more
          // exps); the output is a convex combination of V, so the error is that relative error
          // times max|v|; then the FP16 rounding of the output.
          const double delta = hd * kU32 * dot_mag;
          const double p_rel = 2 * delta + 4 * (2 + 1.2 * (smax - smin)) * 2 * kU32 + double(keys) * kU32;
          const double bound = kU16 * std::fabs(ref) + 2 * p_rel * vmax + kU32;
          const double err = std::fabs(hf(got[size_t((t * n_heads + h) * hd + j)]) - ref);
          bad += !(err <= bound);
        }
      }
    INFO("splits " << splits);
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda ops: argmax picks the first maximum") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(7);
  std::vector<float> x = randn(128256, rng);
  x[77777] = 50.f;
  x[100000] = 50.f;  // tie: the smaller index wins
  x[5] = std::numeric_limits<float>::quiet_NaN();
  DeviceBuffer dx = to_dev(x), dout(4);
  CUDA_CHECK(cops::argmax(dx.as<float>(), int64_t(x.size()), dout.as<int32_t>(), nullptr));
  CHECK(from_dev<int32_t>(dout, 1)[0] == 77777);
  const std::vector<float> small = {-3.f, -1.f, -2.f};
  DeviceBuffer ds = to_dev(small);
  CUDA_CHECK(cops::argmax(ds.as<float>(), 3, dout.as<int32_t>(), nullptr));
  CHECK(from_dev<int32_t>(dout, 1)[0] == 1);
}

TEST_CASE("cuda ops: top-k sampling picks slm::Sampler's token for the same uniform draw") {
  SLM_REQUIRE_CUDA_OPS();
  std::mt19937 rng(11);
  const int sm = cuda::current_device_info().sm_count;
  const int max_blocks = layout::kSampleMaxBlocks;
  DeviceBuffer ws(cops::sample_workspace_bytes(max_blocks)), dout(4);
  int draws = 0, mismatches = 0;
  // Logits: Gaussian; heavy ties (quarter steps, equal values in different first-pass slices);
  // Gaussian with a fifth at -inf; a short row (one partial block).
  for (int variant = 0; variant < 4; ++variant) {
    const int64_t n = variant == 3 ? 1000 : 128256;
    std::vector<float> x = randn(size_t(n), rng, 3.f);
    if (variant == 1)
      for (float& v : x) v = std::round(v * 4.f) / 4.f;
    if (variant == 2)
      for (size_t i = 0; i < x.size(); i += 5) x[i] = -std::numeric_limits<float>::infinity();
    DeviceBuffer dx = to_dev(x);
    for (int blocks : {layout::sample_blocks(n, sm), 1, max_blocks}) {
      for (int c = 0; c < 64; ++c) {
        SamplerParams sp;
        sp.top_k = c % 4 == 0 ? int32_t(1 + rng() % layout::kSampleMaxTopK) : std::array<int32_t, 4>{1, 40, 100, 128}[c % 4];
        sp.temperature = std::array<float, 5>{0.05f, 0.5f, 0.8f, 1.f, 3.f}[rng() % 5];
        sp.top_p = std::array<float, 4>{1.f, 0.95f, 0.5f, 1e-6f}[rng() % 4];
        sp.min_p = std::array<float, 4>{0.f, 0.05f, 0.3f, 1.f}[rng() % 4];
        sp.repeat_penalty = 1.f;
        sp.seed = rng();
        Sampler host(sp, n);
        std::mt19937_64 gen(sp.seed);  // Sampler's generator, replayed: its draws are the u's
        std::uniform_real_distribution<double> U(0.0, 1.0);
        const layout::SampleConfig cfg{sp.top_k, sp.temperature, sp.top_p, sp.min_p};
        for (int d = 0; d < 4; ++d) {
          const int32_t want = host.sample(x, {});
          const double u = U(gen);
          CUDA_CHECK(cops::sample_top_k(dx.as<float>(), n, cfg, u, blocks, ws.get(), dout.as<int32_t>(), nullptr));
          const int32_t got = from_dev<int32_t>(dout, 1)[0];
          ++draws;
          if (got != want) {
            ++mismatches;
            INFO("variant " << variant << " blocks " << blocks << " k " << sp.top_k << " temp " << sp.temperature
                            << " top_p " << sp.top_p << " min_p " << sp.min_p << " u " << u);
            CHECK(got == want);
          }
        }
      }
    }
  }
  MESSAGE(draws << " device draws, " << mismatches << " differ from slm::Sampler");
}
