// End-to-end checks against llama.cpp's fixtures (../shared/fixtures, see its README): for every
// GGUF file and prompt, tokenization, last-position logits against the reference that matches
// our arithmetic, teacher-forced argmax agreement, and free-running greedy agreement.
//
// Two arithmetic modes, two references:
//  * ActPrecision::F32 (activations stay float32) vs the float64 "exact" reference. Bound: relative
//    L2 <= 1e-3 (the bound; float32 accumulation over k <= 768 terms gives ~1e-6 per dot
//    product, and these random models amplify it by far less than 1000x: llama.cpp's own F32
//    run sits at 1.5e-6).
//  * ActPrecision::LlamaCpp (activations quantized to 8-bit blocks exactly as llama.cpp's CPU
//    backend does) vs llama.cpp's logits. Same quantizers, so only float summation order differs;
//    bounds kLlamaCppRelL2Max / kLlamaCppRelL2Typical below, explained there.
// Teacher-forced argmax: ||err||_inf <= ||err||_2 <= bound * ||logits||_2, so whenever the
// reference's top-1/top-2 margin exceeds 2 * bound * ||logits||_2 our argmax must agree. The
// reference logits exist only at the last prompt position; elsewhere we use our own row's norm
// times 1.25 (row norms agree to within the bound itself, so 1.25 is a safe over-estimate).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace slm;

namespace {

constexpr double kExactRelL2 = 1e-3;
// llama.cpp mirror: the same 8-bit activation codes and integer dot products as llama.cpp, so
// what remains is float32 summation order (~1e-6 relative per dot product). That holds until an
// activation lands within rounding distance of a boundary of the 8-bit quantizer: then one code
// differs by 1 (one input off by d = amax/127), and these chaotic random models amplify that to
// ~1e-2 at the logits. Our attention and SwiGLU round in a different order than llama.cpp's
// SIMD code, so such flips happen in a minority of prompts. So: every prompt must be within
// kLlamaCppRelL2Max (half the 4-9% that separates llama.cpp from the exact model, which is the
// size of a real arithmetic difference such as unquantized activations), and the median over all
// prompts must show no flip (<= kLlamaCppRelL2Typical): a systematic mirror bug moves every prompt.
constexpr double kLlamaCppRelL2Max = 5e-2;
constexpr double kLlamaCppRelL2Typical = 1e-4;

struct PromptRef {
  std::string prompt;
  std::vector<int32_t> prompt_tokens, greedy;
  std::vector<double> greedy_margins;
  std::vector<int32_t> exact_argmax;
  std::vector<double> exact_margins;
  std::vector<float> llama_logits, exact_logits;
};

PromptRef read_ref(const std::string& stem) {
  PromptRef r;
  auto j = nlohmann::json::parse(test::read_text_file(stem + ".json"));
  r.prompt = j["prompt"];
  r.prompt_tokens = j["prompt_tokens"].get<std::vector<int32_t>>();
  r.greedy = j["greedy_tokens"].get<std::vector<int32_t>>();
  r.greedy_margins = j["greedy_margins"].get<std::vector<double>>();
  auto e = nlohmann::json::parse(test::read_text_file(stem + ".exact.json"));
  r.exact_argmax = e["argmax"].get<std::vector<int32_t>>();
  r.exact_margins = e["margins"].get<std::vector<double>>();
  r.llama_logits = test::read_f32_file(stem + ".logits.f32");
  r.exact_logits = test::read_f32_file(stem + ".exact-logits.f32");
  return r;
}

double l2(const float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  return std::sqrt(s);
}

int32_t argmax_row(const float* v, int64_t n) {
  int32_t b = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[b]) b = int32_t(i);
  return b;
}

std::vector<std::string> fixture_models(const std::string& dir) {
  std::vector<std::string> out;
  for (const char* sub : {"tiny-a", "vocab-llama3"}) {
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir + "/" + sub, ec))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct ModeResult {
  double worst_rel = 0;
  int checked = 0, agreed = 0;
};

// Teacher-forced run of prompt + greedy[:-1]; returns the last-prompt-position rel L2 against
// `ref_last` and checks argmax agreement where the reference margin clears the bound.
ModeResult teacher_forced(Session& s, const PromptRef& r, const std::vector<float>& ref_last,
                          const std::vector<int32_t>& ref_argmax, const std::vector<double>& ref_margin,
                          size_t first_pos, double bound, const std::string& label, bool strict) {
  ModeResult res;
  std::vector<int32_t> seq = r.prompt_tokens;
  seq.insert(seq.end(), r.greedy.begin(), r.greedy.end() - 1);
  s.reset();
  s.eval(seq, true);
  const int64_t V = s.n_vocab();
  const float* rows = s.all_logits().data();
  const size_t last = r.prompt_tokens.size() - 1;
  res.worst_rel = test::rel_l2(rows + last * V, ref_last.data(), size_t(V));
  for (size_t k = 0; k < ref_argmax.size(); ++k) {
    const size_t pos = first_pos + k;
    const double tau = 2.0 * bound * 1.25 * l2(rows + pos * V, size_t(V));
    if (ref_margin[k] <= tau) continue;
    ++res.checked;
    const int32_t ours = argmax_row(rows + pos * V, V);
    if (ours == ref_argmax[k]) ++res.agreed;
    else if (!strict)
      MESSAGE(label << ": teacher-forced argmax differs at position " << pos << " (margin " << ref_margin[k]
                    << ", tau " << tau << ")");
    else
      FAIL_CHECK(label << ": teacher-forced argmax differs at position " << pos << ": ours " << ours
                       << ", reference " << ref_argmax[k] << " (margin " << ref_margin[k] << " > tau " << tau
                       << ")");
  }
  return res;
}

}  // namespace

