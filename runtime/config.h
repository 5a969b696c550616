// ModelConfig: the hyper-parameters of a Llama-family model, read from GGUF metadata (or an HF
// config.json), validated once, and used by everything downstream.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace slm {
namespace gguf { class File; }

// How RoPE pairs the dimensions of a head (llama.md §3.4).
enum class RopeStyle {
  Interleaved,  // pairs (2j, 2j+1): Meta / GGUF ("NORM" in ggml)
  HalfSplit,    // pairs (j, j + n_rot/2): Hugging Face ("NEOX", rotate_half)
};

struct ModelConfig {
  std::string arch = "llama";
  std::string name;
  int64_t n_vocab = 0;
  int64_t dim = 0;         // embedding width
  int64_t hidden_dim = 0;  // FFN width
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t n_rot = 0;       // rotated dimensions per head (<= head_dim)
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.f;
  // Per-pair divisors of the rotation angle (n_rot/2 values; Llama 3 scaling), all 1 if none.
  std::vector<float> rope_divisors;
  RopeStyle rope_style = RopeStyle::Interleaved;
  bool tied_embeddings = false;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // Throws slm::Error when the values are inconsistent (heads not dividing, zero sizes, ...).
  void validate() const;
};

// Reads `<arch>.*` keys (architecture "llama"; others are rejected with a clear message).
// Rope divisors come from the tensor `rope_freqs.weight` when present (set by the loader),
// else from `<arch>.rope.scaling.*` metadata.
ModelConfig config_from_gguf(const gguf::File& f);

// Llama 3 frequency-scaling divisors (llama.md §3.2) for n_rot/2 pairs.
std::vector<float> llama3_rope_divisors(int64_t n_rot, float theta, float factor, float low_freq_factor,
                                        float high_freq_factor, float original_ctx);

}  // namespace slm
