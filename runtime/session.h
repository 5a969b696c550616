// Session: one sequence being evaluated — its KV cache, position and activation buffers, all
// allocated once at construction; eval() runs the forward pass (runtime/forward.cpp) over a
// batch of tokens with no allocation on the decode path.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/zero_pages.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/linear.h"
#include "runtime/model.h"
#include "runtime/ops.h"

namespace slm {

// Which matrix of a layer a linear() call multiplies (for calibration hooks).
enum class LinearSlot { Q, K, V, O, Gate, Up, Down, Output };

// Inputs of one matrix product, as seen by SessionOptions::on_linear_input.
struct LinearInput {
  int64_t layer;     // -1 for the output projection
  LinearSlot slot;
  const WeightTensor* weight;
  const float* x;    // m rows of k floats
  int64_t m, k;
};

struct SessionOptions {
  int64_t n_ctx = 4096;    // KV cache length (tokens)
  int64_t max_batch = 64;  // tokens per forward call; longer prompts are split
  // Activation precision of the matrix kernels: LlamaCpp (8-bit activation blocks, fast) or F32.
  cpu::ActPrecision precision = cpu::ActPrecision::LlamaCpp;
  // KV cache element type: F16 halves its memory (llama.cpp's default); F32 is exact.
  cpu::KvType kv_type = cpu::KvType::F16;
  // Called before every matrix product with its input activations (GPTQ calibration, debugging
  // taps). Empty in normal runs: then it costs one branch per matrix product.
  std::function<void(const LinearInput&)> on_linear_input;
};

class Session {
 public:
  Session(const Model& model, const SessionOptions& opts);

  // Appends `tokens` at positions n_past()..; computes the logits of the last token, or of every
  // token when `all_logits` (then all_logits() holds tokens.size() rows of n_vocab).
  // Throws slm::Error if a token id is out of range or the context would overflow.
  void eval(std::span<const int32_t> tokens, bool all_logits = false);

  const float* last_logits() const { return last_logits_; }
  const std::vector<float>& all_logits() const { return all_logits_; }
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return opts_.n_ctx; }
  int64_t n_vocab() const { return model_.config().n_vocab; }
  void reset() { n_past_ = 0; }
  size_t kv_bytes() const { return k_cache_.size() + v_cache_.size(); }
  size_t scratch_bytes() const;
  const Model& model() const { return model_; }

 private:
  void forward_batch(const int32_t* tokens, int64_t n, float* logits_out, bool logits_all_rows);
  void linear(const WeightTensor& w, const float* x, int64_t m, float* y, int64_t layer, LinearSlot slot);
  // Several products of the same input (q/k/v, gate/up): one activation conversion and one
  // parallel region for GGUF weights.
  struct LinearOut {
    const WeightTensor* w;
    float* y;
    LinearSlot slot;
  };
  void linear_same_input(std::initializer_list<LinearOut> outs, const float* x, int64_t m, int64_t layer);

  const Model& model_;
  SessionOptions opts_;
  int64_t n_past_ = 0;

  // [layer][kv_head][pos][head_dim] of opts_.kv_type: each head's keys (values) are one
  // contiguous stream for attention (half the time of the [pos][kv_dim] layout, whose 1 KiB
  // stride between a head's positions defeated the prefetchers). Pages become resident as
  // positions are written.
  ZeroPages k_cache_, v_cache_;
  std::vector<float> rope_storage_;
  ops::RopeTable rope_;

  // Activations for up to max_batch tokens (row-major [token][features]).
  std::vector<float> x_, xb_, q_, k_, v_, att_, ffn_g_, ffn_u_;
  std::vector<float> scores_;  // [n_threads][n_ctx]
  std::vector<float> logits_;  // [1][n_vocab], grown to [max_batch][n_vocab] when all logits are asked
  std::vector<float> all_logits_;
  const float* last_logits_ = nullptr;
  cpu::Workspace ws_;
  int max_threads_ = 1;
};

}  // namespace slm
