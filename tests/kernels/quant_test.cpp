// The tensor-type table (kernels/quant/types.h): ids, names, sizes and errors; dequantization of
// hand-built blocks (bytes laid out per gguf.md §5, expected values computed per element from the
// spec formulas and spot values worked out by hand); and quantize -> dequantize round trips on
// random data against error bounds derived from each format's step size.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

namespace slm {
namespace detail {  // kernels/quant/types.cpp, search_avx2.cpp
bool quantize_searched_avx2(QType t, const float* src, void* dst, int64_t n);
bool quantize_searched_baseline(QType t, const float* src, void* dst, int64_t n);
}  // namespace detail
namespace {

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = uint8_t(v & 0xFF);
  b[off + 1] = uint8_t(v >> 8);
}
std::vector<float> deq(QType t, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> y(size_t(n), NAN);
  dequantize_row(t, bytes.data(), y.data(), n);
  return y;
}
// Values of the IQ4_NL code book as printed in gguf.md §5.13.
constexpr int kBook[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// N(0, 1) with two outliers (|x| = 8, 12): 64 rows of 256, fixed seed.
std::vector<float> test_data() {
  std::mt19937 rng(1234);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(64 * 256);
  for (float& v : x) v = g(rng);
  x[100] = 8.0f;
  x[5000] = -12.0f;
  return x;
}

TEST_CASE("quant: type table, names and sizes") {
  // (id, name, block elements, block bytes) from gguf.md §5.0.
  struct Row { uint32_t id; const char* name; int elems, bytes; };
  const Row rows[] = {{0, "F32", 1, 4},     {1, "F16", 1, 2},       {30, "BF16", 1, 2},
                      {2, "Q4_0", 32, 18},  {3, "Q4_1", 32, 20},    {6, "Q5_0", 32, 22},
                      {7, "Q5_1", 32, 24},  {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
                      {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144},
                      {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},
                      {20, "IQ4_NL", 32, 18}, {23, "IQ4_XS", 256, 136}};
  CHECK(all_qtypes().size() == std::size(rows));
  for (const Row& r : rows) {
    INFO(r.name);
    const QTypeInfo* qi = find_qtype(r.id);
    REQUIRE(qi != nullptr);
    CHECK(qi->name == r.name);
    CHECK(qi->block_elems == r.elems);
    CHECK(qi->block_bytes == r.bytes);
    CHECK(&qtype_info(QType(r.id)) == qi);
    CHECK(ggml_type_name(r.id) == r.name);
    CHECK(qtype_from_name(r.name) == QType(r.id));
    CHECK(qi->is_activation_only == (r.id == 9 || r.id == 15));
  }
  CHECK(qtype_from_name("q4_k") == QType::Q4_K);
  CHECK(qtype_from_name("iq4_xs") == QType::IQ4_XS);
  CHECK(!qtype_from_name("Q4_K_M").has_value());
  CHECK(!qtype_from_name("IQ2_XXS").has_value());
  CHECK(!qtype_from_name("").has_value());

  // Ids ggml knows that we do not support, including removed ones.
  CHECK(ggml_type_name(4) == "Q4_2");
  CHECK(ggml_type_name(16) == "IQ2_XXS");
  CHECK(ggml_type_name(24) == "I8");
  CHECK(ggml_type_name(28) == "F64");
  CHECK(ggml_type_name(29) == "IQ1_M");
  CHECK(ggml_type_name(31) == "Q4_0_4_4");
  CHECK(ggml_type_name(35) == "TQ2_0");
  CHECK(ggml_type_name(38) == "IQ4_NL_8_8");
  CHECK(ggml_type_name(39) == "MXFP4");
  CHECK(ggml_type_name(1000) == "?");
  // Every id of ggml's enum (ggml.h; 40-42 only in 2026 ggml), in order.
  const char* const all_names[] = {
      "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
      "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
      "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
      "NVFP4", "Q1_0", "Q2_0"};
  for (uint32_t id = 0; id < std::size(all_names); ++id) CHECK(ggml_type_name(id) == all_names[id]);
  CHECK(ggml_type_name(uint32_t(std::size(all_names))) == "?");
  for (uint32_t id : {4u, 5u, 16u, 17u, 18u, 19u, 21u, 22u, 24u, 28u, 29u, 31u, 34u, 39u, 1000u})
    CHECK(find_qtype(id) == nullptr);
  try {
    qtype_info(QType(16));
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("IQ2_XXS (16)") != std::string::npos);
  }
  CHECK_THROWS_AS(qtype_info(QType(31)), Error);
  CHECK_THROWS_AS(qtype_info(QType(12345)), Error);
}

TEST_CASE("quant: row_bytes and block-multiple checks") {
  // 2048-wide rows (gguf.md §5.0 column) and the 8192-wide ffn_down rows.
  CHECK(row_bytes(QType::F32, 2048) == 8192);
  CHECK(row_bytes(QType::F16, 2048) == 4096);
  CHECK(row_bytes(QType::BF16, 3) == 6);
  CHECK(row_bytes(QType::Q4_0, 2048) == 1152);
  CHECK(row_bytes(QType::Q4_1, 2048) == 1280);
  CHECK(row_bytes(QType::Q5_0, 2048) == 1408);
  CHECK(row_bytes(QType::Q5_1, 2048) == 1536);
  CHECK(row_bytes(QType::Q8_0, 2048) == 2176);
  CHECK(row_bytes(QType::Q2_K, 2048) == 672);
  CHECK(row_bytes(QType::Q3_K, 2048) == 880);
  CHECK(row_bytes(QType::Q4_K, 2048) == 1152);
  CHECK(row_bytes(QType::Q5_K, 2048) == 1408);
  CHECK(row_bytes(QType::Q6_K, 2048) == 1680);
  CHECK(row_bytes(QType::IQ4_NL, 2048) == 1152);
  CHECK(row_bytes(QType::IQ4_XS, 2048) == 1088);
  CHECK(row_bytes(QType::Q6_K, 8192) == 4 * 1680);
  CHECK(row_bytes(QType::Q8_K, 256) == 292);
  CHECK(row_bytes(QType::Q4_K, 0) == 0);
  CHECK_THROWS_AS(row_bytes(QType::Q4_K, 100), Error);
  CHECK_THROWS_AS(row_bytes(QType::Q4_0, 33), Error);
  CHECK_THROWS_AS(row_bytes(QType::Q8_0, -32), Error);
  CHECK_THROWS_AS(row_bytes(QType(16), 256), Error);

  std::vector<float> x(512, 1.0f), y(512);
  std::vector<uint8_t> buf(4096);
  CHECK_THROWS_AS(quantize_row(QType::Q8_0, x.data(), buf.data(), 33), Error);
  CHECK_THROWS_AS(quantize_row(QType::Q4_K, x.data(), buf.data(), 288), Error);
  CHECK_THROWS_AS(quantize_row(QType::IQ4_XS, x.data(), buf.data(), 32), Error);
  CHECK_THROWS_AS(dequantize_row(QType::Q6_K, buf.data(), y.data(), 100), Error);
  CHECK_THROWS_AS(dequantize_row(QType(31), buf.data(), y.data(), 32), Error);
}

TEST_CASE("quant: activation types follow llama.cpp's vec_dot_type") {
  CHECK(activation_type_for(QType::Q4_0) == QType::Q8_0);
  CHECK(activation_type_for(QType::Q5_0) == QType::Q8_0);
  CHECK(activation_type_for(QType::Q8_0) == QType::Q8_0);
  CHECK(activation_type_for(QType::IQ4_NL) == QType::Q8_0);
  CHECK(activation_type_for(QType::Q4_1) == QType::Q8_1);
  CHECK(activation_type_for(QType::Q5_1) == QType::Q8_1);
  for (QType t : {QType::Q2_K, QType::Q3_K, QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::IQ4_XS})
    CHECK(activation_type_for(t) == QType::Q8_K);
  CHECK(activation_type_for(QType::F16) == QType::F16);
  CHECK(activation_type_for(QType::BF16) == QType::BF16);
  CHECK(activation_type_for(QType::F32) == QType::F32);
  CHECK_THROWS_AS(activation_type_for(QType::Q8_K), Error);
  CHECK_THROWS_AS(activation_type_for(QType::Q8_1), Error);

  // The reference conversion is quantize_row; on x86 Q8_K is quantize_row_q8_K_ref too.
  std::vector<float> x(256);
  for (int i = 0; i < 256; ++i) x[size_t(i)] = std::sin(0.37f * float(i)) * 3.0f;
  for (QType t : {QType::Q8_0, QType::Q8_1, QType::Q8_K, QType::F16, QType::BF16}) {
    std::vector<uint8_t> a(row_bytes(t, 256)), b(a.size()), c(a.size());
    quantize_activations_ref(t, x.data(), a.data(), 256);
    quantize_row(t, x.data(), b.data(), 256);
    CHECK(a == b);
    if (t == QType::Q8_K) {
      quantize_activations_x86(t, x.data(), c.data(), 256);
      CHECK(a == c);
    }
  }
  std::vector<uint8_t> buf(1024);
  CHECK_THROWS_AS(quantize_activations_ref(QType::Q4_K, x.data(), buf.data(), 256), Error);
}

TEST_CASE("quant: x86 Q8_0/Q8_1 activations round half to even like llama.cpp's AVX path") {
  // amax = 127 makes both scales exactly 1, so the elements below sit exactly on .5 ties: the
  // AVX path rounds them to even, the _ref encoder (quantize_row) away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -0.5f;
  x[5] = 6.4f;
  BlockQ8_0 act, ref;
  quantize_activations_x86(QType::Q8_0, x.data(), &act, 32);
  quantize_row(QType::Q8_0, x.data(), &ref, 32);
  CHECK(act.d == 0x3C00);  // 1.0
  CHECK(ref.d == 0x3C00);
  const int want_act[6] = {127, 2, -4, 0, 0, 6};
  const int want_ref[6] = {127, 3, -4, 1, -1, 6};
  for (int j = 0; j < 6; ++j) {
    CHECK(int(act.qs[j]) == want_act[j]);
    CHECK(int(ref.qs[j]) == want_ref[j]);
  }
  BlockQ8_1 act1;
  quantize_activations_x86(QType::Q8_1, x.data(), &act1, 32);
  CHECK(std::memcmp(act1.qs, act.qs, 32) == 0);
  CHECK(act1.s == 0x5818);  // half(131 = 1.0 * (127 + 2 - 4 + 6)): exponent 7, mantissa 3/128

  // On general data the two differ at most by one step, and rarely.
  const auto y = test_data();
  std::vector<BlockQ8_0> qa(y.size() / 32), qr(y.size() / 32);
  quantize_activations_x86(QType::Q8_0, y.data(), qa.data(), int64_t(y.size()));
  quantize_row(QType::Q8_0, y.data(), qr.data(), int64_t(y.size()));
  int differ = 0;
  for (size_t i = 0; i < qa.size(); ++i) {
    CHECK(qa[i].d == qr[i].d);
    for (int j = 0; j < 32; ++j) {
      CHECK(std::abs(qa[i].qs[j] - qr[i].qs[j]) <= 1);
      differ += qa[i].qs[j] != qr[i].qs[j];
    }
  }
  CHECK(differ < int(y.size()) / 1000);
}

// --- Dequantization of hand-built blocks -------------------------------------------------------

TEST_CASE("quant: float types decode per IEEE") {
  const std::vector<uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0xFF, 0x7B, 0x00, 0x7C, 0x00, 0x80};
  const auto y = deq(QType::F16, f16, 6);
  CHECK(y[0] == 1.0f);
  CHECK(y[1] == -2.0f);
  CHECK(y[2] == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(y[3] == 65504.0f);
  CHECK(std::isinf(y[4]));
  CHECK((y[5] == 0.0f && std::signbit(y[5])));
  const std::vector<uint8_t> bf = {0x80, 0x3F, 0x49, 0x40, 0x80, 0xBF};  // 1.0, 3.140625, -1.0
  const auto z = deq(QType::BF16, bf, 3);
  CHECK(z[0] == 1.0f);
  CHECK(z[1] == 3.140625f);
  CHECK(z[2] == -1.0f);
}

TEST_CASE("quant: legacy 32-blocks decode per layout") {
  SUBCASE("Q4_0") {  // d = 0.5; element j = low nibble j, element j+16 = high nibble 15-j
    std::vector<uint8_t> b(18);
    put16(b, 0, 0x3800);
    for (int j = 0; j < 16; ++j) b[size_t(2 + j)] = uint8_t(j | ((15 - j) << 4));
    const auto y = deq(QType::Q4_0, b, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[size_t(j)] == 0.5f * float(j - 8));
      CHECK(y[size_t(16 + j)] == 0.5f * float(7 - j));
    }
    CHECK(y[0] == -4.0f);
    CHECK(y[31] == -4.0f);
    CHECK(y[15] == 3.5f);
  }
  SUBCASE("Q4_1") {  // d = 0.25, m = -1
    std::vector<uint8_t> b(20);
    put16(b, 0, 0x3400);
    put16(b, 2, 0xBC00);
    for (int j = 0; j < 16; ++j) b[size_t(4 + j)] = uint8_t(j | ((15 - j) << 4));
    const auto y = deq(QType::Q4_1, b, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[size_t(j)] == 0.25f * float(j) - 1.0f);
      CHECK(y[size_t(16 + j)] == 0.25f * float(15 - j) - 1.0f);
    }
    CHECK(y[31] == -1.0f);
    CHECK(y[16] == 2.75f);
  }
  SUBCASE("Q5_0 and Q5_1") {  // qh bit k is the 5th bit of element k
    const uint32_t qh = 0x0F0F00FFu;
    std::vector<uint8_t> b0(22), b1(24);
    put16(b0, 0, 0x3C00);  // d = 1
    put16(b1, 0, 0x3800);  // d = 0.5
    put16(b1, 2, 0x4200);  // m = 3
    for (int k = 0; k < 4; ++k) {
      b0[size_t(2 + k)] = uint8_t(qh >> (8 * k));
      b1[size_t(4 + k)] = uint8_t(qh >> (8 * k));
    }
    for (int j = 0; j < 16; ++j) {
      b0[size_t(6 + j)] = uint8_t(j | ((15 - j) << 4));
      b1[size_t(8 + j)] = uint8_t(j | ((15 - j) << 4));
    }
    const auto y0 = deq(QType::Q5_0, b0, 32);
    const auto y1 = deq(QType::Q5_1, b1, 32);
    for (int k = 0; k < 32; ++k) {
      const int nib = k < 16 ? k : 31 - k;
      const int q = nib | int(((qh >> k) & 1) << 4);
      CHECK(y0[size_t(k)] == float(q - 16));
      CHECK(y1[size_t(k)] == 0.5f * float(q) + 3.0f);
    }
    CHECK(y0[0] == 0.0f);     // nibble 0, bit set: 16 - 16
    CHECK(y0[8] == -8.0f);    // nibble 8, bit clear
    CHECK(y0[20] == -5.0f);   // high nibble of qs[4] = 11, bit 20 clear
    CHECK(y0[16] == 15.0f);   // high nibble 15, bit 16 set: 31 - 16
    CHECK(y1[31] == 3.0f);    // nibble 0, bit 31 clear
  }
  SUBCASE("Q8_0 and Q8_1") {
    std::vector<uint8_t> b(34), c(36);
    put16(b, 0, 0x3800);  // 0.5
    put16(c, 0, 0x3400);  // 0.25; s at @2 is not needed to decode
    put16(c, 2, 0x7BFF);
    for (int j = 0; j < 32; ++j) {
      b[size_t(2 + j)] = uint8_t(int8_t(4 * j - 64));
      c[size_t(4 + j)] = uint8_t(int8_t(j - 16));
    }
    const auto y = deq(QType::Q8_0, b, 32);
    const auto z = deq(QType::Q8_1, c, 32);
    for (int j = 0; j < 32; ++j) {
      CHECK(y[size_t(j)] == float(2 * j - 32));
      CHECK(z[size_t(j)] == 0.25f * float(j - 16));
    }
  }
  SUBCASE("IQ4_NL") {  // d = -2
    std::vector<uint8_t> b(18);
    put16(b, 0, 0xC000);
    for (int j = 0; j < 16; ++j) b[size_t(2 + j)] = uint8_t(j | ((15 - j) << 4));
    const auto y = deq(QType::IQ4_NL, b, 32);
    for (int j = 0; j < 16; ++j) {
      CHECK(y[size_t(j)] == -2.0f * float(kBook[j]));
      CHECK(y[size_t(16 + j)] == -2.0f * float(kBook[15 - j]));
    }
    CHECK(y[0] == 254.0f);
    CHECK(y[16] == -226.0f);
  }
}

