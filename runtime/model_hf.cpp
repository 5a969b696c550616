// Model loading from a Hugging Face directory: config.json -> ModelConfig, safetensors weights
// used in place (F32/F16/BF16 rows are GGUF-compatible rows), GPTQ linears prepared for the GPTQ
// CPU kernels, tokenizer.json -> the same BPE tokenizer the GGUF path uses. HF q_proj/k_proj rows
// are in rotate-half order, so these models run RoPE with RopeStyle::HalfSplit (llama.md §3.4)
// instead of permuting rows.
#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gptq.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"
#include "formats/safetensors.h"
#include "runtime/model.h"

namespace slm {

namespace {

struct HfLoader {
  const st::Checkpoint& ck;
  const HfConfig& hc;
  std::vector<std::unique_ptr<cpu::GptqCpuWeight>>& gptq_out;
  std::string dir;

  WeightTensor matrix(const std::string& prefix, int64_t rows, int64_t cols) {
    WeightTensor w;
    w.name = prefix;
    w.rows = rows;
    w.cols = cols;
    if (is_gptq_linear(ck, prefix)) {
      SLM_CHECK(hc.gptq.has_value(), "{}: '{}' is GPTQ-quantized but config.json has no quantization_config", dir,
                prefix);
      // Per-module overrides (GPTQModel's `dynamic`, e.g. an 8-bit lm_head in a 4-bit model).
      const std::optional<GptqConfig> mc = hc.gptq->for_module(prefix);
      SLM_CHECK(mc.has_value(), "{}: '{}' is GPTQ-quantized but a '-:' dynamic rule excludes it from quantization",
                dir, prefix);
      GptqLinear l = gptq_linear_view(ck, prefix, *mc);
      SLM_CHECK(l.out_features == rows && l.in_features == cols,
                "{}: GPTQ layer '{}' is {}x{}, expected {}x{}", dir, prefix, l.out_features, l.in_features, rows, cols);
      gptq_out.push_back(std::make_unique<cpu::GptqCpuWeight>(cpu::gptq_prepare(l.raw())));
      w.gptq = gptq_out.back().get();
      w.gptq_src = l.raw();
      for (const st::Tensor* t : {l.qweight, l.qzeros, l.scales, l.g_idx, l.bias})
        if (t) w.gptq_bytes += t->nbytes();
      return w;
    }
    const st::Tensor& t = ck.get(prefix + ".weight");
    SLM_CHECK(t.shape.size() == 2 && t.shape[0] == rows && t.shape[1] == cols,
              "{}: tensor '{}' has shape [{}], expected [{}, {}]", dir, t.name, fmt::join(t.shape, ", "), rows, cols);
    auto qt = st::to_qtype(t.dtype);
    SLM_CHECK(qt.has_value() && (*qt == QType::F32 || *qt == QType::F16 || *qt == QType::BF16),
              "{}: tensor '{}' has dtype {}, expected F32, F16 or BF16", dir, t.name, st::dtype_name(t.dtype));
    w.type = *qt;
    w.data = t.data;
    return w;
  }

