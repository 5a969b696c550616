// Generation loop: prefill the prompt, then sample and decode one token at a time until n_predict
// tokens, an end-of-generation token, or the end of the context. Timings for the report.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace slm {

namespace detail {
inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace detail

struct Timings {
  double prompt_ms = 0, gen_ms = 0;
  int64_t n_prompt = 0, n_gen = 0;
  double prompt_tps() const { return prompt_ms > 0 ? 1000.0 * double(n_prompt) / prompt_ms : 0; }
  // Decode rate: the first generated token comes from the prefill logits, so decode steps = n_gen - 1.
  double gen_tps() const { return gen_ms > 0 ? 1000.0 * double(n_gen > 1 ? n_gen - 1 : 0) / gen_ms : 0; }
};

struct GenerateOptions {
  int64_t n_predict = 64;     // < 0: until EOG or context end
  bool stop_at_eog = true;
  // The caller already evaluated `prompt` (e.g. to capture its logits): start sampling from the
  // session's current logits.
  bool prompt_evaluated = false;
  // Called for every generated token (before it is decoded); return false to stop.
  std::function<bool(int32_t)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (the EOG token, if hit, is included)
  Timings timings;
  bool hit_context_end = false;
};

// Evaluates `prompt` (appended to what the session already holds) and generates. `S` is any
// session type with eval/last_logits/n_past/n_ctx/n_vocab/model (Session, CudaSession).
template <class S>
GenerateResult generate(S& s, Sampler& sampler, std::span<const int32_t> prompt, const GenerateOptions& o) {
  GenerateResult r;
  SLM_CHECK(!prompt.empty(), "the prompt is empty (nothing to condition on)");
  SLM_CHECK(o.prompt_evaluated || s.n_past() + int64_t(prompt.size()) <= s.n_ctx(),
            "context overflow: the prompt has {} tokens but the context holds {} (raise -c)",
            s.n_past() + int64_t(prompt.size()), s.n_ctx());
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  const int64_t budget = o.n_predict < 0 ? s.n_ctx() : o.n_predict;
  history.reserve(history.size() + size_t(std::max<int64_t>(budget, 0)) + 1);
  r.tokens.reserve(size_t(std::max<int64_t>(budget, 0)));

  auto t0 = std::chrono::steady_clock::now();
  if (!o.prompt_evaluated) s.eval(prompt);
  r.timings.prompt_ms = detail::ms_since(t0);
  r.timings.n_prompt = int64_t(prompt.size());
  const Tokenizer& tok = s.model().tokenizer();

  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < budget; ++i) {
    const int32_t next = sampler.sample(std::span<const float>(s.last_logits(), size_t(s.n_vocab())), history);
    r.tokens.push_back(next);
    history.push_back(next);
    if (o.on_token && !o.on_token(next)) break;
    if (o.stop_at_eog && tok.is_eog(next)) break;
    if (i + 1 == budget) break;
    if (s.n_past() >= s.n_ctx()) {
      r.hit_context_end = true;
      break;
    }
    s.eval(std::span<const int32_t>(&next, 1));
  }
  r.timings.gen_ms = detail::ms_since(t0);
  r.timings.n_gen = int64_t(r.tokens.size());
  return r;
}

}  // namespace slm
