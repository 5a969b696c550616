// CPU emulation of the CUDA kernels' weight layouts (kernels/layout): unpacking the repacked GPTQ
// layout with the kernels' own index/bit math (the SLM_HD helpers) must give back exactly the
// checkpoint's dequantized weights, for awkward shapes, v1/v2 zeros and with/without act-order;
// the GGUF unit decode and dp4a dot helpers must agree with slm::dequantize_row and a double
// reference. Runs in CI without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

TEST_CASE("layout: byte_perm and hsub2_bits host spellings: hand-computed values") {
  // prmt default mode: result byte i = pool byte (s >> 4i) & 7, pool = {y:x}.
  CHECK(byte_perm(0x33221100u, 0x77665544u, 0x4140u) == 0x44114400u);
  CHECK(byte_perm(0x33221100u, 0x77665544u, 0x4342u) == 0x44334422u);
  CHECK(byte_perm(0x33221100u, 0x77665544u, 0x7654u) == 0x7766u * 0x10000u + 0x5544u);
  // half2 (129, 9) - (128, 8) = (1, 1); (8, 1024) - (9, 1032) = (-1, -8).
  CHECK(hsub2_bits(0x48805808u, 0x48005800u) == 0x3C003C00u);
  CHECK(hsub2_bits(0x64004800u, 0x64084880u) == 0xC800BC00u);
}

namespace {

// A random GGUF block of `t`: every byte random (so every code value occurs), the fp16 super /
// block scales set to random finite values of either sign; Q4_K's 6-bit (scale, min) pairs and
// Q6_K's int8 scales stay random bytes.
std::vector<uint8_t> random_gguf_blocks(QType t, int nblocks, std::mt19937& rng) {
  const int bb = gguf_block_bytes(uint32_t(t));
  std::vector<uint8_t> w(size_t(nblocks) * size_t(bb));
  for (auto& b : w) b = uint8_t(rng());
  std::uniform_real_distribution<float> mag(1e-3f, 2.0f);
  auto put_half = [&](uint8_t* p) {
    const uint16_t h = f32_to_fp16((rng() & 1 ? -1.0f : 1.0f) * mag(rng));
    std::memcpy(p, &h, 2);
  };
  for (int b = 0; b < nblocks; ++b) {
    uint8_t* blk = w.data() + size_t(b) * size_t(bb);
    put_half(blk + (t == QType::Q6_K ? 208 : 0));  // d
    if (t == QType::Q4_K) put_half(blk + 2);       // dmin
  }
  return w;
}

}  // namespace

