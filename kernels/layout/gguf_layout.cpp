// Host references of the GGUF CUDA kernels: the Q8_1 activation quantizer and the double
// precision dot product the dp4a GEMV is checked against.
#include "kernels/layout/gguf_layout.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace slm::layout {

void quantize_q8_1_ref(const uint16_t* x_f16, BlockQ8_1* out, int64_t k) {
  SLM_CHECK(k % kUnitElems == 0, "quantize_q8_1: k={} not a multiple of {}", k, kUnitElems);
  for (int64_t b = 0; b < k / kUnitElems; ++b) {
    float v[kUnitElems];
    float amax = 0.0f;
    for (int e = 0; e < kUnitElems; ++e) {
      v[e] = fp16_to_f32(x_f16[b * kUnitElems + e]);
      amax = std::fmax(amax, std::fabs(v[e]));
    }
    const float d = amax / 127.0f;
    int sum = 0;
    for (int e = 0; e < kUnitElems; ++e) {
      const int q = amax == 0.0f ? 0 : int(std::roundf(v[e] / d));
      out[b].qs[e] = int8_t(q);
      sum += q;
    }
    out[b].d = f32_to_fp16(d);
    out[b].s = f32_to_fp16(d * float(sum));
  }
}

void gguf_linear_q8_1_ref(QType t, const void* w, int64_t n, int64_t k, const BlockQ8_1* xq,
                          int64_t m, double* y) {
  SLM_CHECK(gguf_cuda_supported(t), "gguf reference: type {} not supported", qtype_name(t));
  const size_t rb = row_bytes(t, k);
  std::vector<float> wrow(size_t(k), 0.0f);
  for (int64_t r = 0; r < n; ++r) {
    dequantize_row(t, static_cast<const uint8_t*>(w) + size_t(r) * rb, wrow.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      double acc = 0.0;
      for (int64_t b = 0; b < k / kUnitElems; ++b) {
        const BlockQ8_1& x = xq[i * (k / kUnitElems) + b];
        const double dx = fp16_to_f32(x.d);
        for (int e = 0; e < kUnitElems; ++e)
          acc += double(wrow[size_t(b * kUnitElems + e)]) * dx * double(x.qs[e]);
      }
      y[i * n + r] = acc;
    }
  }
}

}  // namespace slm::layout
