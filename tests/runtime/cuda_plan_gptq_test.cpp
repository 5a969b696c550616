// The GPTQ part of the CUDA backend's host planning (runtime/cuda_plan.h), on the CPU: which
// GPTQ linears the repacked 4-bit and 8-bit kernels run, that the session's upload paths (aligned
// copy -> kernels/layout repack) hold exactly the checkpoint's weights, the 8-bit dp4a unit dot
// emulated on the host, the FP16 fallback's row-slice dequantization, kernel choice, split-K and
// workspace sizes (hand counts in the comments).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "formats/gptq.h"
#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/gptq8_layout.h"
#include "kernels/layout/gptq_layout.h"
#include "runtime/cuda_plan.h"
#include "runtime/gguf_export.h"
#include "runtime/gptq_quantize.h"
#include "runtime/hf_export.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

// A GPTQ result with random codes, FP16-exact scales and zeros 1..2^bits-1 (v1-writable); with
// act_order the columns are assigned to groups in a shuffled processing order, as GPTQ's
// desc_act does (each group gets group_size columns, scattered over K).
GptqResult random_result(int bits, int64_t n, int64_t k, int gs, bool act_order, uint32_t seed) {
  std::mt19937 rng(seed);
  GptqResult r;
  r.bits = bits;
  r.group_size = gs;
  r.n = n;
  r.k = k;
  const int64_t g = gs > 0 ? gs : k;
  r.groups = (k + g - 1) / g;
  const int maxq = (1 << bits) - 1;
  r.q.resize(size_t(n * k));
  for (auto& v : r.q) v = uint8_t(rng() % uint32_t(maxq + 1));
  r.scale.resize(size_t(r.groups * n));
  std::uniform_real_distribution<float> U(0.001f, 0.02f);
  for (auto& s : r.scale) s = fp16_to_f32(f32_to_fp16(U(rng)));
  r.zero.resize(size_t(r.groups * n));
  for (auto& z : r.zero) z = 1 + int32_t(rng() % uint32_t(maxq));
  std::vector<int64_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);
  r.g_idx.resize(size_t(k));
  for (int64_t pos = 0; pos < k; ++pos) r.g_idx[size_t(order[size_t(pos)])] = int32_t(pos / g);
  return r;
}

// W[n][k] from the repacked layout, decoded with the layout's own index/bit helpers: the word of
// (n, k'), the nibble's shift, group k' / group_size, the effective zero, and column perm[k'].
std::vector<float> decode_repacked(const layout::GptqRepacked& r) {
  std::vector<float> w(size_t(r.n * r.k));
  for (int64_t n = 0; n < r.n; ++n)
    for (int64_t kp = 0; kp < r.k; ++kp) {
      const uint32_t word = r.qweight[size_t(layout::gptq_fast_word(n, kp / 8, r.k))];
      const int q = int((word >> layout::gptq_fast_shift(int(kp % 8))) & 15u);
      const int64_t g = layout::gptq_fast_group(kp, r.group_size);
      const int z = r.zeros[size_t(g * r.n + n)];
      const float s = fp16_to_f32(r.scales[size_t(g * r.n + n)]);
      const int64_t col = r.has_perm() ? r.perm[size_t(kp)] : kp;
      w[size_t(n * r.k + col)] = s * float(q - z);
    }
  return w;
}

}  // namespace

