// Activation conversion for the matrix kernels: float32 rows to the formats llama.cpp's CPU
// backend converts them to before a dot product (Q8_0, Q8_1, Q8_K blocks; fp16/bf16 rounding),
// stored as separate planes (see linear_internal.h). The values are bit-identical to llama.cpp's
// reference quantizers (quantize_row_q8_0_ref / _q8_1_ref / _q8_K_ref), which the tests check
// against kernels/quant's quantize_row.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/linear_internal.h"

namespace slm::cpu::detail {
namespace {

constexpr int64_t kAlign = 64;

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

struct Layout {
  int64_t qs_stride, d_stride, bsums_stride, xf_stride, xb_stride;
  size_t qs_off, d_off, s_off, xsum_off, bsums_off, xf_off, xb_off, total;
};

Layout layout(int64_t m, int64_t k) {
  Layout l{};
  l.qs_stride = round_up(k, kAlign);
  l.d_stride = round_up((k + 31) / 32, kAlign / 4);
  l.bsums_stride = round_up((k + 15) / 16, kAlign / 2);
  l.xf_stride = round_up(k, kAlign / 4);
  l.xb_stride = round_up(k, kAlign / 2);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    size_t o = off;
    off += size_t(round_up(int64_t(bytes), kAlign));
    return o;
  };
  l.qs_off = take(size_t(m * l.qs_stride));
  l.d_off = take(size_t(m * l.d_stride) * 4);
  l.s_off = take(size_t(m * l.d_stride) * 4);
  l.xsum_off = take(size_t(m * l.d_stride) * 4);
  l.bsums_off = take(size_t(m * l.bsums_stride) * 2);
  // The float planes (F16/BF16 kinds) never coexist with the Q8 planes: they share the memory.
  const size_t q8_end = off;
  off = 0;
  l.xf_off = take(size_t(m * l.xf_stride) * 4);
  l.xb_off = take(size_t(m * l.xb_stride) * 2);
  l.total = std::max(q8_end, off) + kAlign;  // room to align the base pointer
  return l;
}

// One 32-block as quantize_row_q8_0_ref / q8_1_ref: d = amax/127, q = roundf(x / d) (half away
// from zero), d stored as fp16.
void quant_q8_32(const float* x, int8_t* q, float* d_out, float* s_out, int32_t* sum_out) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    q[j] = int8_t(std::roundf(x[j] * id));
    sum += q[j];
  }
  *d_out = fp16_to_f32(f32_to_fp16(d));
  *sum_out = sum;
  if (s_out) *s_out = fp16_to_f32(f32_to_fp16(float(sum) * d));
}

// One 256-block as quantize_row_q8_K_ref: scale chosen so the signed largest-magnitude value maps
// to -127, round half to even, clamp at 127; d is a float32.
void quant_q8_k(const float* x, int8_t* q, float* d_out, int16_t* bsums) {
  float amax = 0.f, vmax = 0.f;
  for (int j = 0; j < 256; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      vmax = x[j];
    }
  }
  if (amax == 0.f) {
    *d_out = 0.f;
    std::memset(q, 0, 256);
    std::memset(bsums, 0, 16 * sizeof(int16_t));
    return;
  }
  const float iscale = -127.f / vmax;
  for (int j = 0; j < 256; ++j) {
    const int v = int(std::nearbyint(iscale * x[j]));
    q[j] = int8_t(std::min(127, v));
  }
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int j = 0; j < 16; ++j) s += q[16 * g + j];
    bsums[g] = int16_t(s);
  }
  *d_out = 1.f / iscale;
}

// In place: each 64-byte pair of blocks [a0..a31, b0..b31] -> [a0..15, b0..15, a16..31, b16..31].
void interleave_pairs(int8_t* q, int64_t len) {
  for (int64_t p = 0; p + 64 <= len; p += 64) {
    int8_t tmp[64];
    std::memcpy(tmp, q + p, 64);
    std::memcpy(q + p + 16, tmp + 32, 16);
    std::memcpy(q + p + 32, tmp + 16, 16);
  }
}

}  // namespace

ActKind act_kind(QType w) {
  switch (w) {
    case QType::F32: return ActKind::F32;
    case QType::F16: return ActKind::F16;
    case QType::BF16: return ActKind::BF16;
    case QType::Q4_0:
    case QType::Q5_0:
    case QType::Q8_0:
    case QType::IQ4_NL: return ActKind::Q8_0;
    case QType::Q4_1:
    case QType::Q5_1: return ActKind::Q8_1;
    case QType::Q2_K:
    case QType::Q3_K:
    case QType::Q4_K:
    case QType::Q5_K:
    case QType::Q6_K:
    case QType::IQ4_XS: return ActKind::Q8_K;
    default: fail("linear: weight type {} is not supported by the CPU kernels", qtype_name(w));
  }
}

size_t act_bytes(int64_t m, int64_t k) { return layout(m, k).total; }

