// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors parsing and validation,
// and merging into owned copies of a model's weights.
#include "runtime/lora.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"

namespace slm {

namespace fs = std::filesystem;

namespace {

std::optional<LinearSlot> slot_of_module(const std::string& group, const std::string& mod) {
  if (group == "self_attn") {
    if (mod == "q_proj") return LinearSlot::Q;
    if (mod == "k_proj") return LinearSlot::K;
    if (mod == "v_proj") return LinearSlot::V;
    if (mod == "o_proj") return LinearSlot::O;
  } else if (group == "mlp") {
    if (mod == "gate_proj") return LinearSlot::Gate;
    if (mod == "up_proj") return LinearSlot::Up;
    if (mod == "down_proj") return LinearSlot::Down;
  }
  return std::nullopt;
}

// (out, in) of a layer linear.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, LinearSlot s) {
  switch (s) {
    case LinearSlot::Q: return {c.q_dim(), c.dim};
    case LinearSlot::K: case LinearSlot::V: return {c.kv_dim(), c.dim};
    case LinearSlot::O: return {c.dim, c.q_dim()};
    case LinearSlot::Gate: case LinearSlot::Up: return {c.hidden_dim, c.dim};
    case LinearSlot::Down: return {c.dim, c.hidden_dim};
    case LinearSlot::Output: return {c.n_vocab, c.dim};
  }
  return {0, 0};
}

WeightTensor* slot_tensor(Weights& w, int64_t layer, LinearSlot s) {
  LayerWeights& L = w.layers[size_t(layer)];
  switch (s) {
    case LinearSlot::Q: return &L.wq;
    case LinearSlot::K: return &L.wk;
    case LinearSlot::V: return &L.wv;
    case LinearSlot::O: return &L.wo;
    case LinearSlot::Gate: return &L.w_gate;
    case LinearSlot::Up: return &L.w_up;
    case LinearSlot::Down: return &L.w_down;
    case LinearSlot::Output: return &w.output;
  }
  return nullptr;
}

std::vector<float> read_matrix(const st::Tensor& t, bool transpose, int64_t& rows, int64_t& cols) {
  SLM_CHECK(t.shape.size() == 2, "{}: tensor '{}' must be 2-D, has {} dims", *t.file, t.name, t.shape.size());
  std::vector<float> v = st::to_f32(t);
  rows = t.shape[0], cols = t.shape[1];
  if (!transpose) return v;
  std::vector<float> tr(v.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) tr[size_t(c * rows + r)] = v[size_t(r * cols + c)];
  std::swap(rows, cols);
  return tr;
}

}  // namespace

