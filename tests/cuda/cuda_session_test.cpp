// CudaSession against the CPU Session (F32 activations, F16 KV cache, the same weights) on the
// llama.cpp fixture files and on synthetic models; graph vs eager decoding; chunked prefill;
// reset; error paths. Skips without a device (and the fixture part without ../shared/fixtures).
//
// Bounds (relative L2 over the logits; u16 = 2^-11, the FP16 unit roundoff). The GPU rounds to
// FP16 every activation that feeds a matrix product or leaves a matrix product: per layer xb, q,
// k, v, attention output, o-projection, xb, gate, up, swiglu, down = 11 roundings, each at most
// u16 relative per element and so at most u16 in relative L2; plus the final norm and the
// logits = 2. Quantized weights on the dequantize+cuBLAS path (prefill) are rounded to FP16 as
// well (7 matrices per layer + lm_head). RMSNorm renormalises the residual input of every block,
// so to first order a relative perturbation passes a layer with gain ~1 and the errors add:
//   F16 weights:        (11 L + 2) u16          quantized weights: (18 L + 3) u16.
// Decode steps of Q4_0/Q8_0/Q4_K/Q6_K weights (M = 1) use the dp4a kernel with Q8_1 activations: a
// 32-element block rounded with step amax/127 has rms error amax/(127 sqrt(12)), at most
// sqrt(32)/(127 sqrt(12)) = 1.29 % of the block's rms (all energy in one element). The 7 L + 1
// quantizations round different vectors, so their errors add in quadrature:
//   dp4a decode:        (18 L + 3) u16 + sqrt(7 L + 1) * 1.29 %.
// The CPU reference itself is FP32 with an F16 cache, like the GPU's cache.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "runtime/cuda_session.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"

using namespace slm;

#define SLM_REQUIRE_CUDA_SESSION()                                             \
  if (::slm::cuda::device_count_or_zero() == 0) {                              \
    MESSAGE("SKIP: no CUDA device (cudaGetDeviceCount failed or returned 0)"); \
    return;                                                                    \
  }

