// Dispatch for the matrix kernels and the scalar reference (see linear.h).
#include "kernels/cpu/linear.h"

#include <algorithm>

#include "core/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace slm::cpu {

size_t linear_workspace_bytes(int64_t max_m, int64_t max_k) {
  // Scalar reference: one dequantized row per thread (64 threads max) plus room for quantized
  // activations (<= 1.2 bytes per element for every 8-bit activation format).
  return size_t(64) * size_t(max_k) * sizeof(float) + size_t(max_m) * size_t(max_k) * 2 + 4096;
}

void linear_ref(const LinearArgs& a, Workspace& ws, ActPrecision prec) {
  SLM_CHECK(prec == ActPrecision::F32, "linear_ref: precision mode not implemented yet");
  const size_t rb = row_bytes(a.type, a.k);
  const auto* wbase = static_cast<const uint8_t*>(a.w);
  ws.reserve(linear_workspace_bytes(a.m, a.k));
  float* scratch = reinterpret_cast<float*>(ws.bytes.data());
#pragma omp parallel
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float* row = scratch + size_t(std::min(tid, 63)) * size_t(a.k);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.n; ++r) {
      dequantize_row(a.type, wbase + size_t(r) * rb, row, a.k);
      for (int64_t t = 0; t < a.m; ++t) {
        const float* x = a.x + t * a.k;
        float s = 0.f;
        for (int64_t i = 0; i < a.k; ++i) s += row[i] * x[i];
        a.y[t * a.ldy + r] = s;
      }
    }
  }
}

void linear_isa(const LinearArgs& a, Workspace& ws, ActPrecision prec, Isa isa) {
  (void)isa;
  linear_ref(a, ws, prec);
}

void linear(const LinearArgs& a, Workspace& ws, ActPrecision prec) { linear_isa(a, ws, prec, active_isa()); }

}  // namespace slm::cpu
