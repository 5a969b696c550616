// GPTQ layout: a tiny GPTQ layer is made here by round-to-nearest quantization of random weights
// (AutoGPTQ's grid, gptq.md §4) and packed by a bit-at-a-time packer written for this test, then
// stored in a safetensors image. The library's view + reference dequant must recover exactly
// scale·(q − zero) for v1 and v2 zeros, with and without an act-order g_idx; the packing helpers
// must match hand-worked words; invalid layers must fail naming the tensor at fault.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "formats/gptq.h"
#include "formats/safetensors.h"

using namespace slm;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// Sets value v (bits wide) at position i of the little-endian bitstream whose word w lives at
// words[w * stride + col], one bit at a time.
void put_bits(std::vector<int32_t>& words, int64_t stride, int64_t col, int64_t i, int bits, uint32_t v) {
  for (int b = 0; b < bits; ++b) {
    const int64_t p = i * bits + b;
    if ((v >> b) & 1u) words[size_t((p / 32) * stride + col)] |= int32_t(uint32_t(1) << (p % 32));
  }
}

struct TestLayer {
  int bits = 4, gs = 128;
  int64_t k = 0, n = 0, groups = 0;
  bool v1 = true;
  std::vector<uint32_t> q;      // [k][n]
  std::vector<uint32_t> zero;   // [groups][n] true zero point
  std::vector<uint16_t> scale;  // [groups][n] fp16
  std::vector<int32_t> g_idx;   // [k]
  std::vector<uint16_t> bias;   // [n] fp16 or empty
  std::vector<int32_t> qweight, qzeros;

  float w(int64_t nn, int64_t kk) const {
    const int64_t g = g_idx[size_t(kk)];
    return fp16_to_f32(scale[size_t(g * n + nn)]) *
           float(int64_t(q[size_t(kk * n + nn)]) - int64_t(zero[size_t(g * n + nn)]));
  }
};

// RTN quantization of random weights W[n][k] onto the GPTQ grid, then packing.
TestLayer make_layer(std::mt19937& rng, int bits, int64_t k, int64_t n, int gs, bool sym, bool v1,
                     bool act_order, bool with_bias) {
  TestLayer L;
  L.bits = bits;
  L.gs = gs;
  L.k = k;
  L.n = n;
  L.v1 = v1;
  const int64_t gsz = gs > 0 ? gs : k;
  L.groups = (k + gsz - 1) / gsz;
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> W(size_t(n * k));
  for (auto& x : W) x = nd(rng);
  // g_idx: k / group_size, or (act-order) the group of k's position in a random processing order.
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);
  L.g_idx.resize(size_t(k));
  for (int64_t pos = 0; pos < k; ++pos) L.g_idx[size_t(order[size_t(pos)])] = int32_t(pos / gsz);

  const uint32_t maxq = (1u << bits) - 1;
  L.q.resize(size_t(k * n));
  L.zero.resize(size_t(L.groups * n));
  L.scale.resize(size_t(L.groups * n));
  for (int64_t g = 0; g < L.groups; ++g)
    for (int64_t nn = 0; nn < n; ++nn) {
      float xmin = 0, xmax = 0;
      for (int64_t kk = 0; kk < k; ++kk)
        if (L.g_idx[size_t(kk)] == g) {
          xmin = std::min(xmin, W[size_t(nn * k + kk)]);
          xmax = std::max(xmax, W[size_t(nn * k + kk)]);
        }
      if (sym) {
        xmax = std::max(-xmin, xmax);
        if (xmin < 0) xmin = -xmax;
      }
      if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
      const uint16_t s16 = f32_to_fp16((xmax - xmin) / float(maxq));
      const float s = fp16_to_f32(s16);
      int64_t z = sym ? (maxq + 1) / 2 : std::llround(-xmin / s);
      z = std::clamp<int64_t>(z, 0, maxq);
      // v1 stores zero − 1; a true zero of 0 would be the AutoGPTQ underflow bug (gptq.md §4),
      // which real v1 writers produce but which is not decodable, so keep v1 zeros >= 1 here.
      if (v1) z = std::max<int64_t>(z, 1);
      L.scale[size_t(g * n + nn)] = s16;
      L.zero[size_t(g * n + nn)] = uint32_t(z);
      for (int64_t kk = 0; kk < k; ++kk)
        if (L.g_idx[size_t(kk)] == g) {
          const int64_t qv = std::llround(W[size_t(nn * k + kk)] / s) + z;
          L.q[size_t(kk * n + nn)] = uint32_t(std::clamp<int64_t>(qv, 0, maxq));
        }
    }
  L.qweight.assign(size_t(k * bits / 32 * n), 0);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t nn = 0; nn < n; ++nn) put_bits(L.qweight, n, nn, kk, bits, L.q[size_t(kk * n + nn)]);
  const int64_t zw = n * bits / 32;
  L.qzeros.assign(size_t(L.groups * zw), 0);
  for (int64_t g = 0; g < L.groups; ++g)
    for (int64_t nn = 0; nn < n; ++nn)
      put_bits(L.qzeros, 1, g * zw, nn, bits, L.zero[size_t(g * n + nn)] - (v1 ? 1 : 0));
  if (with_bias) {
    L.bias.resize(size_t(n));
    for (auto& b : L.bias) b = f32_to_fp16(nd(rng));
  }
  return L;
}