LoraAdapter load_lora_adapter(const std::string& dir) {
  const fs::path cfg_path = fs::path(dir) / "adapter_config.json";
  std::ifstream f(cfg_path, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot open (not a PEFT LoRA adapter directory?)", cfg_path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
  } catch (const std::exception& e) {
    fail("{}: invalid JSON: {}", cfg_path.string(), e.what());
  }
  const std::string what = cfg_path.string();
  SLM_CHECK(j.is_object(), "{}: not a JSON object", what);
  LoraAdapter a;
  a.dir = dir;
  if (j.contains("peft_type") && j["peft_type"].is_string())
    SLM_CHECK(j["peft_type"] == "LORA", "{}: peft_type '{}' is not supported (only LORA)", what,
              j["peft_type"].get<std::string>());
  SLM_CHECK(j.contains("r") && j["r"].is_number_integer() && j["r"].get<int64_t>() > 0, "{}: 'r' must be a positive integer",
            what);
  a.r = j["r"].get<int64_t>();
  a.alpha = j.contains("lora_alpha") && j["lora_alpha"].is_number() ? j["lora_alpha"].get<double>() : 8.0;
  a.use_rslora = j.value("use_rslora", false);
  SLM_CHECK(!j.value("use_dora", false), "{}: DoRA adapters (use_dora) are not supported", what);
  if (j.contains("bias") && j["bias"].is_string())
    SLM_CHECK(j["bias"] == "none", "{}: bias '{}' is not supported (only \"none\")", what, j["bias"].get<std::string>());
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (j.contains(key) && j[key].is_object())
      SLM_CHECK(j[key].empty(), "{}: per-module '{}' is not supported", what, key);
  if (j.contains("modules_to_save") && j["modules_to_save"].is_array())
    SLM_CHECK(j["modules_to_save"].empty(), "{}: modules_to_save (full replacement weights) is not supported", what);
  const bool fan_in_fan_out = j.value("fan_in_fan_out", false);
  if (j.contains("target_modules")) {
    if (j["target_modules"].is_string()) a.target_modules.push_back(j["target_modules"].get<std::string>());
    else if (j["target_modules"].is_array())
      for (const auto& t : j["target_modules"])
        if (t.is_string()) a.target_modules.push_back(t.get<std::string>());
  }
  a.scale = a.use_rslora ? a.alpha / std::sqrt(double(a.r)) : a.alpha / double(a.r);

  fs::path st_path = fs::path(dir) / "adapter_model.safetensors";
  SLM_CHECK(fs::exists(st_path), "{}: missing (only safetensors adapters are supported)", st_path.string());
  auto file = st::File::open(st_path.string());
  static const std::regex kName(
      R"(^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$)");
  struct Pair {
    const st::Tensor* a = nullptr;
    const st::Tensor* b = nullptr;
    int64_t layer = 0;
    LinearSlot slot = LinearSlot::Q;
  };
  std::map<std::string, Pair> pairs;
  for (const st::Tensor& t : file->tensors()) {
    std::smatch m;
    SLM_CHECK(std::regex_match(t.name, m, kName), "{}: tensor '{}' is not a LoRA weight of a Llama layer linear "
              "(expected base_model.model.model.layers.N.<self_attn|mlp>.<module>.lora_A/lora_B.weight)",
              st_path.string(), t.name);
    const auto slot = slot_of_module(m[2], m[3]);
    SLM_CHECK(slot.has_value(), "{}: tensor '{}': unknown module '{}.{}'", st_path.string(), t.name, m[2].str(), m[3].str());
    const std::string prefix = t.name.substr(0, size_t(m.position(4)) - 6);  // up to ".lora_"
    Pair& p = pairs[prefix];
    SLM_CHECK(m[1].length() < 7, "{}: tensor '{}': layer index too large", st_path.string(), t.name);
    p.layer = std::stoll(m[1]);
    p.slot = *slot;
    (m[4] == "A" ? p.a : p.b) = &t;
  }
  SLM_CHECK(!pairs.empty(), "{}: no LoRA tensors", st_path.string());
  for (const auto& [prefix, p] : pairs) {
    SLM_CHECK(p.a && p.b, "{}: '{}' has lora_{} but no lora_{}", st_path.string(), prefix, p.a ? "A" : "B",
              p.a ? "B" : "A");
    LoraModule mod;
    mod.layer = p.layer;
    mod.slot = p.slot;
    mod.name = prefix;
    int64_t ar, ac, br, bc;
    // fan_in_fan_out: the base layer stores W as [in, out] (GPT-2 Conv1D), and PEFT then keeps
    // A and B transposed too.
    mod.a = read_matrix(*p.a, fan_in_fan_out, ar, ac);
    mod.b = read_matrix(*p.b, fan_in_fan_out, br, bc);
    SLM_CHECK(ar == bc, "{}: '{}': lora_A has rank {} but lora_B has rank {}", st_path.string(), prefix, ar, bc);
    SLM_CHECK(ar == a.r, "{}: '{}': rank {} differs from r = {} in adapter_config.json", st_path.string(), prefix, ar, a.r);
    mod.r = ar, mod.in = ac, mod.out = br;
    a.modules.push_back(std::move(mod));
  }
  return a;
}

void check_lora_shapes(const LoraAdapter& a, const ModelConfig& cfg) {
  for (const LoraModule& m : a.modules) {
    SLM_CHECK(m.layer >= 0 && m.layer < cfg.n_layers, "LoRA {}: '{}': layer {} does not exist (model has {} layers)", a.dir,
              m.name, m.layer, cfg.n_layers);
    const auto [out, in] = linear_shape(cfg, m.slot);
    SLM_CHECK(m.in == in && m.out == out,
              "LoRA {}: '{}': B·A is [{}, {}] but the model's weight is [{}, {}] (adapter for another model?)", a.dir,
              m.name, m.out, m.in, out, in);
  }
}