// (scale, min) pair j of the 12 packed Q4_K/Q5_K bytes, written from gguf.md §5.9's prose.
void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[4 + j] & 63;
  } else {
    sc = (s[8 + j - 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    mn = (s[8 + j - 4] >> 4) | ((s[j] >> 6) << 4);
  }
}
constexpr uint8_t kK4Scales[12] = {0x81, 0x42, 0xC3, 0x04, 0x45, 0x86, 0x07, 0xC8, 0x9A, 0x2B, 0x3C, 0xF1};

TEST_CASE("quant: K-quant super-blocks decode per layout") {
  SUBCASE("Q2_K") {  // d = 0.5, dmin = 0.25
    std::vector<uint8_t> b(84);
    for (int s = 0; s < 16; ++s) b[size_t(s)] = uint8_t((s % 4 + 1) | ((s % 3) << 4));
    for (int i = 0; i < 64; ++i) b[size_t(16 + i)] = uint8_t(i * 37 + 11);
    put16(b, 80, 0x3800);
    put16(b, 82, 0x3400);
    const auto y = deq(QType::Q2_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int s = e / 16, half = e / 128, r = e % 128;
      const int q = (b[size_t(16 + 32 * half + r % 32)] >> (2 * (r / 32))) & 3;
      CHECK(y[size_t(e)] == 0.5f * float((b[size_t(s)] & 0xF) * q) - 0.25f * float(b[size_t(s)] >> 4));
    }
    // By hand: e=0 -> qs[0]=0x0B, q=3, sc=1, mn=0: 1.5. e=40 -> qs[8]=0x33 >>2 &3 = 0, sub-block
    // 2 has sc=3, mn=2: -0.5. e=200 -> qs[40]=0xD3 >>4 &3 = 1, sub-block 12: sc=1, mn=0: 0.5.
    CHECK(y[0] == 1.5f);
    CHECK(y[40] == -0.5f);
    CHECK(y[200] == 0.5f);
    CHECK(y[255] == 0.0f);
  }
  SUBCASE("Q3_K") {  // d = -0.5, inverted high bit, signed 6-bit scales
    std::vector<uint8_t> b(110);
    for (int i = 0; i < 32; ++i) b[size_t(i)] = uint8_t(i * 53 + 7);
    for (int i = 0; i < 64; ++i) b[size_t(32 + i)] = uint8_t(i * 29 + 3);
    const uint8_t sc[12] = {0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88, 0x97, 0xA6, 0xB5, 0xC4};
    std::memcpy(b.data() + 96, sc, 12);
    put16(b, 108, 0xB800);
    const auto y = deq(QType::Q3_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int half = e / 128, r = e % 128, j = e / 16;
      const int q2 = (b[size_t(32 + 32 * half + r % 32)] >> (2 * (r / 32))) & 3;
      const int hb = (b[size_t(e % 32)] >> (e / 32)) & 1;
      const int low4 = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4;
      const int high2 = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
      CHECK(y[size_t(e)] == -0.5f * float(((low4 | (high2 << 4)) - 32) * (q2 - (hb ? 0 : 4))));
    }
    CHECK(y[0] == -46.5f);  // scale 0x3F - 32 = 31, q = 3 (high bit set): -0.5 * 31 * 3
    CHECK(y[77] == -2.5f);
    CHECK(y[150] == -1.0f);
    CHECK(y[255] == 48.0f);
  }
  SUBCASE("Q4_K and Q5_K") {  // d = 1, dmin = 0.5
    std::vector<uint8_t> b4(144), b5(176);
    for (auto* b : {&b4, &b5}) {
      put16(*b, 0, 0x3C00);
      put16(*b, 2, 0x3800);
      std::memcpy(b->data() + 4, kK4Scales, 12);
    }
    for (int i = 0; i < 128; ++i) b4[size_t(16 + i)] = b5[size_t(48 + i)] = uint8_t(i * 71 + 5);
    for (int i = 0; i < 32; ++i) b5[size_t(16 + i)] = uint8_t(i * 13 + 1);
    const auto y4 = deq(QType::Q4_K, b4, 256);
    const auto y5 = deq(QType::Q5_K, b5, 256);
    for (int e = 0; e < 256; ++e) {
      const int c = e / 64, t = e % 32, hi = (e % 64) / 32, j = 2 * c + hi;
      const uint8_t byte = b4[size_t(16 + 32 * c + t)];
      const int nib = hi ? byte >> 4 : byte & 0xF;
      const int q5 = nib + 16 * ((b5[size_t(16 + t)] >> (2 * c + hi)) & 1);
      int sc, mn;
      k4_scale_min(kK4Scales, j, sc, mn);
      CHECK(y4[size_t(e)] == float(sc * nib) - 0.5f * float(mn));
      CHECK(y5[size_t(e)] == float(sc * q5) - 0.5f * float(mn));
    }
    // The packed pairs, by hand from the 12 bytes: (1,5) (2,6) (3,7) (4,8) (42,25) (27,34) (60,3) (1,63).
    const int want[8][2] = {{1, 5}, {2, 6}, {3, 7}, {4, 8}, {42, 25}, {27, 34}, {60, 3}, {1, 63}};
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, kK4Scales, sc, mn);
      CHECK(int(sc) == want[j][0]);
      CHECK(int(mn) == want[j][1]);
    }
    CHECK(y4[0] == 2.5f);     // nibble 5, sub-block 0: 1*5 - 0.5*5
    CHECK(y4[33] == 5.0f);
    CHECK(y4[130] == 113.5f);
    CHECK(y4[255] == -28.5f);
    CHECK(y5[0] == 18.5f);    // qh[0] bit 0 set: 21 - 2.5
    CHECK(y5[130] == 785.5f);
  }
  SUBCASE("Q6_K") {  // d = 0.25, signed int8 scales
    std::vector<uint8_t> b(210);
    for (int i = 0; i < 128; ++i) b[size_t(i)] = uint8_t(i * 89 + 17);
    for (int i = 0; i < 64; ++i) b[size_t(128 + i)] = uint8_t(i * 23 + 5);
    const int8_t sc[16] = {5, -3, 17, -128, 127, 0, 1, -1, 64, -64, 2, 3, -7, 9, 31, -32};
    std::memcpy(b.data() + 192, sc, 16);
    put16(b, 208, 0x3400);
    const auto y = deq(QType::Q6_K, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t lb = b[size_t(64 * h + l + 32 * (k & 1))];
      const int low = k < 2 ? lb & 0xF : lb >> 4;
      const int high = (b[size_t(128 + 32 * h + l)] >> (2 * k)) & 3;
      CHECK(y[size_t(e)] == 0.25f * float(sc[8 * h + l / 16 + 2 * k] * ((low | (high << 4)) - 32)));
    }
    CHECK(y[0] == -18.75f);
    CHECK(y[50] == 928.0f);  // scale -128
    CHECK(y[100] == -1.75f);
    CHECK(y[255] == -24.0f);
  }
  SUBCASE("Q8_K") {  // float32 d
    std::vector<uint8_t> b(292);
    const float d = 0.5f;
    std::memcpy(b.data(), &d, 4);
    for (int j = 0; j < 256; ++j) b[size_t(4 + j)] = uint8_t(int8_t(j - 128));
    const auto y = deq(QType::Q8_K, b, 256);
    for (int j = 0; j < 256; ++j) CHECK(y[size_t(j)] == 0.5f * float(j - 128));
  }
  SUBCASE("IQ4_XS") {  // d = 0.5, 6-bit scales split in scales_l / scales_h
    std::vector<uint8_t> b(136);
    put16(b, 0, 0x3800);
    put16(b, 2, 0xE41B);
    const uint8_t sl[4] = {0x21, 0x43, 0x65, 0x87};
    std::memcpy(b.data() + 4, sl, 4);
    for (int i = 0; i < 128; ++i) b[size_t(8 + i)] = uint8_t(i * 41 + 9);
    const auto y = deq(QType::IQ4_XS, b, 256);
    for (int e = 0; e < 256; ++e) {
      const int ib = e / 32, t = e % 32;
      const int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((0xE41B >> (2 * ib)) & 3) << 4);
      const uint8_t qb = b[size_t(8 + 16 * ib + t % 16)];
      const int q = t < 16 ? qb & 0xF : qb >> 4;
      CHECK(y[size_t(e)] == 0.5f * float((ls - 32) * kBook[q]));
    }
    CHECK(y[0] == 110.5f);  // ls = 1 | 3<<4 = 49 -> 17; q = 9 -> 13: 0.5 * 17 * 13
    CHECK(y[17] == -552.5f);
    CHECK(y[255] == -264.0f);
  }
}

