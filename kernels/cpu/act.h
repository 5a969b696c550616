// Element-wise activation of the FFN: y = silu(g) * u = g / (1 + e^-g) * u. The AVX2 version
// takes e^x from glibc's vector math library (libmvec, _ZGVdN8v_expf: max error 1-2 ulp per its
// documentation), so prefill does not spend ~5% of its time in scalar expf calls.
#pragma once
#include <cstdint>

namespace slm::cpu {

// y may alias g or u. Chooses the ISA at run time.
void silu_mul(float* y, const float* g, const float* u, int64_t n);
// The scalar reference (std::exp).
void silu_mul_ref(float* y, const float* g, const float* u, int64_t n);

namespace detail {
void silu_mul_avx2(float* y, const float* g, const float* u, int64_t n);
}

}  // namespace slm::cpu
