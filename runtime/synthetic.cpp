#include "runtime/synthetic.h"

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "core/error.h"
#include "runtime/mixtures.h"

namespace slm {

ModelConfig llama32_1b_config() {
  ModelConfig c;
  c.name = "synthetic Llama-3.2-1B";
  c.n_vocab = 128256;
  c.dim = 2048;
  c.hidden_dim = 8192;
  c.n_layers = 16;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 64;
  c.n_rot = 64;
  c.n_ctx_train = 131072;
  c.rms_eps = 1e-5f;
  c.rope_theta = 500000.f;
  c.rope_divisors = llama3_rope_divisors(c.n_rot, c.rope_theta, 32.f, 1.f, 4.f, 8192.f);
  c.tied_embeddings = true;
  return c;
}

ModelConfig llama32_3b_config() {
  ModelConfig c = llama32_1b_config();
  c.name = "synthetic Llama-3.2-3B";
  c.dim = 3072;
  c.n_layers = 28;
  c.n_heads = 24;
  c.head_dim = 128;
  c.n_rot = 128;
  c.rope_divisors = llama3_rope_divisors(c.n_rot, c.rope_theta, 32.f, 1.f, 4.f, 8192.f);
  return c;
}

ModelConfig tiny_llama_config() {
  ModelConfig c = llama32_1b_config();
  c.name = "synthetic tiny Llama";
  c.n_vocab = 32000;
  c.dim = 512;
  c.hidden_dim = 1536;
  c.n_layers = 4;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  return c;
}

namespace {

// A pool of quantized rows of one (type, width), built once and reused by every tensor of that
// shape. Values ~ N(0, 0.02^2), the initialisation scale of Llama checkpoints.
struct RowPool {
  static constexpr int kRows = 64;
  size_t row_bytes = 0;
  std::vector<uint8_t> bytes;
};

const RowPool& pool_for(std::map<std::pair<QType, int64_t>, RowPool>& pools, QType t, int64_t cols, uint64_t seed) {
  auto key = std::make_pair(t, cols);
  auto it = pools.find(key);
  if (it != pools.end()) return it->second;
  RowPool p;
  p.row_bytes = row_bytes(t, cols);
  p.bytes.resize(p.row_bytes * RowPool::kRows);
  std::mt19937_64 rng(seed ^ (uint64_t(t) << 32) ^ uint64_t(cols));
  std::normal_distribution<float> N(0.f, 0.02f);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int r = 0; r < RowPool::kRows; ++r) {
    for (float& v : row) v = N(rng);
    quantize_row(t, row.data(), p.bytes.data() + size_t(r) * p.row_bytes, cols);
  }
  return pools.emplace(key, std::move(p)).first->second;
}

}  // namespace

std::unique_ptr<Model> make_synthetic_model(const ModelConfig& cfg, const std::string& mixture, uint64_t seed) {
  auto mix = mixture_from_name(mixture);
  SLM_CHECK(mix.has_value(), "unknown model format '{}' for a synthetic model", mixture);
  cfg.validate();
  MixtureContext mctx{cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.tied_embeddings};
  std::map<std::pair<QType, int64_t>, RowPool> pools;
  std::vector<std::vector<uint8_t>> storage;
  uint64_t tensor_id = 0;

  auto make = [&](const std::string& name, TensorKind kind, int64_t layer, int64_t rows, int64_t cols) {
    const QType t = mixture_type(*mix, kind, layer, mctx);
    const RowPool& p = pool_for(pools, t, cols, seed);
    std::vector<uint8_t> buf(p.row_bytes * size_t(rows));
    uint64_t h = seed * 0x9E3779B97F4A7C15ull + (++tensor_id);
    for (int64_t r = 0; r < rows; ++r) {
      h ^= h << 13, h ^= h >> 7, h ^= h << 17;  // xorshift64: which pooled row goes here
      std::memcpy(buf.data() + size_t(r) * p.row_bytes, p.bytes.data() + (h % RowPool::kRows) * p.row_bytes,
                  p.row_bytes);
    }
    WeightTensor w;
    w.name = name;
    w.type = t;
    w.rows = rows;
    w.cols = cols;
    w.data = buf.data();
    storage.push_back(std::move(buf));
    return w;
  };
  auto norm = [&](uint64_t salt) {
    std::vector<float> v(static_cast<size_t>(cfg.dim));
    std::mt19937_64 rng(seed + salt);
    std::normal_distribution<float> N(1.f, 0.05f);
    for (float& x : v) x = N(rng);
    return v;
  };

  Weights w;
  w.tok_embd = make("token_embd.weight", TensorKind::TokenEmbd, 0, cfg.n_vocab, cfg.dim);
  w.layers.resize(size_t(cfg.n_layers));
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    const std::string p = fmt::format("blk.{}.", l);
    L.attn_norm = norm(uint64_t(2 * l + 1));
    L.wq = make(p + "attn_q.weight", TensorKind::AttnQ, l, cfg.q_dim(), cfg.dim);
    L.wk = make(p + "attn_k.weight", TensorKind::AttnK, l, cfg.kv_dim(), cfg.dim);
    L.wv = make(p + "attn_v.weight", TensorKind::AttnV, l, cfg.kv_dim(), cfg.dim);
    L.wo = make(p + "attn_output.weight", TensorKind::AttnOutput, l, cfg.dim, cfg.q_dim());
    L.ffn_norm = norm(uint64_t(2 * l + 2));
    L.w_gate = make(p + "ffn_gate.weight", TensorKind::FfnGate, l, cfg.hidden_dim, cfg.dim);
    L.w_up = make(p + "ffn_up.weight", TensorKind::FfnUp, l, cfg.hidden_dim, cfg.dim);
    L.w_down = make(p + "ffn_down.weight", TensorKind::FfnDown, l, cfg.dim, cfg.hidden_dim);
  }
  w.output_norm = norm(0);
  w.output = cfg.tied_embeddings ? w.tok_embd : make("output.weight", TensorKind::Output, 0, cfg.n_vocab, cfg.dim);
  return Model::from_memory(cfg, std::move(w), nullptr, std::move(storage),
                            fmt::format("{} {}", cfg.name, mix->name));
}

}  // namespace slm