std::vector<uint8_t> to_safetensors(const TestLayer& L, const std::string& p, bool with_g_idx) {
  st::Writer w;
  w.add(p + ".qweight", st::DType::I32, {L.k * L.bits / 32, L.n}, L.qweight.data());
  w.add(p + ".qzeros", st::DType::I32, {L.groups, L.n * L.bits / 32}, L.qzeros.data());
  w.add(p + ".scales", st::DType::F16, {L.groups, L.n}, L.scale.data());
  if (with_g_idx) w.add(p + ".g_idx", st::DType::I32, {L.k}, L.g_idx.data());
  if (!L.bias.empty()) w.add(p + ".bias", st::DType::F16, {L.n}, L.bias.data());
  return w.to_bytes();
}

GptqConfig config_of(const TestLayer& L, bool sym, bool act) {
  GptqConfig c;
  c.bits = L.bits;
  c.group_size = L.gs;
  c.sym = sym;
  c.desc_act = act;
  c.format = L.v1 ? GptqFormat::V1 : GptqFormat::V2;
  return c;
}

}  // namespace

TEST_CASE("gptq: packing matches hand-worked words") {
  // 4-bit: a column holding k = 0..7 -> nibble k at bits 4k: 0x76543210.
  std::vector<uint32_t> q(8 * 2);
  for (uint32_t kk = 0; kk < 8; ++kk) q[kk * 2] = kk, q[kk * 2 + 1] = 15 - kk;
  auto w = cpu::gptq_pack_qweight(q.data(), 8, 2, 4);
  REQUIRE(w.size() == 2);
  CHECK(uint32_t(w[0]) == 0x76543210u);
  CHECK(uint32_t(w[1]) == 0x89ABCDEFu);
  // Symmetric v1 zeros store 2^(bits-1) − 1 in every field (gptq.md §4).
  std::vector<uint32_t> z4(8, 7), z8(4, 127), z2(16, 1);
  CHECK(uint32_t(cpu::gptq_pack_qzeros(z4.data(), 1, 8, 4)[0]) == 0x77777777u);
  CHECK(uint32_t(cpu::gptq_pack_qzeros(z8.data(), 1, 4, 8)[0]) == 0x7F7F7F7Fu);
  CHECK(uint32_t(cpu::gptq_pack_qzeros(z2.data(), 1, 16, 2)[0]) == 0x55555555u);
  // 3-bit: 32 values in 3 words. v10 = 0b111 straddles w0 bits 30-31 and w1 bit 0;
  // v21 = 0b101 straddles w1 bit 31 and w2 bits 0-1 (gptq.md §3.1).
  std::vector<uint32_t> v(32, 0);
  v[10] = 7;
  v[21] = 5;
  v[31] = 6;  // w2 bits 29..31
  auto w3 = cpu::gptq_pack_qweight(v.data(), 32, 1, 3);
  REQUIRE(w3.size() == 3);
  CHECK(uint32_t(w3[0]) == 0xC0000000u);
  CHECK(uint32_t(w3[1]) == 0x80000001u);
  CHECK(uint32_t(w3[2]) == (2u | (6u << 29)));
  CHECK(has(error_of([&] { cpu::gptq_pack_qweight(v.data(), 32, 1, 5); }), "unsupported bits 5"));
  v[0] = 9;
  CHECK(has(error_of([&] { cpu::gptq_pack_qweight(v.data(), 32, 1, 3); }), "does not fit 3 bits"));

  // The library packers agree with the test's bit-at-a-time packer on random data, every width.
  std::mt19937 rng(5);
  for (int bits : {2, 3, 4, 8}) {
    TestLayer L = make_layer(rng, bits, 64, 64, 32, false, false, true, false);
    CHECK(cpu::gptq_pack_qweight(L.q.data(), L.k, L.n, bits) == L.qweight);
    CHECK(cpu::gptq_pack_qzeros(L.zero.data(), L.groups, L.n, bits) == L.qzeros);  // v2: exact zeros
  }
}