TEST_CASE("cuda plan gptq: which linears the repacked 4-bit kernels run") {
  using F = CudaWeightFormat;
  std::string why;
  const GptqPacked p4 = gptq_pack(random_result(4, 64, 256, 64, false, 1));
  CHECK(cuda_gptq_format(p4.view(), &why) == F::GptqFast);
  CHECK(why.empty());
  const GptqPacked p4a = gptq_pack(random_result(4, 64, 256, 64, true, 2));
  CHECK(cuda_gptq_format(p4a.view()) == F::GptqFast);
  const GptqPacked p4all = gptq_pack(random_result(4, 64, 256, -1, false, 3));
  CHECK(cuda_gptq_format(p4all.view()) == F::GptqFast);
  // 8-bit (e.g. an lm_head from --lm-head-bits 8): the 8-bit dp4a layout, any N; 3-bit: FP16.
  const GptqPacked p8 = gptq_pack(random_result(8, 12, 64, 32, false, 4));
  CHECK(cuda_gptq_format(p8.view(), &why) == F::Gptq8);
  const GptqPacked p8a = gptq_pack(random_result(8, 12, 64, 32, true, 4));
  CHECK(cuda_gptq_format(p8a.view(), &why) == F::Gptq8);
  cpu::GptqTensors p8bf = p8.view();
  p8bf.scales_type = cpu::GptqFloat::BF16;
  CHECK(cuda_gptq_format(p8bf, &why) == F::Fp16);
  CHECK(why == "scales not in FP16");
  const GptqPacked p3 = gptq_pack(random_result(3, 32, 64, 32, false, 5));
  CHECK(cuda_gptq_format(p3.view(), &why) == F::Fp16);
  CHECK(why.find("3-bit") != std::string::npos);
  // Group size 48 is not a whole number of the kernels' 32-wide K chunks.
  const GptqPacked p48 = gptq_pack(random_result(4, 16, 96, 48, false, 6));
  CHECK(cuda_gptq_format(p48.view(), &why) == F::Fp16);
  CHECK(why.find("group size 48") != std::string::npos);
  const GptqPacked p48_8 = gptq_pack(random_result(8, 16, 96, 48, false, 6));
  CHECK(cuda_gptq_format(p48_8.view(), &why) == F::Fp16);
  CHECK(why.find("group size 48") != std::string::npos);
  // BF16 scales.
  cpu::GptqTensors bf = p4.view();
  bf.scales_type = cpu::GptqFloat::BF16;
  CHECK(cuda_gptq_format(bf) == F::Fp16);
  // A g_idx with one group one column short (not what GPTQ writes): cannot be a permutation of
  // whole groups, so FP16.
  GptqResult odd = random_result(4, 16, 128, 64, false, 7);
  odd.g_idx[63] = 1;
  const GptqPacked pod = gptq_pack(odd);
  CHECK(cuda_gptq_format(pod.view(), &why) == F::Fp16);
  CHECK(why.find("g_idx gives group 0 63 columns") != std::string::npos);
  // A bias has no device path at all.
  cpu::GptqTensors with_bias = p4.view();
  const std::vector<uint16_t> bias(64, 0);
  with_bias.bias = bias.data();
  CHECK_THROWS_WITH_AS(cuda_gptq_format(with_bias), doctest::Contains("bias"), Error);
  CHECK_THROWS_AS(cuda_gptq_copy(p8.view()), Error);
  CHECK_THROWS_WITH_AS(layout::gptq8_repack(p4.view()), doctest::Contains("4-bit codes"), Error);
}

