// Synthetic models: a Llama-shaped model with random weights built in memory in any type or
// mixture, for `slmrun bench` with no download and for tests. Weight rows are valid quantized
// blocks (a pool of rows quantized from Gaussian values, copied in a seeded pseudo-random order),
// so kernels see realistic data while building a 1B model takes about a second.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/config.h"
#include "runtime/model.h"

namespace slm {

// Llama 3.2 1B: vocab 128256, dim 2048, 16 layers, 32/8 heads (head dim 64), FFN 8192, tied
// embeddings, rope theta 500000 with Llama 3 scaling (factor 32).
ModelConfig llama32_1b_config();
// Llama 3.2 3B: dim 3072, 28 layers, 24/8 heads (head dim 128), FFN 8192.
ModelConfig llama32_3b_config();
// A small shape with the same structure (for --quick and tests): dim 512, 4 layers, 8/2 heads,
// FFN 1536, vocab 32000.
ModelConfig tiny_llama_config();

// `mixture`: a name accepted by mixture_from_name ("F16", "Q8_0", "Q4_K_M", "Q4_0", ...).
std::unique_ptr<Model> make_synthetic_model(const ModelConfig& cfg, const std::string& mixture, uint64_t seed = 1);

}  // namespace slm
