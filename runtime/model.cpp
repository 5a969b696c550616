// Model loading from GGUF: config from metadata, tensor lookup with shape/type checks, tied
// output projection, Llama 3 rope divisors from rope_freqs.weight.
#include "runtime/model.h"

#include <malloc.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace slm {

Model::~Model() = default;

namespace {

const gguf::TensorInfo& require(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  SLM_CHECK(t != nullptr, "{}: missing tensor '{}'", f.path(), name);
  return *t;
}

WeightTensor matrix(const gguf::File& f, const std::string& name, int64_t rows, int64_t cols) {
  const gguf::TensorInfo& t = require(f, name);
  SLM_CHECK(t.ne.size() == 2 && t.ne[0] == cols && t.ne[1] == rows,
            "{}: tensor '{}' has shape [{}], expected [{}, {}]", f.path(), name,
            fmt::join(t.ne, ", "), cols, rows);
  const QTypeInfo& qi = qtype_info(t.type);
  SLM_CHECK(!qi.is_activation_only, "{}: tensor '{}' has type {}, which is not a weight type", f.path(),
            name, qi.name);
  WeightTensor w;
  w.name = name;
  w.type = t.type;
  w.rows = rows;
  w.cols = cols;
  w.data = t.data;
  return w;
}

std::vector<float> vector_f32(const gguf::File& f, const std::string& name, int64_t n) {
  const gguf::TensorInfo& t = require(f, name);
  SLM_CHECK(t.n_elements() == n && t.ne.size() == 1, "{}: tensor '{}' has shape [{}], expected [{}]",
            f.path(), name, fmt::join(t.ne, ", "), n);
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(t.type, t.data, v.data(), n);
  return v;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& opts) {
  if (std::filesystem::is_directory(path)) return load_hf(path, opts);
  std::unique_ptr<Model> m(new Model());
  m->path_ = path;
  m->gguf_ = gguf::File::open(path);
  const gguf::File& f = *m->gguf_;
  ModelConfig& c = m->config_;
  c = config_from_gguf(f);

  if (const gguf::TensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    SLM_CHECK(rf->n_elements() == c.n_rot / 2, "{}: rope_freqs.weight has {} values, expected {}", path,
              rf->n_elements(), c.n_rot / 2);
    c.rope_divisors = vector_f32(f, "rope_freqs.weight", c.n_rot / 2);
  }
  c.validate();

  const size_t total = 3 + size_t(c.n_layers) * 9;
  size_t done = 0;
  auto tick = [&] {
    ++done;
    if (opts.progress) opts.progress(done, total);
  };
  Weights& w = m->weights_;
  w.tok_embd = matrix(f, "token_embd.weight", c.n_vocab, c.dim);
  tick();
  w.layers.resize(size_t(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    LayerWeights& L = w.layers[size_t(l)];
    L.attn_norm = vector_f32(f, p + "attn_norm.weight", c.dim);
    L.wq = matrix(f, p + "attn_q.weight", c.q_dim(), c.dim);
    L.wk = matrix(f, p + "attn_k.weight", c.kv_dim(), c.dim);
    L.wv = matrix(f, p + "attn_v.weight", c.kv_dim(), c.dim);
    L.wo = matrix(f, p + "attn_output.weight", c.dim, c.q_dim());
    L.ffn_norm = vector_f32(f, p + "ffn_norm.weight", c.dim);
    L.w_gate = matrix(f, p + "ffn_gate.weight", c.hidden_dim, c.dim);
    L.w_up = matrix(f, p + "ffn_up.weight", c.hidden_dim, c.dim);
    L.w_down = matrix(f, p + "ffn_down.weight", c.dim, c.hidden_dim);
    for (int i = 0; i < 9; ++i) tick();
  }
  w.output_norm = vector_f32(f, "output_norm.weight", c.dim);
  tick();
  w.output = c.tied_embeddings ? w.tok_embd : matrix(f, "output.weight", c.n_vocab, c.dim);
  tick();

  m->tokenizer_ = Tokenizer::from_gguf(f);
  // The tokenizer holds its own copy now; the parsed arrays would stay resident for nothing.
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                          "tokenizer.ggml.scores"})
    m->gguf_->release_value(key);
  // Hand the freed parse-time heap (hundreds of thousands of small strings) back to the OS, so
  // it does not count in the resident set next to the weights.
  malloc_trim(0);
  SLM_CHECK(m->tokenizer_->n_vocab() <= c.n_vocab, "{}: tokenizer has {} tokens but the model only {} rows",
            path, m->tokenizer_->n_vocab(), c.n_vocab);
  tick();
  return m;
}

std::unique_ptr<Model> Model::from_memory(ModelConfig config, Weights weights,
                                         std::unique_ptr<Tokenizer> tokenizer,
                                         std::vector<std::vector<uint8_t>> storage, std::string name) {
  config.validate();
  std::unique_ptr<Model> m(new Model());
  m->path_ = std::move(name);
  m->config_ = std::move(config);
  m->weights_ = std::move(weights);
  m->tokenizer_ = std::move(tokenizer);
  m->storage_ = std::move(storage);
  return m;
}

size_t Model::weight_bytes() const {
  size_t b = weights_.tok_embd.bytes();
  for (const LayerWeights& L : weights_.layers)
    b += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.w_gate.bytes() + L.w_up.bytes() +
         L.w_down.bytes() + (L.attn_norm.size() + L.ffn_norm.size()) * 4;
  if (!config_.tied_embeddings) b += weights_.output.bytes();
  return b + weights_.output_norm.size() * 4;
}

const Tokenizer& Model::tokenizer() const {
  SLM_CHECK(tokenizer_ != nullptr, "{}: this model has no tokenizer", path_);
  return *tokenizer_;
}

size_t Model::file_bytes() const {
  if (gguf_) return gguf_->file_size();
  if (checkpoint_) {
    size_t b = 0;
    for (const auto& f : checkpoint_->shards()) b += f->file_size();
    return b;
  }
  return weight_bytes();
}

std::string Model::dominant_type() const {
  std::map<std::string, size_t> bytes_by_type;
  auto add = [&](const WeightTensor& t) { bytes_by_type[t.type_name()] += t.bytes(); };
  for (const LayerWeights& L : weights_.layers) {
    for (const WeightTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) add(*t);
  }
  std::string best;
  size_t most = 0;
  for (auto& [k, v] : bytes_by_type)
    if (v > most) most = v, best = k;
  return best;
}

}  // namespace slm
