// `slmrun run` / `tokenize` end to end through the real binary: the exact-comparison flags
// (--tokens, --json, --logits, --logits-all) against llama.cpp's fixture outputs, and one clear
// error with a non-zero exit for nonsense flags, missing files and context overflow.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/fixtures.h"

using namespace slm;

namespace {
std::string join_ids(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}
void check_clean_failure(const test::RunResult& r, const std::string& phrase) {
  CAPTURE(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128);  // not a signal
  CHECK(r.err.find("error:") != std::string::npos);
  CHECK(r.err.find(phrase) != std::string::npos);
}
}  // namespace

TEST_CASE("run --tokens --json: greedy continuation and logits match llama.cpp (F32 fixture)") {
  SLM_REQUIRE_FIXTURES(dir);
  const std::string model = dir + "/tiny-a/tiny-a-F32.gguf";
  auto ref = nlohmann::json::parse(test::read_text_file(dir + "/tiny-a/tiny-a-F32.p1.json"));
  auto prompt = ref["prompt_tokens"].get<std::vector<int32_t>>();
  auto greedy = ref["greedy_tokens"].get<std::vector<int32_t>>();
  test::TempDir tmp;
  auto r = test::run_slmrun("run -m " + model + " --tokens " + join_ids(prompt) + " -n 24 --temp 0 --ignore-eos --json --cache-type f32" +
                            " --logits " + tmp.file("last.f32") + " --logits-all " + tmp.file("all.f32"));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["prompt_tokens"].get<std::vector<int32_t>>() == prompt);
  CHECK(j["tokens"].get<std::vector<int32_t>>() == greedy);
  CHECK(j.contains("text"));
  CHECK(j["timings"]["prompt_tokens_per_s"].get<double>() > 0);
  auto last = test::read_f32_file(tmp.file("last.f32"));
  auto ref_last = test::read_f32_file(dir + "/tiny-a/tiny-a-F32.p1.logits.f32");
  REQUIRE(last.size() == ref_last.size());
  // F32 weights: llama.cpp keeps F32 activations; it sits 1.5e-6 from the exact model, so 1e-4.
  CHECK(test::rel_l2(last.data(), ref_last.data(), last.size()) < 1e-4);
  auto all = test::read_f32_file(tmp.file("all.f32"));
  REQUIRE(all.size() == prompt.size() * last.size());
  CHECK(test::max_abs_diff(all.data() + (prompt.size() - 1) * last.size(), last.data(), last.size()) == 0.0);
}

TEST_CASE("run -p TEXT tokenizes like llama.cpp and streams text; tokenize prints JSON ids") {
  SLM_REQUIRE_FIXTURES(dir);
  const std::string model = dir + "/tiny-a/tiny-a-Q4_K_M.gguf";
  auto ref = nlohmann::json::parse(test::read_text_file(dir + "/tiny-a/tiny-a-Q4_K_M.p4.json"));
  std::string prompt = ref["prompt"];
  test::TempDir tmp;
  {
    std::FILE* f = std::fopen(tmp.file("prompt.txt").c_str(), "wb");
    std::fwrite(prompt.data(), 1, prompt.size(), f);
    std::fclose(f);
  }
  auto r = test::run_slmrun("run -m " + model + " -f " + tmp.file("prompt.txt") + " -n 4 --temp 0 --json");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["prompt_tokens"].get<std::vector<int32_t>>() == ref["prompt_tokens"].get<std::vector<int32_t>>());
  auto t = test::run_slmrun("tokenize -m " + model + " -f " + tmp.file("prompt.txt"));
  REQUIRE(t.exit_code == 0);
  CHECK(nlohmann::json::parse(t.out).get<std::vector<int32_t>>() == ref["prompt_tokens"].get<std::vector<int32_t>>());
  auto plain = test::run_slmrun("run -m " + model + " -p \"Where is my order\" -n 8 --seed 3");
  CHECK(plain.exit_code == 0);
  CHECK(plain.err.find("generation:") != std::string::npos);
  CHECK(plain.err.find("peak RSS") != std::string::npos);
}

TEST_CASE("bad input gives one clear error and a non-zero exit") {
  check_clean_failure(test::run_slmrun("run -m /nonexistent/model.gguf -p hi"), "cannot open");
  check_clean_failure(test::run_slmrun("run -p hi"), "model");
  check_clean_failure(test::run_slmrun("frobnicate"), "error");
  SLM_REQUIRE_FIXTURES(dir);
  const std::string model = dir + "/tiny-a/tiny-a-Q8_0.gguf";
  check_clean_failure(test::run_slmrun("run -m " + model + " -p hi -n abc"), "-n");
  check_clean_failure(test::run_slmrun("run -m " + model + " --tokens 1,x,3"), "--tokens");
  check_clean_failure(test::run_slmrun("run -m " + model + " --tokens 1,999999"), "out of range");
  check_clean_failure(test::run_slmrun("run -m " + model + " -p hi --isa sse9"), "ISA");
  check_clean_failure(test::run_slmrun("run -m " + model + " -p \"a long prompt that will not fit\" -c 4"),
                      "context overflow");
  check_clean_failure(test::run_slmrun("run -m " + model + " -p hi --top-p -1"), "top-p");
  check_clean_failure(test::run_slmrun("run -m " + model), "prompt");
  test::TempDir tmp;
  {
    std::FILE* f = std::fopen(tmp.file("bad.txt").c_str(), "wb");
    std::fwrite("ok \xff\xfe", 1, 5, f);
    std::fclose(f);
  }
  check_clean_failure(test::run_slmrun("run -m " + model + " -f " + tmp.file("bad.txt")), "UTF-8");
  check_clean_failure(test::run_slmrun("run -m " + model + " -f /nonexistent.txt"), "cannot open");
  check_clean_failure(test::run_slmrun("bench -p 0x"), "-p");
  check_clean_failure(test::run_slmrun("bench -d -5"), "-d");
}
