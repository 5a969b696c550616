// config.json / generation_config.json / quantize_config.json parsing, Llama 3 RoPE divisors and
// the HF -> GGUF q/k permutation (see hf_config.h).
#include "formats/hf_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace slm {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Obj {
  const json& j;
  std::string_view what;

  const json* find(std::string_view key) const {
    auto it = j.find(std::string(key));
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<int64_t> opt_int(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    // Some exporters write integral sizes as 2048.0; accept exact integers only.
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::floor(d) == d && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    if (!v->is_number_integer())
      fail("{}: key '{}' must be an integer, got {}", what, key, v->dump());
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
      fail("{}: key '{}' value {} is too large", what, key, v->dump());
    return v->get<int64_t>();
  }
  int64_t req_int(std::string_view key) const {
    auto v = opt_int(key);
    if (!v) fail("{}: missing required key '{}'", what, key);
    return *v;
  }
  int64_t positive(std::string_view key) const {
    const int64_t v = req_int(key);
    if (v <= 0) fail("{}: key '{}' must be positive, got {}", what, key, v);
    return v;
  }
  std::optional<double> opt_num(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail("{}: key '{}' must be a number, got {}", what, key, v->dump());
    return v->get<double>();
  }
  bool opt_bool(std::string_view key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) fail("{}: key '{}' must be true or false, got {}", what, key, v->dump());
    return v->get<bool>();
  }
  std::optional<std::string> opt_str(std::string_view key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail("{}: key '{}' must be a string, got {}", what, key, v->dump());
    return v->get<std::string>();
  }
  // An id that may be an int or a list of ints (eos_token_id).
  std::vector<int32_t> id_list(std::string_view key) const {
    std::vector<int32_t> out;
    const json* v = find(key);
    if (!v) return out;
    auto one = [&](const json& e) {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
        fail("{}: key '{}' must be a token id or a list of token ids, got {}", what, key, v->dump());
      out.push_back(int32_t(e.get<int64_t>()));
    };
    if (v->is_array()) for (const auto& e : *v) one(e);
    else one(*v);
    return out;
  }
};

RopeScaling parse_rope_scaling(const json& j, std::string_view what) {
  const std::string w = std::string(what) + ": rope_scaling";
  SLM_CHECK(j.is_object(), "{} must be an object or null", w);
  Obj o{j, w};
  RopeScaling r;
  auto type = o.opt_str("rope_type");
  if (!type) type = o.opt_str("type");
  if (!type) fail("{}: missing 'rope_type'", w);
  r.type = *type;
  if (r.type == "default") return r;
  if (r.type != "llama3" && r.type != "linear")
    fail("{}: unsupported rope_type '{}' (supported: llama3, linear)", w, r.type);
  auto f = o.opt_num("factor");
  if (!f) fail("{}: missing required key 'factor'", w);
  if (!(*f > 0)) fail("{}: factor must be positive, got {}", w, *f);
  r.factor = *f;
  if (r.type == "llama3") {
    auto lo = o.opt_num("low_freq_factor"), hi = o.opt_num("high_freq_factor");
    auto old = o.opt_int("original_max_position_embeddings");
    if (!lo) fail("{}: missing required key 'low_freq_factor'", w);
    if (!hi) fail("{}: missing required key 'high_freq_factor'", w);
    if (!old) fail("{}: missing required key 'original_max_position_embeddings'", w);
    if (!(*lo > 0) || !(*hi > *lo))
      fail("{}: need 0 < low_freq_factor < high_freq_factor, got {} and {}", w, *lo, *hi);
    if (*old <= 0) fail("{}: original_max_position_embeddings must be positive, got {}", w, *old);
    r.low_freq_factor = *lo;
    r.high_freq_factor = *hi;
    r.original_max_position_embeddings = *old;
  }
  return r;
}

}  // namespace

std::vector<int32_t> HfConfig::stop_token_ids() const {
  const auto& src = generation_eos_token_ids.empty() ? eos_token_ids : generation_eos_token_ids;
  std::vector<int32_t> out;
  for (int32_t id : src)
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  return out;
}