TEST_CASE("gptq: reference dequant recovers the exact values (v1/v2, sym/asym, act-order)") {
  std::mt19937 rng(11);
  struct Case { int bits; int64_t k, n; int gs; bool sym, v1, act, g_idx_tensor, bias; };
  const Case cases[] = {
      {4, 256, 64, 128, true, true, false, true, false},   // the common checkpoint
      {4, 256, 64, 128, true, true, false, false, true},   // no g_idx tensor: k / group_size
      {4, 256, 72, 64, false, false, true, true, true},    // asym v2, act-order
      {4, 192, 40, 64, false, true, true, true, false},    // asym v1, act-order
      {8, 128, 36, 32, true, true, true, true, false},
      {8, 96, 20, -1, false, false, false, false, true},   // one group per column
      {3, 96, 64, 32, false, false, true, true, false},
      {2, 64, 48, 16, true, true, true, true, false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.bits);
    CAPTURE(c.gs);
    CAPTURE(c.act);
    TestLayer L = make_layer(rng, c.bits, c.k, c.n, c.gs, c.sym, c.v1, c.act, c.bias);
    const auto img = to_safetensors(L, "model.layers.0.mlp.up_proj", c.g_idx_tensor);
    auto f = st::File::parse(img.data(), img.size(), "gptq.safetensors");
    const GptqLinear l = gptq_linear_view([&](std::string_view nm) { return f->find(nm); },
                                          "model.layers.0.mlp.up_proj", config_of(L, c.sym, c.act));
    CHECK(l.in_features == c.k);
    CHECK(l.out_features == c.n);
    CHECK(l.groups == L.groups);
    CHECK(l.has_act_order() == c.act);
    const auto W = gptq_dequantize(l);
    REQUIRE(W.size() == size_t(c.n * c.k));
    int64_t mismatches = 0;
    for (int64_t nn = 0; nn < c.n; ++nn)
      for (int64_t kk = 0; kk < c.k; ++kk) mismatches += W[size_t(nn * c.k + kk)] != L.w(nn, kk);
    CHECK(mismatches == 0);
    if (c.sym && c.v1) {
      // Sym v1 checkpoints have every qzeros word equal to the pattern of 2^(bits-1) − 1.
      const uint32_t pat = c.bits == 4 ? 0x77777777u : c.bits == 8 ? 0x7F7F7F7Fu : 0x55555555u;
      for (int32_t word : L.qzeros) CHECK(uint32_t(word) == pat);
    }

    // Reference y = x W^T + b in double, in the same k order as this loop: identical results.
    const int64_t m = 3;
    std::vector<float> x(size_t(m * c.k)), y(size_t(m * c.n));
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(rng);
    gptq_reference_linear(l.raw(), x.data(), m, y.data());
    for (int64_t r = 0; r < m; ++r)
      for (int64_t nn = 0; nn < c.n; ++nn) {
        double s = 0;
        for (int64_t kk = 0; kk < c.k; ++kk) s += double(x[size_t(r * c.k + kk)]) * double(L.w(nn, kk));
        if (!L.bias.empty()) s += double(fp16_to_f32(L.bias[size_t(nn)]));
        CHECK(y[size_t(r * c.n + nn)] == float(s));
      }
  }
}

TEST_CASE("gptq: GGUF-style rows") {
  std::mt19937 rng(3);
  TestLayer L = make_layer(rng, 4, 128, 24, 32, true, true, true, false);
  const auto img = to_safetensors(L, "p", true);
  auto f = st::File::parse(img.data(), img.size(), "m");
  const GptqLinear l = gptq_linear_view([&](std::string_view nm) { return f->find(nm); }, "p",
                                        config_of(L, true, true));
  const auto W = gptq_dequantize(l);
  const auto f32 = gptq_to_gguf_rows(l, QType::F32);
  REQUIRE(f32.size() == W.size() * 4);
  CHECK(std::memcmp(f32.data(), W.data(), f32.size()) == 0);
  // Q8_0 rows: each 32-value block decodes within half a step (amax/127/2) of the exact weight.
  const auto q8 = gptq_to_gguf_rows(l, QType::Q8_0);
  REQUIRE(q8.size() == size_t(24) * row_bytes(QType::Q8_0, 128));
  std::vector<float> row(128);
  for (int64_t nn = 0; nn < 24; ++nn) {
    dequantize_row(QType::Q8_0, q8.data() + size_t(nn) * row_bytes(QType::Q8_0, 128), row.data(), 128);
    for (int b = 0; b < 4; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(W[size_t(nn * 128 + b * 32 + i)]));
      // + fp16 rounding of the block scale: relative 2^-11 of amax.
      const float tol = amax / 127.f * 0.5f + amax * 0.0005f + 1e-7f;
      for (int i = 0; i < 32; ++i)
        CHECK(std::fabs(row[size_t(b * 32 + i)] - W[size_t(nn * 128 + b * 32 + i)]) <= tol);
    }
  }
}

