// The K-quant / IQ4 scale searches (kernels/quant/search.h) with 8 lanes, compiled for AVX2
// (kernels/CMakeLists.txt gives *_avx2.cpp files -mavx2 -mfma ...); types.cpp calls it only after
// checking the CPU. Same bytes as the 4-lane baseline build.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")  // -mfma must not fuse a*b+c: the bytes would change
#endif

#define SLM_QUANT_LANES 8
#include "kernels/quant/search.h"

namespace slm::detail {

bool quantize_searched_avx2(QType t, const float* src, void* dst, int64_t n) {
  return qsearch::quantize_searched(t, src, dst, n);
}

}  // namespace slm::detail