// --- Quantize -> dequantize round trips -------------------------------------------------------

std::vector<float> round_trip(QType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, int64_t(x.size())));
  quantize_row(t, x.data(), q.data(), int64_t(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(t, q.data(), y.data(), int64_t(y.size()));
  return y;
}

double rel_rms(const std::vector<float>& y, const std::vector<float>& x) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    s += double(x[i]) * x[i];
  }
  return std::sqrt(e / s);
}

// A half-precision block scale carries a relative rounding error of at most 2^-11.
constexpr float kHalfRel = 1.0f / 2048;

TEST_CASE("quant: legacy round trips stay within half a step") {
  const auto x = test_data();
  SUBCASE("Q8_0 / Q8_1: |err| <= d/2 + 127 d 2^-11 (d = amax/127, rounded to half)") {
    for (QType t : {QType::Q8_0, QType::Q8_1}) {
      const auto y = round_trip(t, x);
      for (size_t b = 0; b < x.size(); b += 32) {
        float amax = 0;
        for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
        const float d = amax / 127;
        for (size_t j = 0; j < 32; ++j) REQUIRE(std::fabs(y[b + j] - x[b + j]) <= d * (0.5f + 127 * kHalfRel) * 1.0001f);
      }
    }
  }
  SUBCASE("Q4_0 / Q5_0: |err| <= |d|/2 (+|d| at the clamped top code) + half rounding of d") {
    for (auto [t, half] : {std::pair{QType::Q4_0, 8}, std::pair{QType::Q5_0, 16}}) {
      const auto y = round_trip(t, x);
      for (size_t b = 0; b < x.size(); b += 32) {
        float amax = 0, mx = 0;
        for (size_t j = 0; j < 32; ++j)
          if (std::fabs(x[b + j]) > amax) amax = std::fabs(x[b + j]), mx = x[b + j];
        const float d = mx / float(-half);  // the extreme value maps to code 0 exactly
        for (size_t j = 0; j < 32; ++j) {
          // Codes run -half..half-1 in units of d: values beyond half-0.5 steps clamp to the top.
          const bool clamped = x[b + j] / d > float(half) - 0.5f;
          const float step = std::fabs(d) * (clamped ? 1.0f : 0.5f);
          REQUIRE(std::fabs(y[b + j] - x[b + j]) <= (step + std::fabs(d) * float(half) * kHalfRel) * 1.0001f);
        }
      }
    }
  }
  SUBCASE("Q4_1 / Q5_1: |err| <= d/2 + half rounding of d and m") {
    for (auto [t, levels] : {std::pair{QType::Q4_1, 15}, std::pair{QType::Q5_1, 31}}) {
      const auto y = round_trip(t, x);
      for (size_t b = 0; b < x.size(); b += 32) {
        float mn = x[b], mx = x[b];
        for (size_t j = 0; j < 32; ++j) mn = std::min(mn, x[b + j]), mx = std::max(mx, x[b + j]);
        const float d = (mx - mn) / float(levels);
        const float bound = d / 2 + d * float(levels) * kHalfRel + std::fabs(mn) * kHalfRel;
        for (size_t j = 0; j < 32; ++j) REQUIRE(std::fabs(y[b + j] - x[b + j]) <= bound * 1.0001f);
      }
    }
  }
  SUBCASE("Q8_K: |err| <= d/2 with a float32 d = amax/127") {
    const auto y = round_trip(QType::Q8_K, x);
    for (size_t b = 0; b < x.size(); b += 256) {
      float amax = 0;
      for (size_t j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[b + j]));
      for (size_t j = 0; j < 256; ++j) REQUIRE(std::fabs(y[b + j] - x[b + j]) <= amax / 127 * 0.5001f);
    }
  }
  SUBCASE("F16 / BF16: relative error <= 2^-11 / 2^-8 (round to nearest)") {
    const auto h = round_trip(QType::F16, x);
    const auto bf = round_trip(QType::BF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
      REQUIRE(std::fabs(h[i] - x[i]) <= std::fabs(x[i]) * kHalfRel);
      REQUIRE(std::fabs(bf[i] - x[i]) <= std::fabs(x[i]) / 256);
    }
  }
}

