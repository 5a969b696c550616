// Internal contract between kernels/cpu/linear.cpp (dispatch, activation conversion, scalar
// reference) and the ISA kernel files (linear_avx2.cpp, linear_avx512.cpp). Activations are
// converted once per call into the planes of ActBuf, in the values llama.cpp's from_float
// produces (Q8_0/Q8_1/Q8_K blocks, fp16/bf16-rounded floats), but laid out as separate planes so
// the SIMD loops load 32 int8 codes with one aligned instruction.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/linear.h"

namespace slm::cpu::detail {

// What a weight type's dot product consumes (llama.cpp's vec_dot_type).
enum class ActKind { F32, F16, BF16, Q8_0, Q8_1, Q8_K };
ActKind act_kind(QType weight);

// Converted activations for m tokens of k elements. Planes are 64-byte aligned; every row stride
// is a multiple of 64 bytes.
struct ActBuf {
  ActKind kind = ActKind::F32;
  int64_t m = 0, k = 0;
  // Q8_*: int8 codes, row t at qs + t * qs_stride.
  const int8_t* qs = nullptr;
  // Q8_0/Q8_1 codes stored per pair of blocks (2p, 2p+1) as [x_2p[0..15], x_2p+1[0..15],
  // x_2p[16..31], x_2p+1[16..31]], matching the low / high nibbles of two 4-bit weight blocks
  // (set only for nibble weight types with k a multiple of 256, on the SIMD paths).
  bool pair_interleaved = false;
  int64_t qs_stride = 0;
  // Q8_0/Q8_1: d of each 32-block (fp16-rounded, as float); Q8_K: float d of each 256-block.
  const float* d = nullptr;
  // Q8_1: s = fp16(d * sum(q)) of each 32-block, as float.
  const float* s = nullptr;
  // Q8_0/Q8_1: sum of the 32 codes of each block (lets kernels use unsigned weight codes and
  // subtract the code offset once per block).
  const int32_t* xsum = nullptr;
  int64_t d_stride = 0;  // entries per token row in d, s and xsum
  // Q8_K: sum of the codes of each 16-group.
  const int16_t* bsums = nullptr;
  int64_t bsums_stride = 0;
  // F32 / F16 / BF16 kinds: activations as float (rounded to fp16/bf16 for those kinds).
  const float* xf = nullptr;
  int64_t xf_stride = 0;
  // F16 / BF16 kinds: the same values as raw fp16 / bf16 bits (F16 decode, vdpbf16ps).
  const uint16_t* xb = nullptr;
  int64_t xb_stride = 0;
};

// Bytes needed by convert_activations for m x k.
size_t act_bytes(int64_t m, int64_t k);
// Fills `out` (planes carved from `mem`, at least act_bytes(m, k) bytes) from x (m x k, stride k).
// Runs in parallel over rows/blocks when the call is large. `simd`: use the AVX2 quantizers
// (bit-identical results; the CPU must support AVX2). `pair_interleave` (Q8_0/Q8_1, k % 256 ==
// 0): store the codes in the pair-interleaved order described at ActBuf::pair_interleaved.
void convert_activations(ActKind kind, const float* x, int64_t m, int64_t k, uint8_t* mem,
                         ActBuf& out, bool simd = false, bool pair_interleave = false);

// Arguments of one ISA kernel call: rows [r0, r1) of the output for all m tokens.
struct KernelArgs {
  QType type;
  const uint8_t* w;
  size_t row_bytes;
  int64_t n, k, m;
  const ActBuf* act;  // converted activations (kind depends on the path)
  const float* x;     // original float activations, stride k
  float* y;
  int64_t ldy;
  bool bf16_dot = false;  // BF16 weights x bf16 activations with vdpbf16ps
};

// Prefill of BF16 weights x bf16 activations (KernelArgs::bf16_dot) with m >= kOneDnnMinM goes
// to oneDNN's matmul (linear_onednn.cpp; measured 15-20 % faster than our vdpbf16ps kernel at
// m >= 64 on Zen 4, docs/cpu-kernels.md). Returns false, having written nothing, when the call is
// not such a case or the library is absent (SLM_HAVE_ONEDNN unset) or refuses it; all rows
// [0, n) are computed, using oneDNN's own OpenMP threads.
constexpr int64_t kOneDnnMinM = 64;
bool onednn_bf16_gemm(const KernelArgs& a);
// Turns that route off (true by default) so benchmarks can time our own kernel for comparison.
void set_onednn_enabled(bool on);

// Per-ISA entry points. `supports` says whether the ISA has a kernel for (type, activation kind);
// `run` computes rows [r0, r1). Kinds: quantized weights with Q8_* activations, float weights with
// F32/F16/BF16 (rounded) float activations.
namespace avx2 {
bool supports(QType type, ActKind kind);
void run(const KernelArgs& a, int64_t r0, int64_t r1);
// Row quantizers (k % 32 == 0, resp. k % 256 == 0), bit-identical to the scalar ones.
void quant_row_q8_32(const float* x, int64_t k, int8_t* qs, float* d, float* s, int32_t* xsum);
void quant_row_q8_k(const float* x, int64_t k, int8_t* qs, float* d, int16_t* bsums);
// xb[i] = f32_to_bf16(x[i]) (bf16) or f32_to_fp16(x[i]), xf[i] = the float it stands for; any k,
// bit-identical to the scalar conversions (NaN included).
void round_row_half(const float* x, int64_t k, bool bf16, uint16_t* xb, float* xf);
}  // namespace avx2
namespace avx512 {
bool supports(QType type, ActKind kind);
void run(const KernelArgs& a, int64_t r0, int64_t r1);
}  // namespace avx512

}  // namespace slm::cpu::detail
