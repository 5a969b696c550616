// AVX2 silu_mul (act.h) with libmvec's 8-lane expf.
#include <immintrin.h>

#include "kernels/cpu/act.h"

// glibc's vector-ABI expf for AVX2 (x86_64 libmvec, "d" = AVX2 ISA class, 8 lanes).
extern "C" __m256 _ZGVdN8v_expf(__m256 x);

namespace slm::cpu::detail {

void silu_mul_avx2(float* y, const float* g, const float* u, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 sign = _mm256_set1_ps(-0.f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = _ZGVdN8v_expf(_mm256_xor_ps(gv, sign));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  silu_mul_ref(y + i, g + i, u + i, n - i);
}

}  // namespace slm::cpu::detail