TEST_CASE("quant: Q8_1 and Q8_K carry consistent sums") {
  const auto x = test_data();
  std::vector<BlockQ8_1> a(x.size() / 32);
  quantize_row(QType::Q8_1, x.data(), a.data(), int64_t(x.size()));
  for (const BlockQ8_1& b : a) {
    // s = d32 * sum(q) rounded to half, while the decoded block sums to d16 * sum(q): the two
    // agree to two half roundings.
    float y[32];
    dequantize_row(QType::Q8_1, &b, y, 32);
    float ysum = 0;
    for (float v : y) ysum += v;
    float s;
    dequantize_row(QType::F16, &b.s, &s, 1);
    CHECK(std::fabs(s - ysum) <= std::fabs(ysum) * 2 * kHalfRel + 1e-6f);
  }
  std::vector<BlockQ8_K> k(x.size() / 256);
  quantize_row(QType::Q8_K, x.data(), k.data(), int64_t(x.size()));
  for (const BlockQ8_K& b : k)
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
      CHECK(b.bsums[g] == sum);
    }
}

// K-quants and IQ4 have no per-element guarantee (the scale search trades one element against
// the block), so bound the relative RMS error by the format's resolution on N(0,1) data, taking
// group statistics of N(0,1) samples (Monte Carlo, 2e4 groups): rms range (max - min(min, 0))
// is 3.61 for 16 values and 4.20 for 32; rms max|x| is 2.13 for 16 and 2.39 for 32. A uniform
// round-to-nearest grid of step D has RMS error D/sqrt(12); the search must do at least as well as
// that plain min/max grid, up to the cost of coding the sub-block scales in 4-8 bits (a 10 %
// allowance: Q4_K/Q5_K's 6-bit codes move a scale by <= 1/126 of the block maximum, Q3_K's by
// 1/64, Q6_K's 8-bit ones by 1/256, Q2_K's 4-bit ones by 1/30).
TEST_CASE("quant: K-quant and IQ4 round trips within the format's resolution") {
  const auto x = test_data();
  const double r12 = std::sqrt(12.0);
  struct Case { QType t; double bound; };
  const Case cases[] = {
      {QType::Q2_K, 1.1 * (3.61 / 3) / r12},    // 4 levels over a 16-value range
      {QType::Q3_K, 1.1 * (2.13 / 4) / r12},    // -4..3 in steps of max|x|/4
      {QType::Q4_K, 1.1 * (4.20 / 15) / r12},   // 16 levels over a 32-value range
      {QType::Q5_K, 1.1 * (4.20 / 31) / r12},   // 32 levels
      {QType::Q6_K, 1.1 * (2.13 / 32) / r12},   // -32..31 in steps of max|x|/32
      // The non-linear code book must beat the plain symmetric 4-bit grid (Q4_0: -8..7 in steps
      // of max|x|/8 over 32 values), which is what it is designed for.
      {QType::IQ4_NL, (2.39 / 8) / r12},
      {QType::IQ4_XS, (2.39 / 8) / r12},
  };
  for (const Case& c : cases) {
    const double err = rel_rms(round_trip(c.t, x), x);
    MESSAGE(qtype_name(c.t), " rel rms ", err, " bound ", c.bound);
    CHECK(err <= c.bound);
    // A broken search (or a scale off by a factor) would land far above; a sanity floor guards
    // against a test that passes because nothing was quantized.
    CHECK(err > c.bound / 4);
  }
}

