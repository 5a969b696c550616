#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace slm {

int32_t argmax(std::span<const float> v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[size_t(best)]) best = int32_t(i);
  return best;
}

void validate(const SamplerParams& p) {
  SLM_CHECK(std::isfinite(p.temperature), "temperature must be a finite number");
  SLM_CHECK(p.top_p > 0.f && std::isfinite(p.top_p), "top-p must be > 0 (1 or more disables it)");
  SLM_CHECK(p.min_p >= 0.f && p.min_p <= 1.f, "min-p must be in [0, 1]");
  SLM_CHECK(p.repeat_penalty > 0.f && std::isfinite(p.repeat_penalty), "repeat penalty must be > 0");
  SLM_CHECK(p.repeat_last_n >= 0, "repeat-last-n must be >= 0");
}

Sampler::Sampler(const SamplerParams& p, int64_t n_vocab) : p_(p), rng_(p.seed) {
  validate(p);
  cand_.resize(size_t(n_vocab));
  logits_.resize(size_t(n_vocab));
  probs_.resize(size_t(n_vocab));
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const size_t n = logits.size();
  SLM_ASSERT(n <= logits_.size() && n > 0);
  std::copy(logits.begin(), logits.end(), logits_.begin());

  // Repetition penalty (CTRL-style, as llama.cpp): divide positive logits, multiply negative ones,
  // once per distinct token in the recent history.
  if (p_.repeat_penalty != 1.f && p_.repeat_last_n > 0) {
    const size_t h0 = history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
    for (size_t i = h0; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || size_t(id) >= n) continue;
      bool seen = false;
      for (size_t j = h0; j < i && !seen; ++j) seen = history[j] == id;
      if (seen) continue;
      float& l = logits_[size_t(id)];
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  if (p_.temperature <= 0.f) return argmax(std::span<const float>(logits_.data(), n));

  for (size_t i = 0; i < n; ++i) cand_[i] = {logits_[i], int32_t(i)};
  size_t m = n;
  auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  if (p_.top_k > 0 && size_t(p_.top_k) < m) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.begin() + long(m), by_logit);
    m = size_t(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.begin() + long(m), by_logit);
  }
  // Softmax over the (sorted) survivors at temperature 1 for top-p / min-p, as llama.cpp does.
  auto softmax = [&](float temp) {
    const float mx = cand_[0].logit;
    double sum = 0;
    for (size_t i = 0; i < m; ++i) {
      probs_[i] = std::exp((cand_[i].logit - mx) / temp);
      sum += probs_[i];
    }
    for (size_t i = 0; i < m; ++i) probs_[i] = float(probs_[i] / sum);
  };
  softmax(1.f);
  if (p_.top_p < 1.f) {
    double cum = 0;
    size_t keep = m;
    for (size_t i = 0; i < m; ++i) {
      cum += probs_[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    m = keep;
  }
  if (p_.min_p > 0.f) {
    const float thr = probs_[0] * p_.min_p;
    size_t keep = 1;
    while (keep < m && probs_[keep] >= thr) ++keep;
    m = keep;
  }
  softmax(p_.temperature);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  const double r = U(rng_);
  double cum = 0;
  for (size_t i = 0; i < m; ++i) {
    cum += probs_[i];
    if (r < cum) return cand_[i].id;
  }
  return cand_[m - 1].id;
}

}  // namespace slm
