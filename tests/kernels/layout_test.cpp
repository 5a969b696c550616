// CPU emulation of the CUDA kernels' weight layouts (kernels/layout): unpacking the repacked GPTQ
// layout with the kernels' own index/bit math (the SLM_HD helpers) must give back exactly the
// checkpoint's dequantized weights, for awkward shapes, v1/v2 zeros and with/without act-order;
// the GGUF unit decode and dp4a dot helpers must agree with slm::dequantize_row and a double
// reference. Runs in CI without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/gptq_layout.h"

using namespace slm;
using namespace slm::layout;

namespace {

struct GptqCase {
  int64_t k, n;
  int group_size;
  bool act_order;
  bool v1;
};

// Owns the vectors a GptqTensors view points into.
struct GptqData {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  GptqTensors t;
};

GptqData make_gptq(const GptqCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  GptqData d;
  const int64_t gs = c.group_size == -1 ? c.k : c.group_size;
  const int64_t groups = (c.k + gs - 1) / gs;
  d.qweight.resize(size_t(c.k / 8 * c.n));
  for (auto& w : d.qweight) w = int32_t(rng());
  d.qzeros.resize(size_t(groups * c.n / 8));
  // Random words include stored nibble 15, whose v1 effective zero is 16 (no masking).
  for (auto& w : d.qzeros) w = int32_t(rng());
  d.scales.resize(size_t(groups * c.n));
  std::uniform_real_distribution<float> sd(1e-3f, 5e-2f);
  for (auto& s : d.scales) s = f32_to_fp16(sd(rng));
  if (c.act_order) {
    // GPTQ act-order: processing order is a permutation; a new group starts every gs columns of
    // it, and each column keeps the group it was quantized in (gptq.md §5).
    std::vector<int32_t> order(size_t(c.k));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    d.g_idx.resize(size_t(c.k));
    for (int64_t i = 0; i < c.k; ++i) d.g_idx[size_t(order[size_t(i)])] = int32_t(i / gs);
  } else {
    d.g_idx.resize(size_t(c.k));
    for (int64_t i = 0; i < c.k; ++i) d.g_idx[size_t(i)] = int32_t(i / gs);
  }
  d.t.k = c.k;
  d.t.n = c.n;
  d.t.group_size = c.group_size;
  d.t.zeros_v1 = c.v1;
  d.t.qweight = d.qweight;
  d.t.qzeros = d.qzeros;
  d.t.scales = d.scales;
  d.t.g_idx = d.g_idx;
  return d;
}

// Weight (n, kpos) of the repacked layout, decoded the way the fused kernels do: fetch the word
// by the kernels' index function, magic-unpack it with the kernels' bit helper, subtract the
// zero in the (exact) half arithmetic, multiply by the group scale.
float emulate_fast_weight(const GptqRepacked& r, int64_t n, int64_t kpos) {
  const uint32_t word = r.qweight[size_t(gptq_fast_word(n, kpos / kGptqWordK, r.k))];
  uint32_t h[4];
  gptq_magic_unpack(word, h);
  const int j = int(kpos % kGptqWordK);
  const int64_t g = gptq_fast_group(kpos, r.group_size);
  const int z = r.zeros[size_t(g * r.n + n)];
  const float s = h2f(r.scales[size_t(g * r.n + n)]);
  return s * gptq_magic_decode(h, j / 2, j % 2, z);
}

}  // namespace

TEST_CASE("layout: gptq reference dequant: hand-computed values") {
  // k = 32, n = 8, one group, v1 symmetric checkpoint: every qzeros nibble stores 7 (zero 8).
  std::vector<int32_t> qweight(4 * 8, 0);
  qweight[0 * 8 + 0] = int32_t(0x76543210u);  // k = 0..7 of output 0: codes 0..7
  qweight[1 * 8 + 3] = int32_t(0xF0000000u);  // k = 15 of output 3: code 15
  std::vector<int32_t> qzeros = {int32_t(0x77777777u)};
  std::vector<uint16_t> scales(8, f32_to_fp16(0.5f));
  GptqTensors t;
  t.k = 32;
  t.n = 8;
  t.group_size = -1;
  t.zeros_v1 = true;
  t.qweight = qweight;
  t.qzeros = qzeros;
  t.scales = scales;
  const auto w = gptq_dequantize_ref(t);
  for (int k = 0; k < 8; ++k) CHECK(w[size_t(k)] == 0.5f * float(k - 8));
  CHECK(w[size_t(3 * 32 + 15)] == 0.5f * 7);
  CHECK(w[size_t(3 * 32 + 14)] == 0.5f * -8);
  // v2 reads the same stored nibble as the zero itself (7).
  t.zeros_v1 = false;
  CHECK(gptq_dequantize_ref(t)[0] == 0.5f * -7);
}

