// `slmrun mkmodel` and `slmrun quantize` end to end through the real binary: a random model runs,
// every type it quantizes to runs with finite logits, bad inputs fail cleanly, and quantizing the
// llama.cpp fixture reproduces llama-quantize's file.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "support/fixtures.h"

using slm::test::run_slmrun;

namespace {

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

// A small model keeps the whole test at a few seconds: 2 layers, dim 256 (a multiple of 256, so
// every K-quant applies without fallbacks), vocabulary 1024.
const char* kSmall = "--preset tiny --layers 2 --dim 256 --hidden 768 --heads 4 --kv-heads 2 --vocab 1024 -q";

// Runs 4 greedy tokens from fixed prompt ids; checks the JSON and that the logits are finite.
void check_runs(const slm::test::TempDir& tmp, const std::string& model) {
  const std::string logits = tmp.file("logits.f32");
  auto r = run_slmrun("run -m " + model + " --tokens 768,104,101,108 -n 4 --json --logits " + logits);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["prompt_tokens"].size() == 4);
  CHECK(j["tokens"].size() == 4);
  for (const auto& t : j["tokens"]) CHECK((t.get<int>() >= 0 && t.get<int>() < 1024));
  const std::vector<float> l = slm::test::read_f32_file(logits);
  REQUIRE(l.size() == 1024);
  bool finite = true;
  for (float x : l) finite &= std::isfinite(x);
  CHECK(finite);
}

}  // namespace

TEST_CASE("slmrun mkmodel -> run, and -> quantize to every type -> run") {
  slm::test::TempDir tmp;
  const std::string f32 = tmp.file("m-f32.gguf");
  auto r = run_slmrun(std::string("mkmodel -o ") + f32 + " " + kSmall);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  check_runs(tmp, f32);
  // The tokenizer is usable too: text prompts encode and generate.
  r = run_slmrun("run -m " + f32 + " -p \"hello there\" -n 2 --json");
  CHECK_MESSAGE(r.exit_code == 0, r.err);

  for (const char* type : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M",
                           "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32"}) {
    CAPTURE(type);
    const std::string out = tmp.file(std::string("m-") + type + ".gguf");
    r = run_slmrun("quantize -m " + f32 + " -o " + out + " --type " + type);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find("blk.1.ffn_down.weight") != std::string::npos);  // the summary table
    check_runs(tmp, out);
  }
  // mkmodel straight to a mixture writes what quantizing its F32 model writes.
  r = run_slmrun(std::string("mkmodel -o ") + tmp.file("direct.gguf") + " --type Q4_K_M " + kSmall);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(file_bytes(tmp.file("direct.gguf")) == file_bytes(tmp.file("m-Q4_K_M.gguf")));
}

TEST_CASE("slmrun quantize: clear errors and non-zero exit") {
  slm::test::TempDir tmp;
  const std::string q = tmp.file("q.gguf"), f = tmp.file("f.gguf");
  REQUIRE(run_slmrun(std::string("mkmodel -o ") + q + " --type Q4_0 " + kSmall).exit_code == 0);
  REQUIRE(run_slmrun(std::string("mkmodel -o ") + f + " " + kSmall).exit_code == 0);

  auto r = run_slmrun("quantize -m " + q + " -o " + tmp.file("x.gguf") + " --type Q8_0");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("needs an F32, F16 or BF16 model") != std::string::npos);
  r = run_slmrun("quantize -m " + f + " -o " + tmp.file("x.gguf") + " --type Q7_K");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("unknown quantization type 'Q7_K'") != std::string::npos);
  r = run_slmrun("quantize -m " + tmp.file("absent.gguf") + " -o " + tmp.file("x.gguf") + " --type Q8_0");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("absent.gguf") != std::string::npos);
  r = run_slmrun("quantize -m " + f + " -o " + tmp.file("no/dir/x.gguf") + " --type Q8_0");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("cannot create output file") != std::string::npos);
  CHECK_FALSE(exists(tmp.file("x.gguf")));
  r = run_slmrun("quantize -m " + f + " -o " + tmp.file("x.gguf"));  // --type is required
  CHECK(r.exit_code != 0);
  r = run_slmrun(std::string("mkmodel -o ") + tmp.file("y.gguf") + " --format onnx " + kSmall);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("unknown format 'onnx'") != std::string::npos);
}

TEST_CASE("slmrun quantize reproduces llama-quantize's files from tiny-a-F32") {
  SLM_REQUIRE_FIXTURES(fx);
  slm::test::TempDir tmp;
  const std::string in = fx + "/tiny-a/tiny-a-F32.gguf";
  for (const char* type : {"Q4_0", "Q8_0"}) {
    CAPTURE(type);
    auto r = run_slmrun("quantize -q --pure -m " + in + " -o " + tmp.file("p.gguf") + " --type " + type);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK(file_bytes(tmp.file("p.gguf")) == file_bytes(fx + "/tiny-a/tiny-a-pure-" + type + ".gguf"));
  }
  auto r = run_slmrun("quantize -q -m " + in + " -o " + tmp.file("m.gguf") + " --type Q4_K_M");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(file_bytes(tmp.file("m.gguf")) == file_bytes(fx + "/tiny-a/tiny-a-Q4_K_M.gguf"));
}

TEST_CASE("mkmodel --format hf holds the same model as the GGUF file from the same seed") {
  slm::test::TempDir tmp;
  const std::string args = std::string(kSmall) + " --seed 9";
  auto r = run_slmrun("mkmodel -o " + tmp.file("hf") + " --format hf " + args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  r = run_slmrun("mkmodel -o " + tmp.file("m.gguf") + " " + args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  // Same tokenizer: the generated tokenizer.json encodes like the GGUF vocabulary.
  const std::string text = "\"hello there, the <|eot_id|> quick fox\"";
  auto th = run_slmrun("run -n 1 --json -m " + tmp.file("hf") + " -p " + text);
  auto tg = run_slmrun("run -n 1 --json -m " + tmp.file("m.gguf") + " -p " + text);
  REQUIRE_MESSAGE(th.exit_code == 0, th.err);
  REQUIRE_MESSAGE(tg.exit_code == 0, tg.err);
  const auto ph = nlohmann::json::parse(th.out)["prompt_tokens"], pg = nlohmann::json::parse(tg.out)["prompt_tokens"];
  CHECK(ph == pg);
  CHECK(pg.size() > 5);
  // Same weights: with F32 weights and F32 activations the two differ only in RoPE pairing (HF's
  // rotate-half order on un-permuted q/k rows vs GGUF's interleaved pairs on permuted rows) and
  // summation order, i.e. float rounding (~1e-6 relative); 1e-4 would still catch any wrong row.
  const std::string prompt = " --tokens 768,104,101,108,32,116 -n 1 --precision f32 --logits ";
  r = run_slmrun("run -m " + tmp.file("hf") + prompt + tmp.file("lh.f32"));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  r = run_slmrun("run -m " + tmp.file("m.gguf") + prompt + tmp.file("lg.f32"));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const auto lh = slm::test::read_f32_file(tmp.file("lh.f32")), lg = slm::test::read_f32_file(tmp.file("lg.f32"));
  REQUIRE(lh.size() == lg.size());
  const double d = slm::test::rel_l2(lh.data(), lg.data(), lg.size());
  MESSAGE("HF vs GGUF logits rel L2: ", d);
  CHECK(d < 1e-4);
  // Quantized types are GGUF-only.
  r = run_slmrun("mkmodel -o " + tmp.file("hq") + " --format hf --type Q4_0 " + std::string(kSmall));
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("F32, F16 or BF16") != std::string::npos);
}
