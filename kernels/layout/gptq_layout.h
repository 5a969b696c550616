// GPTQ 4-bit weights: the checkpoint layout (../shared/specs/gptq.md §2-5), the repacked layout
// the fast CUDA kernels read, the load-time repack between them, and the index/decode helpers
// (SLM_HD) that the kernels and the CPU emulation tests share. Host code only allocates here;
// kernels/cuda uploads the vectors as they are.
//
// Repacked ("fast") layout, for K input and N output features, G = K / group_size groups:
//
//   qweight  uint32 [N][K/8]   row n holds output n's weights along K, 8 per word, so one
//                              128-bit load = 4 words = a 32-wide K chunk of one output
//   scales   fp16   [G][N]     unchanged from the checkpoint
//   zeros    uint8  [G][N]     effective zero point (v1's stored+1 already applied), 0..16
//   perm     int32  [K]        act-order only: repacked position k' holds input column perm[k'],
//                              so the kernels read x[perm[k']] (the activation is permuted once
//                              per call instead of gathering scales per weight). Empty otherwise.
//
// After the act-order reorder every group is a contiguous K range: position k' is in group
// k' / group_size. group_size % 32 == 0, so a 32-wide chunk never straddles two groups.
//
// Nibble order inside a word (k = 8w + j, j = 0..7), chosen for the magic-number dequant:
//
//   bit  31..28 27..24 23..20 19..16 | 15..12 11..8  7..4   3..0
//        q7     q5     q3     q1     | q6     q4     q2     q0
//
// i.e. the low half-word carries the even j, the high half-word the odd j. Then
//   (w      & 0x000F000F) | 0x64006400  = half2(1024 + q0,    1024 + q1)
//   (w      & 0x00F000F0) | 0x64006400  = half2(1024 + 16 q2, 1024 + 16 q3)
//   (w >> 8 & 0x000F000F) | 0x64006400  = half2(1024 + q4,    1024 + q5)
//   (w >> 8 & 0x00F000F0) | 0x64006400  = half2(1024 + 16 q6, 1024 + 16 q7)
// because 0x6400 is fp16 1024.0, whose mantissa ulp is exactly 1: OR-ing a value v < 1024 into
// the 10 mantissa bits yields the half 1024 + v with no conversion instruction. Each pair comes
// out in (k, k+1) order, which is also the order a tensor-core B fragment wants.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/layout/hd.h"

