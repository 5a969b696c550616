// Helpers for runtime tests that run whole forward passes. Header-only so that the test-support
// library does not depend on the runtime.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/config.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"

namespace slm::test {

// A small Llama shape: 2 layers, dim 128, FFN 256, 4 query and 2 KV heads of 32, Llama 3 RoPE
// scaling.
inline ModelConfig small_llama_config(int64_t n_vocab) {
  ModelConfig c = tiny_llama_config();
  c.n_vocab = n_vocab;
  c.dim = 128;
  c.hidden_dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.n_rot = 32;
  c.rope_divisors = llama3_rope_divisors(c.n_rot, c.rope_theta, 32.f, 1.f, 4.f, 8192.f);
  return c;
}

// Logits of the last of `toks` from a fresh float32 session (F32 activations and KV cache).
inline std::vector<float> f32_last_logits(const Model& m, const std::vector<int32_t>& toks) {
  SessionOptions so;
  so.n_ctx = 64;
  so.precision = cpu::ActPrecision::F32;
  so.kv_type = cpu::KvType::F32;
  Session s(m, so);
  s.eval(toks);
  return std::vector<float>(s.last_logits(), s.last_logits() + s.n_vocab());
}

}  // namespace slm::test
