// Runtime unit tests on small in-memory models: the forward pass against an independent float64
// reference (tied/untied output, both RoPE pairings, with/without Llama 3 scaling, GQA), KV-cache
// consistency (batched prefill == token-by-token decode), input validation, rope divisors.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

ModelConfig small_config(bool tied, RopeStyle style, bool llama3_scaling) {
  ModelConfig c = tiny_llama_config();
  c.n_vocab = 300;
  c.dim = 64;
  c.hidden_dim = 96;  // not a multiple of 256: exercises 32-blocks only, fine for F32
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.n_rot = 16;
  c.rope_theta = llama3_scaling ? 500000.f : 10000.f;
  c.rope_divisors = llama3_scaling ? llama3_rope_divisors(c.n_rot, c.rope_theta, 32.f, 1.f, 4.f, 8192.f)
                                   : std::vector<float>(size_t(c.n_rot / 2), 1.f);
  c.rope_style = style;
  c.tied_embeddings = tied;
  return c;
}

using Mat = std::vector<double>;  // row-major

Mat dequant(const WeightTensor& w) {
  Mat m(size_t(w.rows * w.cols));
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, w.row(r), row.data(), w.cols);
    for (int64_t i = 0; i < w.cols; ++i) m[size_t(r * w.cols + i)] = row[size_t(i)];
  }
  return m;
}

std::vector<double> matvec(const WeightTensor& w, const std::vector<double>& x) {
  Mat m = dequant(w);
  std::vector<double> y(size_t(w.rows), 0.0);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t i = 0; i < w.cols; ++i) y[size_t(r)] += m[size_t(r * w.cols + i)] * x[size_t(i)];
  return y;
}

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
  return y;
}

void rope(std::vector<double>& v, int64_t n_heads, const ModelConfig& c, int64_t pos) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < c.n_rot / 2; ++j) {
      const double ang = double(pos) * std::pow(double(c.rope_theta), -2.0 * double(j) / double(c.n_rot)) /
                         double(c.rope_divisors[size_t(j)]);
      const int64_t a = h * c.head_dim + (c.rope_style == RopeStyle::Interleaved ? 2 * j : j);
      const int64_t b = h * c.head_dim + (c.rope_style == RopeStyle::Interleaved ? 2 * j + 1 : j + c.n_rot / 2);
      const double x0 = v[size_t(a)], x1 = v[size_t(b)];
      v[size_t(a)] = x0 * std::cos(ang) - x1 * std::sin(ang);
      v[size_t(b)] = x0 * std::sin(ang) + x1 * std::cos(ang);
    }
}

// Straightforward float64 Llama forward over all tokens; returns the last token's logits.
std::vector<double> reference_logits(const Model& m, const std::vector<int32_t>& toks) {
  const ModelConfig& c = m.config();
  const Weights& W = m.weights();
  const Mat emb = dequant(W.tok_embd);
  std::vector<std::vector<double>> x(toks.size()), K(toks.size()), Vv(toks.size());
  for (size_t t = 0; t < toks.size(); ++t)
    x[t].assign(emb.begin() + toks[t] * c.dim, emb.begin() + (toks[t] + 1) * c.dim);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    for (size_t t = 0; t < toks.size(); ++t) {
      auto xb = rmsnorm(x[t], L.attn_norm, c.rms_eps);
      auto q = matvec(L.wq, xb);
      K[t] = matvec(L.wk, xb);
      Vv[t] = matvec(L.wv, xb);
      rope(q, c.n_heads, c, int64_t(t));
      rope(K[t], c.n_kv_heads, c, int64_t(t));
      std::vector<double> att(size_t(c.q_dim()), 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t kvh = h / (c.n_heads / c.n_kv_heads);
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (size_t i = 0; i <= t; ++i) {
          double d = 0;
          for (int64_t e = 0; e < c.head_dim; ++e) d += q[size_t(h * c.head_dim + e)] * K[i][size_t(kvh * c.head_dim + e)];
          s[i] = d / std::sqrt(double(c.head_dim));
          mx = std::max(mx, s[i]);
        }
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (size_t i = 0; i <= t; ++i)
          for (int64_t e = 0; e < c.head_dim; ++e)
            att[size_t(h * c.head_dim + e)] += s[i] / sum * Vv[i][size_t(kvh * c.head_dim + e)];
      }
      auto o = matvec(L.wo, att);
      for (int64_t i = 0; i < c.dim; ++i) x[t][size_t(i)] += o[size_t(i)];
      xb = rmsnorm(x[t], L.ffn_norm, c.rms_eps);
      auto g = matvec(L.w_gate, xb), u = matvec(L.w_up, xb);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto d = matvec(L.w_down, g);
      for (int64_t i = 0; i < c.dim; ++i) x[t][size_t(i)] += d[size_t(i)];
    }
  }
  return matvec(W.output, rmsnorm(x.back(), W.output_norm, c.rms_eps));
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& v : t) v = int32_t(rng() % uint64_t(vocab));
  return t;
}

}  // namespace

