// The matrix kernels of the forward pass: Y[m, n] = X[m, k] · W[n, k]^T, where W is a GGUF
// weight of any type in the tensor-type table (n rows of k elements, rows contiguous) and X, Y
// are float32. m = 1 is decode (GEMV), m > 1 is prefill (GEMM, each weight tile reused across
// the m rows). Threads: OpenMP over output rows. No allocation: temporary buffers come from the
// caller's Workspace, sized once by linear_workspace_bytes().
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/quant/types.h"

namespace slm::cpu {

// Preallocated scratch owned by the caller (one per model/session).
struct Workspace {
  std::vector<uint8_t, std::allocator<uint8_t>> bytes;
  void reserve(size_t n) {
    if (bytes.size() < n) bytes.resize(n);
  }
};

// How a path treats the activations; decides which reference its results should match.
enum class ActPrecision {
  F32,       // activations stay float32 (matches the float64 "exact" reference to ~1e-5)
  LlamaCpp,  // activations converted as llama.cpp's CPU backend does (Q8_0/Q8_1/Q8_K blocks,
             // F16 for F16 weights, BF16 for BF16 weights): matches llama.cpp's logits
};

struct LinearArgs {
  QType type;      // weight type
  const void* w;   // n rows, each row_bytes(type, k) bytes
  int64_t n;       // output features (weight rows)
  int64_t k;       // input features
  const float* x;  // m x k, row stride k
  int64_t m;       // tokens
  float* y;        // m x n, row stride ldy
  int64_t ldy;
};

// Bytes of Workspace needed for any linear() call with these bounds.
size_t linear_workspace_bytes(int64_t max_m, int64_t max_k);

// Runs the kernel of the active ISA (or `isa` when given) with the given activation precision.
// Which path honours which precision (docs/cpu-kernels.md):
//  * quantized weights + LlamaCpp: SIMD int8 kernels (the fast path for every quantized type);
//  * quantized weights + F32: the scalar reference on every ISA (exact, slow: use LlamaCpp);
//  * F32/F16/BF16 weights: SIMD float kernels for both precisions (LlamaCpp first rounds the
//    activations to fp16 / bf16; BF16 uses vdpbf16ps on CPUs with AVX512_BF16).
// Results equal linear_ref(prec) up to float summation order. Thread-safe for distinct
// Workspaces; the workspace is grown (allocation) only if smaller than
// linear_workspace_bytes(m, k).
void linear(const LinearArgs& a, Workspace& ws, ActPrecision prec = ActPrecision::F32);
void linear_isa(const LinearArgs& a, Workspace& ws, ActPrecision prec, Isa isa);

// Several products that share the same activations (x, m, k): q/k/v, gate/up. The activations
// are converted once and all outputs are computed in one parallel region (rows of all calls
// split over the threads together). Falls back to one linear_isa() per call when the weight
// types need different activation formats. Results are identical to separate linear() calls.
void linear_multi(const LinearArgs* calls, int count, Workspace& ws,
                  ActPrecision prec = ActPrecision::F32);
void linear_multi_isa(const LinearArgs* calls, int count, Workspace& ws, ActPrecision prec,
                      Isa isa);

// Scalar reference for any type: dequantize each row, dot in float32 (prec F32), or quantize the
// activations like llama.cpp and dot against the weights' integer codes (prec LlamaCpp).
void linear_ref(const LinearArgs& a, Workspace& ws, ActPrecision prec);

}  // namespace slm::cpu