TEST_CASE("cuda plan gptq: 8-bit repack and the dp4a unit dot (CPU emulation of gptq8_dp4a)") {
  for (const bool act : {false, true})
    for (const int gs : {32, 128, -1}) {
      CAPTURE(act);
      CAPTURE(gs);
      const int64_t n = 20, k = 256, m = 3;
      const GptqPacked p = gptq_pack(random_result(8, n, k, gs, act, 31 + uint32_t(gs)));
      const cpu::GptqTensors t = p.view();
      REQUIRE(cuda_gptq_format(t) == CudaWeightFormat::Gptq8);
      const layout::Gptq8Repacked r = layout::gptq8_repack(t);
      CHECK(r.has_perm() == (act && gs != -1 && gs < 256));
      const std::vector<float> w = gptq_dequantize(t);
      CHECK(layout::gptq8_dequantize_ref(r) == w);  // both exact: FP16 scale times an integer

      // The kernel's arithmetic on the host: x permuted into repacked order, quantized to Q8_1,
      // then per row the unit dots in unit order, against the double product of the exact weights
      // with the dequantized Q8_1 activations. Per unit the integer sums are exact; s * d_x and
      // the product with the integer round once each (2^-24 relative), the float result of a
      // unit is then exact in the double sum: |error| <= 2 * 2^-24 * sum_k |w_k x_k| (+ slack).
      std::mt19937 rng(5);
      std::normal_distribution<float> nd;
      std::vector<uint16_t> x(size_t(m * k)), xp(size_t(m * k));
      for (auto& v : x) v = f32_to_fp16(nd(rng));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t kp = 0; kp < k; ++kp)
          xp[size_t(i * k + kp)] = x[size_t(i * k + (r.has_perm() ? r.perm[size_t(kp)] : kp))];
      const int64_t units = k / 32;
      std::vector<BlockQ8_1> xq(size_t(m * units));
      for (int64_t i = 0; i < m; ++i) layout::quantize_q8_1_ref(xp.data() + i * k, xq.data() + i * units, k);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t row = 0; row < n; ++row) {
          double got = 0, want = 0, mag = 0;
          for (int64_t u = 0; u < units; ++u) {
            uint32_t words[8];
            std::memcpy(words, r.codes.data() + size_t(row * k + u * 32), 32);
            const int64_t g = u * 32 / r.group_size;
            const BlockQ8_1& xb = xq[size_t(i * units + u)];
            got += layout::gptq8_unit_dot_q8_1(words, fp16_to_f32(r.scales[size_t(row * r.groups + g)]),
                                               r.offs[size_t(row * r.groups + g)], &xb);
            for (int e = 0; e < 32; ++e) {
              const int64_t kp = u * 32 + e;
              const double wv = w[size_t(row * k + (r.has_perm() ? r.perm[size_t(kp)] : kp))];
              const double xv = double(fp16_to_f32(xb.d)) * xb.qs[e];
              want += wv * xv;
              mag += std::fabs(wv * xv);
            }
          }
          CHECK(std::fabs(got - want) <= 2 * std::ldexp(1.0, -24) * mag + 1e-30);
        }
    }
}

TEST_CASE("cuda plan gptq: the upload copy + repack holds exactly the checkpoint's weights") {
  for (const bool act : {false, true})
    for (const int gs : {32, 128, -1}) {
      CAPTURE(act);
      CAPTURE(gs);
      const GptqPacked p = gptq_pack(random_result(4, 40, 256, gs, act, 11 + uint32_t(gs)));
      const cpu::GptqTensors t = p.view();
      REQUIRE(cuda_gptq_format(t) == CudaWeightFormat::GptqFast);
      const CudaGptqCopy c = cuda_gptq_copy(t);
      const layout::GptqRepacked r = layout::gptq_repack(c.view());
      // Act-order with more than one group needs the permutation; contiguous groups do not.
      CHECK(r.has_perm() == (act && gs != -1 && gs < 256));
      // Both sides are exact in float (FP16 scale times an integer below 16).
      CHECK(decode_repacked(r) == gptq_dequantize(t));
      CHECK(layout::gptq_dequantize_ref(c.view()) == gptq_dequantize(t));
    }
}

TEST_CASE("cuda plan gptq: FP16 fallback rows are the exact weights rounded once") {
  // 3-bit act-order: a width with no kernel, so it takes the fallback.
  const GptqPacked p = gptq_pack(random_result(3, 32, 96, 32, true, 21));
  REQUIRE(cuda_gptq_format(p.view()) == CudaWeightFormat::Fp16);
  const std::vector<float> w = gptq_dequantize(p.view());
  for (const auto& [n0, rows] : {std::pair<int64_t, int64_t>{0, 32}, {5, 7}, {31, 1}}) {
    std::vector<uint16_t> h(size_t(rows * 96), 0xFFFF);
    cuda_gptq_dequant_rows_fp16(p.view(), n0, rows, h.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < 96; ++k) REQUIRE(h[size_t(r * 96 + k)] == f32_to_fp16(w[size_t((n0 + r) * 96 + k)]));
  }
  std::vector<uint16_t> h(96);
  CHECK_THROWS_AS(cuda_gptq_dequant_rows_fp16(p.view(), 32, 1, h.data()), Error);
}

