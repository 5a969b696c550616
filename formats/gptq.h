// GPTQ checkpoints (AutoGPTQ / GPTQModel / Optimum): the quantization config, a validated view
// of one quantized Linear's tensors in a safetensors checkpoint, and the exact references
// (dequantize to float W[out][in], to GGUF-style rows of any tensor type, y = x W^T).
// Format: ../shared/specs/gptq.md; summary with diagrams in docs/formats.md.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "formats/safetensors.h"
#include "kernels/cpu/gptq_linear.h"
#include "kernels/quant/types.h"

namespace slm {

enum class GptqFormat {
  V1,  // checkpoint_format "gptq": qzeros store zero - 1
  V2,  // "gptq_v2": exact zeros
};

// One rule of GPTQModel's per-module `dynamic` map (gptq.md; vLLM's get_dynamic_override): the
// key is a regular expression matched at the start of the module name (Python re.match), "-:"
// excludes matching modules from quantization, "+:" or no prefix overrides fields of the base
// config for them.
struct GptqDynamicRule {
  std::string pattern;  // the key without its "+:" / "-:" prefix
  bool exclude = false;
  std::optional<int> bits, group_size;
  std::optional<bool> sym, desc_act;
};

struct GptqConfig {
  int bits = 4;              // 2, 3, 4, 8
  int group_size = 128;      // -1: one group per output channel (all of K)
  bool desc_act = false;     // act-order: g_idx is a permutation of groups (gptq.md §5)
  bool sym = true;
  GptqFormat format = GptqFormat::V1;
  bool lm_head = false;      // lm_head quantized too
  std::optional<double> damp_percent;
  bool static_groups = false;
  bool true_sequential = true;
  // Tried in the order of the parsed JSON object's keys (nlohmann::json sorts them); the first
  // matching rule applies. Empty for AutoGPTQ checkpoints.
  std::vector<GptqDynamicRule> dynamic;

  // The config of module `name` (e.g. "lm_head", "model.layers.3.mlp.down_proj"): the first
  // matching `dynamic` rule applied to this one, nullopt when a "-:" rule excludes the module.
  std::optional<GptqConfig> for_module(std::string_view name) const;
};

// Parses a `quantization_config` object / quantize_config.json. `bits` and `group_size` are
// required (also as the AWQ-style synonyms w_bit / q_group_size); quant_method other than "gptq",
// Marlin-packed checkpoints, pack_dtype other than int32 and bits outside {2,3,4,8} are errors.
// `dynamic` rules may override bits, group_size, sym and desc_act (other keys are errors, as are
// patterns that are not valid regular expressions).
GptqConfig parse_gptq_config(const nlohmann::json& j, std::string_view what);
GptqConfig parse_gptq_config_text(std::string_view json_text, std::string_view what);
GptqConfig read_gptq_config_file(const std::string& path);  // quantize_config.json

// One quantized nn.Linear (prefix P, e.g. "model.layers.0.self_attn.q_proj"): views of
// P.qweight, P.qzeros, P.scales, P.g_idx (optional) and P.bias (optional).
struct GptqLinear {
  std::string prefix;
  GptqConfig cfg;
  int64_t in_features = 0, out_features = 0, groups = 0;
  const st::Tensor* qweight = nullptr;
  const st::Tensor* qzeros = nullptr;
  const st::Tensor* scales = nullptr;
  const st::Tensor* g_idx = nullptr;
  const st::Tensor* bias = nullptr;

  // The raw tensors for the kernels (cpu::gptq_prepare) and the references below.
  cpu::GptqTensors raw() const;
  // g_idx is present and is not k / group_size (real act-order).
  bool has_act_order() const;
};

using TensorLookup = std::function<const st::Tensor*(std::string_view name)>;

// Finds and validates the tensors of `prefix`; throws slm::Error naming the layer and tensor
// (missing tensor, wrong dtype or rank, shapes that disagree, groups not matching group_size,
// g_idx out of range).
GptqLinear gptq_linear_view(const TensorLookup& find, const std::string& prefix, const GptqConfig& cfg);
GptqLinear gptq_linear_view(const st::Checkpoint& ck, const std::string& prefix, const GptqConfig& cfg);
// Whether `prefix` names a GPTQ Linear in the checkpoint (P.qweight exists).
bool is_gptq_linear(const st::Checkpoint& ck, const std::string& prefix);

// Exact dequantization W[n][k] = scale[g][n] · (q[k][n] − zero[g][n]), g = g_idx[k] (or
// k / group_size); row-major [out_features][in_features] like HF's weight. Every value is exact
// in float32 (an F16 scale times a small integer).
std::vector<float> gptq_dequantize(const cpu::GptqTensors& t);
std::vector<float> gptq_dequantize(const GptqLinear& l);

// The same weight as GGUF-style rows: out_features rows of row_bytes(type, in_features) bytes
// (ggml ne = [in, out]), i.e. dequantize then quantize_row(type) per row; F32 is exact. Lets the
// GGUF kernels (cpu::linear) run a GPTQ layer.
std::vector<uint8_t> gptq_to_gguf_rows(const GptqLinear& l, QType type);

// Reference y[r][n] = sum_k x[r][k] W[n][k] + bias[n] (x: m x in, y: m x out), accumulated in
// double from the exact dequantized weights.
void gptq_reference_linear(const cpu::GptqTensors& t, const float* x, int64_t m, float* y);

}  // namespace slm
