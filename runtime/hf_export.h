// Writing a Llama model as a Hugging Face checkpoint directory: config.json, model.safetensors
// (F32/F16/BF16, HF tensor names, q/k rows in HF's rotate-half order) and the tokenizer files
// (the given tokenizer.json / tokenizer_config.json, or ones generated from a TokenizerSpec).
// `slmrun mkmodel --format hf` uses it; the checkpoint holds the same model as the GGUF file
// mkmodel writes from the same seed.
#pragma once
#include <optional>
#include <string>

#include "runtime/config.h"
#include "runtime/quantize.h"
#include "runtime/tokenizer/tokenizer.h"

namespace slm {

// HF parameter name of a GGUF tensor name ("blk.3.attn_q.weight" ->
// "model.layers.3.self_attn.q_proj.weight"); nullopt for tensors HF does not store (rope_freqs).
std::optional<std::string> gguf_to_hf_name(const std::string& gguf_name);

struct HfExportOptions {
  QType dtype = QType::BF16;  // F32, F16 or BF16
  // Copied verbatim when set (tokenizer_config.json optional); else generated from `tok`.
  std::string tokenizer_json, tokenizer_config_json;
  std::string chat_template;  // written into a generated tokenizer_config.json
};

// Writes `dir` (created if needed). `src` must be a float source in GGUF naming and row order
// (q/k rows interleaved as in GGUF); `tok` must be a byte-level BPE spec when no tokenizer file is
// given. Throws slm::Error naming the file at fault.
void export_llama_hf(const TensorSource& src, const ModelConfig& cfg, const TokenizerSpec& tok,
                     const std::string& dir, const HfExportOptions& opts);

}  // namespace slm