void lora_merge_rows(const LoraModule& mod, double scale, const ModelConfig& cfg, float* w, int64_t rows, int64_t cols) {
  SLM_CHECK(rows == mod.out && cols == mod.in, "LoRA '{}': weight is [{}, {}], adapter [{}, {}]", mod.name, rows, cols,
            mod.out, mod.in);
  const bool permute =
      (mod.slot == LinearSlot::Q || mod.slot == LinearSlot::K) && cfg.rope_style == RopeStyle::Interleaved;
#pragma omp parallel if (rows * cols * mod.r > (int64_t(1) << 22))
  {
    std::vector<double> acc(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      // GGUF (interleaved) row r holds HF row gguf_to_hf_qk_row(r); B's rows are in HF order.
      const int64_t h = permute ? gguf_to_hf_qk_row(r, cfg.head_dim) : r;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < mod.r; ++j) {
        const double b = mod.b[size_t(h * mod.r + j)];
        const float* arow = mod.a.data() + j * cols;
        for (int64_t c = 0; c < cols; ++c) acc[size_t(c)] += b * arow[c];
      }
      for (int64_t c = 0; c < cols; ++c) w[r * cols + c] = float(double(w[r * cols + c]) + scale * acc[size_t(c)]);
    }
  }
}

namespace {

// Rebuilds `m` with owned weights. `to_f32`: every 2-D weight becomes F32; else each keeps its type.
std::unique_ptr<Model> rebuild(const Model& m, const LoraAdapter* lora, float scale_mult, bool to_f32) {
  const ModelConfig& cfg = m.config();
  if (lora) check_lora_shapes(*lora, cfg);
  Weights w = m.weights();
  std::vector<std::vector<uint8_t>> storage;
  auto convert = [&](WeightTensor& t, const std::vector<const LoraModule*>& mods) {
    SLM_CHECK(t.gptq == nullptr, "{}: tensor '{}' is GPTQ-quantized; merge adapters into the float model before "
              "quantizing", m.path(), t.name);
    SLM_CHECK(t.data != nullptr, "{}: tensor '{}' has no data", m.path(), t.name);
    const QType out_type = to_f32 ? QType::F32 : t.type;
    const size_t n = size_t(t.rows) * size_t(t.cols);
    if (mods.empty() && out_type == t.type) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      storage.emplace_back(p, p + t.bytes());
    } else {
      std::vector<float> f(n);
      dequantize_rows(t.type, t.data, f.data(), t.rows, t.cols);
      for (const LoraModule* mod : mods) lora_merge_rows(*mod, lora->scale * scale_mult, cfg, f.data(), t.rows, t.cols);
      std::vector<uint8_t> bytes(row_bytes(out_type, t.cols) * size_t(t.rows));
      quantize_rows(out_type, f.data(), bytes.data(), t.rows, t.cols);
      storage.push_back(std::move(bytes));
    }
    t.type = out_type;
    t.data = storage.back().data();
  };
  const bool tied = m.weights().output.data == m.weights().tok_embd.data;
  convert(w.tok_embd, {});
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (LinearSlot s : {LinearSlot::Q, LinearSlot::K, LinearSlot::V, LinearSlot::O, LinearSlot::Gate, LinearSlot::Up,
                         LinearSlot::Down}) {
      std::vector<const LoraModule*> mods;
      if (lora)
        for (const LoraModule& mod : lora->modules)
          if (mod.layer == l && mod.slot == s) mods.push_back(&mod);
      convert(*slot_tensor(w, l, s), mods);
    }
  if (tied) w.output = w.tok_embd;
  else convert(w.output, {});
  std::unique_ptr<Tokenizer> tok = m.has_tokenizer() ? Tokenizer::from_spec(m.tokenizer().spec()) : nullptr;
  return Model::from_memory(cfg, std::move(w), std::move(tok), std::move(storage), m.path());
}

}  // namespace

std::unique_ptr<Model> clone_model_f32(const Model& m, const LoraAdapter* lora, float scale_mult) {
  return rebuild(m, lora, scale_mult, true);
}

std::unique_ptr<Model> merge_lora(const Model& base, const LoraAdapter& a, float scale_mult) {
  return rebuild(base, &a, scale_mult, false);
}

}  // namespace slm
