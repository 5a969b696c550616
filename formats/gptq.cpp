// GPTQ config parsing, tensor-view validation and the exact references (see gptq.h).
#include "formats/gptq.h"

#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace slm {
using nlohmann::json;

namespace {

const json* find_key(const json& j, std::string_view key) {
  auto it = j.find(std::string(key));
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<int64_t> opt_int(const json& j, std::string_view key, std::string_view what) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) fail("{}: key '{}' must be an integer, got {}", what, key, v->dump());
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
    fail("{}: key '{}' value {} is too large", what, key, v->dump());
  return v->get<int64_t>();
}

bool opt_bool(const json& j, std::string_view key, bool def, std::string_view what) {
  const json* v = find_key(j, key);
  if (!v) return def;
  if (!v->is_boolean()) fail("{}: key '{}' must be true or false, got {}", what, key, v->dump());
  return v->get<bool>();
}

std::optional<std::string> opt_str(const json& j, std::string_view key, std::string_view what) {
  const json* v = find_key(j, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail("{}: key '{}' must be a string, got {}", what, key, v->dump());
  return v->get<std::string>();
}

cpu::GptqFloat float_kind(const st::Tensor& t, const std::string& prefix) {
  switch (t.dtype) {
    case st::DType::F16: return cpu::GptqFloat::F16;
    case st::DType::BF16: return cpu::GptqFloat::BF16;
    case st::DType::F32: return cpu::GptqFloat::F32;
    default:
      fail("GPTQ layer '{}': tensor '{}' has dtype {}, expected F16, BF16 or F32", prefix, t.name,
           st::dtype_name(t.dtype));
  }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

GptqConfig parse_gptq_config(const json& j, std::string_view what) {
  SLM_CHECK(j.is_object(), "{}: quantization config must be a JSON object", what);
  GptqConfig c;
  if (auto m = opt_str(j, "quant_method", what); m && *m != "gptq")
    fail("{}: unsupported quant_method '{}' (only GPTQ checkpoints are supported)", what, *m);
  auto bits = opt_int(j, "bits", what);
  if (!bits) bits = opt_int(j, "w_bit", what);
  if (!bits) fail("{}: missing required key 'bits'", what);
  if (*bits != 2 && *bits != 3 && *bits != 4 && *bits != 8)
    fail("{}: unsupported GPTQ bits {} (expected 2, 3, 4 or 8)", what, *bits);
  c.bits = int(*bits);
  auto gs = opt_int(j, "group_size", what);
  if (!gs) gs = opt_int(j, "q_group_size", what);
  if (!gs) fail("{}: missing required key 'group_size'", what);
  if (*gs != -1 && (*gs <= 0 || *gs > (int64_t(1) << 30)))
    fail("{}: invalid group_size {} (expected -1 or a positive number)", what, *gs);
  c.group_size = int(*gs);
  c.desc_act = opt_bool(j, "desc_act", false, what);
  c.sym = opt_bool(j, "sym", true, what);
  c.lm_head = opt_bool(j, "lm_head", false, what);
  c.static_groups = opt_bool(j, "static_groups", false, what);
  c.true_sequential = opt_bool(j, "true_sequential", true, what);
  if (const json* d = find_key(j, "damp_percent")) {
    SLM_CHECK(d->is_number(), "{}: key 'damp_percent' must be a number", what);
    c.damp_percent = d->get<double>();
  }
  // Format detection (gptq.md §1.1): checkpoint_format ?? format ?? is_marlin_format.
  std::string fmt = "gptq";
  if (auto f = opt_str(j, "checkpoint_format", what)) fmt = *f;
  else if (auto f2 = opt_str(j, "format", what)) fmt = *f2;
  else if (opt_bool(j, "is_marlin_format", false, what)) fmt = "marlin";
  if (fmt == "gptq") c.format = GptqFormat::V1;
  else if (fmt == "gptq_v2") c.format = GptqFormat::V2;
  else if (fmt == "marlin") fail("{}: Marlin-packed GPTQ checkpoints are not supported", what);
  else fail("{}: unknown checkpoint_format '{}' (expected gptq or gptq_v2)", what, fmt);
  if (auto p = opt_str(j, "pack_dtype", what); p && *p != "int32")
    fail("{}: unsupported pack_dtype '{}' (only int32 packing is supported)", what, *p);
  if (const json* dyn = find_key(j, "dynamic")) {
    SLM_CHECK(dyn->is_object(), "{}: 'dynamic' must be an object of module-pattern rules", what);
    for (const auto& [key, rule] : dyn->items()) {
      const std::string where = fmt::format("{}: dynamic rule '{}'", what, key);
      GptqDynamicRule r;
      r.exclude = key.rfind("-:", 0) == 0;
      r.pattern = key.rfind("-:", 0) == 0 || key.rfind("+:", 0) == 0 ? key.substr(2) : key;
      try {
        (void)std::regex(r.pattern, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        fail("{}: not a valid regular expression ({})", where, e.what());
      }
      SLM_CHECK(rule.is_object(), "{}: the rule must be an object", where);
      for (const auto& [field, v] : rule.items())
        if (field != "bits" && field != "group_size" && field != "sym" && field != "desc_act")
          fail("{}: overriding '{}' is not supported (bits, group_size, sym, desc_act)", where, field);
      if (auto b = opt_int(rule, "bits", where)) {
        if (*b != 2 && *b != 3 && *b != 4 && *b != 8)
          fail("{}: unsupported GPTQ bits {} (expected 2, 3, 4 or 8)", where, *b);
        r.bits = int(*b);
      }
      if (auto g = opt_int(rule, "group_size", where)) {
        if (*g != -1 && (*g <= 0 || *g > (int64_t(1) << 30)))
          fail("{}: invalid group_size {} (expected -1 or a positive number)", where, *g);
        r.group_size = int(*g);
      }
      if (find_key(rule, "sym")) r.sym = opt_bool(rule, "sym", true, where);
      if (find_key(rule, "desc_act")) r.desc_act = opt_bool(rule, "desc_act", false, where);
      c.dynamic.push_back(std::move(r));
    }
  }
  return c;
}

std::optional<GptqConfig> GptqConfig::for_module(std::string_view name) const {
  for (const GptqDynamicRule& r : dynamic) {
    // Python's re.match: anchored at the start of the name, not at its end.
    const std::regex re(r.pattern, std::regex::ECMAScript);
    if (!std::regex_search(name.begin(), name.end(), re, std::regex_constants::match_continuous)) continue;
    if (r.exclude) return std::nullopt;
    GptqConfig c = *this;
    c.dynamic.clear();
    if (r.bits) c.bits = *r.bits;
    if (r.group_size) c.group_size = *r.group_size;
    if (r.sym) c.sym = *r.sym;
    if (r.desc_act) c.desc_act = *r.desc_act;
    return c;
  }
  return *this;
}

GptqConfig parse_gptq_config_text(std::string_view text, std::string_view what) {
  return parse_gptq_config(parse_json(text, what), what);
}

GptqConfig read_gptq_config_file(const std::string& path) {
  return parse_gptq_config_text(read_text_file(path), path);
}

cpu::GptqTensors GptqLinear::raw() const {
  cpu::GptqTensors t;
  t.bits = cfg.bits;
  t.k = in_features;
  t.n = out_features;
  t.groups = groups;
  t.group_size = cfg.group_size;
  t.zero_plus_one = cfg.format == GptqFormat::V1;
  t.qweight = qweight->data;
  t.qzeros = qzeros->data;
  t.scales = scales->data;
  t.scales_type = float_kind(*scales, prefix);
  t.g_idx = g_idx ? g_idx->data : nullptr;
  if (bias) {
    t.bias = bias->data;
    t.bias_type = float_kind(*bias, prefix);
  }
  return t;
}

bool GptqLinear::has_act_order() const {
  if (!g_idx) return false;
  const cpu::GptqTensors t = raw();
  cpu::GptqTensors plain = t;
  plain.g_idx = nullptr;
  for (int64_t k = 0; k < in_features; ++k)
    if (cpu::gptq_group(t, k) != cpu::gptq_group(plain, k)) return true;
  return false;
}

GptqLinear gptq_linear_view(const TensorLookup& find, const std::string& prefix, const GptqConfig& cfg) {
  GptqLinear l;
  l.prefix = prefix;
  l.cfg = cfg;
  auto need = [&](const char* suffix) {
    const std::string name = prefix + "." + suffix;
    const st::Tensor* t = find(name);
    if (!t) fail("GPTQ layer '{}': missing tensor '{}'", prefix, name);
    return t;
  };
  auto check_2d = [&](const st::Tensor* t, st::DType want) {
    if (want != st::DType::F32 && t->dtype != want)
      fail("GPTQ layer '{}': tensor '{}' has dtype {}, expected {}", prefix, t->name,
           st::dtype_name(t->dtype), st::dtype_name(want));
    if (t->shape.size() != 2)
      fail("GPTQ layer '{}': tensor '{}' has shape {}, expected 2 dimensions", prefix, t->name,
           shape_str(t->shape));
  };
  const int bits = cfg.bits;
  SLM_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8,
            "GPTQ layer '{}': unsupported bits {} (expected 2, 3, 4 or 8)", prefix, bits);
  l.qweight = need("qweight");
  l.qzeros = need("qzeros");
  l.scales = need("scales");
  check_2d(l.qweight, st::DType::I32);
  check_2d(l.qzeros, st::DType::I32);
  check_2d(l.scales, st::DType::F32);  // F32 = any float type, checked by float_kind
  float_kind(*l.scales, prefix);

  const int64_t rows = l.qweight->shape[0];
  if (rows <= 0 || (rows * 32) % bits != 0)
    fail("GPTQ layer '{}': qweight has {} rows, not a whole number of {}-bit columns", prefix, rows, bits);
  l.in_features = rows * 32 / bits;
  l.out_features = l.qweight->shape[1];
  l.groups = l.scales->shape[0];
  const int64_t k = l.in_features, n = l.out_features;
  if (l.scales->shape[1] != n)
    fail("GPTQ layer '{}': scales shape {} does not match qweight shape {}: expected [groups, {}]",
         prefix, shape_str(l.scales->shape), shape_str(l.qweight->shape), n);
  if ((n * bits) % 32 != 0)
    fail("GPTQ layer '{}': out_features {} cannot be packed into {}-bit qzeros", prefix, n, bits);
  const std::vector<int64_t> zshape{l.groups, n * bits / 32};
  if (l.qzeros->shape != zshape)
    fail("GPTQ layer '{}': qzeros shape {} does not match scales/qweight: expected {}", prefix,
         shape_str(l.qzeros->shape), shape_str(zshape));
  const int64_t expect_groups = cfg.group_size > 0 ? (k + cfg.group_size - 1) / cfg.group_size : 1;
  if (l.groups != expect_groups)
    fail("GPTQ layer '{}': scales has {} groups, but in_features {} with group_size {} needs {}",
         prefix, l.groups, k, cfg.group_size, expect_groups);

  l.g_idx = find(prefix + ".g_idx");
  if (l.g_idx) {
    if (l.g_idx->dtype != st::DType::I32)
      fail("GPTQ layer '{}': g_idx has dtype {}, expected I32", prefix, st::dtype_name(l.g_idx->dtype));
    if (l.g_idx->shape != std::vector<int64_t>{k})
      fail("GPTQ layer '{}': g_idx shape {} does not match in_features {}", prefix,
           shape_str(l.g_idx->shape), k);
  }
  l.bias = find(prefix + ".bias");
  if (l.bias) {
    float_kind(*l.bias, prefix);
    if (l.bias->shape != std::vector<int64_t>{n})
      fail("GPTQ layer '{}': bias shape {} does not match out_features {}", prefix,
           shape_str(l.bias->shape), n);
  }
  cpu::gptq_validate(l.raw(), fmt::format("GPTQ layer '{}'", prefix));
  return l;
}

GptqLinear gptq_linear_view(const st::Checkpoint& ck, const std::string& prefix, const GptqConfig& cfg) {
  return gptq_linear_view([&](std::string_view name) { return ck.find(name); }, prefix, cfg);
}

bool is_gptq_linear(const st::Checkpoint& ck, const std::string& prefix) {
  return ck.find(prefix + ".qweight") != nullptr;
}

std::vector<float> gptq_dequantize(const cpu::GptqTensors& t) {
  cpu::gptq_validate(t, "gptq_dequantize");
  std::vector<float> w(size_t(t.n * t.k));
  std::vector<int64_t> grp(size_t(t.k));
  for (int64_t k = 0; k < t.k; ++k) grp[size_t(k)] = cpu::gptq_group(t, k);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < t.n; ++n)
    for (int64_t k = 0; k < t.k; ++k) {
      const int64_t g = grp[size_t(k)];
      const int64_t q = cpu::gptq_code(t, k, n);
      w[size_t(n * t.k + k)] = cpu::gptq_scale(t, g, n) * float(q - cpu::gptq_zero(t, g, n));
    }
  return w;
}

std::vector<float> gptq_dequantize(const GptqLinear& l) { return gptq_dequantize(l.raw()); }

std::vector<uint8_t> gptq_to_gguf_rows(const GptqLinear& l, QType type) {
  const std::vector<float> w = gptq_dequantize(l);
  const size_t rb = row_bytes(type, l.in_features);
  std::vector<uint8_t> out(rb * size_t(l.out_features));
  for (int64_t n = 0; n < l.out_features; ++n)
    quantize_row(type, w.data() + size_t(n * l.in_features), out.data() + size_t(n) * rb, l.in_features);
  return out;
}

void gptq_reference_linear(const cpu::GptqTensors& t, const float* x, int64_t m, float* y) {
  const std::vector<float> w = gptq_dequantize(t);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t n = 0; n < t.n; ++n) {
      double s = 0;
      for (int64_t k = 0; k < t.k; ++k) s += double(x[r * t.k + k]) * double(w[size_t(n * t.k + k)]);
      y[r * t.n + n] = float(s + double(cpu::gptq_bias(t, n)));
    }
}

}  // namespace slm
