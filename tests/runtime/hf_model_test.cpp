// Hugging Face model directories through the runtime: a synthetic model written as an HF
// directory (config.json, model.safetensors with q/k rows in HF's rotate-half order,
// tokenizer.json) must give the same logits as the same weights in GGUF layout, and broken
// directories must give clear errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "runtime/gguf_export.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"
#include "support/small_model.h"

using namespace slm;

namespace {

ModelConfig hf_test_config() {
  // 256 byte tokens + 2 specials: the tokenizer written below covers every row.
  return test::small_llama_config(258);
}

void write_text(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary);
  f << s;
}

// Writes `m` (F32 weights in GGUF layout) as an HF directory.
void write_hf_dir(const Model& m, const std::string& dir, bool drop_tensor = false) {
  const ModelConfig& c = m.config();
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"hidden_size", c.dim},
                        {"intermediate_size", c.hidden_dim},
                        {"num_hidden_layers", c.n_layers},
                        {"num_attention_heads", c.n_heads},
                        {"num_key_value_heads", c.n_kv_heads},
                        {"head_dim", c.head_dim},
                        {"rms_norm_eps", c.rms_eps},
                        {"rope_theta", c.rope_theta},
                        {"rope_scaling",
                         {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}}},
                        {"tie_word_embeddings", true},
                        {"vocab_size", c.n_vocab},
                        {"max_position_embeddings", 131072},
                        {"bos_token_id", 256},
                        {"eos_token_id", 257},
                        {"torch_dtype", "float32"}};
  write_text(dir + "/config.json", cfg.dump(2));

  // Byte-level vocabulary: 256 byte tokens (GPT-2 mapping) + 2 specials, no merges.
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_encode(std::string(1, char(b)))] = b;
  nlohmann::json tok = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                        {"added_tokens",
                         {{{"id", 256}, {"content", "<|begin_of_text|>"}, {"special", true}},
                          {{"id", 257}, {"content", "<|eot_id|>"}, {"special", true}}}},
                        {"pre_tokenizer", {{"type", "ByteLevel"}}},
                        {"decoder", {{"type", "ByteLevel"}}}};
  write_text(dir + "/tokenizer.json", tok.dump());
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})");

  st::Writer w;
  std::vector<std::vector<float>> keep;
  auto add = [&](const std::string& name, const WeightTensor& t, bool qk_heads) {
    std::vector<float> rows(size_t(t.rows * t.cols));
    for (int64_t r = 0; r < t.rows; ++r) {
      // HF row r holds GGUF row hf_to_gguf_qk_row(r) for q/k (llama.md §3.4).
      const int64_t src = qk_heads ? hf_to_gguf_qk_row(r, c.head_dim) : r;
      dequantize_row(t.type, t.row(src), rows.data() + r * t.cols, t.cols);
    }
    keep.push_back(std::move(rows));
    w.add(name, st::DType::F32, {t.rows, t.cols}, keep.back().data());
  };
  auto add_vec = [&](const std::string& name, const std::vector<float>& v) {
    keep.push_back(v);
    w.add(name, st::DType::F32, {int64_t(v.size())}, keep.back().data());
  };
  const Weights& W = m.weights();
  add("model.embed_tokens.weight", W.tok_embd, false);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    const std::string p = fmt::format("model.layers.{}.", l);
    add_vec(p + "input_layernorm.weight", L.attn_norm);
    add(p + "self_attn.q_proj.weight", L.wq, true);
    if (!drop_tensor || l == 0) add(p + "self_attn.k_proj.weight", L.wk, true);
    add(p + "self_attn.v_proj.weight", L.wv, false);
    add(p + "self_attn.o_proj.weight", L.wo, false);
    add_vec(p + "post_attention_layernorm.weight", L.ffn_norm);
    add(p + "mlp.gate_proj.weight", L.w_gate, false);
    add(p + "mlp.up_proj.weight", L.w_up, false);
    add(p + "mlp.down_proj.weight", L.w_down, false);
  }
  add_vec("model.norm.weight", W.output_norm);
  w.write(dir + "/model.safetensors");
}


}  // namespace

TEST_CASE("an HF F32 directory and the same weights in GGUF layout give the same logits") {
  auto gguf_layout = make_synthetic_model(hf_test_config(), "F32", 21);
  test::TempDir tmp;
  write_hf_dir(*gguf_layout, tmp.path);
  auto hf = Model::load(tmp.path);
  CHECK(hf->format() == "hf");
  CHECK(hf->config().rope_style == RopeStyle::HalfSplit);
  CHECK(hf->config().tied_embeddings);
  for (size_t j = 0; j < hf->config().rope_divisors.size(); ++j)  // float32 vs float64 formula evaluation
    CHECK(hf->config().rope_divisors[j] == doctest::Approx(gguf_layout->config().rope_divisors[j]).epsilon(1e-6));
  std::mt19937 rng(5);
  std::vector<int32_t> toks(17);
  for (auto& t : toks) t = int32_t(rng() % 256);
  auto a = test::f32_last_logits(*gguf_layout, toks);
  auto b = test::f32_last_logits(*hf, toks);
  // Same weights and arithmetic; only the pairing of RoPE dimensions (and so the order of a few
  // float additions in q·k) differs: float32 rounding, far below the 1e-5 acceptance bound.
  CHECK(test::rel_l2(b.data(), a.data(), a.size()) < 1e-5);
  // The tokenizer came from tokenizer.json.
  CHECK(hf->tokenizer().encode("hi <|eot_id|>", false, true) == std::vector<int32_t>{'h', 'i', ' ', 257});
  CHECK(hf->tokenizer().bos() == 256);
  CHECK(hf->tokenizer().is_eog(257));
}

TEST_CASE("broken HF directories give clear errors") {
  auto m = make_synthetic_model(hf_test_config(), "F32", 2);
  test::TempDir tmp;
  write_hf_dir(*m, tmp.path, /*drop_tensor=*/true);
  CHECK_THROWS_WITH_AS(Model::load(tmp.path), doctest::Contains("model.layers.1.self_attn.k_proj.weight"), slm::Error);
  std::filesystem::remove(tmp.path + "/config.json");
  CHECK_THROWS_WITH_AS(Model::load(tmp.path), doctest::Contains("config.json"), slm::Error);
}

TEST_CASE("an HF directory converted to GGUF keeps its logits (q/k rows reordered for interleaved RoPE)") {
  auto src = make_synthetic_model(hf_test_config(), "F32", 33);
  test::TempDir tmp;
  write_hf_dir(*src, tmp.path);
  auto hf = Model::load(tmp.path);
  REQUIRE(hf->config().rope_style == RopeStyle::HalfSplit);
  export_model_gguf(*hf, tmp.file("converted.gguf"));
  auto gguf = Model::load(tmp.file("converted.gguf"));
  CHECK(gguf->config().rope_style == RopeStyle::Interleaved);
  std::vector<int32_t> toks = {256, 10, 200, 31, 7, 99, 140};
  auto a = test::f32_last_logits(*hf, toks);
  auto b = test::f32_last_logits(*gguf, toks);
  // The issue's acceptance bound; float32 differences only (same weights, same arithmetic).
  CHECK(test::rel_l2(b.data(), a.data(), a.size()) < 1e-5);
}