TEST_CASE("quant: quantize_rows / dequantize_rows equal the row-by-row loop") {
  const auto x = test_data();  // 64 rows of 256
  for (QType t : {QType::Q4_K, QType::Q8_0, QType::IQ4_NL, QType::F16}) {
    INFO(qtype_name(t));
    const size_t rb = row_bytes(t, 256);
    std::vector<uint8_t> a(rb * 64), b(rb * 64);
    quantize_rows(t, x.data(), a.data(), 64, 256);
    for (int r = 0; r < 64; ++r) quantize_row(t, x.data() + 256 * r, b.data() + rb * size_t(r), 256);
    CHECK(a == b);
    std::vector<float> ya(x.size()), yb(x.size());
    dequantize_rows(t, a.data(), ya.data(), 64, 256);
    for (int r = 0; r < 64; ++r) dequantize_row(t, a.data() + rb * size_t(r), yb.data() + 256 * r, 256);
    CHECK(ya == yb);
  }
  std::vector<uint8_t> buf(4096);
  CHECK_THROWS_AS(quantize_rows(QType::Q4_K, x.data(), buf.data(), 2, 100), Error);
  CHECK_THROWS_AS(dequantize_rows(QType::Q4_K, buf.data(), nullptr, 2, 100), Error);
}

TEST_CASE("quant: blocks are encoded independently of their neighbours") {
  // The searches run several blocks side by side; a row of 7 IQ4_NL blocks (not a multiple of the
  // batch) and K-quant rows must equal their blocks quantized one at a time.
  const auto x = test_data();
  for (QType t : {QType::IQ4_NL, QType::Q4_K, QType::Q2_K, QType::Q6_K, QType::IQ4_XS}) {
    INFO(qtype_name(t));
    const QTypeInfo& info = qtype_info(t);
    const int64_t n = 7 * int64_t(info.block_elems);
    std::vector<uint8_t> row(row_bytes(t, n)), one(size_t(info.block_bytes));
    quantize_row(t, x.data() + 5, row.data(), n);
    for (int b = 0; b < 7; ++b) {
      quantize_row(t, x.data() + 5 + b * info.block_elems, one.data(), info.block_elems);
      CHECK(std::memcmp(one.data(), row.data() + size_t(b) * one.size(), one.size()) == 0);
    }
  }
}

