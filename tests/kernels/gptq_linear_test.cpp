// GPTQ CPU kernels (scalar, AVX2, AVX-512) against a float64 reference computed from the integer
// codes, zeros and scales this test generated (not from the library's unpacking). Awkward shapes:
// every supported bit width, out_features not a multiple of the 16-column tile, groups whose size
// is not a multiple of the codes per word, group_size −1, act-order g_idx, v1/v2 zeros, bias,
// m = 1..9, strided output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/gptq_linear.h"

using namespace slm;
using namespace slm::cpu;

namespace {

struct Layer {
  int bits = 4, gs = 128;
  int64_t k = 0, n = 0, groups = 0;
  bool v1 = true;
  std::vector<uint32_t> q, zero;  // [k][n], [groups][n] (true zeros)
  std::vector<uint16_t> s16;      // [groups][n]
  std::vector<int32_t> g_idx;     // [k]
  std::vector<uint16_t> bias16;   // [n] or empty
  std::vector<int32_t> qweight, qzeros;
  bool store_g_idx = true;

  GptqTensors raw() const {
    GptqTensors t;
    t.bits = bits;
    t.k = k;
    t.n = n;
    t.groups = groups;
    t.group_size = gs;
    t.zero_plus_one = v1;
    t.qweight = qweight.data();
    t.qzeros = qzeros.data();
    t.scales = s16.data();
    t.g_idx = store_g_idx ? g_idx.data() : nullptr;
    t.bias = bias16.empty() ? nullptr : bias16.data();
    return t;
  }
  float s(int64_t g, int64_t nn) const { return fp16_to_f32(s16[size_t(g * n + nn)]); }
  double w(int64_t nn, int64_t kk) const {
    const int64_t g = g_idx[size_t(kk)];
    return double(s(g, nn)) * double(int64_t(q[size_t(kk * n + nn)]) - int64_t(zero[size_t(g * n + nn)]));
  }
};

// Random codes / zeros / scales. pow2_scales: scales 2^-3..2^0 so every kernel operation is
// exact with small-integer activations (then kernel == reference bit for bit).
Layer make_layer(std::mt19937& rng, int bits, int64_t k, int64_t n, int gs, bool act, bool v1,
                 bool bias, bool pow2_scales, bool store_g_idx = true) {
  Layer L;
  L.bits = bits;
  L.gs = gs;
  L.k = k;
  L.n = n;
  L.v1 = v1;
  L.store_g_idx = store_g_idx;
  const int64_t gsz = gs > 0 ? gs : k;
  L.groups = (k + gsz - 1) / gsz;
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  if (act) std::shuffle(order.begin(), order.end(), rng);
  L.g_idx.resize(size_t(k));
  for (int64_t p = 0; p < k; ++p) L.g_idx[size_t(order[size_t(p)])] = int32_t(p / gsz);
  const uint32_t maxq = (1u << bits) - 1;
  std::uniform_int_distribution<uint32_t> qd(0, maxq), zd(v1 ? 1 : 0, maxq);
  std::uniform_int_distribution<int> ed(0, 3);
  std::uniform_real_distribution<float> sd(0.001f, 0.05f);
  L.q.resize(size_t(k * n));
  for (auto& v : L.q) v = qd(rng);
  L.zero.resize(size_t(L.groups * n));
  for (auto& v : L.zero) v = zd(rng);
  L.s16.resize(size_t(L.groups * n));
  for (auto& v : L.s16) v = f32_to_fp16(pow2_scales ? std::ldexp(1.0f, -ed(rng)) : sd(rng));
  if (bias) {
    L.bias16.resize(size_t(n));
    for (auto& v : L.bias16) v = f32_to_fp16(pow2_scales ? float(int(ed(rng)) - 1) : sd(rng) - 0.025f);
  }
  L.qweight = gptq_pack_qweight(L.q.data(), k, n, bits);
  std::vector<uint32_t> stored(L.zero);
  if (v1)
    for (auto& z : stored) z -= 1;
  L.qzeros = gptq_pack_qzeros(stored.data(), L.groups, n, bits);
  return L;
}

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Scalar, Isa::AVX2, Isa::AVX512})
    if (gptq_isa_available(i)) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("gptq kernels: random shapes match the float64 reference within the derived bound") {
  struct Case { int bits; int64_t k, n; int gs; bool act, v1, bias, store_g_idx; };
  const Case cases[] = {
      {4, 256, 296, 128, false, true, false, true},   // 296 = 18.5 tiles
      {4, 256, 296, 128, true, true, true, true},     // act-order
      {4, 96, 40, 24, true, false, false, true},      // groups of 24: padded to whole words
      {4, 200, 64, -1, false, false, true, false},    // one group, no g_idx tensor
      {4, 120, 8, 20, false, true, false, false},     // trivial groups not word aligned -> gather
      {8, 100, 36, 32, true, true, true, true},
      {8, 128, 20, -1, false, false, false, true},
      {3, 96, 64, 32, true, false, false, true},      // 3- and 2-bit are widened to 4-bit codes
      {2, 64, 48, 16, false, true, true, true},
      {4, 2048, 80, 128, true, true, false, true},
  };
  constexpr double u = 1.0 / (1 << 24);  // float32 unit roundoff
  std::string names;
  for (Isa i : isas()) names += std::string(isa_name(i)) + " ";
  MESSAGE("GPTQ kernels tested on: " << names);
  std::mt19937 rng(2024);
  Workspace ws;
  for (const Case& c : cases) {
    CAPTURE(c.bits);
    CAPTURE(c.k);
    CAPTURE(c.n);
    CAPTURE(c.gs);
    CAPTURE(c.act);
    const Layer L = make_layer(rng, c.bits, c.k, c.n, c.gs, c.act, c.v1, c.bias, false, c.store_g_idx);
    const GptqCpuWeight W = gptq_prepare(L.raw());
    CHECK(W.gather == (c.act || (c.gs > 0 && c.gs % (32 / W.code_bits) != 0)));
    for (int64_t m : {1, 2, 3, 5, 9}) {
      CAPTURE(m);
      std::vector<float> x(size_t(m * c.k));
      std::normal_distribution<float> nd;
      for (auto& v : x) v = nd(rng);
      // Reference and the error bound per output. The kernel sums per group q·x and x (chains of
      // <= K float FMAs/adds), forms s·(accq − z·sumx) and adds G of those: every rounding is
      // covered by the standard bound γ_j·Σ|terms| with j = K + G + 4 steps and the terms
      // |x_k|·s·(q + z), plus the final rounding of the sum with the bias.
      const int64_t steps = c.k + L.groups + 4;
      const double gamma = steps * u / (1 - steps * u);
      std::vector<double> ref(size_t(m * c.n)), bound(size_t(m * c.n));
      for (int64_t r = 0; r < m; ++r)
        for (int64_t nn = 0; nn < c.n; ++nn) {
          double acc = 0, mag = 0;
          for (int64_t kk = 0; kk < c.k; ++kk) {
            const double xv = x[size_t(r * c.k + kk)];
            const int64_t g = L.g_idx[size_t(kk)];
            acc += xv * L.w(nn, kk);
            mag += std::fabs(xv) * L.s(g, nn) * double(L.q[size_t(kk * c.n + nn)] + L.zero[size_t(g * c.n + nn)]);
          }
          const double b = L.bias16.empty() ? 0.0 : fp16_to_f32(L.bias16[size_t(nn)]);
          ref[size_t(r * c.n + nn)] = acc + b;
          bound[size_t(r * c.n + nn)] = gamma * mag + 2 * u * (std::fabs(acc) + std::fabs(b));
        }
      for (Isa isa : isas()) {
        CAPTURE(isa_name(isa));
        const int64_t ldy = c.n + 3;  // strided output: the gap must stay untouched
        std::vector<float> y(size_t(m * ldy), std::numeric_limits<float>::quiet_NaN());
        gptq_linear_isa(W, x.data(), m, y.data(), ldy, ws, isa);
        int64_t bad = 0;
        double worst = 0;
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t nn = 0; nn < c.n; ++nn) {
            const double e = std::fabs(double(y[size_t(r * ldy + nn)]) - ref[size_t(r * c.n + nn)]);
            worst = std::max(worst, e / (bound[size_t(r * c.n + nn)] + 1e-30));
            bad += !(e <= bound[size_t(r * c.n + nn)]);
          }
          for (int64_t nn = c.n; nn < ldy; ++nn) CHECK(std::isnan(y[size_t(r * ldy + nn)]));
        }
        CHECK(bad == 0);
        CHECK(worst < 1.0);
      }
    }
  }
}

