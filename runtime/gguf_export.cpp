// Llama GGUF export: converter-order metadata and tensors, the synthetic byte-level vocabulary,
// the random-weight model source and the Model source.
#include "runtime/gguf_export.h"

#include "formats/hf_config.h"

#include <cmath>
#include <map>
#include <numbers>

#include "core/error.h"

namespace slm {

using gguf::Value;

GgufMetadata llama_gguf_metadata(const ModelConfig& cfg, const TokenizerSpec* tok, uint32_t file_type,
                                 const std::string& chat_template) {
  cfg.validate();
  const std::string a = cfg.arch.empty() ? "llama" : cfg.arch;
  auto u32 = [](int64_t v) {
    SLM_CHECK(v >= 0 && v <= int64_t(UINT32_MAX), "gguf export: value {} does not fit a u32 key", v);
    return Value::make_u32(uint32_t(v));
  };
  GgufMetadata md;
  md.emplace_back("general.architecture", Value::make_string(a));
  md.emplace_back("general.type", Value::make_string("model"));
  md.emplace_back("general.name", Value::make_string(cfg.name.empty() ? "llama" : cfg.name));
  md.emplace_back(a + ".block_count", u32(cfg.n_layers));
  md.emplace_back(a + ".context_length", u32(cfg.n_ctx_train > 0 ? cfg.n_ctx_train : 2048));
  md.emplace_back(a + ".embedding_length", u32(cfg.dim));
  md.emplace_back(a + ".feed_forward_length", u32(cfg.hidden_dim));
  md.emplace_back(a + ".attention.head_count", u32(cfg.n_heads));
  md.emplace_back(a + ".attention.head_count_kv", u32(cfg.n_kv_heads));
  md.emplace_back(a + ".rope.freq_base", Value::make_f32(cfg.rope_theta));
  md.emplace_back(a + ".attention.layer_norm_rms_epsilon", Value::make_f32(cfg.rms_eps));
  md.emplace_back(a + ".attention.key_length", u32(cfg.head_dim));
  md.emplace_back(a + ".attention.value_length", u32(cfg.head_dim));
  md.emplace_back("general.file_type", Value::make_u32(file_type));
  md.emplace_back(a + ".vocab_size", u32(cfg.n_vocab));
  md.emplace_back(a + ".rope.dimension_count", u32(cfg.n_rot));
  if (tok) {
    SLM_CHECK(int64_t(tok->tokens.size()) == cfg.n_vocab,
              "gguf export: the tokenizer has {} tokens but the model's vocabulary is {}", tok->tokens.size(),
              cfg.n_vocab);
    md.emplace_back("tokenizer.ggml.model", Value::make_string(tok->model.empty() ? "gpt2" : tok->model));
    if (tok->model != "llama") md.emplace_back("tokenizer.ggml.pre", Value::make_string(tok->pre));
    md.emplace_back("tokenizer.ggml.tokens", Value::make_string_array(tok->tokens));
    if (!tok->scores.empty()) md.emplace_back("tokenizer.ggml.scores", Value::make_f32_array(tok->scores));
    std::vector<int32_t> types(tok->tokens.size(), int32_t(TokenType::Normal));
    for (size_t i = 0; i < tok->types.size() && i < types.size(); ++i) types[i] = int32_t(tok->types[i]);
    md.emplace_back("tokenizer.ggml.token_type", Value::make_i32_array(types));
    if (!tok->merges.empty()) md.emplace_back("tokenizer.ggml.merges", Value::make_string_array(tok->merges));
    // gguf-py SpecialVocab order: bos, eos, unk, pad, then the add_* flags.
    if (tok->bos) md.emplace_back("tokenizer.ggml.bos_token_id", u32(*tok->bos));
    if (tok->eos) md.emplace_back("tokenizer.ggml.eos_token_id", u32(*tok->eos));
    if (tok->unk) md.emplace_back("tokenizer.ggml.unknown_token_id", u32(*tok->unk));
    if (tok->pad) md.emplace_back("tokenizer.ggml.padding_token_id", u32(*tok->pad));
    if (tok->add_bos) md.emplace_back("tokenizer.ggml.add_bos_token", Value::make_bool(*tok->add_bos));
    if (tok->add_eos) md.emplace_back("tokenizer.ggml.add_eos_token", Value::make_bool(*tok->add_eos));
  }
  if (!chat_template.empty()) md.emplace_back("tokenizer.chat_template", Value::make_string(chat_template));
  return md;
}

// ---- synthetic vocabulary -------------------------------------------------------------------

namespace {
std::string llama3_special_name(int k) {
  static const char* kNamed[] = {"<|begin_of_text|>",   "<|end_of_text|>",
                                 "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                                 "<|finetune_right_pad_id|>",    "<|reserved_special_token_2|>",
                                 "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                                 "<|eot_id|>",          "<|python_tag|>"};
  if (k < 11) return kNamed[k];
  return fmt::format("<|reserved_special_token_{}|>", k - 8);  // 128011 is _3 in Llama 3.1+
}
}  // namespace

TokenizerSpec synthetic_byte_tokenizer(int64_t n_vocab) {
  constexpr int64_t kMinSpecials = 11;
  SLM_CHECK(n_vocab >= 256 + kMinSpecials && n_vocab < (int64_t(1) << 31),
            "synthetic vocabulary: {} tokens is too small (needs 256 byte tokens + {} special tokens)", n_vocab,
            kMinSpecials);
  const int64_t n_special = n_vocab >= 1024 ? 256 : kMinSpecials;
  TokenizerSpec s;
  s.model = "gpt2";
  s.pre = "llama-bpe";
  s.tokens.reserve(size_t(n_vocab));
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_level_encode(std::string(1, char(b))));
  // Merges of pairs of lowercase letters and space, so encoding exercises real BPE merging.
  const std::string alphabet = " etaoinshrdlucmfwypvbgkjqxz";
  const int64_t n_fill = n_vocab - 256 - n_special;
  for (char x : alphabet)
    for (char y : alphabet) {
      if (int64_t(s.merges.size()) >= n_fill) break;
      const std::string l = byte_level_encode(std::string(1, x)), r = byte_level_encode(std::string(1, y));
      s.merges.push_back(l + " " + r);
      s.tokens.push_back(l + r);
    }
  s.types.assign(s.tokens.size(), TokenType::Normal);
  while (int64_t(s.tokens.size()) < n_vocab - n_special) {
    s.tokens.push_back(fmt::format("[PAD{}]", s.tokens.size()));
    s.types.push_back(TokenType::Unused);
  }
  const int32_t base = int32_t(s.tokens.size());
  for (int k = 0; k < n_special; ++k) {
    s.tokens.push_back(llama3_special_name(k));
    s.types.push_back(TokenType::Control);
  }
  s.bos = base;
  s.eos = base + 9;  // <|eot_id|>, as in Llama 3.2 Instruct files
  return s;
}

void pad_tokenizer(TokenizerSpec& tok, int64_t n_vocab) {
  SLM_CHECK(int64_t(tok.tokens.size()) <= n_vocab, "the tokenizer has {} tokens, more than the vocabulary size {}",
            tok.tokens.size(), n_vocab);
  if (!tok.types.empty() || int64_t(tok.tokens.size()) < n_vocab) tok.types.resize(tok.tokens.size(), TokenType::Normal);
  if (!tok.scores.empty()) tok.scores.resize(size_t(n_vocab), -1000.f);
  while (int64_t(tok.tokens.size()) < n_vocab) {
    tok.tokens.push_back(fmt::format("[PAD{}]", tok.tokens.size()));
    tok.types.push_back(TokenType::Unused);
  }
}

// ---- random model ---------------------------------------------------------------------------

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// n standard normal values (Box-Muller) from the stream `state`.
void gaussians(uint64_t state, float* dst, int64_t n, float mean, float sd) {
  for (int64_t k = 0; k < n; k += 2) {
    // 53-bit uniforms in (0, 1]: log never sees 0.
    const double u1 = double((splitmix64(state) >> 11) + 1) * 0x1.0p-53;
    const double u2 = double(splitmix64(state) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * std::numbers::pi * u2;
    dst[k] = mean + sd * float(r * std::cos(th));
    if (k + 1 < n) dst[k + 1] = mean + sd * float(r * std::sin(th));
  }
}

struct NamedWeight {
  std::string name;
  int64_t rows, cols;
};

}  // namespace

RandomLlamaSource::RandomLlamaSource(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg), seed_(seed) {
  cfg.validate();
  auto weight = [&](std::string name, int64_t rows, int64_t cols) {
    tensors_.push_back(SourceTensor{std::move(name), QType::F32, {cols, rows}});
    fill_.push_back(Fill::Weight);
  };
  auto norm = [&](std::string name) {
    tensors_.push_back(SourceTensor{std::move(name), QType::F32, {cfg.dim}});
    fill_.push_back(Fill::Norm);
  };
  weight("token_embd.weight", cfg.n_vocab, cfg.dim);
  bool scaled = false;
  for (float d : cfg.rope_divisors) scaled |= d != 1.f;
  if (scaled) {
    tensors_.push_back(SourceTensor{"rope_freqs.weight", QType::F32, {int64_t(cfg.rope_divisors.size())}});
    fill_.push_back(Fill::RopeFreqs);
  }
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    norm(p + "attn_norm.weight");
    weight(p + "attn_q.weight", cfg.q_dim(), cfg.dim);
    weight(p + "attn_k.weight", cfg.kv_dim(), cfg.dim);
    weight(p + "attn_v.weight", cfg.kv_dim(), cfg.dim);
    weight(p + "attn_output.weight", cfg.dim, cfg.q_dim());
    norm(p + "ffn_norm.weight");
    weight(p + "ffn_gate.weight", cfg.hidden_dim, cfg.dim);
    weight(p + "ffn_up.weight", cfg.hidden_dim, cfg.dim);
    weight(p + "ffn_down.weight", cfg.dim, cfg.hidden_dim);
  }
  norm("output_norm.weight");
  if (!cfg.tied_embeddings) weight("output.weight", cfg.n_vocab, cfg.dim);
}

