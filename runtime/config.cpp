#include "runtime/config.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "formats/gguf.h"

namespace slm {

void ModelConfig::validate() const {
  auto pos = [](int64_t v, const char* what) {
    SLM_CHECK(v > 0 && v < (int64_t(1) << 31), "model config: {} = {} is out of range", what, v);
  };
  pos(n_vocab, "vocabulary size");
  pos(dim, "embedding_length");
  pos(hidden_dim, "feed_forward_length");
  pos(n_layers, "block_count");
  pos(n_heads, "attention.head_count");
  pos(n_kv_heads, "attention.head_count_kv");
  pos(head_dim, "head dimension");
  SLM_CHECK(n_heads % n_kv_heads == 0, "model config: head_count {} is not a multiple of head_count_kv {}",
            n_heads, n_kv_heads);
  SLM_CHECK(n_rot > 0 && n_rot <= head_dim && n_rot % 2 == 0,
            "model config: rope dimension_count {} must be even and <= head dim {}", n_rot, head_dim);
  SLM_CHECK(int64_t(rope_divisors.size()) == n_rot / 2, "model config: {} rope divisors for {} pairs",
            rope_divisors.size(), n_rot / 2);
  SLM_CHECK(std::isfinite(rms_eps) && rms_eps > 0, "model config: rms epsilon {} is invalid", rms_eps);
  SLM_CHECK(std::isfinite(rope_theta) && rope_theta > 0, "model config: rope freq_base {} is invalid",
            rope_theta);
}

std::vector<float> llama3_rope_divisors(int64_t n_rot, float theta, float factor, float lo, float hi,
                                        float old_ctx) {
  std::vector<float> d(size_t(n_rot / 2), 1.f);
  const double lambda_hi = old_ctx / hi;  // shorter wavelengths stay unscaled
  const double lambda_lo = old_ctx / lo;  // longer wavelengths are divided by the factor
  for (int64_t j = 0; j < n_rot / 2; ++j) {
    const double inv = std::pow(double(theta), -2.0 * double(j) / double(n_rot));
    const double lambda = 2.0 * std::numbers::pi / inv;
    if (lambda < lambda_hi) d[size_t(j)] = 1.f;
    else if (lambda > lambda_lo) d[size_t(j)] = factor;
    else {
      const double smooth = (old_ctx / lambda - lo) / (hi - lo);
      d[size_t(j)] = float(1.0 / ((1.0 - smooth) / factor + smooth));
    }
  }
  return d;
}

ModelConfig config_from_gguf(const gguf::File& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  SLM_CHECK(arch.has_value(), "{}: missing general.architecture", f.path());
  SLM_CHECK(*arch == "llama", "{}: unsupported architecture '{}' (slmrun runs 'llama' models)", f.path(), *arch);
  c.arch = *arch;
  c.name = f.get_string("general.name").value_or("");
  auto req = [&](const std::string& key) -> int64_t {
    auto v = f.get_int(c.arch + "." + key);
    SLM_CHECK(v.has_value(), "{}: missing or non-integer metadata key {}.{}", f.path(), c.arch, key);
    return *v;
  };
  c.dim = req("embedding_length");
  c.hidden_dim = req("feed_forward_length");
  c.n_layers = req("block_count");
  c.n_heads = req("attention.head_count");
  c.n_kv_heads = f.get_int(c.arch + ".attention.head_count_kv").value_or(c.n_heads);
  c.n_ctx_train = f.get_int(c.arch + ".context_length").value_or(2048);
  SLM_CHECK(c.n_heads > 0 && c.dim > 0, "{}: head_count {} / embedding_length {} invalid", f.path(), c.n_heads, c.dim);
  c.head_dim = f.get_int(c.arch + ".attention.key_length").value_or(c.dim / c.n_heads);
  if (auto vl = f.get_int(c.arch + ".attention.value_length"))
    SLM_CHECK(*vl == c.head_dim, "{}: value_length {} != key_length {} is not supported", f.path(), *vl, c.head_dim);
  c.n_rot = f.get_int(c.arch + ".rope.dimension_count").value_or(c.head_dim);
  c.rms_eps = float(f.get_float(c.arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_theta = float(f.get_float(c.arch + ".rope.freq_base").value_or(10000.0));
  if (auto nv = f.get_int(c.arch + ".vocab_size")) c.n_vocab = *nv;
  else if (auto* toks = f.get_array("tokenizer.ggml.tokens")) c.n_vocab = int64_t(toks->size());
  else if (auto* te = f.find_tensor("token_embd.weight"); te && te->ne.size() >= 2) c.n_vocab = te->ne[1];
  c.rope_style = RopeStyle::Interleaved;
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;

  // Rope scaling from metadata (used when there is no rope_freqs.weight tensor).
  c.rope_divisors.assign(size_t(std::max<int64_t>(c.n_rot, 0) / 2), 1.f);
  if (auto type = f.get_string(c.arch + ".rope.scaling.type")) {
    const float factor = float(f.get_float(c.arch + ".rope.scaling.factor").value_or(1.0));
    if (*type == "linear") {
      SLM_CHECK(factor > 0, "{}: rope.scaling.factor {} invalid", f.path(), factor);
      c.rope_divisors.assign(c.rope_divisors.size(), factor);
    } else if (*type == "llama3") {
      const float old = float(f.get_float(c.arch + ".rope.scaling.original_context_length").value_or(8192));
      const float lo = float(f.get_float(c.arch + ".rope.scaling.low_freq_factor").value_or(1.0));
      const float hi = float(f.get_float(c.arch + ".rope.scaling.high_freq_factor").value_or(4.0));
      c.rope_divisors = llama3_rope_divisors(c.n_rot, c.rope_theta, factor, lo, hi, old);
    } else if (*type != "none") {
      fail("{}: unsupported rope scaling type '{}'", f.path(), *type);
    }
  }
  return c;
}

}  // namespace slm
