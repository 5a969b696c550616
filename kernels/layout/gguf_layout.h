// GGUF Q4_0 / Q8_0 / Q4_K / Q6_K as the CUDA kernels read them (no repack: the raw block rows are
// uploaded unchanged), expressed as SLM_HD helpers shared by the kernels and the CPU emulation:
//  * per-element decode of a 32-element "unit" (a Q4_0/Q8_0 block, or one of the eight
//    32-element pieces of a Q4_K / Q6_K super-block) for the dequantize-to-FP16 path;
//  * the dp4a dot product of one unit with a Q8_1 activation block (llama.cpp MMVQ scheme,
//    kernels.md §3.2): integer dot of the codes, offsets/mins folded in once per unit through the
//    activation block's stored s = d * sum(q);
//  * the Q8_1 activation quantizer's arithmetic (host mirror of the warp-parallel kernel);
//  * the dequantize-in-register FP16 path (gguf_f16_gemv): a unit's codes as half2 pairs of
//    consecutive elements built with byte_perm / lop3 magic-number bit tricks, and the FP32
//    factors they are scaled by.
#pragma once
#include <cstdint>

#include "kernels/layout/hd.h"
#include "kernels/quant/blocks.h"
#include "kernels/quant/types.h"

namespace slm::layout {

inline constexpr int kUnitElems = 32;  // elements per unit (and per Q8_1 activation block)

// True for the weight types the GGUF CUDA kernels implement.
inline bool gguf_cuda_supported(QType t) {
  return t == QType::Q4_0 || t == QType::Q8_0 || t == QType::Q4_K || t == QType::Q6_K;
}
// Units per block (1 for the 32-wide types, 8 for the 256-wide K-quants).
SLM_HD constexpr int gguf_units_per_block(uint32_t type) {
  return type == uint32_t(QType::Q4_K) || type == uint32_t(QType::Q6_K) ? 8 : 1;
}
SLM_HD constexpr int gguf_block_bytes(uint32_t type) {
  return type == uint32_t(QType::Q4_0)   ? 18
         : type == uint32_t(QType::Q8_0) ? 34
         : type == uint32_t(QType::Q4_K) ? 144
                                         : 210;
}

// Q6_K (gguf.md §5; 210 bytes: ql[128] low nibbles, qh[64] 2-bit highs, int8 scales[16], fp16 d).
// The block is two halves of 128 elements; in half h, piece j (0..3) of 32 elements takes the
// low (j < 2) or high (j >= 2) nibbles of ql[64h + 32(j&1) + e] and bits 2j..2j+1 of qh[32h + e],
// and scale 8h + 2j + e/16. Unit u of the block is piece u & 3 of half u >> 2, so a unit is a
// contiguous 32-element range and has two 16-element scales.
// Word i (elements 4i..4i+3) of unit u as four bytes q = 0..63 (the stored 6-bit codes; the
// element is d * scale * (q - 32)). The block is only 2-byte aligned (210 bytes): 16-bit loads.
SLM_HD uint32_t q6k_word(const uint8_t* blk, int u, int i) {
  const int h = u >> 2, j = u & 3;
  const uint32_t lo = load_u32_a2(blk + 64 * h + 32 * (j & 1) + 4 * i) >> (4 * (j >> 1));
  const uint32_t hi = load_u32_a2(blk + 128 + 32 * h + 4 * i) >> (2 * j);
  return (lo & 0x0F0F0F0Fu) | ((hi & 0x03030303u) << 4);
}
// Scale of the 16 elements [16 s, 16 s + 16) of unit u (s = 0, 1).
SLM_HD int q6k_scale(const uint8_t* blk, int u, int s) {
  return int(int8_t(blk[192 + 8 * (u >> 2) + 2 * (u & 3) + s]));
}

// (scale, min) of Q4_K sub-block j from the 12 packed bytes (gguf.md §5.9).
SLM_HD void q4k_scale_min(int j, const uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Element e (0..31) of unit u of the block at `blk`.
SLM_HD float gguf_unit_value(uint32_t type, const uint8_t* blk, int u, int e) {
  if (type == uint32_t(QType::Q4_0)) {
    const float d = h2f(load_u16(blk));
    const uint8_t b = blk[2 + (e & 15)];
    return d * float(int((e < 16) ? (b & 0xF) : (b >> 4)) - 8);
  }
  if (type == uint32_t(QType::Q8_0)) return h2f(load_u16(blk)) * float(int8_t(blk[2 + e]));
  if (type == uint32_t(QType::Q6_K)) {
    const int q = int((q6k_word(blk, u, e >> 2) >> (8 * (e & 3))) & 0xFFu);
    // (d * scale) * (q - 32), the order of slm::dequantize_row, so both round identically.
    return h2f(load_u16(blk + 208)) * float(q6k_scale(blk, u, e >> 4)) * float(q - 32);
  }
  // Q4_K: unit u = sub-block u; chunk u/2 of qs, low nibble for even u, high for odd.
  int sc, mn;
  q4k_scale_min(u, blk + 4, sc, mn);
  const uint8_t b = blk[16 + 32 * (u >> 1) + e];
  const int q = (u & 1) ? (b >> 4) : (b & 0xF);
  return h2f(load_u16(blk)) * float(sc) * float(q) - h2f(load_u16(blk + 2)) * float(mn);
}

// The four int32 words of a Q8_1 block's codes (4-byte aligned: the buffer is 4-aligned and a
// block is 36 bytes with qs at offset 4).
SLM_HD uint32_t q8_1_word(const BlockQ8_1* x, int i) { return load_u32_a4(x->qs + 4 * i); }

// dot(unit u of the weight block, activation block x), as the dp4a kernels compute it.
SLM_HD float gguf_unit_dot_q8_1(uint32_t type, const uint8_t* blk, int u, const BlockQ8_1* x) {
  const float dx = h2f(x->d);
  const float sx = h2f(x->s);
  int sumi = 0;
  if (type == uint32_t(QType::Q4_0)) {
    // Word i of qs holds elements 4i..4i+3 in its low nibbles and 16+4i..16+4i+3 in its high
    // nibbles: the masks give bytes 0..15 directly usable by dp4a against the matching x words.
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = load_u32_a2(blk + 2 + 4 * i);
      sumi = dp4a(w & 0x0F0F0F0Fu, q8_1_word(x, i), sumi);
      sumi = dp4a((w >> 4) & 0x0F0F0F0Fu, q8_1_word(x, i + 4), sumi);
    }
    // sum d_w (q - 8) d_x qx = d_w (d_x sumi - 8 s)
    return h2f(load_u16(blk)) * (dx * float(sumi) - 8.0f * sx);
  }
  if (type == uint32_t(QType::Q8_0)) {
    for (int i = 0; i < 8; ++i) sumi = dp4a(load_u32_a2(blk + 2 + 4 * i), q8_1_word(x, i), sumi);
    return h2f(load_u16(blk)) * dx * float(sumi);
  }
  if (type == uint32_t(QType::Q6_K)) {
    // Per 16-element half s: sum (q - 32) qx = sum q qx - 32 sum qx, both by dp4a (the codes are
    // 0..63, positive as signed bytes; the ones vector sums the activation codes), so the offset
    // is exact in integers and the Q8_1 s is not needed. |part| <= 127 * 16 * 32 * 127, so the
    // sum of both stays below 2^24 and float() is exact.
    int part[2];
    for (int s = 0; s < 2; ++s) {
      int sq = 0, sx = 0;
      for (int i = 4 * s; i < 4 * s + 4; ++i) {
        const uint32_t xw = q8_1_word(x, i);
        sq = dp4a(q6k_word(blk, u, i), xw, sq);
        sx = dp4a(0x01010101u, xw, sx);
      }
      part[s] = q6k_scale(blk, u, s) * (sq - 32 * sx);
    }
    return h2f(load_u16(blk + 208)) * dx * float(part[0] + part[1]);
  }
  int sc, mn;
  q4k_scale_min(u, blk + 4, sc, mn);
  const uint8_t* qs = blk + 16 + 32 * (u >> 1);  // 16-byte aligned inside the 144-byte block
  const int shift = (u & 1) * 4;
  for (int i = 0; i < 8; ++i)
    sumi = dp4a((load_u32_a4(qs + 4 * i) >> shift) & 0x0F0F0F0Fu, q8_1_word(x, i), sumi);
  // sum (d sc q - dmin mn) d_x qx = d sc d_x sumi - dmin mn s
  return h2f(load_u16(blk)) * float(sc) * dx * float(sumi) -
         h2f(load_u16(blk + 2)) * float(mn) * sx;
}

// ---- dequantize-in-register FP16 (gguf_f16_gemv) ----
//
// Pair p (0..15) of unit u is the half2 of elements (2p, 2p+1) -- the order of an activation
// half2 -- holding c * 2^-s exactly, where c = code - offset is the block's integer code and s a
// per-type shift that puts |c * 2^-s| <= 1:
//
//   type   code q (stored)        c = q - offset     s   magic (fp16 2^(10-s))  subtrahend
//   Q4_0   nibble 0..15           q - 8              3   0x5800 = 128           0x5808 = 129
//   Q8_0   int8 -128..127, ^0x80  (q + 128) - 128    7   0x4800 = 8             0x4880 = 9
//   Q4_K   nibble 0..15           q (min separate)   4   0x5400 = 64            0x5400 = 64
//   Q6_K   6-bit 0..63            q - 32             5   0x5000 = 32            0x5020 = 33
//
// The magic is the gptq trick moved to another exponent: fp16 2^(10-s) has mantissa ulp 2^-s,
// so OR-ing an unsigned code v < 1024 into the 10 mantissa bits gives the half 2^(10-s) + v 2^-s
// with no conversion instruction; subtracting the subtrahend 2^(10-s) + offset 2^-s (the magic
// with the offset OR-ed in) in half2 is exact (both operands lie in [2^(10-s), 2^(11-s)), so the
// difference is exact by Sterbenz and is a multiple of 2^-s below 1 in magnitude).
// Why the scaled codes rather than the integer (1024 + q) form: the kernel multiplies codes by
// the FP16 activations and sums 4 products per half lane in half precision; with |c 2^-s| <= 1
// that sum stays below 4 max|x|, so it cannot overflow (65504) unless an activation exceeds
// 16376, where integer Q8_0 codes (|c| <= 128) would overflow above |x| = 128 -- within reach of
// Llama's outlier activations. The scale multiply then absorbs 2^s (exact in FP32).
SLM_HD constexpr int gguf_f16_shift(uint32_t type) {
  return type == uint32_t(QType::Q4_0)   ? 3
         : type == uint32_t(QType::Q8_0) ? 7
         : type == uint32_t(QType::Q4_K) ? 4
                                         : 5;
}
// half2(2^(10-s), 2^(10-s)): exponent field 25 - s, empty mantissa.
SLM_HD constexpr uint32_t gguf_f16_magic(uint32_t type) {
  return uint32_t(25 - gguf_f16_shift(type)) * 0x04000400u;
}
// The unsigned-code offset (Q8_0's codes are biased by 128 with the xor) OR-ed into the magic.
SLM_HD constexpr uint32_t gguf_f16_subtrahend(uint32_t type) {
  const uint32_t off = type == uint32_t(QType::Q4_0)   ? 8u
                       : type == uint32_t(QType::Q8_0) ? 128u
                       : type == uint32_t(QType::Q4_K) ? 0u
                                                       : 32u;
  return gguf_f16_magic(type) | (off * 0x00010001u);
}

// The 8 code words of unit u: word i holds the codes of elements 4i..4i+3, one per byte, in the
// low bits of the byte (4-bit types leave another element's nibble above them; the decode masks
// it). Loads: Q4_0 / Q8_0 (18- and 34-byte blocks, 2-byte aligned) and Q6_K (210 bytes) with
// 16-bit loads; Q4_K's 32-byte chunk of qs is 16-byte aligned inside its 144-byte block (the
// block rows start at multiples of 144 from a 256-byte aligned buffer), so two 128-bit loads.
SLM_HD void gguf_f16_unit_words(uint32_t type, const uint8_t* blk, int u, uint32_t cw[8]) {
  if (type == uint32_t(QType::Q4_0)) {
    // qs word j carries elements 4j..4j+3 in its low nibbles and 16+4j.. in its high nibbles.
    for (int j = 0; j < 4; ++j) {
      const uint32_t w = load_u32_a2(blk + 2 + 4 * j);
      cw[j] = w;
      cw[j + 4] = w >> 4;
    }
  } else if (type == uint32_t(QType::Q8_0)) {
    for (int i = 0; i < 8; ++i) cw[i] = load_u32_a2(blk + 2 + 4 * i);
  } else if (type == uint32_t(QType::Q4_K)) {
    // Sub-block u: chunk u/2 of qs, low nibbles for even u, high for odd.
    const uint8_t* qs = blk + 16 + 32 * (u >> 1);
    load_u32x4_a16(qs, cw);
    load_u32x4_a16(qs + 16, cw + 4);
    const int shift = 4 * (u & 1);
    for (int i = 0; i < 8; ++i) cw[i] >>= shift;
  } else {
    for (int i = 0; i < 8; ++i) cw[i] = q6k_word(blk, u, i);
  }
}

// Code word -> the two half2 magic patterns h[0] = elements (4i, 4i+1), h[1] = (4i+2, 4i+3),
// each lane magic + v 2^-s for the unsigned code v (before the subtrahend). Pure integer bit
// operations: prmt places bytes 0,1 (or 2,3) of the word in the two lanes' low bytes -- for the
// byte-wide codes it also fills the lanes' high bytes with the magic's exponent byte, so one
// prmt is the whole decode; 4-bit codes then take one lop3 (mask the nibble, OR the magic).
SLM_HD void gguf_f16_magic_pair(uint32_t type, uint32_t cw, uint32_t h[2]) {
  constexpr uint32_t kSel0 = 0x4140u, kSel1 = 0x4342u;  // {b0, y0, b1, y0}, {b2, y0, b3, y0}
  const uint32_t magic = gguf_f16_magic(type);
  if (type == uint32_t(QType::Q4_0) || type == uint32_t(QType::Q4_K)) {
    h[0] = and_or(byte_perm(cw, 0u, kSel0), 0x000F000Fu, magic);
    h[1] = and_or(byte_perm(cw, 0u, kSel1), 0x000F000Fu, magic);
  } else {
    // Q8_0: xor 0x80 maps int8 q to the unsigned q + 128 (0..255); Q6_K codes are 0..63 already.
    const uint32_t v = type == uint32_t(QType::Q8_0) ? cw ^ 0x80808080u : cw;
    const uint32_t exp_bytes = (magic >> 8 & 0xFFu) * 0x01010101u;
    h[0] = byte_perm(v, exp_bytes, kSel0);
    h[1] = byte_perm(v, exp_bytes, kSel1);
  }
}

// half2 bits of c * 2^-s for elements (2p, 2p+1) of unit u: what the kernel multiplies with the
// activation half2 of those elements (the kernel decodes all 16 pairs of a unit from one
// gguf_f16_unit_words call; this per-pair form is for the CPU emulation test).
SLM_HD uint32_t gguf_unit_codes_h2(uint32_t type, const uint8_t* blk, int u, int p) {
  uint32_t cw[8];
  gguf_f16_unit_words(type, blk, u, cw);
  uint32_t h[2];
  gguf_f16_magic_pair(type, cw[p >> 1], h);
  return hsub2_bits(h[p & 1], gguf_f16_subtrahend(type));
}

// The FP32 factors of unit u: element e's weight is sc[e / 16] * (c 2^-s) - mn. sc absorbs 2^s;
// every product here is exact in float (d has 11 significant bits, Q4_K's sc 6, Q6_K's |scale|
// at most 7, 2^s none), so sc * (c 2^-s) is exactly the d * scale * c of dequantize_row, and for
// Q4_K the one rounding left is the subtraction of mn = dmin * m, as in dequantize_row.
// sc[0] == sc[1] except for Q6_K (two 16-element scales per unit); mn = 0 except for Q4_K.
SLM_HD void gguf_f16_unit_scales(uint32_t type, const uint8_t* blk, int u, float sc[2], float& mn) {
  const float p2s = float(1 << gguf_f16_shift(type));
  mn = 0.0f;
  if (type == uint32_t(QType::Q6_K)) {
    const float d = h2f(load_u16(blk + 208));
    sc[0] = d * float(q6k_scale(blk, u, 0)) * p2s;
    sc[1] = d * float(q6k_scale(blk, u, 1)) * p2s;
    return;
  }
  if (type == uint32_t(QType::Q4_K)) {
    int s, m;
    q4k_scale_min(u, blk + 4, s, m);
    sc[0] = sc[1] = h2f(load_u16(blk)) * float(s) * p2s;
    mn = h2f(load_u16(blk + 2)) * float(m);
    return;
  }
  sc[0] = sc[1] = h2f(load_u16(blk)) * p2s;  // Q4_0, Q8_0: d at offset 0
}

// Q8_1 quantization of 32 fp16 activations, the arithmetic the GPU's warp version performs:
// d = amax / 127, q = round(x / d) (half away from zero), s = d * sum(q), d and s rounded to fp16.
void quantize_q8_1_ref(const uint16_t* x_f16, BlockQ8_1* out, int64_t k);

// Reference for the dp4a path: y[m][n] = sum over units of the exact (double) product of the
// dequantized weight (slm::dequantize_row) with the dequantized Q8_1 activation.
void gguf_linear_q8_1_ref(QType t, const void* w, int64_t n, int64_t k, const BlockQ8_1* xq,
                          int64_t m, double* y);

}  // namespace slm::layout