namespace slm::layout {

inline constexpr int kGptqBits = 4;
inline constexpr int kGptqWordK = 8;    // K values per packed word
inline constexpr int kGptqChunkK = 32;  // K values per 128-bit load (4 words)
// kMagicF16x2 = half2(1024, 1024) and and_or (lop3) live in kernels/layout/hd.h.

// A GPTQ 4-bit linear as stored in the checkpoint (HF orientation: y = W x, W[N][K]).
struct GptqTensors {
  int64_t k = 0;                     // in_features
  int64_t n = 0;                     // out_features
  int group_size = 128;              // -1: one group spanning all of K
  bool zeros_v1 = true;              // checkpoint_format "gptq": stored zero = zero - 1
  std::span<const int32_t> qweight;  // [K/8][N]
  std::span<const int32_t> qzeros;   // [G][N/8]
  std::span<const uint16_t> scales;  // [G][N] fp16 bits
  std::span<const int32_t> g_idx;    // [K]; empty means k / group_size
};

struct GptqRepacked {
  int64_t k = 0, n = 0, groups = 0;
  int group_size = 0;            // resolved (never -1)
  std::vector<uint32_t> qweight;  // [N][K/8] shuffled, see the header comment
  std::vector<uint16_t> scales;   // [G][N] fp16 bits
  std::vector<uint8_t> zeros;     // [G][N]
  std::vector<int32_t> perm;      // [K] or empty
  bool has_perm() const { return !perm.empty(); }
};

// Resolved group size (group_size -1 -> k) and group count; throws slm::Error when the geometry
// is not one the kernels support (K % 32, N % 8, group_size % 32).
int gptq_group_size(const GptqTensors& t);
int64_t gptq_groups(const GptqTensors& t);
// Checks every span's size against the shapes and g_idx's values; throws slm::Error naming the
// problem.
void gptq_validate(const GptqTensors& t);

// Reference dequantization of the checkpoint, straight from gptq.md §5.1: W[n][k] as float
// (exact: scale has 11 significant bits and (q - z) at most 5).
std::vector<float> gptq_dequantize_ref(const GptqTensors& t);

// Load-time repack into the fast layout (validates first).
GptqRepacked gptq_repack(const GptqTensors& t);

// ---- shared index/decode math (used by kernels/cuda and by the CPU emulation) ----

// Checkpoint layout: 4-bit code of (k, n) and effective zero of (group, n).
SLM_HD int gptq_code_orig(const int32_t* qweight, int64_t n_cols, int64_t k, int64_t n) {
  return int((uint32_t(qweight[(k >> 3) * n_cols + n]) >> (4 * (k & 7))) & 15u);
}
SLM_HD int gptq_zero_orig(const int32_t* qzeros, int64_t n_cols, int64_t g, int64_t n, bool v1) {
  const int stored = int((uint32_t(qzeros[g * (n_cols >> 3) + (n >> 3)]) >> (4 * (n & 7))) & 15u);
  return stored + (v1 ? 1 : 0);  // full-width +1: a stored 15 means 16 (gptq.md §4)
}

// Fast layout: word holding k-values [8 kw, 8 kw + 8) of output n.
SLM_HD int64_t gptq_fast_word(int64_t n, int64_t kw, int64_t k) { return n * (k >> 3) + kw; }
// Bit offset of value j (0..7) inside a shuffled word.
SLM_HD int gptq_fast_shift(int j) { return (j & 1) ? 16 + 4 * (j >> 1) : 4 * (j >> 1); }
SLM_HD uint32_t gptq_shuffle_word(uint32_t plain) {  // plain: value j at bits 4j
  uint32_t w = 0;
  for (int j = 0; j < 8; ++j) w |= ((plain >> (4 * j)) & 15u) << gptq_fast_shift(j);
  return w;
}
SLM_HD int64_t gptq_fast_group(int64_t kpos, int group_size) { return kpos / group_size; }

// The four half2 bit patterns of a shuffled word (see the header comment): h[0] = (1024+q0,
// 1024+q1), h[1] = (1024+16q2, 1024+16q3), h[2] = (1024+q4, 1024+q5), h[3] = (1024+16q6,
// 1024+16q7); the low 16 bits of each are the first element.
SLM_HD void gptq_magic_unpack(uint32_t w, uint32_t h[4]) {
  const uint32_t hi = w >> 8;
  h[0] = and_or(w, 0x000F000Fu, kMagicF16x2);
  h[1] = and_or(w, 0x00F000F0u, kMagicF16x2);
  h[2] = and_or(hi, 0x000F000Fu, kMagicF16x2);
  h[3] = and_or(hi, 0x00F000F0u, kMagicF16x2);
}

// Host mirror of the kernels' half2 arithmetic on one magic pattern: (q - z) for element e
// (0 = low half, 1 = high half) of pattern p. The GPU computes (1024+q) - (1024+z) and
// (1024+16q) * (1/16) - (64+z) in fp16; every intermediate is an integer below 2048, so both
// are exact and equal this float computation.
inline float gptq_magic_decode(const uint32_t h[4], int p, int e, int zero) {
  const float v = h2f(uint16_t(h[p] >> (16 * e)));
  return (p & 1) ? v * (1.0f / 16.0f) - (64.0f + float(zero)) : v - (1024.0f + float(zero));
}

}  // namespace slm::layout