void convert_activations(ActKind kind, const float* x, int64_t m, int64_t k, uint8_t* mem,
                         ActBuf& out, bool simd, bool pair_interleave) {
  const Layout l = layout(m, k);
  uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(mem) + kAlign - 1) &
                                             ~uintptr_t(kAlign - 1));
  auto* qs = reinterpret_cast<int8_t*>(base + l.qs_off);
  auto* d = reinterpret_cast<float*>(base + l.d_off);
  auto* s = reinterpret_cast<float*>(base + l.s_off);
  auto* xsum = reinterpret_cast<int32_t*>(base + l.xsum_off);
  auto* bs = reinterpret_cast<int16_t*>(base + l.bsums_off);
  auto* xf = reinterpret_cast<float*>(base + l.xf_off);
  auto* xb = reinterpret_cast<uint16_t*>(base + l.xb_off);
  out = ActBuf{};
  out.kind = kind;
  out.m = m;
  out.k = k;
  out.qs = qs;
  out.qs_stride = l.qs_stride;
  out.d = d;
  out.s = s;
  out.xsum = xsum;
  out.d_stride = l.d_stride;
  out.bsums = bs;
  out.bsums_stride = l.bsums_stride;
  out.xf = xf;
  out.xf_stride = l.xf_stride;
  out.xb = xb;
  out.xb_stride = l.xb_stride;

  if (kind == ActKind::F32) {
    // Kernels read x directly; keep a pointer view with stride k.
    out.xf = x;
    out.xf_stride = k;
    return;
  }
  const int64_t bsize =
      kind == ActKind::Q8_K ? 256 : (kind == ActKind::F16 || kind == ActKind::BF16 ? 256 : 32);
  SLM_CHECK(k % (kind == ActKind::F16 || kind == ActKind::BF16 ? 1 : bsize) == 0,
            "linear: k={} is not a multiple of the activation block {}", k, bsize);
  pair_interleave =
      pair_interleave && (kind == ActKind::Q8_0 || kind == ActKind::Q8_1) && k % 256 == 0;
  out.pair_interleaved = pair_interleave;
  if (simd && (kind == ActKind::Q8_0 || kind == ActKind::Q8_1 || kind == ActKind::Q8_K)) {
    // Units of work: chunks of 1024 elements (a multiple of both block sizes) of one token row.
    constexpr int64_t kChunk = 1024;
    const int64_t nc = (k + kChunk - 1) / kChunk;
    const bool par = m * k >= (int64_t(1) << 15);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t u = 0; u < m * nc; ++u) {
      const int64_t t = u / nc, c0 = (u % nc) * kChunk, len = std::min(kChunk, k - c0);
      if (kind == ActKind::Q8_K)
        avx2::quant_row_q8_k(x + t * k + c0, len, qs + t * l.qs_stride + c0,
                             d + t * l.d_stride + c0 / 256, bs + t * l.bsums_stride + c0 / 16);
      else
        avx2::quant_row_q8_32(x + t * k + c0, len, qs + t * l.qs_stride + c0,
                              d + t * l.d_stride + c0 / 32,
                              kind == ActKind::Q8_1 ? s + t * l.d_stride + c0 / 32 : nullptr,
                              xsum + t * l.d_stride + c0 / 32);
      if (pair_interleave) interleave_pairs(qs + t * l.qs_stride + c0, len);
    }
    return;
  }
  if (simd && (kind == ActKind::F16 || kind == ActKind::BF16)) {
    const bool par = m * k >= (int64_t(1) << 15);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < m; ++t)
      avx2::round_row_half(x + t * k, k, kind == ActKind::BF16, xb + t * l.xb_stride, xf + t * l.xf_stride);
    return;
  }
  // Units of work: one block of one token row (the F16/BF16 kinds in chunks of 256 or less).
  const int64_t nb = (k + bsize - 1) / bsize;
  const int64_t units = m * nb;
  const bool par = units * bsize >= (int64_t(1) << 15);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t t = u / nb, b = u % nb;
    const float* xr = x + t * k + b * bsize;
    switch (kind) {
      case ActKind::Q8_0:
      case ActKind::Q8_1:
        quant_q8_32(xr, qs + t * l.qs_stride + b * 32, d + t * l.d_stride + b,
                    kind == ActKind::Q8_1 ? s + t * l.d_stride + b : nullptr,
                    xsum + t * l.d_stride + b);
        break;
      case ActKind::Q8_K:
        quant_q8_k(xr, qs + t * l.qs_stride + b * 256, d + t * l.d_stride + b,
                   bs + t * l.bsums_stride + b * 16);
        break;
      case ActKind::F16:
      case ActKind::BF16: {
        const int64_t len = std::min(bsize, k - b * bsize);
        float* o = xf + t * l.xf_stride + b * bsize;
        uint16_t* ob = xb + t * l.xb_stride + b * bsize;
        for (int64_t j = 0; j < len; ++j) {
          if (kind == ActKind::F16) {
            ob[j] = f32_to_fp16(xr[j]);
            o[j] = fp16_to_f32(ob[j]);
          } else {
            ob[j] = f32_to_bf16(xr[j]);
            o[j] = bf16_to_f32(ob[j]);
          }
        }
        break;
      }
      case ActKind::F32: break;
    }
  }
  if (pair_interleave)
    for (int64_t t = 0; t < m; ++t) interleave_pairs(qs + t * l.qs_stride, k);
}

}  // namespace slm::cpu::detail
