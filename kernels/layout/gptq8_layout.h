// GPTQ 8-bit weights (e.g. an `--lm-head-bits 8` lm_head) in the layout of the CUDA dp4a GEMV
// (kernels/cuda/gptq8.cu): codes as signed bytes, one output row contiguous along K, act-order
// as a column permutation, and the SLM_HD unit dot shared by the kernel and the CPU emulation.
//
//   codes   int8  [N][K]   q - 128 (q = the stored 8-bit code), columns in repacked order k'
//   scales  fp16  [N][G]   the checkpoint's scales, transposed so the lanes of a warp (one
//                          output row, consecutive 32-wide units) read neighbouring values
//   offs    int16 [N][G]   128 - z (z = effective zero, v1's +1 applied; -128 .. 128)
//   perm    int32 [K]      act-order: position k' holds input column perm[k'] (empty otherwise)
//
// w = s (q - z) = s ((q - 128) + (128 - z)), so with Q8_1 activation codes qx and their scale
// d_x, a 32-element unit of one group contributes s d_x (sum (q-128) qx + (128 - z) sum qx):
// two dp4a chains (codes, and a ones vector for sum qx), exact in integers. Requirements: K %
// 32 == 0, group size -1 or a multiple of 32, g_idx with group_size columns per group but the
// last (what GPTQ writes), FP16 scales.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/layout/gguf_layout.h"
#include "kernels/layout/hd.h"

namespace slm::cpu {
struct GptqTensors;  // kernels/cpu/gptq_linear.h (not included: nvcc compiles this header)
}

namespace slm::layout {

struct Gptq8Repacked {
  int64_t k = 0, n = 0, groups = 0;
  int group_size = 0;            // resolved (never -1)
  std::vector<int8_t> codes;     // [N][K]
  std::vector<uint16_t> scales;  // [N][G] fp16 bits
  std::vector<int16_t> offs;     // [N][G]
  std::vector<int32_t> perm;     // [K] or empty
  bool has_perm() const { return !perm.empty(); }
};

// Empty when the 8-bit kernel can run `t`, else the reason.
std::string gptq8_unsupported(const cpu::GptqTensors& t);
// Throws slm::Error with gptq8_unsupported's reason.
Gptq8Repacked gptq8_repack(const cpu::GptqTensors& t);

// dot(unit of 32 repacked codes as 8 little-endian words, activation block x), as the kernel
// computes it. |sum (q-128) qx + off sum qx| <= 32 * 128 * 127 * 2 < 2^24: exact in float.
SLM_HD float gptq8_unit_dot_q8_1(const uint32_t w[8], float scale, int off, const BlockQ8_1* x) {
  int sq = 0, sx = 0;
  for (int i = 0; i < 8; ++i) {
    const uint32_t xw = q8_1_word(x, i);
    sq = dp4a(w[i], xw, sq);
    sx = dp4a(0x01010101u, xw, sx);
  }
  return scale * h2f(x->d) * float(sq + off * sx);
}

// W[n][k] (original column order) from the repacked layout: the exact dequantized weights.
std::vector<float> gptq8_dequantize_ref(const Gptq8Repacked& r);

}  // namespace slm::layout