TEST_CASE("cuda plan gptq: kernel per batch size, split-K, workspace") {
  using K = CudaMatKernel;
  for (int64_t m = 1; m <= kCudaGemvMaxM; ++m) CHECK(cuda_mat_kernel(CudaWeightFormat::GptqFast, QType::F16, m) == K::GptqGemv);
  CHECK(cuda_mat_kernel(CudaWeightFormat::GptqFast, QType::F16, 9) == K::GptqMma);
  CHECK(cuda_mat_kernel(CudaWeightFormat::GptqFast, QType::F16, 64) == K::GptqMma);
  CHECK(std::string(cuda_mat_kernel_name(K::GptqGemv)) == "gptq_gemv");
  CHECK(std::string(cuda_mat_kernel_name(K::GptqMma)) == "gptq_mma");

  // Split-K (blocks of 16 outputs; want ceil(2 SMs / blocks); cap min(16, K/32/32)).
  // H100 (132 SMs): q/o 2048x2048: 128 blocks -> want 3, cap 2 -> 2.
  CHECK(cuda_gptq_gemv_splits(2048, 2048, 132) == 2);
  // k/v 512x2048: 32 blocks -> want 9, cap 2 -> 2.
  CHECK(cuda_gptq_gemv_splits(512, 2048, 132) == 2);
  // down 2048x8192: want 3, cap 8 -> 3.
  CHECK(cuda_gptq_gemv_splits(2048, 8192, 132) == 3);
  // gate/up 8192x2048: 512 blocks -> 1; lm_head 128256x2048: 8016 blocks -> 1.
  CHECK(cuda_gptq_gemv_splits(8192, 2048, 132) == 1);
  CHECK(cuda_gptq_gemv_splits(128256, 2048, 132) == 1);
  // T4 (40 SMs): only the 512-row k/v projections split (32 blocks -> want 3, cap 2).
  CHECK(cuda_gptq_gemv_splits(2048, 2048, 40) == 1);
  CHECK(cuda_gptq_gemv_splits(512, 2048, 40) == 2);

  // Workspace (256-byte aligned pieces), batch 64, H100:
  // gate 8192x2048 without act-order: no split, no permutation -> nothing.
  CHECK(cuda_gptq_workspace_bytes(8192, 2048, false, 64, 132) == 0);
  // with act-order: GEMV permutes 8 x 2048 halves (32 KiB), MMA 64 x 2048 (256 KiB).
  CHECK(cuda_gptq_workspace_bytes(8192, 2048, true, 64, 132) == 262144);
  // down 2048x8192, split 3: 8 x 8192 halves (128 KiB) + 3 x 8 x 2048 floats (192 KiB) = 320 KiB;
  // with act-order the MMA's 64 x 8192 halves (1 MiB) dominate.
  CHECK(cuda_gptq_workspace_bytes(2048, 8192, false, 64, 132) == 327680);
  CHECK(cuda_gptq_workspace_bytes(2048, 8192, true, 64, 132) == 1048576);
  // A batch limit of 4: the GEMV needs 4 rows, the MMA never runs.
  CHECK(cuda_gptq_workspace_bytes(2048, 8192, true, 4, 132) == 65536 + 98304);
  // 8-bit: 8 rows of 2048 halves (32 KiB) + 8 x 64 Q8_1 blocks of 36 B (18 KiB), any batch >= 8.
  CHECK(cuda_gptq8_workspace_bytes(2048, 64) == 32768 + 18432);
  CHECK(cuda_gptq8_workspace_bytes(2048, 2) == 8192 + 4608);
  CHECK(cuda_mat_kernel(CudaWeightFormat::Gptq8, QType::F16, 1) == K::Gptq8Dp4a);
  CHECK(cuda_mat_kernel(CudaWeightFormat::Gptq8, QType::F16, 64) == K::Gptq8Dp4a);
  CHECK(std::string(cuda_mat_kernel_name(K::Gptq8Dp4a)) == "gptq8_dp4a");

  // The memory plan's matrix workspace covers the GPTQ workspace.
  ModelConfig c;
  c.n_vocab = 1024, c.dim = 256, c.hidden_dim = 512, c.n_layers = 2, c.n_heads = 8, c.n_kv_heads = 2;
  c.head_dim = 32, c.n_rot = 32;
  const CudaMemoryPlan base = plan_cuda_memory(c, 256, 64, 132, 0);
  const CudaMemoryPlan big = plan_cuda_memory(c, 256, 64, 132, 0, base.mat_workspace + 1000);
  CHECK(big.mat_workspace == (base.mat_workspace + 1000 + 255) / 256 * 256);
  CHECK(plan_cuda_memory(c, 256, 64, 132, 0, 1).mat_workspace == base.mat_workspace);
}