  std::vector<float> vec(const std::string& name, int64_t n) {
    const st::Tensor& t = ck.get(name);
    SLM_CHECK(t.numel() == n && t.shape.size() == 1, "{}: tensor '{}' has shape [{}], expected [{}]", dir, name,
              fmt::join(t.shape, ", "), n);
    return st::to_f32(t);
  }
};

}  // namespace

std::unique_ptr<Model> Model::load_hf(const std::string& dir, const LoadOptions& opts) {
  std::unique_ptr<Model> m(new Model());
  m->path_ = dir;
  const HfConfig hc = read_hf_config_dir(dir);
  SLM_CHECK(hc.model_type.empty() || hc.model_type == "llama", "{}: unsupported model_type '{}' (slmrun runs llama)",
            dir, hc.model_type);
  SLM_CHECK(!hc.attention_bias && !hc.mlp_bias, "{}: attention/MLP biases are not supported", dir);
  SLM_CHECK(hc.hidden_act == "silu", "{}: hidden_act '{}' is not supported (silu only)", dir, hc.hidden_act);
  m->checkpoint_ = st::Checkpoint::open(dir);
  const st::Checkpoint& ck = *m->checkpoint_;
  m->format_ = hc.gptq ? "gptq" : "hf";

  ModelConfig& c = m->config_;
  c.arch = "llama";
  c.name = std::filesystem::path(dir).filename().string();
  c.n_vocab = hc.vocab_size;
  c.dim = hc.hidden_size;
  c.hidden_dim = hc.intermediate_size;
  c.n_layers = hc.num_hidden_layers;
  c.n_heads = hc.num_attention_heads;
  c.n_kv_heads = hc.num_key_value_heads;
  c.head_dim = hc.head_dim;
  c.n_rot = hc.head_dim;
  c.n_ctx_train = hc.max_position_embeddings;
  c.rms_eps = float(hc.rms_norm_eps);
  c.rope_theta = float(hc.rope_theta);
  c.rope_divisors = llama3_rope_divisors(hc);
  c.rope_style = RopeStyle::HalfSplit;
  const bool has_lm_head = ck.find("lm_head.weight") != nullptr || is_gptq_linear(ck, "lm_head");
  c.tied_embeddings = !has_lm_head;
  c.validate();

  HfLoader L{ck, hc, m->gptq_, dir};
  Weights& w = m->weights_;
  const size_t total = size_t(c.n_layers) + 2;
  w.tok_embd = L.matrix("model.embed_tokens", c.n_vocab, c.dim);
  SLM_CHECK(w.tok_embd.gptq == nullptr, "{}: a GPTQ-quantized embedding is not supported", dir);
  w.layers.resize(size_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights& lw = w.layers[size_t(l)];
    lw.attn_norm = L.vec(p + "input_layernorm.weight", c.dim);
    lw.wq = L.matrix(p + "self_attn.q_proj", c.q_dim(), c.dim);
    lw.wk = L.matrix(p + "self_attn.k_proj", c.kv_dim(), c.dim);
    lw.wv = L.matrix(p + "self_attn.v_proj", c.kv_dim(), c.dim);
    lw.wo = L.matrix(p + "self_attn.o_proj", c.dim, c.q_dim());
    lw.ffn_norm = L.vec(p + "post_attention_layernorm.weight", c.dim);
    lw.w_gate = L.matrix(p + "mlp.gate_proj", c.hidden_dim, c.dim);
    lw.w_up = L.matrix(p + "mlp.up_proj", c.hidden_dim, c.dim);
    lw.w_down = L.matrix(p + "mlp.down_proj", c.dim, c.hidden_dim);
    if (opts.progress) opts.progress(size_t(l) + 1, total);
  }
  w.output_norm = L.vec("model.norm.weight", c.dim);
  w.output = c.tied_embeddings ? w.tok_embd : L.matrix("lm_head", c.n_vocab, c.dim);
  if (opts.progress) opts.progress(total - 1, total);

  TokenizerSpec spec = read_hf_tokenizer_dir(dir);
  // config.json / generation_config.json stop ids join the end-of-generation set.
  const auto stops = hc.stop_token_ids();
  if (!spec.eos && !stops.empty()) spec.eos = stops.front();
  for (int32_t id : stops)
    if (id >= 0 && size_t(id) < spec.tokens.size() && spec.tokens[size_t(id)] == "<|eom_id|>") spec.eom = id;
  m->tokenizer_ = Tokenizer::from_spec(std::move(spec));
  SLM_CHECK(m->tokenizer_->n_vocab() <= c.n_vocab, "{}: tokenizer has {} tokens but the model only {} rows", dir,
            m->tokenizer_->n_vocab(), c.n_vocab);
  if (opts.progress) opts.progress(total, total);
  return m;
}

}  // namespace slm
