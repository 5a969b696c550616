// Sampling the next token from logits: greedy, or repetition penalty -> top-k -> top-p -> min-p
// -> temperature -> draw (llama.cpp's default order). Reproducible for a given seed. All buffers
// are allocated at construction; sample() does not allocate.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace slm {

struct SamplerParams {
  float temperature = 0.8f;   // <= 0: greedy (argmax)
  int32_t top_k = 40;         // <= 0: disabled
  float top_p = 0.95f;        // >= 1: disabled
  float min_p = 0.05f;        // <= 0: disabled
  float repeat_penalty = 1.0f;  // 1: disabled
  int32_t repeat_last_n = 64;   // tokens of history the penalty looks at
  uint64_t seed = 0xC0FFEE;
};

// Throws slm::Error for parameters no sampler accepts (non-finite temperature, top-p <= 0,
// min-p outside [0, 1], bad repetition settings). Sampler's constructor and the CUDA session's
// device sampler both call it.
void validate(const SamplerParams& p);

class Sampler {
 public:
  Sampler(const SamplerParams& p, int64_t n_vocab);
  // `history`: previous tokens (prompt + generated) for the repetition penalty.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  const SamplerParams& params() const { return p_; }

 private:
  struct Cand {
    float logit;
    int32_t id;
  };
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<Cand> cand_;
  std::vector<float> logits_;
  std::vector<float> probs_;
};

// Index of the largest value (first one on ties).
int32_t argmax(std::span<const float> v);

}  // namespace slm