TEST_CASE("forward pass (F32 activations) matches a float64 reference for every model variant") {
  // Bound: F32 weights, float32 activations and accumulation over k <= 96 terms per dot product;
  // errors ~1e-7 relative per op, a few hundred ops deep: 1e-5 relative L2 is ample.
  for (bool tied : {true, false})
    for (RopeStyle style : {RopeStyle::Interleaved, RopeStyle::HalfSplit})
      for (bool scaling : {false, true}) {
        CAPTURE(tied);
        CAPTURE(int(style));
        CAPTURE(scaling);
        auto m = make_synthetic_model(small_config(tied, style, scaling), "F32", 3);
        SessionOptions so;
        so.n_ctx = 64;
        so.max_batch = 5;  // the 13-token prompt runs as 5 + 5 + 3
        so.precision = cpu::ActPrecision::F32;
        so.kv_type = cpu::KvType::F32;
        Session s(*m, so);
        auto toks = random_tokens(13, m->config().n_vocab, 11);
        s.eval(toks);
        auto ref = reference_logits(*m, toks);
        std::vector<float> reff(ref.begin(), ref.end());
        CHECK(test::rel_l2(s.last_logits(), reff.data(), reff.size()) < 1e-5);
        // F16 KV cache: each cached element carries a relative rounding error <= 2^-11 (4.9e-4);
        // attention averages them, so the logits move by a few 1e-4 at most: bound 5e-3.
        so.kv_type = cpu::KvType::F16;
        Session h(*m, so);
        h.eval(toks);
        CHECK(test::rel_l2(h.last_logits(), reff.data(), reff.size()) < 5e-3);
      }
}

TEST_CASE("the output projection is the embedding when tied and output.weight when not") {
  auto tied = make_synthetic_model(small_config(true, RopeStyle::Interleaved, false), "F32", 5);
  CHECK(tied->weights().output.data == tied->weights().tok_embd.data);
  auto untied = make_synthetic_model(small_config(false, RopeStyle::Interleaved, false), "F32", 5);
  CHECK(untied->weights().output.data != untied->weights().tok_embd.data);
}

TEST_CASE("KV cache: batched prefill equals token-by-token decode, for several quant types") {
  for (const char* type : {"F32", "Q8_0", "Q4_0"}) {
    CAPTURE(type);
    ModelConfig c = small_config(true, RopeStyle::Interleaved, true);
    c.dim = 256;  // room for 256-wide blocks is not needed for these 32-blocks, but keeps rows realistic
    c.hidden_dim = 512;
    auto m = make_synthetic_model(c, type, 7);
    SessionOptions so;
    so.n_ctx = 32;
    so.max_batch = 8;
    so.precision = cpu::ActPrecision::F32;
    Session batch(*m, so), step(*m, so);
    auto toks = random_tokens(20, c.n_vocab, 3);
    batch.eval(toks, true);
    for (size_t i = 0; i < toks.size(); ++i) {
      step.eval(std::span<const int32_t>(&toks[i], 1));
      // Same arithmetic per row except the order of rows within a GEMM: tiny differences only.
      CHECK(test::rel_l2(step.last_logits(), batch.all_logits().data() + i * size_t(c.n_vocab), size_t(c.n_vocab)) < 1e-5);
    }
    CHECK(step.n_past() == 20);
  }
}

TEST_CASE("session input validation: context overflow and bad token ids are clear errors") {
  auto m = make_synthetic_model(small_config(true, RopeStyle::Interleaved, false), "F32", 1);
  SessionOptions so;
  so.n_ctx = 8;
  Session s(*m, so);
  auto toks = random_tokens(9, m->config().n_vocab, 1);
  CHECK_THROWS_WITH_AS(s.eval(toks), doctest::Contains("context overflow"), slm::Error);
  std::vector<int32_t> bad = {1, 300};
  CHECK_THROWS_WITH_AS(s.eval(bad), doctest::Contains("out of range"), slm::Error);
  std::vector<int32_t> neg = {-1};
  CHECK_THROWS_AS(s.eval(neg), slm::Error);
  CHECK(s.n_past() == 0);  // a rejected batch leaves the cache untouched
  s.eval(std::span<const int32_t>(toks.data(), 8));
  CHECK_THROWS_WITH_AS(s.eval(std::span<const int32_t>(toks.data(), 1)), doctest::Contains("context overflow"),
                       slm::Error);
}

TEST_CASE("Llama 3 rope divisors match the values in llama.md for 1B and 3B") {
  auto d = llama3_rope_divisors(64, 500000.f, 32.f, 1.f, 4.f, 8192.f);
  REQUIRE(d.size() == 32);
  for (int j = 0; j <= 14; ++j) CHECK(d[size_t(j)] == doctest::Approx(1.0));
  CHECK(d[15] == doctest::Approx(1.6513).epsilon(1e-4));
  CHECK(d[16] == doctest::Approx(3.2923).epsilon(1e-4));
  CHECK(d[17] == doctest::Approx(9.6667).epsilon(1e-4));
  for (int j = 18; j < 32; ++j) CHECK(d[size_t(j)] == doctest::Approx(32.0));
  auto d3 = llama3_rope_divisors(128, 500000.f, 32.f, 1.f, 4.f, 8192.f);
  REQUIRE(d3.size() == 64);
  CHECK(d3[28] == doctest::Approx(1.0));
  CHECK(d3[29] == doctest::Approx(1.2349).epsilon(1e-4));
  CHECK(d3[34] == doctest::Approx(9.6667).epsilon(1e-4));
  CHECK(d3[35] == doctest::Approx(32.0));
}

TEST_CASE("fixture rope_freqs.weight equals the divisors computed from the formula") {
  SLM_REQUIRE_FIXTURES(dir);
  auto m = Model::load(dir + "/tiny-a/tiny-a-F32.gguf");
  auto d = llama3_rope_divisors(64, 500000.f, 32.f, 1.f, 4.f, 8192.f);
  for (size_t j = 0; j < d.size(); ++j) CHECK(m->config().rope_divisors[j] == doctest::Approx(d[j]).epsilon(1e-6));
}