TEST_CASE("gptq kernels: exact arithmetic gives bit-identical results on every ISA") {
  // Power-of-two scales, integer activations in [-3, 3] and integer biases: every product and
  // partial sum is a multiple of 2^-3 below 2^20, so float32 holds all of them exactly and any
  // summation order yields the exact value.
  std::mt19937 rng(77);
  Workspace ws;
  const struct { int bits; int64_t k, n; int gs; bool act; } cases[] = {
      {4, 512, 104, 64, true}, {8, 256, 52, 32, true}, {4, 128, 24, -1, false},
      {3, 64, 32, 32, true}, {2, 96, 32, 48, false}};
  for (const auto& c : cases) {
    CAPTURE(c.bits);
    const Layer L = make_layer(rng, c.bits, c.k, c.n, c.gs, c.act, true, true, true);
    const GptqCpuWeight W = gptq_prepare(L.raw());
    for (int64_t m : {1, 4, 7}) {
      std::vector<float> x(size_t(m * c.k));
      std::uniform_int_distribution<int> xd(-3, 3);
      for (auto& v : x) v = float(xd(rng));
      std::vector<float> ref(size_t(m * c.n));
      for (int64_t r = 0; r < m; ++r)
        for (int64_t nn = 0; nn < c.n; ++nn) {
          double acc = fp16_to_f32(L.bias16[size_t(nn)]);
          for (int64_t kk = 0; kk < c.k; ++kk) acc += double(x[size_t(r * c.k + kk)]) * L.w(nn, kk);
          ref[size_t(r * c.n + nn)] = float(acc);
        }
      for (Isa isa : isas()) {
        CAPTURE(isa_name(isa));
        std::vector<float> y(size_t(m * c.n));
        gptq_linear_isa(W, x.data(), m, y.data(), c.n, ws, isa);
        CHECK(y == ref);
      }
    }
  }
}

