// Quantization mixtures: which GGUF type each tensor of a Llama model gets for a named file type
// (Q4_K_M, Q5_K_M, Q3_K_M, ...), following llama.cpp's llama_tensor_get_type rules for Llama
// models without an importance matrix (../shared/specs/gguf.md §6). Used by the quantizer and by
// the synthetic benchmark models, so both produce what llama-quantize would.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/quant/types.h"

namespace slm {

enum class TensorKind { TokenEmbd, Output, AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown };

struct Mixture {
  std::string name;     // "Q4_K_M", "Q8_0", "F16", ...
  QType base;           // the default type
  uint32_t file_type;   // llama_ftype written to general.file_type
  bool pure = false;    // every 2-D tensor gets `base`
};

// Parses a mixture or plain type name ("q4_k_m", "Q4_0", "F16"); nullopt if unknown.
std::optional<Mixture> mixture_from_name(std::string_view name, bool pure = false);
std::vector<std::string> mixture_names();

struct MixtureContext {
  int64_t n_layers = 0;
  int64_t n_heads = 0, n_kv_heads = 0;
  bool tied_embeddings = true;  // no output.weight: the output rule applies to token_embd
};

// Type for one 2-D weight tensor (`layer` ignored for TokenEmbd/Output).
QType mixture_type(const Mixture& m, TensorKind kind, int64_t layer, const MixtureContext& ctx);

// llama.cpp's use_more_bits(i, n): layers that get the higher-precision type in *_M mixtures.
bool use_more_bits(int64_t i, int64_t n);

}  // namespace slm
