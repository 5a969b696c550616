// silu_mul (kernels/cpu/act.h): the AVX2 version (libmvec expf) against the scalar reference on
// fresh random inputs, awkward lengths and the extremes where e^-g overflows or vanishes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/act.h"
#include "kernels/cpu/isa.h"

using namespace slm::cpu;

TEST_CASE("silu_mul: AVX2 matches the scalar reference within a few ulp") {
  if (detected_isa() < Isa::AVX2) {
    MESSAGE("SKIP: this CPU has no AVX2");
    return;
  }
  // Bound: libmvec's expf is within 4 ulp (glibc's documented maximum for the vector variants),
  // 1 + e^-g adds at most that relative error again after its own rounding (0.5 ulp), and the
  // division and the product by u add 0.5 ulp each: |dy| <= ~6 ulp of |y|; checked at 8 ulp
  // (2^-24 per ulp of relative error), plus 1e-37 absolute for results in the denormal range.
  const double ulp = std::ldexp(1.0, -24);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 4.f);
  for (int64_t n : {0, 1, 7, 8, 9, 64, 1003}) {
    const size_t len = size_t(n);
    std::vector<float> g(len), u(len), y(len), ref(len);
    for (auto& v : g) v = nd(rng);
    for (auto& v : u) v = nd(rng);
    if (n >= 9) {  // e^-g overflows to inf (y = -0 * u), or vanishes (y = g * u)
      g[0] = -100.f, g[1] = 100.f, g[2] = -88.f, g[3] = 88.f, g[4] = 0.f, g[5] = -0.f;
    }
    silu_mul_ref(ref.data(), g.data(), u.data(), n);
    detail::silu_mul_avx2(y.data(), g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      INFO("n=" << n << " i=" << i << " g=" << g[size_t(i)]);
      CHECK(std::abs(double(y[size_t(i)]) - double(ref[size_t(i)])) <= 8 * ulp * std::abs(double(ref[size_t(i)])) + 1e-37);
    }
    // In place, as the forward pass calls it (y aliases g).
    std::vector<float> g2 = g;
    detail::silu_mul_avx2(g2.data(), g2.data(), u.data(), n);
    CHECK(g2 == y);
  }
}
