// Generation loop: prefill the prompt, then sample and decode one token at a time until n_predict
// tokens, an end-of-generation token, or the end of the context. Timings for the report.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"

namespace slm {

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

// Evaluates `prompt` (appended to what the session already holds) and generates.
GenerateResult generate(Session& s, Sampler& sampler, std::span<const int32_t> prompt, const GenerateOptions& o);

}  // namespace slm
