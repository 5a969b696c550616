// The avx512 instantiation of the matrix kernels in linear_simd.inc:
// AVX-512 (F/BW/VL/DQ/VNNI/BF16): int8 dots with vpdpbusd/vpdpwssd, 512-bit float kernels,
// vdpbf16ps for BF16 x BF16.
// Compiled with the ISA flags of kernels/CMakeLists.txt; entered only after the CPUID check.
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_* in inlined conversions).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/linear_internal.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

namespace slm::cpu::detail::avx512 {

#define SLM_SIMD_VNNI 1
#define SLM_SIMD_512 1
#include "kernels/cpu/linear_simd.inc"
#undef SLM_SIMD_VNNI
#undef SLM_SIMD_512

}  // namespace slm::cpu::detail::avx512