TEST_CASE("gptq: invalid layers name the tensor at fault") {
  std::mt19937 rng(9);
  TestLayer L = make_layer(rng, 4, 128, 16, 32, true, true, true, false);
  const GptqConfig cfg = config_of(L, true, true);
  auto try_view = [&](std::vector<uint8_t> img, GptqConfig c) {
    return error_of([&] {
      auto f = st::File::parse(img.data(), img.size(), "m");
      gptq_linear_view([&](std::string_view nm) { return f->find(nm); }, "L", c);
    });
  };
  auto build = [&](auto&& mutate) {
    st::Writer w;
    std::vector<int64_t> qs{L.k / 8, L.n}, zs{L.groups, L.n / 8}, ss{L.groups, L.n}, gs{L.k};
    st::DType qt = st::DType::I32;
    bool skip_scales = false;
    mutate(qs, zs, ss, gs, qt, skip_scales);
    static std::vector<uint8_t> zeros(1 << 16, 0);
    auto n_of = [](const std::vector<int64_t>& s) { int64_t v = 1; for (auto d : s) v *= d; return v; };
    w.add("L.qweight", qt, qs, qt == st::DType::I32 ? static_cast<const void*>(L.qweight.data()) : zeros.data());
    w.add("L.qzeros", st::DType::I32, zs, zeros.data());
    if (!skip_scales) w.add("L.scales", st::DType::F16, ss, zeros.data());
    std::vector<int32_t> g(L.g_idx);
    g.resize(size_t(n_of(gs)));
    w.add("L.g_idx", st::DType::I32, gs, g.data());
    return w.to_bytes();
  };
  using V = std::vector<int64_t>;
  auto none = [](V&, V&, V&, V&, st::DType&, bool&) {};
  CHECK(try_view(build(none), cfg) == "");
  CHECK(has(try_view(build([](V&, V&, V&, V&, st::DType&, bool& s) { s = true; }), cfg),
            "GPTQ layer 'L': missing tensor 'L.scales'"));
  CHECK(has(try_view(build([](V&, V&, V&, V&, st::DType& t, bool&) { t = st::DType::F32; }), cfg),
            "tensor 'L.qweight' has dtype F32, expected I32"));
  CHECK(has(try_view(build([](V&, V&, V& s, V&, st::DType&, bool&) { s[1] = 8; }), cfg),
            "scales shape [4, 8] does not match qweight shape [16, 16]"));
  CHECK(has(try_view(build([](V&, V& z, V&, V&, st::DType&, bool&) { z[1] = 3; }), cfg),
            "qzeros shape [4, 3] does not match"));
  CHECK(has(try_view(build([](V&, V& z, V& s, V&, st::DType&, bool&) { z[0] = 3; s[0] = 3; }), cfg),
            "scales has 3 groups, but in_features 128 with group_size 32 needs 4"));
  CHECK(has(try_view(build([](V&, V&, V&, V& g, st::DType&, bool&) { g[0] = 64; }), cfg),
            "g_idx shape [64] does not match in_features 128"));
  GptqConfig bad = cfg;
  bad.bits = 5;
  CHECK(has(try_view(build(none), bad), "unsupported bits 5"));
  bad = cfg;
  bad.bits = 8;  // 4-bit tensors read as 8-bit: qweight implies K = 64 -> group/qzeros mismatch
  CHECK(try_view(build(none), bad) != "");

  // g_idx out of range.
  TestLayer B = L;
  B.g_idx[7] = 4;
  const auto img = to_safetensors(B, "L", true);
  auto f = st::File::parse(img.data(), img.size(), "m");
  CHECK(has(error_of([&] { gptq_linear_view([&](std::string_view nm) { return f->find(nm); }, "L", cfg); }),
            "g_idx[7] = 4 out of range (groups = 4)"));
}

