// GPTQ quantization (Frantar et al. 2023; ../shared/specs/gptq.md §7) and round-to-nearest for
// comparison: Hessians H = 2/n·Σ x xᵀ of every linear's inputs collected by running our own
// forward pass over calibration sequences, the column-by-column solver with error feedback and
// lazy 128-column block updates, AutoGPTQ's grid (§4) and packing (§3), and the model-level loop
// writing an AutoGPTQ-compatible directory (checkpoint_format "gptq", v1 zeros).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/gptq_linear.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace slm {

struct LoraAdapter;

// ---- one linear -----------------------------------------------------------------------------

struct GptqSolverOptions {
  int bits = 4;              // 2, 3, 4, 8
  int group_size = 128;      // -1: one (scale, zero) per output row over all of K
  bool sym = false;          // symmetric grid (zero = 2^(bits-1)); default asymmetric min/max
  bool desc_act = false;     // act-order: process columns by descending diag(H)
  double damp_percent = 0.01;
  int block_size = 128;      // lazy-update block (columns)
  // v1 checkpoints store zero - 1, so a zero of 0 cannot be written (gptq.md §4, the "v1 asym
  // bug"): with v1_zeros the asymmetric zero is clamped to >= 1 and the weights quantized on that
  // grid, so what is written is exactly what was optimised.
  bool v1_zeros = true;
};

// A quantized weight W[n][k] (rows = outputs, HF orientation), unpacked.
struct GptqResult {
  int bits = 4, group_size = 128;
  int64_t n = 0, k = 0, groups = 0;
  std::vector<uint8_t> q;        // [n][k] codes 0 .. 2^bits-1, original column order
  std::vector<float> scale;      // [groups][n], values exactly representable in FP16
  std::vector<int32_t> zero;     // [groups][n] effective zero points
  std::vector<int32_t> g_idx;    // [k] group of each input column
  double loss = 0;               // GPTQ objective Σ (w-q)²/d²/2 (0 for RTN)
  double damp_used = 0;          // λ finally added to diag(H) (raised when Cholesky failed)
  // ŵ[r][c] = scale[g][r]·(q[r][c] − zero[g][r]), g = g_idx[c]: the dequantized weight.
  std::vector<float> dequantize() const;
};

// GPTQ on W (row-major n x k) with Hessian H (k x k, symmetric, any positive scale). Throws
// slm::Error for invalid options or a Hessian that stays indefinite after raising the damping.
GptqResult gptq_quantize_weight(const float* w, int64_t n, int64_t k, std::span<const double> H,
                                const GptqSolverOptions& opts);
// Round-to-nearest on the same grid: contiguous groups, no error feedback.
GptqResult rtn_quantize_weight(const float* w, int64_t n, int64_t k, const GptqSolverOptions& opts);

// Checkpoint tensors of a result (AutoGPTQ layout, v1 zeros): `row_perm` (optional) lists, for
// each output row of the checkpoint, the result row it holds (q/k rows GGUF -> HF order).
struct GptqPacked {
  int bits = 4, group_size = 128;
  int64_t n = 0, k = 0, groups = 0;
  std::vector<int32_t> qweight;  // [k*bits/32][n]
  std::vector<int32_t> qzeros;   // [groups][n*bits/32]
  std::vector<uint16_t> scales;  // [groups][n] FP16
  std::vector<int32_t> g_idx;    // [k]
  cpu::GptqTensors view() const;  // for gptq_dequantize / gptq_prepare
};
GptqPacked gptq_pack(const GptqResult& r, std::span<const int32_t> row_perm = {});

// ‖(W − Ŵ) X‖_F / ‖W X‖_F for inputs whose Gram matrix is H (= Σ x xᵀ up to scale): the relative
// output error of the layer, computed from H without the activations.
double weighted_rel_error(const float* w, const float* w_hat, int64_t n, int64_t k, std::span<const double> H);

// ---- Hessians from a forward pass -------------------------------------------------------------

// Running Σ x xᵀ over rows of k floats (double accumulation; float partial sums over blocks of
// kChunk rows). finish() returns 2/n·Σ x xᵀ (full symmetric matrix).
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t k = 0);
  void add(const float* x, int64_t m);
  std::vector<double> finish() const;
  int64_t k() const { return k_; }
  int64_t count() const { return count_; }

 private:
  static constexpr int64_t kChunk = 256;
  void flush() const;
  int64_t k_ = 0, count_ = 0;
  // Logically part of the sum: pending rows are folded in lazily (also by the const finish()).
  mutable std::vector<double> sum_;     // lower triangle used, [k][k]
  mutable std::vector<float> pending_;  // up to kChunk rows not yet in sum_
};

