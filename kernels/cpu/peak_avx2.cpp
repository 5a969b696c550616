// The compute-peak probe (peak_simd.inc) for AVX2.
#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "kernels/cpu/peak.h"

namespace slm::cpu::detail {
namespace {
#define SLM_PEAK_512 0
#include "kernels/cpu/peak_simd.inc"
#undef SLM_PEAK_512
}  // namespace

ComputePeak compute_peak_avx2() { return compute_peak_impl(); }

}  // namespace slm::cpu::detail
