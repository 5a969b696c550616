// CudaSession: the whole forward pass on one CUDA device, with the public shape of slm::Session
// (eval / last_logits / n_past / reset). Weights are uploaded once at construction, the KV
// cache lives on the device, a forward call runs every layer without host round trips and
// copies back only the logits; single-token decode steps replay one captured CUDA graph.
// Available only in CUDA builds (SLM_HAVE_CUDA); cuda_available() answers everywhere.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/cuda_plan.h"
#include "runtime/model.h"
#include "runtime/sampler.h"

namespace slm {

// True when this binary has the CUDA backend and a device is present; otherwise false with the
// reason in *why ("built without CUDA", "no CUDA device: ...").
bool cuda_available(std::string* why = nullptr);

struct CudaSessionOptions {
  int64_t n_ctx = 4096;
  int64_t max_batch = 64;
  bool use_graph = true;  // capture the decode step in a CUDA graph
  int device = 0;
};

// Device memory of a session (bytes). `device_used_peak` = total - the smallest free amount
// cudaMemGetInfo reported (after construction, graph capture and every eval), so it includes
// the CUDA context, cuBLAS and other processes on the device.
struct CudaMemoryReport {
  size_t weights = 0, kv_cache = 0, workspace = 0, activations = 0;
  size_t device_total = 0, device_used_peak = 0;
};

#if SLM_HAVE_CUDA
class CudaSession {
 public:
  CudaSession(const Model& model, const CudaSessionOptions& opts);
  ~CudaSession();
  CudaSession(const CudaSession&) = delete;
  CudaSession& operator=(const CudaSession&) = delete;

  // Same contract as Session::eval: throws slm::Error on a bad token id or context overflow.
  void eval(std::span<const int32_t> tokens, bool all_logits = false);
  const float* last_logits() const { return last_logits_; }
  const std::vector<float>& all_logits() const { return all_logits_; }
  // Greedy next token, computed on the device from the last logits of the latest eval.
  int32_t argmax_last();
  // Sampled next token, computed on the device from the last logits of the latest eval: the
  // token Sampler(p).sample(last_logits(), {}) returns when its uniform draw is u (one
  // std::uniform_real_distribution<double>(0, 1) draw from a mt19937_64, as Sampler makes; the
  // caller owns the generator), up to the exp rounding noted in kernels/layout/sample_layout.h.
  // Temperature <= 0 is argmax_last(). Requires 1 <= p.top_k <= 128 (layout::kSampleMaxTopK)
  // and no repetition penalty (p.repeat_penalty == 1 or p.repeat_last_n == 0): it has no
  // history. Throws slm::Error otherwise. No allocation; one int is copied back.
  int32_t sample_last(const SamplerParams& p, double u);
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return opts_.n_ctx; }
  int64_t n_vocab() const { return model_.config().n_vocab; }
  void reset() { n_past_ = 0; }
  const Model& model() const { return model_; }
  CudaMemoryReport memory_report() const;
  // Matrix kernel used for the weight `name` at batch size m (for reports and tests).
  std::string kernel_for(const std::string& name, int64_t m) const;
  bool graph_captured() const;
  // Why the decode graph could not be captured (decoding then runs eagerly); empty otherwise.
  const std::string& graph_error() const { return graph_error_; }
  std::string device_name() const;

 private:
  struct Impl;
  static bool ops_attention_fits(const ModelConfig& c);
  // Enqueues the forward pass of n tokens (ids and position already on the device); logits of
  // rows first..n-1 end in the device logits buffer.
  void forward(int64_t n, int64_t first, int splits);
  void capture_decode_graph();

  const Model& model_;
  CudaSessionOptions opts_;
  int64_t n_past_ = 0;
  std::vector<float> logits_, all_logits_;
  const float* last_logits_ = nullptr;
  std::string graph_error_;
  std::unique_ptr<Impl> impl_;
};
#endif

}  // namespace slm