TEST_CASE("quant: the 4-lane and 8-lane (AVX2) scale searches give identical bytes") {
  if (!__builtin_cpu_supports("avx2")) {
    MESSAGE("SKIP: no AVX2 on this CPU");
    return;
  }
  auto x = test_data();
  for (size_t i = 0; i < 512; ++i) x[i] = 0.0f;            // zero sub-blocks and blocks
  for (size_t i = 1024; i < 1280; ++i) x[i] = 0.75f;       // a constant block
  for (size_t i = 2048; i < 2304; ++i) x[i] *= 1e-3f;      // a tiny-scale block
  const int64_t n = int64_t(x.size());
  for (QType t : {QType::Q2_K, QType::Q4_K, QType::Q5_K, QType::Q6_K, QType::IQ4_NL, QType::IQ4_XS}) {
    INFO(qtype_name(t));
    std::vector<uint8_t> a(row_bytes(t, n)), b(a.size());
    REQUIRE(detail::quantize_searched_avx2(t, x.data(), a.data(), n));
    REQUIRE(detail::quantize_searched_baseline(t, x.data(), b.data(), n));
    CHECK(a == b);
  }
  std::vector<uint8_t> buf(1024);
  CHECK(!detail::quantize_searched_baseline(QType::Q3_K, x.data(), buf.data(), 256));
}