TEST_CASE("gptq kernels: prepared layout, dispatch, workspace and errors") {
  std::mt19937 rng(1);
  // Act-order 4-bit with group 24: groups padded to 24 (already 3 words), every source column
  // appears once in perm, and group g's prepared range holds exactly the columns with g_idx == g.
  const Layer L = make_layer(rng, 4, 96, 16, 24, true, false, false, false);
  const GptqCpuWeight W = gptq_prepare(L.raw());
  CHECK(W.kp == 96);
  CHECK(W.np == 16);
  REQUIRE(W.group_start.size() == 5);
  std::vector<int> seen(96, 0);
  for (int64_t g = 0; g < 4; ++g)
    for (int64_t kk = W.group_start[size_t(g)]; kk < W.group_start[size_t(g) + 1]; ++kk) {
      const int32_t src = W.perm[size_t(kk)];
      REQUIRE(src >= 0);
      ++seen[size_t(src)];
      CHECK(L.g_idx[size_t(src)] == g);
    }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
  // Workspace: sized once, then reused without growing.
  CHECK(gptq_workspace_bytes(W, 8) >= (8 * 96 + 8 * 4) * sizeof(float));
  Workspace ws;
  ws.reserve(gptq_workspace_bytes(W, 8));
  const auto* before = ws.bytes.data();
  std::vector<float> x(8 * 96, 0.5f), y(8 * 16);
  gptq_linear(W, x.data(), 8, y.data(), 16, ws);
  CHECK(ws.bytes.data() == before);
  gptq_linear(W, x.data(), 0, y.data(), 16, ws);  // m = 0: nothing to do

  // Output permutation at load: column n of the result is checkpoint column out_perm[n],
  // computed with the same per-column arithmetic, so bit-identical.
  {
    const Layer P = make_layer(rng, 4, 128, 40, 32, true, true, true, false);
    std::vector<int32_t> perm(40);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const GptqCpuWeight plain = gptq_prepare(P.raw()), permuted = gptq_prepare(P.raw(), perm);
    std::vector<float> xx(3 * 128), y0(3 * 40), y1(3 * 40);
    std::normal_distribution<float> nd;
    for (auto& v : xx) v = nd(rng);
    for (Isa isa : isas()) {
      gptq_linear_isa(plain, xx.data(), 3, y0.data(), 40, ws, isa);
      gptq_linear_isa(permuted, xx.data(), 3, y1.data(), 40, ws, isa);
      int64_t diff = 0;
      for (int r = 0; r < 3; ++r)
        for (int nn = 0; nn < 40; ++nn) diff += y1[size_t(r * 40 + nn)] != y0[size_t(r * 40 + perm[size_t(nn)])];
      CHECK(diff == 0);
    }
    perm[3] = perm[4];
    CHECK_THROWS_AS(gptq_prepare(P.raw(), perm), Error);
  }

  // Invalid raw tensors.
  GptqTensors t = L.raw();
  std::vector<int32_t> bad_g(L.g_idx);
  bad_g[5] = -1;
  t.g_idx = bad_g.data();
  auto msg = [&](const GptqTensors& tt) {
    try {
      gptq_prepare(tt);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(msg(t).find("g_idx[5] = -1 out of range") != std::string::npos);
  t = L.raw();
  t.bits = 6;
  CHECK(msg(t).find("unsupported GPTQ bits 6") != std::string::npos);
  t = L.raw();
  t.k = 100;  // not a multiple of 8 for 4-bit packing
  CHECK(msg(t).find("in_features 100 is not a multiple of 8") != std::string::npos);
  t = L.raw();
  t.g_idx = nullptr;
  t.groups = 3;
  CHECK(msg(t).find("3 groups but in_features 96 with group_size 24 needs 4") != std::string::npos);
}
