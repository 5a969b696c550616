// CPU emulation of the device top-k sampler (kernels/cuda/ops.cu: sample_top_k) against
// slm::Sampler. The two passes are replayed with the kernels' own SLM_HD pieces
// (kernels/layout/sample_layout.h): block slicing, the append-above-threshold rounds and their
// flush rule, the bitonic network step by step for every thread (the pairs of one step are
// disjoint, so a loop over threads is the parallel step), the appends in a random order (the
// kernel's atomicAdd order is arbitrary), then the softmax / top-p / min-p / draw steps. The
// candidates must be Sampler's sorted top k exactly, and the token the one Sampler draws with
// the same uniform number. Runs in CI without a GPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/layout/sample_layout.h"
#include "runtime/sampler.h"

using namespace slm;
using namespace slm::layout;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// One block's shared candidate buffer.
struct EmuBlock {
  std::vector<float> v = std::vector<float>(kSampleBuf);
  std::vector<int32_t> id = std::vector<int32_t>(kSampleBuf);
  int fill = 0;
};

void emu_pad(EmuBlock& s, int from) {
  for (int i = from; i < kSampleBuf; ++i) {
    s.v[size_t(i)] = -kInf;
    s.id[size_t(i)] = kSamplePadId;
  }
}

// ops.cu topk_flush.
void emu_flush(EmuBlock& s, int k) {
  const int span = sample_sort_span(k + s.fill);
  for (int size = 2; size <= span; size <<= 1)
    for (int j = size >> 1; j > 0; j >>= 1)
      for (int t = 0; t < span / 2; ++t) bitonic_step(s.v.data(), s.id.data(), t, size, j);
  emu_pad(s, k);
  s.fill = 0;
}

// ops.cu block_topk; `order` shuffles each round's appends.
template <class Load>
void emu_block_topk(EmuBlock& s, int64_t count, int k, Load load, std::mt19937& order) {
  emu_pad(s, 0);
  s.fill = 0;
  std::vector<std::pair<float, int32_t>> round;
  for (int64_t base = 0; base < count; base += kSampleThreads) {
    if (sample_flush_before_round(s.fill, k)) emu_flush(s, k);
    const float tv = s.v[size_t(k - 1)];
    const int32_t ti = s.id[size_t(k - 1)];
    round.clear();
    for (int t = 0; t < kSampleThreads; ++t) {
      const int64_t i = base + t;
      if (i >= count) break;
      float x;
      int32_t xi;
      load(i, x, xi);
      if (cand_before(x, xi, tv, ti)) round.emplace_back(x, xi);
    }
    std::shuffle(round.begin(), round.end(), order);
    for (const auto& [x, xi] : round) {
      const int slot = s.fill++;
      if (k + slot >= kSampleBuf) FAIL("append past the candidate buffer: k " << k << " slot " << slot);
      s.v[size_t(k + slot)] = x;
      s.id[size_t(k + slot)] = xi;
    }
  }
  if (s.fill > 0) emu_flush(s, k);
}

// Both passes: the global top min(k, n), sorted, in out.v/out.id[0, m).
void emu_top_k(const std::vector<float>& x, int k, int blocks, EmuBlock& out, std::mt19937& order) {
  const int64_t n = int64_t(x.size());
  std::vector<float> cv(size_t(blocks) * size_t(k));
  std::vector<int32_t> ci(cv.size());
  EmuBlock s;
  for (int b = 0; b < blocks; ++b) {
    int64_t b0, b1;
    sample_slice(n, blocks, b, b0, b1);
    emu_block_topk(s, b1 - b0, k, [&](int64_t i, float& v, int32_t& id) {
      v = x[size_t(b0 + i)];
      id = int32_t(b0 + i);
    }, order);
    for (int i = 0; i < k; ++i) {
      cv[size_t(b) * size_t(k) + size_t(i)] = s.v[size_t(i)];
      ci[size_t(b) * size_t(k) + size_t(i)] = s.id[size_t(i)];
    }
  }
  emu_block_topk(out, int64_t(blocks) * k, k, [&](int64_t i, float& v, int32_t& id) {
    v = cv[size_t(i)];
    id = ci[size_t(i)];
  }, order);
}