TEST_CASE("layout: gguf FP16 in-register decode: every pair of every unit equals dequantize_row") {
  // For each type, random blocks; every element e of every unit u is decoded the way
  // gguf_f16_gemv does it (gguf_unit_codes_h2: code words, prmt/lop3 magic, HSUB2 mirror) and
  // must be (a) the canonical half of an integer code c times 2^-s inside the type's code range,
  // (b) such that scale * (c 2^-s) - min reproduces slm::dequantize_row's value exactly, with the
  // scale and min taken from the block fields here (not from the helper under test), and (c) the
  // FP32 factors of gguf_f16_unit_scales must be those scale/min values.
  const uint32_t fixed_seed = 20240611u;
  const uint32_t fresh_seed = std::random_device{}();
  for (uint32_t seed : {fixed_seed, fresh_seed}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    for (QType t : {QType::Q4_0, QType::Q8_0, QType::Q4_K, QType::Q6_K}) {
      CAPTURE(qtype_name(t));
      const uint32_t ty = uint32_t(t);
      const int upb = gguf_units_per_block(ty);
      const int bb = gguf_block_bytes(ty);
      const int nblocks = upb == 1 ? 512 : 64;
      const auto w = random_gguf_blocks(t, nblocks, rng);
      const int64_t k = int64_t(nblocks) * upb * kUnitElems;
      std::vector<float> deq(static_cast<size_t>(k));
      dequantize_row(t, w.data(), deq.data(), k);

      const int s = gguf_f16_shift(ty);
      const int cmin = t == QType::Q4_0 ? -8 : t == QType::Q8_0 ? -128 : t == QType::Q4_K ? 0 : -32;
      const int cmax = t == QType::Q4_0 ? 7 : t == QType::Q8_0 ? 127 : t == QType::Q4_K ? 15 : 31;
      int64_t bad_code = 0, bad_value = 0, bad_scale = 0, informative = 0;
      std::vector<int64_t> seen(size_t(cmax - cmin + 1), 0);
      for (int b = 0; b < nblocks; ++b) {
        const uint8_t* blk = w.data() + size_t(b) * size_t(bb);
        for (int u = 0; u < upb; ++u) {
          // Reference factors from the block fields (gguf.md §5): element weight = sc * c - mn.
          float sc_ref[2], mn_ref = 0.0f;
          if (t == QType::Q6_K) {
            const float d = fp16_to_f32(load_u16(blk + 208));
            for (int h = 0; h < 2; ++h) sc_ref[h] = d * float(int8_t(blk[192 + 2 * u + h]));
          } else if (t == QType::Q4_K) {
            int sc, mn;
            q4k_scale_min(u, blk + 4, sc, mn);
            sc_ref[0] = sc_ref[1] = fp16_to_f32(load_u16(blk)) * float(sc);
            mn_ref = fp16_to_f32(load_u16(blk + 2)) * float(mn);
          } else {
            sc_ref[0] = sc_ref[1] = fp16_to_f32(load_u16(blk));
          }
          float sc_h[2], mn_h;
          gguf_f16_unit_scales(ty, blk, u, sc_h, mn_h);
          bad_scale += sc_h[0] != std::ldexp(sc_ref[0], s) || sc_h[1] != std::ldexp(sc_ref[1], s) ||
                       mn_h != mn_ref;
          for (int p = 0; p < kUnitElems / 2; ++p) {
            const uint32_t bits = gguf_unit_codes_h2(ty, blk, u, p);
            for (int lane = 0; lane < 2; ++lane) {
              const int e = 2 * p + lane;
              const uint16_t hb = uint16_t(bits >> (16 * lane));
              const float v = fp16_to_f32(hb);  // c * 2^-s
              const float cf = std::ldexp(v, s);
              const int c = int(cf);
              const bool code_ok = float(c) == cf && c >= cmin && c <= cmax &&
                                   hb == f32_to_fp16(std::ldexp(float(c), -s));
              bad_code += !code_ok;
              if (code_ok) ++seen[size_t(c - cmin)];
              const float expect = deq[size_t((int64_t(b) * upb + u) * kUnitElems + e)];
              // sc * c is exact in float (d: 11 significant bits, scale <= 7, c <= 8), as in
              // dequantize_row, whose only other rounding is Q4_K's subtraction of the min.
              const float got = sc_ref[e / 16] * float(c) - mn_ref;
              bad_value += got != expect;
              informative += sc_ref[e / 16] != 0.0f;
            }
          }
        }
      }
      CHECK(bad_code == 0);
      CHECK(bad_value == 0);
      CHECK(bad_scale == 0);
      // Nearly every element has a nonzero scale (a zero scale says nothing about the code), and
      // every code value of the type occurred.
      CHECK(informative > k * 9 / 10);
      CHECK(std::count(seen.begin(), seen.end(), int64_t(0)) == 0);
    }
  }
}

TEST_CASE("layout: gguf FP16 decode: hand-computed patterns") {
  uint32_t h[2];
  // Q4_0: low nibbles 0x0, 0xF, 0x8, 0x1 in bytes 0..3 (the high nibbles are other elements and
  // must be masked off): magic 128 + v/8, i.e. mantissa bits = v.
  gguf_f16_magic_pair(uint32_t(QType::Q4_0), 0x6158BFA0u, h);
  CHECK(h[0] == 0x580F5800u);  // (128 + 0/8, 128 + 15/8)
  CHECK(h[1] == 0x58015808u);  // (128 + 8/8, 128 + 1/8)
  // Q8_0: int8 -128 and 127 -> biased 0 and 255: (8 + 0/128, 8 + 255/128); minus 9: (-1, 127/128).
  gguf_f16_magic_pair(uint32_t(QType::Q8_0), 0x00007F80u, h);
  CHECK(h[0] == 0x48FF4800u);
  CHECK(hsub2_bits(h[0], gguf_f16_subtrahend(uint32_t(QType::Q8_0))) ==
        (uint32_t(f32_to_fp16(127.0f / 128.0f)) << 16 | f32_to_fp16(-1.0f)));
  // Q6_K: codes 0 and 63 -> (32 + 0/32 - 33, 32 + 63/32 - 33) = (-1, 31/32).
  gguf_f16_magic_pair(uint32_t(QType::Q6_K), 0x0000003Fu << 8, h);
  CHECK(hsub2_bits(h[0], gguf_f16_subtrahend(uint32_t(QType::Q6_K))) ==
        (uint32_t(f32_to_fp16(31.0f / 32.0f)) << 16 | f32_to_fp16(-1.0f)));
  CHECK(gguf_f16_magic(uint32_t(QType::Q4_K)) == 0x54005400u);  // 64
}