static HfConfig parse_config_impl(std::string_view text, std::string_view what) {
  const json j = parse_json(text, what);
  SLM_CHECK(j.is_object(), "{}: expected a JSON object", what);
  Obj o{j, what};
  HfConfig c;
  if (const json* a = o.find("architectures")) {
    SLM_CHECK(a->is_array(), "{}: key 'architectures' must be a list of strings", what);
    for (const auto& e : *a) {
      SLM_CHECK(e.is_string(), "{}: key 'architectures' must be a list of strings", what);
      c.architectures.push_back(e.get<std::string>());
    }
  }
  c.model_type = o.opt_str("model_type").value_or("");
  c.hidden_size = o.positive("hidden_size");
  c.intermediate_size = o.positive("intermediate_size");
  c.num_hidden_layers = o.positive("num_hidden_layers");
  c.num_attention_heads = o.positive("num_attention_heads");
  c.vocab_size = o.positive("vocab_size");
  c.num_key_value_heads = o.opt_int("num_key_value_heads").value_or(c.num_attention_heads);
  if (c.num_key_value_heads <= 0)
    fail("{}: key 'num_key_value_heads' must be positive, got {}", what, c.num_key_value_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", what,
         c.num_attention_heads, c.num_key_value_heads);
  if (auto hd = o.opt_int("head_dim")) {
    c.head_dim = *hd;
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim given)",
           what, c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    fail("{}: head_dim must be positive and even, got {}", what, c.head_dim);
  c.rms_norm_eps = o.opt_num("rms_norm_eps").value_or(1e-6);
  if (!(c.rms_norm_eps > 0)) fail("{}: rms_norm_eps must be positive, got {}", what, c.rms_norm_eps);
  c.rope_theta = o.opt_num("rope_theta").value_or(10000.0);
  if (!(c.rope_theta > 0)) fail("{}: rope_theta must be positive, got {}", what, c.rope_theta);
  if (const json* rs = o.find("rope_scaling")) {
    RopeScaling r = parse_rope_scaling(*rs, what);
    if (r.type != "default") c.rope_scaling = r;
  }
  c.tie_word_embeddings = o.opt_bool("tie_word_embeddings", false);
  c.max_position_embeddings = o.opt_int("max_position_embeddings").value_or(2048);
  if (c.max_position_embeddings <= 0)
    fail("{}: max_position_embeddings must be positive, got {}", what, c.max_position_embeddings);
  if (auto b = o.id_list("bos_token_id"); !b.empty()) c.bos_token_id = b.front();
  c.eos_token_ids = o.id_list("eos_token_id");
  c.torch_dtype = o.opt_str("torch_dtype").value_or(o.opt_str("dtype").value_or(""));
  c.hidden_act = o.opt_str("hidden_act").value_or("silu");
  c.attention_bias = o.opt_bool("attention_bias", false);
  c.mlp_bias = o.opt_bool("mlp_bias", false);
  if (const json* q = o.find("quantization_config"))
    c.gptq = parse_gptq_config(*q, std::string(what) + ": quantization_config");
  return c;
}

HfConfig read_hf_config_dir(const std::string& dir) {
  const fs::path d(dir);
  const std::string cfg_path = (d / "config.json").string();
  HfConfig c = parse_hf_config(read_text_file(cfg_path), cfg_path);
  std::error_code ec;
  const fs::path gen = d / "generation_config.json";
  if (fs::exists(gen, ec)) {
    const json j = parse_json(read_text_file(gen.string()), gen.string());
    SLM_CHECK(j.is_object(), "{}: expected a JSON object", gen.string());
    c.generation_eos_token_ids = Obj{j, gen.string()}.id_list("eos_token_id");
  }
  // AutoGPTQ's search order: quantize_config.json, quant_config.json, then quantization_config.
  for (const char* name : {"quantize_config.json", "quant_config.json"}) {
    const fs::path q = d / name;
    if (fs::exists(q, ec)) {
      c.gptq = read_gptq_config_file(q.string());
      break;
    }
  }
  return c;
}

std::vector<float> llama3_rope_divisors(const HfConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(size_t(half), 1.0f);
  if (!c.rope_scaling) return f;
  const RopeScaling& r = *c.rope_scaling;
  if (r.type == "linear") {
    std::fill(f.begin(), f.end(), float(r.factor));
    return f;
  }
  // inv_freq in float32 as torch computes it (base ** (arange(0, d, 2) / d)); the rest in double,
  // rounded to float32 at the end, as llama.cpp's converter does.
  const double old = double(r.original_max_position_embeddings);
  const double lo_wavelen = old / r.low_freq_factor, hi_wavelen = old / r.high_freq_factor;
  for (int64_t j = 0; j < half; ++j) {
    const float e = float(2 * j) / float(c.head_dim);
    const float inv = 1.0f / std::pow(float(c.rope_theta), e);
    const double wavelen = 2.0 * M_PI / double(inv);
    double div;
    if (wavelen < hi_wavelen) div = 1.0;
    else if (wavelen > lo_wavelen) div = r.factor;
    else {
      const double smooth = (old / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      div = 1.0 / ((1.0 - smooth) / r.factor + smooth);
    }
    f[size_t(j)] = float(div);
  }
  return f;
}

int64_t hf_to_gguf_qk_row(int64_t hf_row, int64_t head_dim) {
  const int64_t h = hf_row / head_dim, i = hf_row % head_dim, half = head_dim / 2;
  return h * head_dim + (i < half ? 2 * i : 2 * (i - half) + 1);
}

int64_t gguf_to_hf_qk_row(int64_t gguf_row, int64_t head_dim) {
  const int64_t h = gguf_row / head_dim, i = gguf_row % head_dim;
  return h * head_dim + (i % 2 == 0 ? i / 2 : i / 2 + head_dim / 2);
}

void permute_qk_rows_hf_to_gguf(const void* src, void* dst, int64_t n_rows, int64_t head_dim,
                                size_t row_bytes) {
  SLM_CHECK(head_dim > 0 && head_dim % 2 == 0 && n_rows % head_dim == 0,
            "q/k permutation: {} rows is not a whole number of heads of {}", n_rows, head_dim);
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  for (int64_t r = 0; r < n_rows; ++r)
    std::memcpy(d + size_t(hf_to_gguf_qk_row(r, head_dim)) * row_bytes, s + size_t(r) * row_bytes, row_bytes);
}

HfConfig parse_hf_config(std::string_view text, std::string_view what) {
  // Every access checks types first; this turns anything missed into the one error type.
  try {
    return parse_config_impl(text, what);
  } catch (const json::exception& e) {
    fail("{}: unexpected JSON structure: {}", what, e.what());
  }
}

}  // namespace slm
