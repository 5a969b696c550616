// Hugging Face checkpoint export: name mapping, q/k row order, config.json and tokenizer files.
#include "runtime/hf_export.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"
#include "formats/safetensors.h"

namespace slm {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::optional<std::string> gguf_to_hf_name(const std::string& n) {
  if (n == "token_embd.weight") return "model.embed_tokens.weight";
  if (n == "output_norm.weight") return "model.norm.weight";
  if (n == "output.weight") return "lm_head.weight";
  if (n.rfind("blk.", 0) != 0) return std::nullopt;
  const size_t dot = n.find('.', 4);
  if (dot == std::string::npos) return std::nullopt;
  const std::string layer = n.substr(4, dot - 4), rest = n.substr(dot + 1);
  static const std::pair<const char*, const char*> kMap[] = {
      {"attn_norm.weight", "input_layernorm.weight"},   {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const auto& [g, h] : kMap)
    if (rest == g) return "model.layers." + layer + "." + h;
  return std::nullopt;
}

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot create", p.string());
  f << text;
  SLM_CHECK(bool(f), "{}: write failed", p.string());
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot open", path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

ojson config_json(const ModelConfig& cfg, const TokenizerSpec& tok, QType dtype) {
  ojson j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  if (tok.bos) j["bos_token_id"] = *tok.bos;
  if (tok.eos) j["eos_token_id"] = *tok.eos;
  j["head_dim"] = cfg.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = cfg.dim;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = cfg.hidden_dim;
  j["max_position_embeddings"] = cfg.n_ctx_train;
  j["mlp_bias"] = false;
  j["model_type"] = "llama";
  j["num_attention_heads"] = cfg.n_heads;
  j["num_hidden_layers"] = cfg.n_layers;
  j["num_key_value_heads"] = cfg.n_kv_heads;
  j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = std::stod(fmt::format("{}", cfg.rms_eps));  // 1e-05, not 9.99999975e-06
  // mkmodel's models carry Llama 3.2's scaling; recover its parameters by checking the divisors.
  const bool scaled = std::any_of(cfg.rope_divisors.begin(), cfg.rope_divisors.end(), [](float d) { return d != 1.f; });
  if (scaled) {
    SLM_CHECK(cfg.rope_divisors == llama3_rope_divisors(cfg.n_rot, cfg.rope_theta, 32.f, 1.f, 4.f, 8192.f),
              "hf export: only Llama 3.2's rope scaling (factor 32, 1, 4, 8192) can be written to config.json");
    j["rope_scaling"] = {{"factor", 32.0},
                         {"high_freq_factor", 4.0},
                         {"low_freq_factor", 1.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = double(cfg.rope_theta);
  j["tie_word_embeddings"] = cfg.tied_embeddings;
  j["torch_dtype"] = dtype == QType::F32 ? "float32" : dtype == QType::F16 ? "float16" : "bfloat16";
  j["transformers_version"] = "4.45.0";
  j["use_cache"] = true;
  j["vocab_size"] = cfg.n_vocab;
  return j;
}

// tokenizer.json for a byte-level BPE spec, in the layout of Llama 3's file: specials as
// added_tokens, the Llama 3 split regex + ByteLevel, BOS added by the template processor.
ojson tokenizer_json(const TokenizerSpec& tok) {
  SLM_CHECK(tok.model == "gpt2", "hf export: can only generate tokenizer.json for byte-level BPE vocabularies "
            "(this one is '{}'; pass --tokenizer)", tok.model);
  ojson added = ojson::array(), vocab = ojson::object();
  for (size_t i = 0; i < tok.tokens.size(); ++i) {
    const TokenType t = i < tok.types.size() ? tok.types[i] : TokenType::Normal;
    if (t == TokenType::Control || t == TokenType::UserDefined) {
      added.push_back({{"id", i}, {"content", tok.tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", t == TokenType::Control}});
    } else {
      vocab[tok.tokens[i]] = i;
    }
  }
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", std::string(kLlama3PretokenizerRegex)}}}, {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  if (tok.bos) {
    const std::string bos = tok.tokens.at(size_t(*tok.bos));
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {*tok.bos}}, {"tokens", {bos}}}}}}};
  } else {
    j["post_processor"] = nullptr;
  }
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},           {"dropout", nullptr},    {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},       {"byte_fallback", false}, {"ignore_merges", true},
                {"vocab", vocab},          {"merges", tok.merges}};
  return j;
}

