// silu_mul (act.h): scalar reference and dispatch.
#include "kernels/cpu/act.h"

#include <cmath>

#include "kernels/cpu/isa.h"

namespace slm::cpu {

void silu_mul_ref(float* y, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void silu_mul(float* y, const float* g, const float* u, int64_t n) {
  if (active_isa() >= Isa::AVX2) return detail::silu_mul_avx2(y, g, u, n);
  silu_mul_ref(y, g, u, n);
}

}  // namespace slm::cpu