TEST_CASE("layout: gptq magic-number unpack: every code value, every position") {
  for (uint32_t q = 0; q < 16; ++q) {
    for (int j = 0; j < 8; ++j) {
      const uint32_t word = gptq_shuffle_word(q << (4 * j));
      uint32_t h[4];
      gptq_magic_unpack(word, h);
      for (int p = 0; p < 4; ++p)
        for (int e = 0; e < 2; ++e) {
          const float expect = (2 * p + e == j) ? float(q) : 0.0f;
          CHECK(gptq_magic_decode(h, p, e, 0) == expect);
          CHECK(gptq_magic_decode(h, p, e, 16) == expect - 16.0f);
        }
    }
  }
  // The raw patterns themselves: 0x6400 | q is the fp16 encoding of 1024 + q.
  uint32_t h[4];
  gptq_magic_unpack(gptq_shuffle_word(0x87654321u), h);
  CHECK(h[0] == 0x64026401u);  // (1024+1, 1024+2)
  CHECK(h[1] == 0x64406430u);  // (1024+16*3, 1024+16*4)
  CHECK(h[2] == 0x64066405u);
  CHECK(h[3] == 0x64806470u);
}

TEST_CASE("layout: gptq repack: kernel-indexed unpack reproduces the checkpoint weights exactly") {
  const GptqCase cases[] = {
      {32, 8, 32, false, true},     {96, 40, 32, false, true},   {96, 40, 32, true, true},
      {160, 72, -1, false, false},  {320, 24, 64, true, false},  {256, 8, 128, true, true},
      {1024, 56, 128, true, true},  {416, 136, 32, true, false}, {288, 16, 96, true, true},
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    CAPTURE(c.k);
    CAPTURE(c.n);
    CAPTURE(c.group_size);
    CAPTURE(c.act_order);
    CAPTURE(c.v1);
    const auto d = make_gptq(c, seed++);
    const auto ref = gptq_dequantize_ref(d.t);
    const auto r = gptq_repack(d.t);
    CHECK(r.has_perm() == c.act_order);
    REQUIRE(r.qweight.size() == size_t(c.n * c.k / 8));
    int64_t mismatches = 0;
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t kp = 0; kp < c.k; ++kp) {
        const int64_t src = r.has_perm() ? r.perm[size_t(kp)] : kp;
        mismatches += emulate_fast_weight(r, n, kp) != ref[size_t(n * c.k + src)];
      }
    CHECK(mismatches == 0);
    // The original-layout helpers used by the naive and dequant kernels agree too.
    int64_t orig_mismatches = 0;
    const int64_t gs = c.group_size == -1 ? c.k : c.group_size;
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t k = 0; k < c.k; ++k) {
        const int64_t g = d.g_idx[size_t(k)];
        const float v = h2f(d.scales[size_t(g * c.n + n)]) *
                        float(gptq_code_orig(d.qweight.data(), c.n, k, n) -
                              gptq_zero_orig(d.qzeros.data(), c.n, g, n, c.v1));
        orig_mismatches += v != ref[size_t(n * c.k + k)];
      }
    CHECK(orig_mismatches == 0);
    CHECK(gs == r.group_size);
    // Permuted activation: sum_k' x[perm[k']] W'[n][k'] == sum_k x[k] W[n][k]. Both sides are
    // computed in double from the same float products, so only summation order differs:
    // |diff| <= 2 K eps64 sum|x w|, far below the 1e-9 relative bound used.
    std::vector<float> x(size_t(c.k));
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(rng);
    for (int64_t n = 0; n < c.n; ++n) {
      double a = 0, b = 0, mag = 0;
      for (int64_t kp = 0; kp < c.k; ++kp) {
        const int64_t src = r.has_perm() ? r.perm[size_t(kp)] : kp;
        a += double(x[size_t(src)]) * emulate_fast_weight(r, n, kp);
      }
      for (int64_t k = 0; k < c.k; ++k) {
        b += double(x[size_t(k)]) * ref[size_t(n * c.k + k)];
        mag += std::fabs(double(x[size_t(k)]) * ref[size_t(n * c.k + k)]);
      }
      CHECK(std::fabs(a - b) <= 1e-9 * mag);
    }
  }
}

