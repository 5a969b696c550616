// HF config.json / generation_config.json / quantize_config.json parsing (Llama 3.2 1B and
// Llama 2 style configs written from the published values in llama.md §1), validation errors,
// the llama3 RoPE divisors against llama.md §3.2, the HF -> GGUF q/k permutation, and
// tokenizer.json -> TokenizerSpec on the real Llama 3 tokenizer and on small synthetic files.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <fstream>

#include "core/error.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// Llama-3.2-1B config.json as published (llama.md §1, [CFG1]).
const char* kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";

// Llama-2-7b-hf style: no head_dim, no num_key_value_heads, no rope_theta, rope_scaling null.
const char* kLlama2 = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "tie_word_embeddings": false,
  "torch_dtype": "float16", "use_cache": true, "vocab_size": 32000})";

// Replaces the first occurrence of `from` in `s`.
std::string edit(std::string s, const std::string& from, const std::string& to) {
  const auto p = s.find(from);
  REQUIRE(p != std::string::npos);
  return s.replace(p, from.size(), to);
}

}  // namespace

TEST_CASE("hf config: Llama 3.2 1B") {
  const HfConfig c = parse_hf_config(kLlama32_1B, "config.json");
  CHECK(c.architectures == std::vector<std::string>{"LlamaForCausalLM"});
  CHECK(c.model_type == "llama");
  CHECK(c.hidden_size == 2048);
  CHECK(c.intermediate_size == 8192);
  CHECK(c.num_hidden_layers == 16);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.head_dim == 64);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 500000.0);
  REQUIRE(c.rope_scaling);
  CHECK(c.rope_scaling->type == "llama3");
  CHECK(c.rope_scaling->factor == 32.0);
  CHECK(c.rope_scaling->low_freq_factor == 1.0);
  CHECK(c.rope_scaling->high_freq_factor == 4.0);
  CHECK(c.rope_scaling->original_max_position_embeddings == 8192);
  CHECK(c.tie_word_embeddings);
  CHECK(c.vocab_size == 128256);
  CHECK(c.max_position_embeddings == 131072);
  CHECK(c.bos_token_id == 128000);
  CHECK(c.eos_token_ids == std::vector<int32_t>{128001});
  CHECK(c.torch_dtype == "bfloat16");
  CHECK(!c.gptq);

  // Divisors (llama.md §3.2, given to 4-5 significant digits): 1.0 for j < 15, 32 for j > 17.
  const auto f = llama3_rope_divisors(c);
  REQUIRE(f.size() == 32);
  for (int j = 0; j < 15; ++j) CHECK(f[size_t(j)] == 1.0f);
  CHECK(std::fabs(f[15] - 1.6513f) < 5e-5f);
  CHECK(std::fabs(f[16] - 3.2923f) < 5e-5f);
  CHECK(std::fabs(f[17] - 9.6667f) < 5e-5f);
  for (int j = 18; j < 32; ++j) CHECK(f[size_t(j)] == 32.0f);
  // j = 16 by hand: inv = 500000^-0.5, wavelength 2π/inv = 4442.88, smooth = (8192/4442.88 − 1)/3
  // = 0.281276, divisor 1/((1 − smooth)/32 + smooth) = 3.29227.
  CHECK(std::fabs(f[16] - 3.29227f) < 2e-5f);

  // 3B: head_dim 128 -> 64 divisors, j = 29..34 in the medium band.
  const HfConfig c3 = parse_hf_config(
      edit(edit(std::string(kLlama32_1B), "\"head_dim\": 64", "\"head_dim\": 128"),
           "\"num_attention_heads\": 32", "\"num_attention_heads\": 24"), "3b");
  const auto f3 = llama3_rope_divisors(c3);
  REQUIRE(f3.size() == 64);
  const float mid[] = {1.2349f, 1.6513f, 2.2767f, 3.2923f, 5.1716f, 9.6667f};
  CHECK(f3[28] == 1.0f);
  for (int i = 0; i < 6; ++i) CHECK(std::fabs(f3[size_t(29 + i)] - mid[i]) < 5e-5f);
  CHECK(f3[35] == 32.0f);
}

