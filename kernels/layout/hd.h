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

// half2(1024, 1024): 0x6400 is fp16 1024.0, whose mantissa ulp is exactly 1, so OR-ing a value
// v < 1024 into the 10 mantissa bits gives the half 1024 + v (the magic-number dequant of
// gptq_layout.h; gguf_layout.h uses the same trick at other exponents).
inline constexpr uint32_t kMagicF16x2 = 0x64006400u;

// (a & b) | c in one instruction on the GPU (lop3 with truth table 0xEA: for the canonical
// inputs a = 0xF0, b = 0xCC, c = 0xAA, (0xF0 & 0xCC) | 0xAA = 0xEA).
SLM_HD uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__CUDA_ARCH__)
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  return (a & b) | c;
#endif
}

// prmt.b32 (default mode): byte i of the result is byte (s >> 4i) & 7 of the 8-byte pool
// {y:x} (x = bytes 0..3, y = bytes 4..7). The host spelling covers selectors whose nibbles are
// 0..7 (bit 3 of a nibble, prmt's sign replication, is not used by any caller).
SLM_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t pool = uint64_t(x) | (uint64_t(y) << 32);
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= uint32_t((pool >> (8 * ((s >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
#endif
}

// Lane-wise a - b of two half2 bit patterns (low 16 bits = first lane). The device spelling is
// one HSUB2 (round to nearest even); the host spelling subtracts in float and rounds to half,
// which is the same result whenever the difference is exact in float and in half, the only way
// the layout helpers use it (small integers times a power of two, operands within a factor of
// two of each other: Sterbenz).
SLM_HD uint32_t hsub2_bits(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  __half2 ha, hb;
  __builtin_memcpy(&ha, &a, 4);
  __builtin_memcpy(&hb, &b, 4);
  const __half2 r = __hsub2(ha, hb);
  uint32_t u;
  __builtin_memcpy(&u, &r, 4);
  return u;
#else
  const uint32_t lo = f32_to_fp16(fp16_to_f32(uint16_t(a)) - fp16_to_f32(uint16_t(b)));
  const uint32_t hi = f32_to_fp16(fp16_to_f32(uint16_t(a >> 16)) - fp16_to_f32(uint16_t(b >> 16)));
  return lo | (hi << 16);
#endif
}

// Four 32-bit words from a 16-byte-aligned pointer to weights that are read exactly once: on the
// device one 128-bit ld.global.cs (evict-first, as the other GEMVs stream their weights).
SLM_HD void load_u32x4_a16(const void* p, uint32_t out[4]) {
#if defined(__CUDA_ARCH__)
  const uint4 v = __ldcs(reinterpret_cast<const uint4*>(p));
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
#else
  std::memcpy(out, p, 16);
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
