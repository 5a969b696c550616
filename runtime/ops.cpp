#include "runtime/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/act.h"

namespace slm::ops {

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
  // Same rounding steps as llama.cpp (sum of squares in double, mean rounded to float, scale in
  // float, then x*scale and the weight multiply as two roundings), so the 8-bit activation codes
  // computed from this output match llama.cpp's as often as possible.
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i] * x[i]);
  const float mean = float(ss / double(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) {
    const float y = x[i] * scale;
    out[i] = y * w[i];
  }
}

size_t rope_table_floats(int64_t n_pos, int64_t n_rot) { return size_t(n_pos) * size_t(n_rot / 2) * 2; }

void rope_table_init(RopeTable& t, const ModelConfig& c, int64_t n_pos) {
  t.n_pos = n_pos;
  t.n_pairs = c.n_rot / 2;
  // Angles in double: theta^(-2j/n_rot) / divisor_j * pos. llama.cpp uses a running float
  // product; the difference is ~1e-6 relative in the angle, below everything else we compare.
  for (int64_t j = 0; j < t.n_pairs; ++j) {
    const double inv = std::pow(double(c.rope_theta), -2.0 * double(j) / double(c.n_rot)) /
                       double(c.rope_divisors[size_t(j)]);
    for (int64_t p = 0; p < n_pos; ++p) {
      const double a = double(p) * inv;
      float* e = t.data + (size_t(p) * size_t(t.n_pairs) + size_t(j)) * 2;
      e[0] = float(std::cos(a));
      e[1] = float(std::sin(a));
    }
  }
}

void rope_apply(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, RopeStyle style,
                const RopeTable& t, int64_t pos) {
  const float* cs = t.data + size_t(pos) * size_t(t.n_pairs) * 2;
  const int64_t half = n_rot / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const int64_t i0 = style == RopeStyle::Interleaved ? 2 * j : j;
      const int64_t i1 = style == RopeStyle::Interleaved ? 2 * j + 1 : j + half;
      const float c = cs[2 * j], s = cs[2 * j + 1];
      const float a = v[i0], b = v[i1];
      v[i0] = a * c - b * s;
      v[i1] = a * s + b * c;
    }
  }
}

void swiglu(float* y, const float* g, const float* u, int64_t n) {
  // Prefill batches (64 x 8192 values) split over the threads; a decode row stays on one.
  constexpr int64_t kChunk = 8192;
  if (n <= kChunk) return cpu::silu_mul(y, g, u, n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += kChunk) cpu::silu_mul(y + i, g + i, u + i, std::min(kChunk, n - i));
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace slm::ops
