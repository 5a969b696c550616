// LoRA adapters in Hugging Face PEFT format (adapter_config.json + adapter_model.safetensors):
// loading with validation against a model, and merging W += s·B·A into a copy of the model's
// weights — float bases keep their type, quantized GGUF bases are dequantized, merged and
// re-quantized to the same type. The quantizer (runtime/gptq_quantize.h) merges before quantizing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model.h"
#include "runtime/session.h"

namespace slm {

struct LoraModule {
  int64_t layer = 0;
  LinearSlot slot = LinearSlot::Q;
  std::string name;          // "base_model.model.model.layers.3.self_attn.q_proj"
  int64_t r = 0, in = 0, out = 0;
  std::vector<float> a;      // [r][in]  (lora_A.weight)
  std::vector<float> b;      // [out][r] (lora_B.weight), rows in HF order
};

struct LoraAdapter {
  std::string dir;
  int64_t r = 0;
  double alpha = 0;
  bool use_rslora = false;
  double scale = 1;          // alpha / r, or alpha / sqrt(r) with use_rslora
  std::vector<std::string> target_modules;
  std::vector<LoraModule> modules;
};

// Reads `dir`/adapter_config.json and `dir`/adapter_model.safetensors. fan_in_fan_out adapters
// (stored transposed) are transposed on load. Throws slm::Error naming the file/key/tensor for
// unknown modules, missing lora_A/lora_B tensors, ranks that disagree with r, and unsupported
// settings (bias other than "none", DoRA).
LoraAdapter load_lora_adapter(const std::string& dir);

// Throws slm::Error unless every module of `a` fits `cfg` (layer in range, A = [r, in], B = [out, r]
// with in/out of that linear).
void check_lora_shapes(const LoraAdapter& a, const ModelConfig& cfg);

// Adds scale·B·A to W (rows x cols floats, row-major, rows in the model's order: for q/k of an
// Interleaved (GGUF) model, B's HF rows are permuted with hf_to_gguf_qk_row).
void lora_merge_rows(const LoraModule& mod, double scale, const ModelConfig& cfg, float* w, int64_t rows,
                     int64_t cols);

// A copy of `m` whose every 2-D weight is an owned F32 tensor (any GGUF type dequantized; GPTQ
// layers are rejected), same config and tokenizer. With `lora`, the adapter is merged with scale
// lora->scale·scale_mult.
std::unique_ptr<Model> clone_model_f32(const Model& m, const LoraAdapter* lora = nullptr, float scale_mult = 1.f);

// A copy of `base` with the adapter merged (scale = a.scale·scale_mult). Weights touched by the
// adapter keep their type: F32 exactly, F16/BF16 rounded once, quantized types dequantized,
// merged and re-quantized (one extra quantization error and ~1 quantize per weight row of cost);
// untouched weights are copied. Throws for GPTQ bases and adapters that do not fit.
std::unique_ptr<Model> merge_lora(const Model& base, const LoraAdapter& a, float scale_mult = 1.f);

}  // namespace slm
