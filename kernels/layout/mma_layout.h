// Fragment index math of the tensor-core GEMM (kernels/cuda/gptq.cu, variant d), shared with the
// CPU emulation test: which shared-memory row/column each lane hands to ldmatrix.x4, how the four
// loaded 8x8 matrices map onto mma.m16n8k16 A/B fragments, and where each accumulator lands.
// PTX semantics being relied on (PTX ISA "ldmatrix" and "mma.m16n8k16" fragment figures), with
// lane l, g = l / 4, t = l % 4, half h = 0/1 of a 32-bit register:
//   ldmatrix.x4: lane 8j + r supplies the address of row r of matrix j; register j of lane l
//                receives row g, columns 2t + h of matrix j.
//   A (16x16, row-major) register i: row g + 8 (i & 1), column 2t + h + 8 (i >> 1).
//   B (16x8, "col": stored as [n][k]) register i: k = 2t + h + 8 i, n = g.
//   C/D (16x8, f32) element e: row g + 8 (e >> 1), column 2t + (e & 1).
#pragma once
#include "kernels/layout/hd.h"

namespace slm::layout {

// A tile of 16 rows (m) x 16 columns (k) at (row0, col0) in [m][k] shared memory: lane's address.
SLM_HD int ldsm_a_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
SLM_HD int ldsm_a_col(int lane) { return 8 * (lane >> 4); }
// B tile pair: 16 outputs (n) x 16 k at (n0, k0) in [n][k] shared memory: lane's address.
SLM_HD int ldsm_b_row(int lane) { return (lane & 7) + 8 * (lane >> 4); }
SLM_HD int ldsm_b_col(int lane) { return 8 * ((lane >> 3) & 1); }
// Loaded B matrix j belongs to n8 tile (2 np + ldsm_b_tile(j)) as its register ldsm_b_reg(j).
SLM_HD int ldsm_b_tile(int j) { return j >> 1; }
SLM_HD int ldsm_b_reg(int j) { return j & 1; }
// Accumulator element e of `lane`: row (m) and column (n) inside the 16x8 tile.
SLM_HD int mma_c_row(int lane, int e) { return (lane >> 2) + 8 * (e >> 1); }
SLM_HD int mma_c_col(int lane, int e) { return 2 * (lane & 3) + (e & 1); }

}  // namespace slm::layout