namespace {

constexpr double kU16 = 1.0 / 2048.0;
constexpr double kDp4aBlock = 0.0129;  // sqrt(32) / (127 sqrt(12))

struct Bounds {
  double prefill, decode;
};
Bounds bounds_for(int64_t layers, bool quantized, bool dp4a) {
  const double L = double(layers);
  const double fp16 = quantized ? (18 * L + 3) * kU16 : (11 * L + 2) * kU16;
  return {fp16, dp4a ? fp16 + std::sqrt(7 * L + 1) * kDp4aBlock : fp16};
}

std::vector<int32_t> tokens(int n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> U(0, vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(U(rng));
  return t;
}

void compare_with_cpu(const Model& m, Bounds b, const char* what) {
  SessionOptions so;
  so.n_ctx = 64;
  so.max_batch = 64;
  so.precision = cpu::ActPrecision::F32;
  so.kv_type = cpu::KvType::F16;
  Session cpu(m, so);
  CudaSessionOptions co;
  co.n_ctx = 64;
  co.max_batch = 64;
  CudaSession gpu(m, co);
  const int64_t V = m.config().n_vocab;
  const auto prompt = tokens(12, V, 11);
  cpu.eval(prompt, true);
  gpu.eval(prompt, true);
  const double e0 = test::rel_l2(gpu.all_logits().data(), cpu.all_logits().data(), cpu.all_logits().size());
  INFO(what << ": prefill rel L2 " << e0 << " (bound " << b.prefill << ")");
  CHECK(e0 <= b.prefill);
  for (int step = 0; step < 4; ++step) {
    const int32_t next = argmax(std::span<const float>(cpu.last_logits(), size_t(V)));
    cpu.eval(std::span<const int32_t>(&next, 1));
    gpu.eval(std::span<const int32_t>(&next, 1));
    const double e = test::rel_l2(gpu.last_logits(), cpu.last_logits(), size_t(V));
    INFO(what << ": decode step " << step << " rel L2 " << e << " (bound " << b.decode << ")");
    CHECK(e <= b.decode);
    // The device argmax reads the very logits that were copied back.
    CHECK(gpu.argmax_last() == argmax(std::span<const float>(gpu.last_logits(), size_t(V))));
    // So does the device sampler: Sampler's token for the same logits and uniform draw.
    const SamplerParams sp{.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.f,
                           .seed = uint64_t(100 + step)};
    Sampler host(sp, V);
    std::mt19937_64 gen(sp.seed);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(gen);
    CHECK(gpu.sample_last(sp, u) == host.sample(std::span<const float>(gpu.last_logits(), size_t(V)), {}));
  }
  INFO("graph error: " << gpu.graph_error());
  CHECK(gpu.graph_captured());
  const CudaMemoryReport r = gpu.memory_report();
  CHECK(r.weights > 0);
  CHECK(r.kv_cache == size_t(2) * size_t(m.config().n_layers) * 64 * size_t(m.config().kv_dim()) * 2);
  CHECK(r.device_used_peak >= r.weights + r.kv_cache);
}

}  // namespace

TEST_CASE("cuda session matches the CPU session on the tiny-a fixtures") {
  SLM_REQUIRE_CUDA_SESSION();
  SLM_REQUIRE_FIXTURES(dir);
  const struct { const char* file; bool quantized, dp4a; } cases[] = {
      {"tiny-a-F16.gguf", false, false},
      {"tiny-a-Q4_0.gguf", true, true},
      {"tiny-a-Q8_0.gguf", true, true},
      {"tiny-a-Q4_K_M.gguf", true, true},
  };
  for (const auto& c : cases) {
    const std::string path = *dir_opt + "/tiny-a/" + c.file;
    if (!std::filesystem::exists(path)) {
      MESSAGE("SKIP: " << path << " is absent");
      continue;
    }
    auto m = Model::load(path);
    compare_with_cpu(*m, bounds_for(m->config().n_layers, c.quantized, c.dp4a), c.file);
  }
}

TEST_CASE("cuda session matches the CPU session on synthetic models") {
  SLM_REQUIRE_CUDA_SESSION();
  for (const char* mix : {"F16", "Q4_0", "Q4_K_M"}) {
    auto m = make_synthetic_model(tiny_llama_config(), mix, 3);
    const bool q = std::string(mix) != "F16";
    compare_with_cpu(*m, bounds_for(m->config().n_layers, q, q), mix);
  }
}

TEST_CASE("cuda session: graph and eager decoding agree; chunked prefill; reset; errors") {
  SLM_REQUIRE_CUDA_SESSION();
  auto m = make_synthetic_model(tiny_llama_config(), "Q4_0", 5);
  const int64_t V = m->config().n_vocab;
  CudaSessionOptions co;
  co.n_ctx = 40;
  CudaSession graph(*m, co);
  co.use_graph = false;
  CudaSession eager(*m, co);
  const auto prompt = tokens(9, V, 3);
  graph.eval(prompt);
  eager.eval(prompt);
  for (int step = 0; step < 3; ++step) {
    const int32_t next = graph.argmax_last();
    graph.eval(std::span<const int32_t>(&next, 1));
    eager.eval(std::span<const int32_t>(&next, 1));
    // Same kernels with the same launch parameters (eager single tokens use the graph's split
    // count); cuBLAS may pick another algorithm under capture, which only reorders FP32 sums:
    // far below one FP16 rounding of the logits.
    CHECK(test::rel_l2(graph.last_logits(), eager.last_logits(), size_t(V)) <= kU16);
  }
  CHECK(graph.graph_captured());
  CHECK(!eager.graph_captured());

  // Reset and replay: deterministic kernels (no atomics) and cuBLAS's run-to-run
  // reproducibility on one device give bit-identical logits.
  std::vector<float> before(graph.last_logits(), graph.last_logits() + V);
  const std::vector<int32_t> all(prompt.begin(), prompt.end());
  graph.reset();
  CHECK(graph.n_past() == 0);
  graph.eval(all);
  std::vector<float> again(graph.last_logits(), graph.last_logits() + V);
  eager.reset();
  eager.eval(all);
  CHECK(test::max_abs_diff(again.data(), eager.last_logits(), size_t(V)) == 0.0);

  // Chunked prefill (batches of 4: dp4a for every chunk) vs one batch of 9 (dequant + cuBLAS):
  // the dp4a decode bound applies.
  CudaSessionOptions small;
  small.n_ctx = 40;
  small.max_batch = 4;
  CudaSession chunked(*m, small);
  chunked.eval(all, true);
  CudaSession whole(*m, CudaSessionOptions{.n_ctx = 40});
  whole.eval(all, true);
  REQUIRE(chunked.all_logits().size() == size_t(9 * V));
  CHECK(test::rel_l2(chunked.all_logits().data(), whole.all_logits().data(), chunked.all_logits().size()) <=
        bounds_for(m->config().n_layers, true, true).decode);
  CHECK(chunked.n_past() == 9);

  const int32_t bad = int32_t(V);
  CHECK_THROWS_AS(chunked.eval(std::span<const int32_t>(&bad, 1)), Error);
  const auto too_many = tokens(32, V, 4);
  CHECK_THROWS_AS(chunked.eval(too_many), Error);
  CHECK(chunked.n_past() == 9);  // a rejected call leaves the cache alone
}