TEST_CASE("cuda plan gptq: every linear of a quantized directory is planned and repacked as the session does") {
  // What CudaSession's upload does per weight, on a directory from our quantizer: 4-bit act-order
  // layers -> GptqFast with a permutation, the 8-bit lm_head -> Gptq8; both hold exactly the
  // checkpoint's weights (WeightTensor::gptq_src, read back through formats/gptq).
  test::TempDir tmp;
  ModelConfig c = tiny_llama_config();
  c.n_vocab = 320, c.dim = 128, c.hidden_dim = 256, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2;
  c.head_dim = 32, c.n_rot = 32;
  c.rope_divisors = llama3_rope_divisors(c.n_rot, c.rope_theta, 32.f, 1.f, 4.f, 8192.f);
  auto f32 = make_synthetic_model(c, "F32", 5);
  HfExportOptions ho;
  ho.dtype = QType::F32;
  export_llama_hf(ModelTensorSource(*f32), c, synthetic_byte_tokenizer(c.n_vocab), tmp.file("hf"), ho);
  GptqQuantizeOptions qo;
  qo.solver.group_size = 64;
  qo.solver.desc_act = true;
  qo.lm_head_bits = 8;
  for (uint32_t s = 0; s < 4; ++s) {
    std::mt19937 rng(s);
    std::vector<int32_t> t(32);
    for (auto& x : t) x = int32_t(rng() % 256u);
    qo.calibration.push_back(t);
  }
  gptq_quantize_model(*Model::load(tmp.file("hf")), tmp.file("q"), qo);
  auto m = Model::load(tmp.file("q"));
  const LayerWeights& L = m->weights().layers[0];
  int perms = 0;
  for (const WeightTensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
    CAPTURE(w->name);
    REQUIRE(w->gptq != nullptr);
    REQUIRE(cuda_gptq_format(w->gptq_src) == CudaWeightFormat::GptqFast);
    const layout::GptqRepacked r = layout::gptq_repack(cuda_gptq_copy(w->gptq_src).view());
    perms += r.has_perm();
    CHECK(decode_repacked(r) == gptq_dequantize(w->gptq_src));
  }
  CHECK(perms == 7);  // desc_act on K = 128 or 256 with groups of 64: never the identity here
  const WeightTensor& head = m->weights().output;
  REQUIRE(head.gptq != nullptr);
  CHECK(cuda_gptq_format(head.gptq_src) == CudaWeightFormat::Gptq8);
  const layout::Gptq8Repacked r8 = layout::gptq8_repack(head.gptq_src);
  CHECK(r8.has_perm());  // the head is calibrated with act-order too
  CHECK(layout::gptq8_dequantize_ref(r8) == gptq_dequantize(head.gptq_src));
}