TEST_CASE("gptq: BF16 scales and F32 bias are read in their own dtype") {
  std::mt19937 rng(21);
  TestLayer L = make_layer(rng, 4, 64, 16, 32, false, false, false, false);
  std::vector<uint16_t> sbf(L.scale.size());
  for (size_t i = 0; i < sbf.size(); ++i) sbf[i] = f32_to_bf16(fp16_to_f32(L.scale[i]));
  std::vector<float> bias(16);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.125f * float(i) - 1.0f;
  st::Writer w;
  w.add("p.qweight", st::DType::I32, {8, 16}, L.qweight.data());
  w.add("p.qzeros", st::DType::I32, {2, 2}, L.qzeros.data());
  w.add("p.scales", st::DType::BF16, {2, 16}, sbf.data());
  w.add("p.bias", st::DType::F32, {16}, bias.data());
  const auto img = w.to_bytes();
  auto f = st::File::parse(img.data(), img.size(), "m");
  const GptqLinear l = gptq_linear_view([&](std::string_view nm) { return f->find(nm); }, "p",
                                        config_of(L, false, false));
  CHECK(!l.has_act_order());
  const auto W = gptq_dequantize(l);
  for (int64_t nn = 0; nn < 16; ++nn)
    for (int64_t kk = 0; kk < 64; ++kk) {
      const int64_t g = kk / 32;
      const float expect = bf16_to_f32(sbf[size_t(g * 16 + nn)]) *
                           float(int64_t(L.q[size_t(kk * 16 + nn)]) - int64_t(L.zero[size_t(g * 16 + nn)]));
      CHECK(W[size_t(nn * 64 + kk)] == expect);
    }
  std::vector<float> x(64, 0.f), y(16);
  gptq_reference_linear(l.raw(), x.data(), 1, y.data());
  CHECK(y == bias);  // x = 0: only the bias remains
}

TEST_CASE("gptq: dynamic per-module overrides (GPTQModel) select bits per module") {
  const GptqConfig c = parse_gptq_config_text(
      R"({"bits": 4, "group_size": 128, "sym": false, "desc_act": false,
          "dynamic": {"+:lm_head": {"bits": 8},
                      "-:model\\.layers\\.0\\.mlp\\..*": {},
                      "model\\.layers\\.[1-3]\\..*down_proj": {"bits": 8, "group_size": 64, "sym": true}}})",
      "cfg");
  REQUIRE(c.dynamic.size() == 3);
  CHECK(c.for_module("lm_head")->bits == 8);
  CHECK(c.for_module("lm_head")->group_size == 128);
  CHECK(c.for_module("lm_head")->dynamic.empty());
  CHECK_FALSE(c.for_module("model.layers.0.mlp.up_proj").has_value());  // "-:" excludes
  const auto d2 = c.for_module("model.layers.2.mlp.down_proj");
  REQUIRE(d2.has_value());
  CHECK(d2->bits == 8);
  CHECK(d2->group_size == 64);
  CHECK(d2->sym);
  // re.match semantics: anchored at the start of the name, so a name that contains a pattern
  // further in does not match.
  CHECK(c.for_module("model.layers.12.mlp.down_proj")->bits == 4);
  CHECK(c.for_module("model.layers.0.self_attn.q_proj")->bits == 4);
  CHECK(c.for_module("x.lm_head")->bits == 4);
  // An empty map is what GPTQModel writes when there are no overrides.
  CHECK(parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": {}})", "cfg").for_module("a")->bits == 4);

  CHECK(has(error_of([] { parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": {"+:lm_head": {"bits": 5}}})", "cfg"); }),
            "unsupported GPTQ bits 5"));
  CHECK(has(error_of([] { parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": {"+:lm_head": {"damp_percent": 0.1}}})", "cfg"); }),
            "overriding 'damp_percent'"));
  CHECK(has(error_of([] { parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": {"+:lm_(head": {"bits": 8}}})", "cfg"); }),
            "not a valid regular expression"));
  CHECK(has(error_of([] { parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": ["lm_head"]})", "cfg"); }),
            "'dynamic' must be an object"));
  CHECK(has(error_of([] { parse_gptq_config_text(R"({"bits": 4, "group_size": 128, "dynamic": {"lm_head": 8}})", "cfg"); }),
            "the rule must be an object"));
}