TEST_CASE("quant: degenerate blocks (all zero, constant, tiny) stay finite and exact where possible") {
  for (const QTypeInfo& info : all_qtypes()) {
    const int64_t n = 256;
    std::vector<uint8_t> q(row_bytes(info.type, n));
    std::vector<float> y(static_cast<size_t>(n));
    INFO(info.name);
    const std::vector<float> zero(size_t(n), 0.0f);
    quantize_row(info.type, zero.data(), q.data(), n);
    dequantize_row(info.type, q.data(), y.data(), n);
    for (float v : y) CHECK(v == 0.0f);

    std::vector<float> tiny(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) tiny[size_t(i)] = 1e-20f * float(i % 7 - 3);
    quantize_row(info.type, tiny.data(), q.data(), n);
    dequantize_row(info.type, q.data(), y.data(), n);
    for (size_t i = 0; i < y.size(); ++i) CHECK(std::fabs(y[i] - tiny[i]) <= 1e-19f);

    // Non-finite input is garbage in, garbage out, but must not be undefined behaviour (the
    // sanitizer build checks the float -> int conversions).
    std::vector<float> bad(static_cast<size_t>(n), 0.5f);
    bad[3] = NAN;
    bad[40] = INFINITY;
    bad[200] = -INFINITY;
    quantize_row(info.type, bad.data(), q.data(), n);
    dequantize_row(info.type, q.data(), y.data(), n);

    const std::vector<float> ones(size_t(n), 1.0f);
    quantize_row(info.type, ones.data(), q.data(), n);
    dequantize_row(info.type, q.data(), y.data(), n);
    for (float v : y) CHECK(std::fabs(v - 1.0f) <= 0.07f);  // worst: IQ4 code 113/127 rescaled
  }
}

}  // namespace
}  // namespace slm
