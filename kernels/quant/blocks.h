// Byte-exact block structs of every quantized type we read or write (ggml-common.h layouts, see
// ../shared/specs/gguf.md §5). Kernels include this to address block fields by name; half-precision
// fields are raw uint16_t bits (decode with core/half.h). Sizes are static_asserted: a struct that
// drifts from the file format would silently misread every weight.
#pragma once
#include <cstdint>

namespace slm {

inline constexpr int kQK = 32;      // elements per block of the legacy 32-wide types and IQ4_NL
inline constexpr int kQK_K = 256;   // elements per super-block of the K-quants, Q8_K, IQ4_XS
inline constexpr int kKScaleBytes = 12;  // packed 6-bit scales/mins of Q4_K/Q5_K (and Q3_K)

#pragma pack(push, 1)

struct BlockQ4_0 {   // y = d * (q - 8)
  uint16_t d;
  uint8_t qs[kQK / 2];  // element j: low nibble of qs[j]; element j+16: high nibble
};
struct BlockQ4_1 {   // y = d * q + m
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {   // y = d * (q - 16), q = nibble | bit(qh, j) << 4
  uint16_t d;
  uint8_t qh[4];        // little-endian u32: bit j is the 5th bit of element j
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {   // y = d * q + m
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {   // y = d * q
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ8_1 {   // y = d * q; s = d * sum(q) (activation format)
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};

struct BlockQ2_K {   // y = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), 16 sub-blocks of 16
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
struct BlockQ3_K {   // y = d * (sc6 - 32) * (q2 - (hbit ? 0 : 4)), 16 sub-blocks of 16
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {   // y = d * sc_j * q - dmin * mn_j, 8 sub-blocks of 32
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {   // y = d * scales[idx] * (q6 - 32), 16 sub-blocks of 16
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
struct BlockQ8_K {   // y = d * q (activation format; d is float32, not half)
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sum of qs over each group of 16
};

struct BlockIQ4_NL {  // y = d * kIQ4NLValues[q], nibble order as Q4_0
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockIQ4_XS {  // y = d * (ls_ib - 32) * kIQ4NLValues[q], 8 sub-blocks of 32
  uint16_t d;
  uint16_t scales_h;    // bits 2ib..2ib+1: high 2 bits of sub-block ib's 6-bit scale
  uint8_t scales_l[kQK_K / 64];  // nibble ib%2 of byte ib/2: low 4 bits of that scale
  uint8_t qs[kQK_K / 2];  // sub-block ib: qs[16ib+t] low nibble = element t, high = element 16+t
};

#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

// (scale, min) of sub-block j (0..7) from the 12 packed bytes of a Q4_K/Q5_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace slm