TEST_CASE("fixtures: every GGUF file and prompt matches llama.cpp and the exact reference") {
  SLM_REQUIRE_FIXTURES(dir);
  const auto models = fixture_models(dir);
  REQUIRE(!models.empty());
  std::string table = "\nfile | prompt | rel L2 f32 vs exact | rel L2 q8 vs llama.cpp | rel L2 q8 vs exact | "
                      "teacher-forced checked/agreed (exact, llama.cpp) | free-running greedy match (of 24)\n";
  std::vector<double> q8_errors;
  int tf_checked = 0, tf_agreed = 0;
  for (const std::string& path : models) {
    auto model = Model::load(path);
    const std::string stem0 = path.substr(0, path.size() - 5);
    const std::string name = fs::path(stem0).filename().string();
    SessionOptions so;
    so.n_ctx = 512;
    so.kv_type = cpu::KvType::F32;  // the references were computed with an F32 KV cache
    so.precision = cpu::ActPrecision::F32;
    Session exact(*model, so);
    so.precision = cpu::ActPrecision::LlamaCpp;
    Session mirror(*model, so);
    for (int p = 1; p <= 4; ++p) {
      const std::string stem = stem0 + ".p" + std::to_string(p);
      if (!fs::exists(stem + ".json")) continue;
      CAPTURE(stem);
      PromptRef r = read_ref(stem);
      REQUIRE(int64_t(r.llama_logits.size()) == model->config().n_vocab);

      // Tokenization (BOS from metadata, specials parsed).
      CHECK(model->tokenizer().encode(r.prompt, true, true) == r.prompt_tokens);

      ModeResult fx = teacher_forced(exact, r, r.exact_logits, r.exact_argmax, r.exact_margins, 0, kExactRelL2,
                                     name + " f32", true);
      CHECK_MESSAGE(fx.worst_rel <= kExactRelL2, name << " p" << p << ": f32 rel L2 " << fx.worst_rel);

      const size_t first_gen = r.prompt_tokens.size() - 1;
      // Teacher-forced bound for the mirror: the error measured at the last prompt position (at
      // least the no-flip level). A flip later in the sequence can exceed it, so here the
      // assertion is on the agreement rate over all files (>= 98%), not on every position.
      mirror.reset();
      mirror.eval(r.prompt_tokens);
      const double q8_last = test::rel_l2(mirror.last_logits(), r.llama_logits.data(), r.llama_logits.size());
      // The mirror against the exact reference: informational (llama.cpp itself is 4-9% away).
      const double q8_vs_exact = test::rel_l2(mirror.last_logits(), r.exact_logits.data(), r.exact_logits.size());
      ModeResult fl = teacher_forced(mirror, r, r.llama_logits, r.greedy, r.greedy_margins, first_gen,
                                     std::max(q8_last, kLlamaCppRelL2Typical), name + " q8", false);
      tf_checked += fl.checked;
      tf_agreed += fl.agreed;
      CHECK_MESSAGE(fl.worst_rel <= kLlamaCppRelL2Max, name << " p" << p << ": q8 rel L2 vs llama.cpp " << fl.worst_rel);
      q8_errors.push_back(fl.worst_rel);
      // Free-running greedy continuation (q8 mirror; ignore EOG like the reference run).
      mirror.reset();
      Sampler greedy(SamplerParams{.temperature = 0}, mirror.n_vocab());
      GenerateOptions go;
      go.n_predict = int64_t(r.greedy.size());
      go.stop_at_eog = false;
      GenerateResult g = generate(mirror, greedy, r.prompt_tokens, go);
      size_t match = 0;
      while (match < g.tokens.size() && match < r.greedy.size() && g.tokens[match] == r.greedy[match]) ++match;
      if (name.find("F32") != std::string::npos) {
        CHECK_MESSAGE(match == r.greedy.size(), name << " p" << p << ": free-running greedy matched " << match);
      }
      table += fmt::format("{} | p{} | {:.2e} | {:.2e} | {:.2e} | {}/{}, {}/{} | {}\n", name, p, fx.worst_rel,
                           fl.worst_rel, q8_vs_exact, fx.checked, fx.agreed, fl.checked, fl.agreed, match);
    }
  }
  MESSAGE(table);
  std::sort(q8_errors.begin(), q8_errors.end());
  const size_t no_flip = size_t(std::upper_bound(q8_errors.begin(), q8_errors.end(), kLlamaCppRelL2Typical) -
                                q8_errors.begin());
  const double median = q8_errors[q8_errors.size() / 2];
  MESSAGE("q8 mirror: " << no_flip << " of " << q8_errors.size() << " prompts within " << kLlamaCppRelL2Typical
                        << " of llama.cpp's logits; median rel L2 " << median << ", max " << q8_errors.back());
  CHECK(median <= kLlamaCppRelL2Typical);
  MESSAGE("q8 mirror teacher-forced: " << tf_agreed << " of " << tf_checked << " positions agree with llama.cpp's greedy");
  CHECK(tf_agreed * 50 >= tf_checked * 49);
}
