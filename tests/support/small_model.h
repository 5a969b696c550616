// A small Llama shape for runtime tests that run whole forward passes: 2 layers, dim 128, FFN 256,
// 4 query and 2 KV heads of 32, Llama 3 RoPE scaling. Header-only so that the test-support
// library does not depend on the runtime.
#pragma once
#include <cstdint>

#include "runtime/config.h"
#include "runtime/synthetic.h"

namespace slm::test {

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

}  // namespace slm::test
