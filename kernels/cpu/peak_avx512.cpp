// The compute-peak probe (peak_simd.inc) for AVX512.
#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "kernels/cpu/peak.h"

namespace slm::cpu::detail {
namespace {
#define SLM_PEAK_512 1
#include "kernels/cpu/peak_simd.inc"
#undef SLM_PEAK_512
}  // namespace

ComputePeak compute_peak_avx512() { return compute_peak_impl(); }

}  // namespace slm::cpu::detail
