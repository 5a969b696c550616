// Sampler behaviour: greedy, reproducibility under a seed, each filter, the penalty, and that
// temperature-1 sampling follows the softmax distribution.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "runtime/sampler.h"

using namespace slm;

TEST_CASE("greedy picks the argmax (first on ties) and ignores the seed") {
  std::vector<float> l = {0.1f, 2.0f, -1.f, 2.0f, 1.9f};
  SamplerParams p;
  p.temperature = 0;
  for (uint64_t seed : {1ull, 2ull}) {
    p.seed = seed;
    Sampler s(p, 5);
    CHECK(s.sample(l, {}) == 1);
  }
}

TEST_CASE("same seed, same sequence; another seed, another sequence") {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(float(i)) * 2;
  SamplerParams p{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.f};
  auto draw = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p, 50);
    std::vector<int32_t> out;
    for (int i = 0; i < 40; ++i) out.push_back(s.sample(l, {}));
    return out;
  };
  CHECK(draw(7) == draw(7));
  CHECK(draw(7) != draw(8));
}

TEST_CASE("top-k 1 and a tiny top-p both reduce to greedy; min-p keeps only close candidates") {
  std::vector<float> l = {1.f, 3.f, 2.9f, -2.f};
  Sampler k1(SamplerParams{.temperature = 5.f, .top_k = 1, .top_p = 1.f, .min_p = 0.f}, 4);
  Sampler p0(SamplerParams{.temperature = 5.f, .top_k = 0, .top_p = 1e-6f, .min_p = 0.f}, 4);
  // min-p 0.5: p(2.9)/p(3) = e^-0.1 > 0.5 stays, p(1)/p(3) = e^-2 < 0.5 goes.
  Sampler mp(SamplerParams{.temperature = 1.f, .top_k = 0, .top_p = 1.f, .min_p = 0.5f}, 4);
  for (int i = 0; i < 200; ++i) {
    CHECK(k1.sample(l, {}) == 1);
    CHECK(p0.sample(l, {}) == 1);
    int32_t t = mp.sample(l, {});
    CHECK((t == 1 || t == 2));
  }
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits of recent tokens") {
  std::vector<float> l = {2.0f, 1.5f, -1.f};
  std::vector<int32_t> hist = {0, 0};  // token 0 seen (counted once)
  Sampler s(SamplerParams{.temperature = 0.f, .repeat_penalty = 2.0f, .repeat_last_n = 64}, 3);
  CHECK(s.sample(l, hist) == 1);  // 2.0 / 2 = 1.0 < 1.5
  Sampler off(SamplerParams{.temperature = 0.f, .repeat_penalty = 2.0f, .repeat_last_n = 0}, 3);
  CHECK(off.sample(l, hist) == 0);
}

TEST_CASE("temperature-1 sampling follows softmax frequencies") {
  std::vector<float> l = {0.f, 1.f, 2.f};
  Sampler s(SamplerParams{.temperature = 1.f, .top_k = 0, .top_p = 1.f, .min_p = 0.f, .seed = 99}, 3);
  const int n = 20000;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) ++counts[s.sample(l, {})];
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(double(i)) / z;
    // 5 standard deviations of a binomial count: fails by chance with probability < 1e-6.
    CHECK(std::abs(counts[i] - n * p) < 5 * std::sqrt(n * p * (1 - p)));
  }
}