TEST_CASE("hf config: Llama 2 style defaults") {
  const HfConfig c = parse_hf_config(kLlama2, "llama2/config.json");
  CHECK(c.num_key_value_heads == 32);  // default: no GQA
  CHECK(c.head_dim == 128);            // 4096 / 32
  CHECK(c.rope_theta == 10000.0);
  CHECK(!c.rope_scaling);
  CHECK(!c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int32_t>{2});
  CHECK(c.stop_token_ids() == std::vector<int32_t>{2});
  const auto f = llama3_rope_divisors(c);
  CHECK(f == std::vector<float>(64, 1.0f));
  // Linear scaling divides every pair by the factor.
  const HfConfig lin = parse_hf_config(
      edit(kLlama2, "\"rope_scaling\": null", R"("rope_scaling": {"type": "linear", "factor": 4.0})"), "lin");
  CHECK(llama3_rope_divisors(lin) == std::vector<float>(64, 4.0f));
}

TEST_CASE("hf config: validation errors") {
  const std::string base = kLlama32_1B;
  auto err = [](const std::string& text) { return error_of([&] { parse_hf_config(text, "cfg.json"); }); };
  CHECK(has(err(edit(base, "\"hidden_size\": 2048,", "")), "cfg.json: missing required key 'hidden_size'"));
  CHECK(has(err(edit(base, "\"hidden_size\": 2048", "\"hidden_size\": \"2048\"")),
            "key 'hidden_size' must be an integer"));
  CHECK(has(err(edit(base, "\"num_hidden_layers\": 16", "\"num_hidden_layers\": 0")),
            "key 'num_hidden_layers' must be positive"));
  CHECK(has(err(edit(base, "\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5")),
            "num_attention_heads 32 is not a multiple of num_key_value_heads 5"));
  CHECK(has(err(edit(kLlama2, "\"hidden_size\": 4096", "\"hidden_size\": 4100")),
            "hidden_size 4100 is not divisible by num_attention_heads 32"));
  CHECK(has(err(edit(base, "\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"")), "unsupported rope_type 'yarn'"));
  CHECK(has(err(edit(base, "\"low_freq_factor\": 1.0,", "")), "missing required key 'low_freq_factor'"));
  CHECK(has(err(edit(base, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1")),
            "key 'tie_word_embeddings' must be true or false"));
  CHECK(has(err(edit(base, "\"eos_token_id\": 128001", "\"eos_token_id\": [128001, \"x\"]")),
            "key 'eos_token_id' must be a token id or a list"));
  CHECK(has(err("{\"hidden_size\": "), "cfg.json: invalid JSON"));
  CHECK(has(err(edit(base, "\"vocab_size\": 128256",
                     R"("vocab_size": 128256, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128})")),
            "unsupported quant_method 'awq'"));
}

TEST_CASE("hf config: quantization_config, generation_config and quantize_config.json") {
  const std::string q = R"("vocab_size": 128256, "quantization_config": {"bits": 4, "group_size": 128,
      "damp_percent": 0.01, "desc_act": true, "sym": true, "true_sequential": true,
      "quant_method": "gptq", "checkpoint_format": "gptq_v2", "static_groups": false})";
  const HfConfig c = parse_hf_config(edit(kLlama32_1B, "\"vocab_size\": 128256", q), "cfg");
  REQUIRE(c.gptq);
  CHECK(c.gptq->bits == 4);
  CHECK(c.gptq->group_size == 128);
  CHECK(c.gptq->desc_act);
  CHECK(c.gptq->sym);
  CHECK(c.gptq->format == GptqFormat::V2);
  CHECK(c.gptq->damp_percent == 0.01);

  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << edit(kLlama32_1B, "\"vocab_size\": 128256", q);
  std::ofstream(dir.file("generation_config.json"))
      << R"({"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009]})";
  HfConfig d = read_hf_config_dir(dir.path);
  CHECK(d.eos_token_ids == std::vector<int32_t>{128001});
  CHECK(d.generation_eos_token_ids == std::vector<int32_t>{128001, 128008, 128009});
  CHECK(d.stop_token_ids() == std::vector<int32_t>{128001, 128008, 128009});
  CHECK(d.gptq->format == GptqFormat::V2);
  // quantize_config.json wins over quantization_config (AutoGPTQ's search order).
  std::ofstream(dir.file("quantize_config.json"))
      << R"({"bits": 8, "group_size": -1, "desc_act": false, "sym": false, "model_file_base_name": "model"})";
  d = read_hf_config_dir(dir.path);
  CHECK(d.gptq->bits == 8);
  CHECK(d.gptq->group_size == -1);
  CHECK(!d.gptq->sym);
  CHECK(d.gptq->format == GptqFormat::V1);  // no checkpoint_format: v1 ("gptq")
  std::ofstream(dir.file("quantize_config.json")) << R"({"bits": 5, "group_size": 128})";
  CHECK(has(error_of([&] { read_hf_config_dir(dir.path); }), "unsupported GPTQ bits 5"));
  std::ofstream(dir.file("quantize_config.json")) << R"({"bits": 4, "group_size": 128, "is_marlin_format": true})";
  CHECK(has(error_of([&] { read_hf_config_dir(dir.path); }), "Marlin-packed"));
  std::ofstream(dir.file("quantize_config.json")) << R"({"bits": 4})";
  CHECK(has(error_of([&] { read_hf_config_dir(dir.path); }), "missing required key 'group_size'"));
  std::ofstream(dir.file("quantize_config.json")) << R"({"w_bit": 4, "q_group_size": 64, "checkpoint_format": "foo"})";
  CHECK(has(error_of([&] { read_hf_config_dir(dir.path); }), "unknown checkpoint_format 'foo'"));
  test::TempDir empty;
  CHECK(has(error_of([&] { read_hf_config_dir(empty.path); }), "config.json"));
}

TEST_CASE("hf -> gguf q/k row permutation") {
  // head_dim 4, 2 heads: GGUF(h, 2j) = HF(h, j), GGUF(h, 2j+1) = HF(h, j + 2).
  const int64_t expect[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int64_t r = 0; r < 8; ++r) CHECK(hf_to_gguf_qk_row(r, 4) == expect[r]);
  // Rows of 3 floats carrying their HF row index.
  std::vector<float> src(24), dst(24);
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 3; ++c) src[size_t(r * 3 + c)] = float(r * 10 + c);
  permute_qk_rows_hf_to_gguf(src.data(), dst.data(), 8, 4, 3 * sizeof(float));
  const int hf_of_gguf[8] = {0, 2, 1, 3, 4, 6, 5, 7};  // inverse (the map is an involution here)
  for (int g = 0; g < 8; ++g) CHECK(dst[size_t(g * 3 + 1)] == float(hf_of_gguf[g] * 10 + 1));
  CHECK(has(error_of([&] { permute_qk_rows_hf_to_gguf(src.data(), dst.data(), 6, 4, 12); }), "whole number of heads"));
  // gguf_to_hf_qk_row inverts hf_to_gguf_qk_row (Llama 3.2 1B k_proj: 8 heads of 64).
  for (int64_t r = 0; r < 512; ++r) CHECK(gguf_to_hf_qk_row(hf_to_gguf_qk_row(r, 64), 64) == r);
  CHECK(gguf_to_hf_qk_row(1, 64) == 32);
  CHECK(gguf_to_hf_qk_row(64 + 2, 64) == 64 + 1);
}