TEST_CASE("layout: gptq repack rejects malformed checkpoints") {
  auto d = make_gptq({64, 16, 32, true, true}, 7);
  CHECK_NOTHROW(gptq_repack(d.t));
  SUBCASE("group with too many columns") {
    d.g_idx[0] = d.g_idx[0] == 0 ? 1 : 0;
    d.t.g_idx = d.g_idx;
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
  SUBCASE("group index out of range") {
    d.g_idx[5] = 2;
    d.t.g_idx = d.g_idx;
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
  SUBCASE("short qweight") {
    d.t.qweight = std::span<const int32_t>(d.qweight.data(), d.qweight.size() - 1);
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
  SUBCASE("k not a multiple of 32") {
    d.t.k = 48;
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
  SUBCASE("n not a multiple of 8") {
    d.t.n = 12;
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
  SUBCASE("group size not a multiple of 32") {
    d.t.group_size = 16;
    CHECK_THROWS_AS(gptq_repack(d.t), slm::Error);
  }
}

TEST_CASE("layout: q8_1 activation quantizer: hand-computed block") {
  std::vector<uint16_t> x(32, f32_to_fp16(0.0f));
  x[0] = f32_to_fp16(127.0f);
  x[1] = f32_to_fp16(-63.5f);  // -63.5 / 1 rounds half away from zero: -64
  x[2] = f32_to_fp16(2.25f);
  BlockQ8_1 b;
  quantize_q8_1_ref(x.data(), &b, 32);
  CHECK(fp16_to_f32(b.d) == 1.0f);
  CHECK(b.qs[0] == 127);
  CHECK(b.qs[1] == -64);
  CHECK(b.qs[2] == 2);
  CHECK(b.qs[3] == 0);
  CHECK(fp16_to_f32(b.s) == 65.0f);
  std::vector<uint16_t> zero(32, 0);
  quantize_q8_1_ref(zero.data(), &b, 32);
  CHECK(b.d == 0);
  CHECK(b.qs[7] == 0);
}

TEST_CASE("layout: gguf unit decode and dp4a unit dot match the scalar references") {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (QType t : {QType::Q4_0, QType::Q8_0, QType::Q4_K, QType::Q6_K}) {
    CAPTURE(qtype_name(t));
    const int64_t n = 5, k = 512, m = 3;
    const size_t rb = row_bytes(t, k);
    std::vector<float> wf(size_t(n * k));
    for (auto& v : wf) v = nd(rng);
    std::vector<uint8_t> w(rb * size_t(n));
    for (int64_t r = 0; r < n; ++r) quantize_row(t, wf.data() + r * k, w.data() + size_t(r) * rb, k);

    // Decode: the per-unit helper (used by the dequantize-to-FP16 kernel) equals dequantize_row.
    const int bb = gguf_block_bytes(uint32_t(t));
    const int upb = gguf_units_per_block(uint32_t(t));
    CHECK(size_t(bb) == size_t(qtype_info(t).block_bytes));
    std::vector<float> deq(static_cast<size_t>(k));
    int64_t bad = 0;
    for (int64_t r = 0; r < n; ++r) {
      const uint8_t* row = w.data() + size_t(r) * rb;
      dequantize_row(t, row, deq.data(), k);
      for (int64_t u = 0; u < k / kUnitElems; ++u)
        for (int e = 0; e < kUnitElems; ++e)
          bad += gguf_unit_value(uint32_t(t), row + (u / upb) * bb, int(u % upb), e) !=
                 deq[size_t(u * kUnitElems + e)];
    }
    CHECK(bad == 0);

    // dp4a dot: per-unit helper summed over the row vs the double reference.
    std::vector<uint16_t> x(size_t(m * k));
    for (auto& v : x) v = f32_to_fp16(nd(rng));
    std::vector<BlockQ8_1> xq(size_t(m * k / kUnitElems));
    for (int64_t i = 0; i < m; ++i) quantize_q8_1_ref(x.data() + i * k, xq.data() + i * k / 32, k);
    std::vector<double> ref(size_t(m * n));
    gguf_linear_q8_1_ref(t, w.data(), n, k, xq.data(), m, ref.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < n; ++r) {
        const uint8_t* row = w.data() + size_t(r) * rb;
        double got = 0, bound = 0;
        for (int64_t u = 0; u < k / kUnitElems; ++u) {
          const uint8_t* blk = row + (u / upb) * bb;
          const BlockQ8_1* xb = &xq[size_t(i * k / kUnitElems + u)];
          got += gguf_unit_dot_q8_1(uint32_t(t), blk, int(u % upb), xb);
          // Error budget per unit: the offset/min term uses the stored fp16 s instead of the exact
          // d_x * sum(q) (relative 2^-11 of that term), and the handful of float multiplies and
          // subtractions add a few ulps (2^-22) of both terms' magnitudes.
          double sum_q = 0, sum_abs_q = 0, dot = 0;
          for (int e = 0; e < kUnitElems; ++e) {
            sum_q += xb->qs[e];
            sum_abs_q += std::abs(xb->qs[e]);
          }
          for (int e = 0; e < kUnitElems; ++e) {
            const float wv = gguf_unit_value(uint32_t(t), blk, int(u % upb), e);
            dot += std::fabs(double(wv) * fp16_to_f32(xb->d) * xb->qs[e]);
          }
          // off: |offset term| with the exact sum(q); off_abs: the same with sum|q|, which bounds
          // the magnitude of the offset-free integer term too (|d sc q| <= |w| + |dmin mn|).
          double off_scale = 0;
          if (t == QType::Q4_0) off_scale = 8.0 * std::fabs(h2f(load_u16(blk)));
          if (t == QType::Q4_K) {
            int sc, mn;
            q4k_scale_min(int(u % upb), blk + 4, sc, mn);
            off_scale = std::fabs(double(h2f(load_u16(blk + 2))) * mn);
          }
          const double dx = fp16_to_f32(xb->d);
          const double off = off_scale * dx * std::fabs(sum_q);
          const double off_abs = off_scale * dx * sum_abs_q;
          bound += off * std::ldexp(1.0, -11) + (dot + 2 * off_abs) * std::ldexp(1.0, -22);
        }
        CHECK(std::fabs(got - ref[size_t(i * n + r)]) <= bound + 1e-30);
      }
  }
}
