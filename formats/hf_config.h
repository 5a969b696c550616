// Hugging Face model configuration: config.json (+ generation_config.json, quantize_config.json)
// -> HfConfig, with the defaults transformers' LlamaConfig applies and clear errors for missing
// or ill-typed keys; the Llama 3 RoPE frequency divisors (llama.md §3.2) and the HF -> GGUF
// q/k row permutation (llama.md §3.4).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gptq.h"

namespace slm {

struct RopeScaling {
  std::string type;                  // "llama3", "linear", "default"
  double factor = 1.0;
  double low_freq_factor = 1.0;      // llama3
  double high_freq_factor = 4.0;     // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct HfConfig {
  std::vector<std::string> architectures;  // e.g. {"LlamaForCausalLM"}
  std::string model_type;                  // "llama"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads
  int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;       // LlamaConfig default
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;  // absent or null: none
  bool tie_word_embeddings = false;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;             // config.json (int or list)
  std::vector<int32_t> generation_eos_token_ids;  // generation_config.json, when present
  std::string torch_dtype;                        // "bfloat16", "float16", ...
  std::string hidden_act = "silu";
  bool attention_bias = false, mlp_bias = false;
  std::optional<GptqConfig> gptq;                 // quantization_config / quantize_config.json

  // Stop ids for generation: generation_config's when present, else config's (deduplicated).
  std::vector<int32_t> stop_token_ids() const;
};

// Parses config.json text; `what` names the source in errors.
HfConfig parse_hf_config(std::string_view json_text, std::string_view what);
// Reads `dir`/config.json, and when present generation_config.json (eos ids) and
// quantize_config.json / quant_config.json (which take precedence over quantization_config,
// as in AutoGPTQ).
HfConfig read_hf_config_dir(const std::string& dir);

// Divisor f_j of every rotary pair j < head_dim/2 (the angle is p·θ^(−2j/hd)/f_j): all 1 without
// scaling, `factor` for linear scaling, the llama3 smooth interpolation otherwise. Computed in
// float32 like llama.cpp's converter (its rope_freqs.weight).
std::vector<float> llama3_rope_divisors(const HfConfig& c);

// GGUF/Meta row index of HF q_proj/k_proj output row `hf_row` (rows of `n_head` heads of
// `head_dim`): GGUF(h, 2j) = HF(h, j), GGUF(h, 2j+1) = HF(h, j + hd/2).
int64_t hf_to_gguf_qk_row(int64_t hf_row, int64_t head_dim);
// Inverse: HF row held by GGUF row `gguf_row` (the out_perm for cpu::gptq_prepare).
int64_t gguf_to_hf_qk_row(int64_t gguf_row, int64_t head_dim);
// Reorders the rows (each `row_bytes` bytes) of an HF q/k weight into GGUF order (src != dst).
void permute_qk_rows_hf_to_gguf(const void* src, void* dst, int64_t n_rows, int64_t head_dim,
                                size_t row_bytes);

}  // namespace slm