TEST_CASE("hf tokenizer: real Llama 3 tokenizer.json") {
  SLM_REQUIRE_FIXTURES(fx);
  const auto t0 = std::chrono::steady_clock::now();
  const TokenizerSpec s = read_hf_tokenizer_dir(fx + "/tokenizer/llama3");
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("tokenizer.json (9 MB) read in " << ms << " ms");
  CHECK(s.model == "gpt2");
  CHECK(s.pre == "llama-bpe");
  REQUIRE(s.tokens.size() == 128256);
  REQUIRE(s.types.size() == 128256);
  CHECK(s.merges.size() == 280147);
  CHECK(s.merges[0] == "Ġ Ġ");
  CHECK(s.tokens[271] == "ĊĊ");
  CHECK(s.tokens[9906] == "Hello");
  CHECK(s.tokens[0] == "!");
  CHECK(s.tokens[220] == "Ġ");
  CHECK(s.tokens[128000] == "<|begin_of_text|>");
  CHECK(s.tokens[128009] == "<|eot_id|>");
  CHECK(s.types[128000] == TokenType::Control);
  CHECK(s.types[128255] == TokenType::Control);
  CHECK(s.types[9906] == TokenType::Normal);
  CHECK(s.bos == 128000);
  CHECK(s.eos == 128009);  // tokenizer_config's eos_token is <|eot_id|>
  CHECK(s.eot == 128009);
  CHECK(!s.eom);           // this (3.0-style) vocabulary has no <|eom_id|>
  CHECK(s.add_bos == true);  // TemplateProcessing prepends <|begin_of_text|>
  CHECK(s.add_eos == false);
  CHECK(s.scores.empty());
  // Without tokenizer_config.json, BOS comes from the post-processor template.
  const TokenizerSpec s2 = read_hf_tokenizer(fx + "/tokenizer/llama3/tokenizer.json", std::nullopt);
  CHECK(s2.bos == 128000);
  CHECK(!s2.eos);
  CHECK(s2.add_bos == true);
}