// Logits with the awkward cases: plain Gaussian, heavy ties, -inf entries, all -inf, +inf
// entries, signed zeros among ties, ascending order (every round of the first pass appends).
std::vector<float> make_logits(int64_t n, int kind, std::mt19937& rng) {
  std::vector<float> x(static_cast<size_t>(n));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> level(0, 4);
  std::uniform_real_distribution<float> uf(0.f, 1.f);
  const float sigma = std::array<float, 4>{0.3f, 1.f, 3.f, 12.f}[size_t(rng() % 4)];
  for (float& v : x) {
    switch (kind) {
      case 0: v = sigma * nd(rng); break;
      case 1: v = float(level(rng)) * 0.5f; break;
      case 2: v = uf(rng) < 0.2f ? -kInf : sigma * nd(rng); break;
      case 3: v = -kInf; break;
      case 4: v = uf(rng) < 0.001f ? kInf : sigma * nd(rng); break;
      case 5: v = std::array<float, 4>{-0.f, 0.f, 1.f, -1.f}[size_t(level(rng) % 4)]; break;
      default: v = sigma * nd(rng); break;
    }
  }
  if (kind == 6) std::sort(x.begin(), x.end());
  if (kind == 7 && n > 3) {  // a few large ties far apart (different first-pass blocks)
    const float top = 40.f;
    x[0] = top;
    x[size_t(n - 1)] = top;
    x[size_t(n / 2)] = top;
  }
  return x;
}

template <class T>
T pick(std::mt19937& rng, std::initializer_list<T> v) {
  return *(v.begin() + rng() % v.size());
}

}  // namespace

