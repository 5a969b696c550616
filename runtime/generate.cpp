#include "runtime/generate.h"

#include <chrono>

#include "core/error.h"

namespace slm {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

GenerateResult generate(Session& s, Sampler& sampler, std::span<const int32_t> prompt, const GenerateOptions& o) {
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
  r.timings.prompt_ms = ms_since(t0);
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
  r.timings.gen_ms = ms_since(t0);
  r.timings.n_gen = int64_t(r.tokens.size());
  return r;
}

}  // namespace slm