TEST_CASE("hf tokenizer: pair-form merges, added tokens, gaps, config objects") {
  const std::string tj = R"({
    "added_tokens": [
      {"id": 6, "content": "<s>", "special": true},
      {"id": 8, "content": "<tool>", "special": false}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4, "c": 5},
              "merges": [["a", "b"], ["Ġ", "a"]]}})";
  const std::string tc = R"({"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "c",
                             "add_bos_token": false})";
  const TokenizerSpec s = parse_hf_tokenizer(tj, tc, "tok");
  CHECK(s.model == "gpt2");
  CHECK(s.pre == "gpt2");
  REQUIRE(s.tokens.size() == 9);
  CHECK(s.merges == std::vector<std::string>{"a b", "Ġ a"});
  CHECK(s.tokens[7] == "[PAD7]");
  CHECK(s.types[7] == TokenType::Unused);
  CHECK(s.types[6] == TokenType::Control);
  CHECK(s.types[8] == TokenType::UserDefined);
  CHECK(s.bos == 6);
  CHECK(s.eos == 5);
  CHECK(s.add_bos == false);  // add_bos_token overrides the template

  CHECK(has(error_of([&] { parse_hf_tokenizer(tj, R"({"bos_token": "<nope>"})", "tok"); }),
            "bos token '<nope>' is not in the vocabulary"));
  CHECK(has(error_of([&] { parse_hf_tokenizer(R"({"model": {"type": "Unigram", "vocab": []}})", "", "tok"); }),
            "unsupported tokenizer model type 'Unigram'"));
  CHECK(has(error_of([&] { parse_hf_tokenizer(R"({"model": {"type": "BPE", "vocab": {"a": -1}}, "decoder": {"type": "ByteLevel"}})", "", "tok"); }),
            "invalid token id -1"));
  CHECK(has(error_of([&] { parse_hf_tokenizer(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}, "decoder": {"type": "ByteLevel"}})", "", "tok"); }),
            "token id 0 used twice"));
  CHECK(has(error_of([&] { parse_hf_tokenizer(R"({"model": {"type": "BPE", "vocab": {"a": 99999999}}})", "", "tok"); }),
            "invalid token id"));
  CHECK(has(error_of([&] { parse_hf_tokenizer(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}, "decoder": {"type": "ByteLevel"}})", "", "tok"); }),
            "has no separating space"));

  // Llama 2 style: byte_fallback BPE with a Prepend normalizer -> SentencePiece-style spec.
  const std::string spm = R"({
    "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
                     {"id": 2, "content": "</s>", "special": true}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
    "post_processor": {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "▁": 4, "a": 5, "▁a": 6},
              "merges": ["▁ a"]}})";
  const TokenizerSpec l = parse_hf_tokenizer(spm, R"({"bos_token": "<s>", "eos_token": "</s>"})", "spm");
  CHECK(l.model == "llama");
  CHECK(l.add_space_prefix == true);
  CHECK(l.types[3] == TokenType::Byte);
  CHECK(l.types[0] == TokenType::Unknown);
  CHECK(l.unk == 0);
  CHECK(l.bos == 1);
  CHECK(l.eos == 2);
  CHECK(l.add_bos == true);
  REQUIRE(l.scores.size() == 7);
  CHECK(l.scores[6] == -6.0f);
  CHECK(l.scores[4] > l.scores[6]);  // lower id = higher priority
}