ojson tokenizer_config_json(const TokenizerSpec& tok, const std::string& chat_template) {
  ojson j;
  j["add_bos_token"] = tok.add_bos.value_or(tok.bos.has_value());
  j["add_eos_token"] = tok.add_eos.value_or(false);
  if (tok.bos) j["bos_token"] = tok.tokens.at(size_t(*tok.bos));
  if (!chat_template.empty()) j["chat_template"] = chat_template;
  j["clean_up_tokenization_spaces"] = true;
  if (tok.eos) j["eos_token"] = tok.tokens.at(size_t(*tok.eos));
  j["model_max_length"] = 131072;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return j;
}

}  // namespace

void export_llama_hf(const TensorSource& src, const ModelConfig& cfg, const TokenizerSpec& tok,
                     const std::string& dir, const HfExportOptions& opts) {
  SLM_CHECK(opts.dtype == QType::F32 || opts.dtype == QType::F16 || opts.dtype == QType::BF16,
            "hf export: checkpoints are written in F32, F16 or BF16, not {}", qtype_name(opts.dtype));
  cfg.validate();
  std::error_code ec;
  fs::create_directories(dir, ec);
  SLM_CHECK(!ec && fs::is_directory(dir), "{}: cannot create directory: {}", dir, ec.message());

  const st::DType dt = opts.dtype == QType::F32 ? st::DType::F32 : opts.dtype == QType::F16 ? st::DType::F16 : st::DType::BF16;
  const size_t esize = st::dtype_size(dt);
  struct Out {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Out> outs;
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& t = src.tensors()[i];
    auto hf = gguf_to_hf_name(t.name);
    if (!hf) continue;
    const int64_t rows = t.rows(), cols = t.cols();
    const bool is_q = t.name.find(".attn_q.weight") != std::string::npos;
    const bool is_k = t.name.find(".attn_k.weight") != std::string::npos;
    std::vector<float> x(size_t(rows * cols));
    src.read_rows(i, 0, rows, x.data());
    Out o{*hf, t.ne.size() == 1 ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols}, {}};
    o.bytes.resize(x.size() * esize);
    for (int64_t r = 0; r < rows; ++r) {
      // HF row r of q/k holds GGUF row hf_to_gguf_qk_row(r) (rotate-half vs interleaved pairs).
      const int64_t from = (is_q || is_k) ? hf_to_gguf_qk_row(r, cfg.head_dim) : r;
      const float* s = x.data() + size_t(from) * size_t(cols);
      uint8_t* d = o.bytes.data() + size_t(r) * size_t(cols) * esize;
      for (int64_t c = 0; c < cols; ++c) {
        if (dt == st::DType::F32) std::memcpy(d + 4 * c, &s[c], 4);
        else {
          const uint16_t h = dt == st::DType::F16 ? f32_to_fp16(s[c]) : f32_to_bf16(s[c]);
          std::memcpy(d + 2 * c, &h, 2);
        }
      }
    }
    outs.push_back(std::move(o));
  }
  std::sort(outs.begin(), outs.end(), [](const Out& a, const Out& b) { return a.name < b.name; });
  st::Writer w;
  w.set_metadata("format", "pt");
  for (const Out& o : outs) w.add(o.name, dt, o.shape, o.bytes.data());
  w.write((fs::path(dir) / "model.safetensors").string());

  write_text(fs::path(dir) / "config.json", config_json(cfg, tok, opts.dtype).dump(2) + "\n");
  if (!opts.tokenizer_json.empty()) {
    write_text(fs::path(dir) / "tokenizer.json", read_text(opts.tokenizer_json));
    if (!opts.tokenizer_config_json.empty())
      write_text(fs::path(dir) / "tokenizer_config.json", read_text(opts.tokenizer_config_json));
  } else {
    write_text(fs::path(dir) / "tokenizer.json", tokenizer_json(tok).dump(2) + "\n");
    write_text(fs::path(dir) / "tokenizer_config.json", tokenizer_config_json(tok, opts.chat_template).dump(2) + "\n");
  }
}

}  // namespace slm