// Linears of a layer that share an input: Q/K/V (attention input), O, Gate/Up (FFN input), Down;
// and the output projection (layer -1).
enum class LinearInputClass { Attn = 0, AttnOut = 1, Ffn = 2, FfnDown = 3, Output = 4 };
LinearInputClass input_class(LinearSlot s);

// Hessians of every (layer, input class) of `m` over the calibration sequences, from one forward
// pass per sequence with F32 activations (layers use the model's current weights; no
// sequential quantization). result[layer][class] for classes 0..3, and with `with_output`
// result[n_layers][0] for the output projection (else the pass stops after the last layer).
std::vector<std::vector<std::vector<double>>> collect_hessians(const Model& m,
                                                               const std::vector<std::vector<int32_t>>& samples,
                                                               bool with_output = false);

// Calibration sequences: the tokenized `text` (BOS first when the tokenizer adds one) cut into
// `n_samples` windows of `seq_len` tokens, drawn at seeded random offsets from the text repeated
// as often as needed. Throws when the text tokenizes to nothing.
std::vector<std::vector<int32_t>> calibration_samples(const Tokenizer& tok, const std::string& text,
                                                      int64_t n_samples, int64_t seq_len, uint64_t seed = 1);

// ---- a whole model ----------------------------------------------------------------------------

struct GptqQuantizeOptions {
  GptqSolverOptions solver;
  bool rtn = false;              // round-to-nearest (no calibration pass)
  // Quantize a layer's linears in AutoGPTQ's groups [q,k,v], [o], [gate,up], [down], each with
  // inputs from the already-quantized earlier groups (true_sequential); else one pass per layer.
  // Either way layer l sees the outputs of the quantized layers < l.
  bool true_sequential = true;
  // Untied models: quantize lm_head too, with the same bits and group size (AutoGPTQ's format
  // has one bit width per checkpoint).
  bool lm_head = false;
  // 16: keep the output projection as it is (FP16 when untied, the shared embedding when tied).
  // 4 or 8: GPTQ-quantize it (calibrated on the final-norm output) as `lm_head.*` with these bits
  // and the model's group size, untying a tied model (the embedding stays FP16 for lookups;
  // tie_word_embeddings false). Bits other than the model's are written as GPTQModel's
  // `dynamic: {"+:lm_head": {"bits": N}}` override. The vocabulary must be a multiple of 32/bits
  // (qzeros packing); checked before any work.
  int lm_head_bits = 16;
  // Calibration: token sequences, or when empty `calibration_text` cut by calibration_samples.
  std::vector<std::vector<int32_t>> calibration;
  std::string calibration_text;
  int64_t n_samples = 128, seq_len = 512;
  // Tokenizer files: copied from this directory (tokenizer.json, tokenizer_config.json) when set
  // or when the model was loaded from an HF directory; else generated from the model's tokenizer.
  std::string tokenizer_dir;
  // Adapter merged into the float weights before quantizing (runtime/lora.h); null: none.
  const LoraAdapter* lora = nullptr;
  float lora_scale = 1.f;
  // Progress lines ("layer 3/16 q_proj ..."); empty: silent.
  std::function<void(const std::string&)> log;
};

struct GptqTensorReport {
  std::string name;      // HF prefix, e.g. "model.layers.0.self_attn.q_proj"
  int bits = 4, group_size = 128;
  double rel_error = 0;  // weighted_rel_error on the calibration Hessian of its input
  double seconds = 0;
};

struct GptqQuantizeReport {
  std::vector<GptqTensorReport> tensors;
  int64_t calibration_tokens = 0;
  double seconds = 0;
};

// Quantizes every linear of `m` (any weight type; dequantized to F32 first) and writes an
// AutoGPTQ directory at `out_dir`: config.json (+ quantization_config), quantize_config.json,
// tokenizer files, model.safetensors (qweight/qzeros/scales/g_idx per linear, FP16 embedding,
// norms and lm_head). Throws slm::Error naming the problem.
GptqQuantizeReport gptq_quantize_model(const Model& m, const std::string& out_dir, const GptqQuantizeOptions& opts);

}  // namespace slm