void RandomLlamaSource::read_rows(size_t i, int64_t row0, int64_t n, float* dst) const {
  const SourceTensor& t = tensors_.at(i);
  SLM_CHECK(row0 >= 0 && n >= 0 && row0 + n <= t.rows(), "random model: tensor '{}': rows out of range", t.name);
  const int64_t cols = t.cols();
  for (int64_t r = 0; r < n; ++r) {
    float* out = dst + size_t(r) * size_t(cols);
    uint64_t s = seed_ ^ name_hash(t.name);
    s = splitmix64(s) + uint64_t(row0 + r);
    switch (fill_[i]) {
      case Fill::Weight: gaussians(splitmix64(s), out, cols, 0.f, 0.02f); break;
      case Fill::Norm: gaussians(splitmix64(s), out, cols, 1.f, 0.05f); break;
      case Fill::RopeFreqs:
        for (int64_t c = 0; c < cols; ++c) out[c] = cfg_.rope_divisors[size_t(c)];
        break;
    }
  }
}

// ---- Model source ---------------------------------------------------------------------------

ModelTensorSource::ModelTensorSource(const Model& m) : model_(m) {
  const ModelConfig& cfg = m.config();
  const Weights& w = m.weights();
  auto weight = [&](const WeightTensor& t, std::string name, bool qk = false) {
    SLM_CHECK(t.data != nullptr, "model export: tensor '{}' has no data", name);
    tensors_.push_back(SourceTensor{std::move(name), t.type, {t.cols, t.rows}});
    raw_.push_back(static_cast<const uint8_t*>(t.data));
    qk_head_dim_.push_back(qk && cfg.rope_style == RopeStyle::HalfSplit ? cfg.head_dim : 0);
  };
  auto f32 = [&](const std::vector<float>& v, std::string name) {
    tensors_.push_back(SourceTensor{std::move(name), QType::F32, {int64_t(v.size())}});
    raw_.push_back(reinterpret_cast<const uint8_t*>(v.data()));
    qk_head_dim_.push_back(0);
  };
  weight(w.tok_embd, "token_embd.weight");
  bool scaled = false;
  for (float d : cfg.rope_divisors) scaled |= d != 1.f;
  if (scaled) {
    rope_freqs_ = cfg.rope_divisors;
    f32(rope_freqs_, "rope_freqs.weight");
  }
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = fmt::format("blk.{}.", l);
    f32(L.attn_norm, p + "attn_norm.weight");
    weight(L.wq, p + "attn_q.weight", true);
    weight(L.wk, p + "attn_k.weight", true);
    weight(L.wv, p + "attn_v.weight");
    weight(L.wo, p + "attn_output.weight");
    f32(L.ffn_norm, p + "ffn_norm.weight");
    weight(L.w_gate, p + "ffn_gate.weight");
    weight(L.w_up, p + "ffn_up.weight");
    weight(L.w_down, p + "ffn_down.weight");
  }
  f32(w.output_norm, "output_norm.weight");
  if (!cfg.tied_embeddings && w.output.data != w.tok_embd.data) weight(w.output, "output.weight");
}

