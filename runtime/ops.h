// The non-matrix operations of the forward pass, on float32 rows: RMSNorm, RoPE, causal
// attention over the KV cache, SwiGLU, residual add. Plain loops the compiler vectorises; the
// matrix products (kernels/cpu/linear.h) dominate the time.
#pragma once
#include <cstdint>

#include "runtime/config.h"

namespace slm::ops {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i < n.
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);

// Precomputed cos/sin for positions [0, n_pos) and n_rot/2 pairs: table[pos][j] = {cos, sin}.
struct RopeTable {
  int64_t n_pos = 0, n_pairs = 0;
  float* data = nullptr;  // n_pos * n_pairs * 2, owned by the caller
};
size_t rope_table_floats(int64_t n_pos, int64_t n_rot);
void rope_table_init(RopeTable& t, const ModelConfig& c, int64_t n_pos);

// Rotates the first n_rot dims of each of n_heads heads (each head_dim long) of one token at pos.
void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, RopeStyle style,
                const RopeTable& t, int64_t pos);

// y = silu(g) * u, elementwise.
void swiglu(float* y, const float* g, const float* u, int64_t n);

// x += y.
void add_inplace(float* x, const float* y, int64_t n);


}  // namespace slm::ops