TEST_CASE("device top-k sampler (CPU emulation) picks Sampler's candidates and token") {
  std::mt19937 rng(20261206);
  std::mt19937 order(99);
  int cases = 0, draws = 0, token_mismatch = 0, cand_mismatch = 0;
  int64_t exp_terms = 0, exp_differ = 0;  // std::exp(float) vs float(exp(double)): the device's exp
  std::vector<float> p(kSampleMaxTopK);
  const int kCases = 3000;
  for (int c = 0; c < kCases + 8; ++c) {
    // The last 8 cases: the Llama 3 vocabulary at the T4 and H100 grid sizes.
    const bool big = c >= kCases;
    const int64_t n = big ? 128256
                          : (rng() % 3 == 0 ? pick<int64_t>(rng, {1, 2, 7, 127, 128, 129, 511, 512, 513, 1024, 4097})
                                            : int64_t(1 + rng() % 5000));
    const int kind = int(rng() % 8);
    const std::vector<float> x = make_logits(n, kind, rng);
    SampleConfig sc;
    sc.top_k = rng() % 2 ? pick(rng, {1, 2, 3, 40, 64, 127, 128}) : int32_t(1 + rng() % kSampleMaxTopK);
    sc.temperature = pick(rng, {1e-3f, 0.1f, 0.5f, 0.8f, 1.f, 1.3f, 2.f, 10.f, 1e4f});
    sc.top_p = pick(rng, {1.f, 0.95f, 0.9f, 0.5f, 0.1f, 1e-6f, 1.5f, 0.999999f});
    sc.min_p = pick(rng, {0.f, 0.01f, 0.05f, 0.2f, 0.5f, 1.f});
    const int blocks = big ? pick(rng, {40, 64}) : (rng() % 2 ? sample_blocks(n, 40) : int(1 + rng() % kSampleMaxBlocks));
    const int m = int(std::min<int64_t>(sc.top_k, n));

    EmuBlock top;
    emu_top_k(x, sc.top_k, blocks, top, order);
    // Sampler's candidate order (runtime/sampler.cpp by_logit, spelled out here rather than
    // through cand_before so that a wrong cand_before shows up) on the same logits.
    std::vector<int32_t> ref(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ref[size_t(i)] = int32_t(i);
    std::partial_sort(ref.begin(), ref.begin() + m, ref.end(), [&](int32_t a, int32_t b) {
      const float la = x[size_t(a)], lb = x[size_t(b)];
      return la > lb || (la == lb && a < b);
    });
    bool same = true;
    for (int i = 0; i < m; ++i) same = same && top.id[size_t(i)] == ref[size_t(i)];
    if (!same) {
      ++cand_mismatch;
      INFO("case " << c << ": n " << n << " kind " << kind << " k " << sc.top_k << " blocks " << blocks);
      CHECK(same);
    }

    SamplerParams sp{.temperature = sc.temperature, .top_k = sc.top_k, .top_p = sc.top_p, .min_p = sc.min_p,
                     .repeat_penalty = 1.f, .repeat_last_n = 64, .seed = rng()};
    Sampler sampler(sp, n);
    std::mt19937_64 gen(sp.seed);  // the generator Sampler holds, replayed: its draws are the u's
    std::uniform_real_distribution<double> U(0.0, 1.0);
    for (int d = 0; d < 8; ++d) {
      const int32_t want = sampler.sample(x, {});
      const double u = U(gen);
      const int32_t got = sample_sorted(top.v.data(), top.id.data(), p.data(), m, sc, u);
      ++draws;
      if (got != want) {
        ++token_mismatch;
        INFO("case " << c << " draw " << d << ": n " << n << " kind " << kind << " k " << sc.top_k << " temp "
                     << sc.temperature << " top_p " << sc.top_p << " min_p " << sc.min_p << " u " << u);
        CHECK(got == want);
      }
    }
    for (int i = 0; i < m; ++i) {
      const float a = (top.v[size_t(i)] - top.v[0]) / sc.temperature;
      const float host = std::exp(a), dev = float(std::exp(double(a)));
      ++exp_terms;
      exp_differ += !(host == dev || (std::isnan(host) && std::isnan(dev)));
    }
    ++cases;
  }
  MESSAGE(cases << " cases, " << draws << " draws: " << cand_mismatch << " candidate-list and " << token_mismatch
                << " token mismatches; exp terms where expf and the rounded double exp differ: " << exp_differ
                << " of " << exp_terms);
  CHECK(cand_mismatch == 0);
  CHECK(token_mismatch == 0);
}

TEST_CASE("device sampler pieces: grid, slices, flush rule") {
  CHECK(sample_blocks(128256, 40) == 40);   // T4
  CHECK(sample_blocks(128256, 132) == kSampleMaxBlocks);  // H100
  CHECK(sample_blocks(100, 40) == 1);
  CHECK(sample_blocks(32000, 40) == 32);
  // Slices cover [0, n) in order without overlap, empty ones at the end.
  for (int64_t n : {1, 5, 1000, 128256})
    for (int blocks : {1, 3, 40, 64}) {
      int64_t next = 0;
      for (int b = 0; b < blocks; ++b) {
        int64_t b0, b1;
        sample_slice(n, blocks, b, b0, b1);
        CHECK(b0 == next);
        CHECK(b1 >= b0);
        next = b1;
      }
      CHECK(next == n);
    }
  // A round of appends always fits after the flush decision, for every k.
  bool fits = true;
  for (int k = 1; k <= kSampleMaxTopK; ++k)
    for (int fill = 0; fill <= kSampleBuf - k; ++fill)
      if (!sample_flush_before_round(fill, k)) fits = fits && k + fill + kSampleThreads <= kSampleBuf;
  CHECK(fits);
  CHECK(sample_sort_span(1) == 2);
  CHECK(sample_sort_span(129) == 256);
  CHECK(sample_sort_span(1024) == 1024);
  static_assert(kSampleMaxTopK <= kSampleThreads, "the sampling block has one thread per candidate");
}
