// SLM_HD: marks the small index/decode helpers that are compiled both into the CUDA kernels and
// into the plain C++ host references, so the CPU emulation tests exercise the very same index
// math the GPU runs (kernels/layout/*.h). Outside nvcc it expands to plain `inline`. Also the
// few load/convert primitives those helpers need, with a device and a host spelling each.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/half.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define SLM_HD __host__ __device__ __forceinline__
#else
#define SLM_HD inline
#endif

namespace slm::layout {

// IEEE half bits -> float (exact on both sides).
SLM_HD float h2f(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return fp16_to_f32(h);
#endif
}

// Little-endian u16 / u32 from a pointer that is only 2-byte aligned (the 18- and 34-byte GGUF
// blocks put their payload at odd multiples of 2).
SLM_HD uint16_t load_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}
SLM_HD uint32_t load_u32_a2(const uint8_t* p) {
  return uint32_t(load_u16(p)) | (uint32_t(load_u16(p + 2)) << 16);
}
// 4-byte aligned 32-bit load.
SLM_HD uint32_t load_u32_a4(const void* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}

// dp4a: c + sum of the four signed-byte products of a and b. The host spelling is the definition
// the PTX ISA gives for dp4a.s32.s32.
SLM_HD int dp4a(uint32_t a, uint32_t b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(int(a), int(b), c);
#else
  for (int i = 0; i < 4; ++i) c += int(int8_t(a >> (8 * i))) * int(int8_t(b >> (8 * i)));
  return c;
#endif
}

}  // namespace slm::layout