void ModelTensorSource::read_rows(size_t i, int64_t row0, int64_t n, float* dst) const {
  const SourceTensor& t = tensors_.at(i);
  SLM_CHECK(row0 >= 0 && n >= 0 && row0 + n <= t.rows(), "model export: tensor '{}': rows out of range", t.name);
  const size_t rb = row_bytes(t.type, t.cols());
  const int64_t hd = qk_head_dim_[i];
  for (int64_t r = 0; r < n; ++r) {
    const int64_t src_row = hd ? gguf_to_hf_qk_row(row0 + r, hd) : row0 + r;
    dequantize_row(t.type, raw_[i] + rb * size_t(src_row), dst + size_t(r) * size_t(t.cols()), t.cols());
  }
}

std::string ModelTensorSource::describe() const {
  return model_.path().empty() ? std::string("in-memory model") : model_.path();
}

// ---- export ---------------------------------------------------------------------------------

namespace {
bool is_float_mixture(const Mixture& m) {
  return m.base == QType::F32 || m.base == QType::F16 || m.base == QType::BF16;
}
}  // namespace

QuantizeReport export_llama_gguf(const TensorSource& src, const ModelConfig& cfg, const TokenizerSpec* tok,
                                 const std::string& path, const ExportOptions& opts) {
  std::vector<QType> types;
  std::optional<Mixture> mix;
  if (opts.type.empty()) {
    // Keep the source's types; file_type from the most common 2-D type.
    std::map<QType, int64_t> count;
    for (const SourceTensor& t : src.tensors()) {
      types.push_back(t.type);
      if (t.ne.size() >= 2) count[t.type] += t.rows() * t.cols();
    }
    QType dominant = QType::F32;
    int64_t best = -1;
    for (const auto& [t, c] : count)
      if (c > best) best = c, dominant = t;
    mix = mixture_from_name(qtype_name(dominant));
    if (!mix) mix = Mixture{std::string(qtype_name(dominant)), dominant, 0, false};
  } else {
    mix = mixture_from_name(opts.type, opts.pure);
    if (!mix) {
      std::string names;
      for (const std::string& n : mixture_names()) names += (names.empty() ? "" : ", ") + n;
      fail("unknown model type '{}' (known: {})", opts.type, names);
    }
    const MixtureContext ctx{cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.tied_embeddings};
    types = plan_tensor_types(src, *mix, ctx);
  }
  GgufMetadata md = llama_gguf_metadata(cfg, tok, mix->file_type, opts.chat_template);
  std::vector<size_t> order(src.tensors().size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (!is_float_mixture(*mix)) {
    // What llama-quantize makes of the float file: same bytes as mkmodel F32 + slmrun quantize.
    md = quantized_metadata(md, *mix);
    std::vector<std::string> names;
    for (const SourceTensor& t : src.tensors()) names.push_back(t.name);
    order = llama_quantize_order(names);
  }
  QuantizeReport rep = write_gguf(src, types, order, md, path, opts.write);
  rep.mixture = mix->name;
  return rep;
}

QuantizeReport export_model_gguf(const Model& m, const std::string& path, const TokenizerSpec* tok) {
  ModelTensorSource src(m);
  ExportOptions opts;
  opts.type.clear();
  const TokenizerSpec* spec = m.has_tokenizer() ? &m.tokenizer().spec() : tok;
  return export_llama_gguf(src, m.config(), spec, path, opts);
}

}  // namespace slm
