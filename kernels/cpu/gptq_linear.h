// GPTQ linear layers on the CPU: the raw checkpoint tensors of one Linear (GptqTensors, packing
// per ../shared/specs/gptq.md §3-5), bit-field access and packing helpers, a load-time repack
// into a kernel-friendly layout (GptqCpuWeight: act-order groups made contiguous, columns tiled),
// and the kernels y[m][n] = x[m][k] · W[n][k]^T (+ bias) for scalar / AVX2 / AVX-512.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/linear.h"

namespace slm::cpu {

enum class GptqFloat : int { F16, BF16, F32 };

// The tensors of one GPTQ Linear exactly as stored (pointers into a mapping, possibly unaligned:
// all reads go through memcpy). K = in_features, N = out_features, G = groups.
struct GptqTensors {
  int bits = 4;               // 2, 3, 4 or 8
  int64_t k = 0, n = 0;
  int64_t groups = 0;         // rows of qzeros / scales
  int group_size = 128;       // -1: one group for all of K; used only when g_idx is null
  bool zero_plus_one = true;  // v1 ("gptq") checkpoints store zero - 1; v2 the exact zero
  const void* qweight = nullptr;  // int32 [K*bits/32][N], packed along K
  const void* qzeros = nullptr;   // int32 [G][N*bits/32], packed along N
  const void* scales = nullptr;   // [G][N]
  GptqFloat scales_type = GptqFloat::F16;
  const void* g_idx = nullptr;    // int32 [K] (group of each input column) or null
  const void* bias = nullptr;     // [N] or null
  GptqFloat bias_type = GptqFloat::F16;
};

// Throws slm::Error (prefixed by `what`) unless the dims, bits and every g_idx entry are valid.
void gptq_validate(const GptqTensors& t, std::string_view what);

// Field access (gptq.md §3-4). Each column of qweight (and each row of qzeros) is a little-endian
// bitstream: value i occupies bits [bits*i, bits*i + bits) of the consecutive int32 words.
uint32_t gptq_code(const GptqTensors& t, int64_t k, int64_t n);        // 0 .. 2^bits-1
int64_t gptq_zero(const GptqTensors& t, int64_t g, int64_t n);         // effective zero (v1: +1)
float gptq_scale(const GptqTensors& t, int64_t g, int64_t n);
int64_t gptq_group(const GptqTensors& t, int64_t k);
float gptq_bias(const GptqTensors& t, int64_t n);                      // 0 without bias

// Bitstream packing, the inverse of the accessors: `vals` holds `count` values < 2^bits per
// stream, streams are `count` long; result has count*bits/32 words per stream.
// qweight: q[k][n] (row-major K x N) -> int32 [K*bits/32][N].
std::vector<int32_t> gptq_pack_qweight(const uint32_t* q, int64_t k, int64_t n, int bits);
// zeros: z[g][n] stored values (already minus one for v1) -> int32 [G][N*bits/32].
std::vector<int32_t> gptq_pack_qzeros(const uint32_t* z, int64_t groups, int64_t n, int bits);

// Columns per tile of the repacked layout (one AVX-512 register of float accumulators).
constexpr int kGptqNTile = 16;

// Load-time repack. Input columns are reordered so each group is a contiguous K range (stable
// sort by g_idx) and every group is padded to a whole number of code words; 2- and 3-bit codes
// are widened to 4-bit words. Output columns are tiled by kGptqNTile (padded with zero scales).
struct GptqCpuWeight {
  int code_bits = 4;           // 4 or 8: bits per code in `codes`
  int64_t k = 0, n = 0;        // logical in/out features
  int64_t kp = 0;              // prepared K (>= k: groups padded to whole words)
  int64_t np = 0;              // n rounded up to kGptqNTile
  int64_t groups = 0;
  bool gather = false;         // x must be permuted/padded into perm order before the GEMM
  std::vector<int32_t> perm;   // [kp] source input column of each prepared column, -1 = padding
  std::vector<int64_t> group_start;  // [groups+1] prepared-K start of each group (word multiples)
  std::vector<uint32_t> codes;       // [np/16][kp/per_word][16]
  std::vector<float> scales, zeros;  // [np/16][groups][16]
  std::vector<float> bias;           // [n] or empty

  int per_word() const { return 32 / code_bits; }
  int64_t words_per_tile() const { return kp / per_word(); }
};

// `out_perm` (optional, a permutation of 0..N-1): output n of the prepared weight is column
// out_perm[n] of the checkpoint — e.g. gguf_to_hf_qk_row order for q_proj/k_proj, so GPTQ models
// can use the same interleaved RoPE as GGUF ones. Throws slm::Error if it is not a permutation.
GptqCpuWeight gptq_prepare(const GptqTensors& t, std::span<const int32_t> out_perm = {});

// Workspace bytes gptq_linear needs for up to max_m rows.
size_t gptq_workspace_bytes(const GptqCpuWeight& w, int64_t max_m);

// y[r][n] = sum_k x[r][k] W[n][k] + bias[n] for r < m (x row stride k, y row stride ldy).
// Threads: OpenMP over column tiles. No allocation when ws holds gptq_workspace_bytes(w, m).
void gptq_linear(const GptqCpuWeight& w, const float* x, int64_t m, float* y, int64_t ldy,
                 Workspace& ws);
void gptq_linear_isa(const GptqCpuWeight& w, const float* x, int64_t m, float* y, int64_t ldy,
                     Workspace& ws, Isa isa);

// Whether this CPU can run gptq_linear_isa with `isa` (the AVX-512 path needs only F/BW/VL/DQ,
// so it is usable on CPUs whose active_isa() stops at AVX2 for lack of VNNI).
bool gptq_isa_available(Isa isa);

namespace detail {
// One call per ISA: tiles [t0, t1) for all m rows. xp: activations in prepared order, row stride
// ldx; xsum[r][g]: sum of xp over group g of row r.
struct GptqRun {
  const GptqCpuWeight* w;
  const float* xp;
  int64_t ldx;
  const float* xsum;
  int64_t m;
  float* y;
  int64_t ldy;
};
void gptq_tiles_scalar(const GptqRun& r, int64_t t0, int64_t t1);
void gptq_tiles_avx2(const GptqRun& r, int64_t t0, int64_t t1);
void gptq_tiles_avx512(const GptqRun& r, int64_t t0, int64_t t1);
}  // namespace detail

}  // namespace slm::cpu
