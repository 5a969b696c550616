// CudaSession on GPTQ models against the CPU Session (F32 activations, F16 KV cache): 4-bit
// linears on the repacked kernels (gptq_gemv for decode, gptq_mma for the prefill), act-order
// (permuted activations), a 4-bit lm_head on the same kernels and an 8-bit lm_head on the 8-bit
// dp4a GEMV (gptq8_dp4a, every batch size); the models are written by our own quantizer from a
// synthetic float model. Skips without a device.
//
// Bounds (relative L2 over the logits; u16 = 2^-11; derivation of the activation part in
// cuda_session_test.cpp): 11 L + 2 FP16 activation roundings, plus per matrix product
//   * FP16 weights: the CPU reads the same FP16 values: 0;
//   * weights dequantized in FP16 (gptq_mma, gptq_gemv): scale·(q − z) rounded once: u16;
//   * the 8-bit head (gptq8_dp4a) keeps exact weights but quantizes its input to Q8_1: at most
//     1.29 % of each 32-block's rms (cuda_session_test.cpp), in prefill and decode alike;
//   * gptq_gemv also forms 8-term partial dot products in half2 arithmetic (a multiply and three
//     FMAs per half lane, cuda_linear_test.cpp): 4 roundings, each relative to the partial sum.
//     Over the ~K/4 independent partials of an output these errors add in quadrature to about
//     1.2 u16 of the output's L2 norm for inputs without systematic cancellation; we allow 4 u16.
// With 7 L + 1 matrix products (the lm_head counted as quantized; an FP16 lm_head is below that):
//   prefill (gptq_mma):  (11 L + 2) u16 + (7 L + 1) u16
//   decode  (gptq_gemv): (11 L + 2) u16 + 5 (7 L + 1) u16;
// both + 1.29 % with the 8-bit head.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/cuda/common.cuh"
#include "runtime/cuda_session.h"
#include "runtime/gguf_export.h"
#include "runtime/gptq_quantize.h"
#include "runtime/hf_export.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

constexpr double kU16 = 1.0 / 2048.0;

std::vector<int32_t> random_tokens(int n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint32_t(vocab));
  return t;
}

// Dimensions the repacked kernels accept (K % 32, N % 8, group 64 divides every K) and small
// enough for a quick test.
ModelConfig gptq_test_config() {
  ModelConfig c = tiny_llama_config();
  c.n_vocab = 512;
  c.dim = 256;
  c.hidden_dim = 512;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.n_rot = 64;
  return c;
}

}  // namespace

TEST_CASE("cuda session runs GPTQ models like the CPU session (gemv, mma, act-order, lm_head)") {
  if (::slm::cuda::device_count_or_zero() == 0) {
    MESSAGE("SKIP: no CUDA device (cudaGetDeviceCount failed or returned 0)");
    return;
  }
  test::TempDir tmp;
  const ModelConfig c = gptq_test_config();
  auto f32 = make_synthetic_model(c, "F32", 7);
  HfExportOptions ho;
  ho.dtype = QType::F32;
  export_llama_hf(ModelTensorSource(*f32), c, synthetic_byte_tokenizer(c.n_vocab), tmp.file("hf"), ho);
  auto hf = Model::load(tmp.file("hf"));

  struct Variant {
    const char* what;
    bool act_order;
    int lm_head_bits;
    const char* q_kernel_m1;  // kernel of a layer linear at M = 1
    const char* head_m1;      // prefix of the lm_head's kernel name at M = 1
  };
  const Variant variants[] = {
      {"4-bit g64, FP16 tied head", false, 16, "gptq_gemv", "fp16_cublas"},
      {"4-bit g64 act-order, 4-bit head", true, 4, "gptq_gemv", "gptq_gemv"},
      {"4-bit g64 act-order, 8-bit head", true, 8, "gptq_gemv", "gptq8_dp4a"},
  };
  for (const Variant& v : variants) {
    CAPTURE(v.what);
    const std::string dir = tmp.file(fmt::format("q{}", &v - variants));
    GptqQuantizeOptions qo;
    qo.solver.group_size = 64;
    qo.solver.desc_act = v.act_order;
    qo.lm_head_bits = v.lm_head_bits;
    for (uint32_t s = 0; s < 8; ++s) qo.calibration.push_back(random_tokens(32, 256, 100 + s));
    gptq_quantize_model(*hf, dir, qo);
    auto m = Model::load(dir);

    SessionOptions so;
    so.n_ctx = 64;
    so.max_batch = 64;
    so.precision = cpu::ActPrecision::F32;
    so.kv_type = cpu::KvType::F16;
    Session cpu(*m, so);
    CudaSessionOptions co;
    co.n_ctx = 64;
    co.max_batch = 64;
    CudaSession gpu(*m, co);
    CHECK(gpu.kernel_for("model.layers.0.self_attn.q_proj", 1) == v.q_kernel_m1);
    CHECK(gpu.kernel_for("model.layers.1.mlp.down_proj", 12) == "gptq_mma");
    const std::string head = v.lm_head_bits == 16 ? "model.embed_tokens" : "lm_head";
    CHECK(gpu.kernel_for(head, 1).rfind(v.head_m1, 0) == 0);

    const double L = double(c.n_layers);
    const double q8_head = v.lm_head_bits == 8 ? 0.0129 : 0.0;
    const double prefill_bound = (11 * L + 2) * kU16 + (7 * L + 1) * kU16 + q8_head;
    const double decode_bound = (11 * L + 2) * kU16 + 5 * (7 * L + 1) * kU16 + q8_head;
    const int64_t V = c.n_vocab;
    const auto prompt = random_tokens(12, V, 11);
    cpu.eval(prompt, true);
    gpu.eval(prompt, true);
    const double e0 = test::rel_l2(gpu.all_logits().data(), cpu.all_logits().data(), cpu.all_logits().size());
    MESSAGE(v.what, ": prefill rel L2 ", e0, " (bound ", prefill_bound, ")");
    CHECK(e0 <= prefill_bound);
    for (int step = 0; step < 4; ++step) {
      const int32_t next = argmax(std::span<const float>(cpu.last_logits(), size_t(V)));
      cpu.eval(std::span<const int32_t>(&next, 1));
      gpu.eval(std::span<const int32_t>(&next, 1));
      const double e = test::rel_l2(gpu.last_logits(), cpu.last_logits(), size_t(V));
      MESSAGE(v.what, ": decode step ", step, " rel L2 ", e, " (bound ", decode_bound, ")");
      CHECK(e <= decode_bound);
    }
    INFO("graph error: " << gpu.graph_error());
    CHECK(gpu.graph_captured());
    const CudaMemoryReport r = gpu.memory_report();
    CHECK(r.weights > 0);
  }
}
