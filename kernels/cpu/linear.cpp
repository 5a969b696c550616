// Dispatch for the matrix kernels (which ISA kernel, which activation format, how rows are split
// over threads) and the scalar references of both precisions (see linear.h). The reference of
// the LlamaCpp precision follows llama.cpp's scalar ggml_vec_dot_*_generic formulas: the integer
// dot of weight codes and int8 activation codes per block, times the block scales, summed in
// float.
#include "kernels/cpu/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/linear_internal.h"
#include "kernels/quant/blocks.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace slm::cpu {
namespace {

using detail::ActBuf;
using detail::ActKind;

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Contiguous row range of thread `tid` of `nt`, boundaries on multiples of `align` rows so each
// thread streams whole row tiles; the imbalance is at most `align` rows.
void thread_rows(int64_t n, int tid, int nt, int64_t align, int64_t& r0, int64_t& r1) {
  const int64_t tiles = (n + align - 1) / align;
  const int64_t t0 = tiles * tid / nt, t1 = tiles * (tid + 1) / nt;
  r0 = std::min(n, t0 * align);
  r1 = std::min(n, t1 * align);
}

void check_args(const LinearArgs& a) {
  SLM_CHECK(a.n >= 0 && a.m >= 0 && a.k > 0, "linear: bad shape n={} k={} m={}", a.n, a.k, a.m);
  SLM_CHECK(a.ldy >= a.n, "linear: ldy={} < n={}", a.ldy, a.n);
  const auto& info = qtype_info(a.type);
  SLM_CHECK(a.k % info.block_elems == 0, "linear: k={} is not a multiple of the {} block size {}",
            a.k, info.name, info.block_elems);
  (void)detail::act_kind(a.type);  // throws for types without a CPU kernel
}

// ---- Scalar reference, precision F32: dequantize a chunk of the row, float dot per token. ----

// Float dot with eight interleaved partial sums: plain C++ that the compiler vectorises with
// SSE2 (a single running sum cannot be reordered without -ffast-math).
float dot8(const float* a, const float* b, int64_t n) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
  float s = 0.f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (float v : part) s += v;
  return s;
}

void ref_f32_row(const LinearArgs& a, const uint8_t* wrow, int64_t r) {
  constexpr int64_t kChunk = 1024;  // a multiple of every block size
  float buf[kChunk];
  const int be = qtype_info(a.type).block_elems;
  for (int64_t t = 0; t < a.m; ++t) a.y[t * a.ldy + r] = 0.f;
  for (int64_t c0 = 0; c0 < a.k; c0 += kChunk) {
    const int64_t len = std::min(kChunk, a.k - c0);
    dequantize_row(a.type, wrow + row_bytes(a.type, c0 / be * be), buf, len);
    for (int64_t t = 0; t < a.m; ++t) a.y[t * a.ldy + r] += dot8(buf, a.x + t * a.k + c0, len);
  }
}

// ---- Scalar reference, precision LlamaCpp: one function per weight type. ----

int nib_lo(uint8_t b) { return b & 0xF; }
int nib_hi(uint8_t b) { return b >> 4; }

float dot_q4_0(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ4_0*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += (nib_lo(bl[b].qs[j]) - 8) * q8[32 * b + j];
      sumi += (nib_hi(bl[b].qs[j]) - 8) * q8[32 * b + j + 16];
    }
    sumf += float(sumi) * fp16_to_f32(bl[b].d) * d8[b];
  }
  return sumf;
}

float dot_q4_1(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ4_1*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  const float* s8 = a.s + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += nib_lo(bl[b].qs[j]) * q8[32 * b + j];
      sumi += nib_hi(bl[b].qs[j]) * q8[32 * b + j + 16];
    }
    sumf += (fp16_to_f32(bl[b].d) * d8[b]) * float(sumi) + fp16_to_f32(bl[b].m) * s8[b];
  }
  return sumf;
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <class B, bool kHasMin>
float dot_q5(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const B*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  const float* s8 = a.s + t * a.d_stride;
  const int off = kHasMin ? 0 : 16;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint32_t qh = load_u32(bl[b].qh);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = nib_lo(bl[b].qs[j]) | int((qh >> j) & 1) << 4;
      const int q1 = nib_hi(bl[b].qs[j]) | int((qh >> (j + 16)) & 1) << 4;
      sumi += (q0 - off) * q8[32 * b + j] + (q1 - off) * q8[32 * b + j + 16];
    }
    if constexpr (kHasMin)
      sumf += (fp16_to_f32(bl[b].d) * d8[b]) * float(sumi) + fp16_to_f32(bl[b].m) * s8[b];
    else
      sumf += (fp16_to_f32(bl[b].d) * d8[b]) * float(sumi);
  }
  return sumf;
}

float dot_q8_0(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ8_0*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += bl[b].qs[j] * q8[32 * b + j];
    sumf += float(sumi) * (fp16_to_f32(bl[b].d) * d8[b]);
  }
  return sumf;
}

float dot_iq4_nl(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockIQ4_NL*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += kIQ4NLValues[nib_lo(bl[b].qs[j])] * q8[32 * b + j];
      sumi += kIQ4NLValues[nib_hi(bl[b].qs[j])] * q8[32 * b + j + 16];
    }
    sumf += (fp16_to_f32(bl[b].d) * d8[b]) * float(sumi);
  }
  return sumf;
}

// K-quants: per 256-block, sumf += (d_w * d_x) * isum - (dmin_w * d_x) * msum, with isum the
// scaled integer dot and msum the mins against the Q8_K group sums (bsums).
float dot_q2_k(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ2_K*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  const int16_t* bs = a.bsums + t * a.bsums_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ2_K& x = bl[b];
    const int8_t* q = q8 + 256 * b;
    int msum = 0, isum = 0;
    for (int g = 0; g < 16; ++g) msum += (x.scales[g] >> 4) * bs[16 * b + g];
    for (int e = 0; e < 256; ++e) {
      const int half = e / 128, r = e % 128;
      const int qv = (x.qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
      isum += (x.scales[e / 16] & 0xF) * qv * q[e];
    }
    sumf += fp16_to_f32(x.d) * d8[b] * float(isum) - fp16_to_f32(x.dmin) * d8[b] * float(msum);
  }
  return sumf;
}

void q3k_scales(const uint8_t* s, int sc[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low4 = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    const int high2 = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc[j] = (low4 | high2 << 4) - 32;
  }
}

float dot_q3_k(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ3_K*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ3_K& x = bl[b];
    const int8_t* q = q8 + 256 * b;
    int sc[16];
    q3k_scales(x.scales, sc);
    int isum = 0;
    for (int e = 0; e < 256; ++e) {
      const int half = e / 128, r = e % 128;
      const int q2 = (x.qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
      const int hb = (x.hmask[e % 32] >> (e / 32)) & 1;
      isum += sc[e / 16] * (q2 - (hb ? 0 : 4)) * q[e];
    }
    sumf += fp16_to_f32(x.d) * d8[b] * float(isum);
  }
  return sumf;
}

template <class B, bool kFive>
float dot_q45_k(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const B*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  const int16_t* bs = a.bsums + t * a.bsums_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const B& x = bl[b];
    const int8_t* q = q8 + 256 * b;
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, mn;
      get_scale_min_k4(j, x.scales, sc, mn);
      msum += mn * (bs[16 * b + 2 * j] + bs[16 * b + 2 * j + 1]);
      const int c = j / 2;
      int sub = 0;
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = x.qs[32 * c + l];
        int qv = (j & 1) ? nib_hi(byte) : nib_lo(byte);
        if constexpr (kFive) qv += 16 * ((x.qh[l] >> j) & 1);
        sub += qv * q[32 * j + l];
      }
      isum += sc * sub;
    }
    sumf += fp16_to_f32(x.d) * d8[b] * float(isum) - fp16_to_f32(x.dmin) * d8[b] * float(msum);
  }
  return sumf;
}

float dot_q6_k(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockQ6_K*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockQ6_K& x = bl[b];
    const int8_t* q = q8 + 256 * b;
    int isum = 0;
    for (int h = 0; h < 2; ++h) {
      for (int kk = 0; kk < 4; ++kk) {
        for (int l = 0; l < 32; ++l) {
          const uint8_t lb = x.ql[64 * h + l + 32 * (kk & 1)];
          const int low4 = kk < 2 ? nib_lo(lb) : nib_hi(lb);
          const int high2 = (x.qh[32 * h + l] >> (2 * kk)) & 3;
          const int qv = (low4 | high2 << 4) - 32;
          isum += x.scales[8 * h + l / 16 + 2 * kk] * qv * q[128 * h + 32 * kk + l];
        }
      }
    }
    sumf += fp16_to_f32(x.d) * d8[b] * float(isum);
  }
  return sumf;
}

float dot_iq4_xs(const uint8_t* w, const ActBuf& a, int64_t t, int64_t nb) {
  const auto* bl = reinterpret_cast<const BlockIQ4_XS*>(w);
  const int8_t* q8 = a.qs + t * a.qs_stride;
  const float* d8 = a.d + t * a.d_stride;
  float sumf = 0.f;
  for (int64_t b = 0; b < nb; ++b) {
    const BlockIQ4_XS& x = bl[b];
    const int8_t* q = q8 + 256 * b;
    int isum = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls =
          ((x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x.scales_h >> (2 * ib)) & 3) << 4);
      int sub = 0;
      for (int j = 0; j < 16; ++j) {
        sub += kIQ4NLValues[nib_lo(x.qs[16 * ib + j])] * q[32 * ib + j];
        sub += kIQ4NLValues[nib_hi(x.qs[16 * ib + j])] * q[32 * ib + j + 16];
      }
      isum += (ls - 32) * sub;
    }
    sumf += fp16_to_f32(x.d) * d8[b] * float(isum);
  }
  return sumf;
}

// Float weights: the activation row is already rounded to the dot type (ActBuf::xf).
float dot_float(const LinearArgs& a, const uint8_t* w, const ActBuf& act, int64_t t) {
  const float* x = act.xf + t * act.xf_stride;
  float s = 0.f;
  if (a.type == QType::F32) {
    const auto* f = reinterpret_cast<const float*>(w);
    for (int64_t i = 0; i < a.k; ++i) s += f[i] * x[i];
  } else {
    const auto* h = reinterpret_cast<const uint16_t*>(w);
    const bool f16 = a.type == QType::F16;
    for (int64_t i = 0; i < a.k; ++i) s += (f16 ? fp16_to_f32(h[i]) : bf16_to_f32(h[i])) * x[i];
  }
  return s;
}

using RefDot = float (*)(const uint8_t*, const ActBuf&, int64_t, int64_t);

RefDot ref_dot_for(QType t) {
  switch (t) {
    case QType::Q4_0: return dot_q4_0;
    case QType::Q4_1: return dot_q4_1;
    case QType::Q5_0: return dot_q5<BlockQ5_0, false>;
    case QType::Q5_1: return dot_q5<BlockQ5_1, true>;
    case QType::Q8_0: return dot_q8_0;
    case QType::IQ4_NL: return dot_iq4_nl;
    case QType::Q2_K: return dot_q2_k;
    case QType::Q3_K: return dot_q3_k;
    case QType::Q4_K: return dot_q45_k<BlockQ4_K, false>;
    case QType::Q5_K: return dot_q45_k<BlockQ5_K, true>;
    case QType::Q6_K: return dot_q6_k;
    case QType::IQ4_XS: return dot_iq4_xs;
    default: return nullptr;
  }
}

// Converts the activations for `kind` into the workspace.
ActBuf prepare_act(const LinearArgs& a, Workspace& ws, ActKind kind, bool simd,
                   bool pair_interleave = false) {
  ws.reserve(linear_workspace_bytes(a.m, a.k));
  ActBuf act;
  detail::convert_activations(kind, a.x, a.m, a.k, ws.bytes.data(), act, simd, pair_interleave);
  return act;
}

// Weight types whose blocks are 16 bytes of nibbles (the SIMD kernels pair-interleave their
// activations).
bool is_nibble_type(QType t) {
  return t == QType::Q4_0 || t == QType::Q4_1 || t == QType::Q5_0 || t == QType::Q5_1 ||
         t == QType::IQ4_NL;
}

bool is_float_type(QType t) { return t == QType::F32 || t == QType::F16 || t == QType::BF16; }

}  // namespace

size_t linear_workspace_bytes(int64_t max_m, int64_t max_k) {
  return detail::act_bytes(std::max<int64_t>(max_m, 1), std::max<int64_t>(max_k, 256));
}

void linear_ref(const LinearArgs& a, Workspace& ws, ActPrecision prec) {
  check_args(a);
  if (a.n == 0 || a.m == 0) return;
  const size_t rb = row_bytes(a.type, a.k);
  const auto* wbase = static_cast<const uint8_t*>(a.w);
  if (prec == ActPrecision::F32) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < a.n; ++r) ref_f32_row(a, wbase + size_t(r) * rb, r);
    return;
  }
  const ActKind kind = detail::act_kind(a.type);
  const ActBuf act = prepare_act(a, ws, kind, false);
  const RefDot dot = ref_dot_for(a.type);
  const int64_t nb = a.k / qtype_info(a.type).block_elems;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < a.n; ++r) {
    const uint8_t* w = wbase + size_t(r) * rb;
    for (int64_t t = 0; t < a.m; ++t)
      a.y[t * a.ldy + r] = dot ? dot(w, act, t, nb) : dot_float(a, w, act, t);
  }
}

// Which precision each path honours:
//  * quantized weights, LlamaCpp: int8 activation blocks, SIMD integer dots (the fast path);
//  * quantized weights, F32: activations stay float; every ISA runs the scalar reference
//    (dequantize 1024-element chunks, float dot): exact but slow, kept for validation;
//  * F16/BF16/F32 weights, F32: SIMD float dot against the float activations;
//  * F16/BF16 weights, LlamaCpp: activations rounded to fp16/bf16 first (as llama.cpp does), then
//    the same float SIMD kernel, or vdpbf16ps for BF16 on CPUs with AVX512_BF16 (prefill with
//    m >= kOneDnnMinM: oneDNN's bf16 matmul when built with it, see linear_onednn.cpp).
void linear_isa(const LinearArgs& a, Workspace& ws, ActPrecision prec, Isa isa) {
  check_args(a);
  if (a.n == 0 || a.m == 0) return;
  SLM_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()),
            "linear: ISA {} not supported by this CPU", isa_name(isa));
  ActKind kind = ActKind::F32;
  if (prec == ActPrecision::LlamaCpp) kind = detail::act_kind(a.type);
  const bool quantized = !is_float_type(a.type);
  bool simd = isa != Isa::Scalar && (!quantized || prec == ActPrecision::LlamaCpp);
  if (simd) {
    simd = isa == Isa::AVX512 ? detail::avx512::supports(a.type, kind)
                              : detail::avx2::supports(a.type, kind);
  }
  if (!simd) {
    linear_ref(a, ws, prec);
    return;
  }
  // Decode-sized calls of nibble types use the pair-interleaved activation layout; prefill
  // (m >= 4) uses the packed GEMM, which reads the natural layout.
  const ActBuf act = prepare_act(a, ws, kind, true, is_nibble_type(a.type) && a.m < 4);
  detail::KernelArgs ka{a.type,
                        static_cast<const uint8_t*>(a.w),
                        row_bytes(a.type, a.k),
                        a.n,
                        a.k,
                        a.m,
                        &act,
                        a.x,
                        a.y,
                        a.ldy};
  ka.bf16_dot = isa == Isa::AVX512 && kind == ActKind::BF16 && cpu_has_avx512_bf16();
  if (detail::onednn_bf16_gemm(ka)) return;
  // Row tiles of 8 keep the kernels' 4-row register blocks and 8-row packed tiles whole inside
  // a thread.
  constexpr int64_t kRowAlign = 8;
  const int nt = int(std::min<int64_t>(max_threads(), std::max<int64_t>(1, a.n / kRowAlign)));
#pragma omp parallel num_threads(nt)
  {
    int tid = 0, cnt = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    cnt = omp_get_num_threads();
#endif
    int64_t r0, r1;
    thread_rows(a.n, tid, cnt, kRowAlign, r0, r1);
    if (r1 > r0) {
      if (isa == Isa::AVX512)
        detail::avx512::run(ka, r0, r1);
      else
        detail::avx2::run(ka, r0, r1);
    }
  }
}

void linear(const LinearArgs& a, Workspace& ws, ActPrecision prec) {
  linear_isa(a, ws, prec, active_isa());
}

void linear_multi_isa(const LinearArgs* calls, int count, Workspace& ws, ActPrecision prec,
                      Isa isa) {
  constexpr int kMaxCalls = 8;
  SLM_CHECK(count >= 0, "linear_multi: negative count {}", count);
  if (count > kMaxCalls) {
    for (int i = 0; i < count; i += kMaxCalls)
      linear_multi_isa(calls + i, std::min(kMaxCalls, count - i), ws, prec, isa);
    return;
  }
  if (count == 0) return;
  SLM_CHECK(static_cast<int>(isa) <= static_cast<int>(detected_isa()),
            "linear: ISA {} not supported by this CPU", isa_name(isa));
  // One conversion and one parallel region need: the same activations, the same activation
  // format, a SIMD kernel for every weight type. Otherwise run the calls one by one.
  const LinearArgs& a0 = calls[0];
  bool shared = isa != Isa::Scalar;
  const ActKind kind = prec == ActPrecision::LlamaCpp ? detail::act_kind(a0.type) : ActKind::F32;
  const bool pair = is_nibble_type(a0.type) && a0.m < 4;
  for (int i = 0; i < count && shared; ++i) {
    const LinearArgs& a = calls[i];
    check_args(a);
    const ActKind ki = prec == ActPrecision::LlamaCpp ? detail::act_kind(a.type) : ActKind::F32;
    const bool quantized = !is_float_type(a.type);
    shared = a.x == a0.x && a.m == a0.m && a.k == a0.k && ki == kind &&
             (is_nibble_type(a.type) && a.m < 4) == pair &&
             (!quantized || prec == ActPrecision::LlamaCpp) &&
             !(kind == ActKind::BF16 && a.m >= detail::kOneDnnMinM) &&  // oneDNN's (linear_isa)
             (isa == Isa::AVX512 ? detail::avx512::supports(a.type, ki)
                                 : detail::avx2::supports(a.type, ki));
  }
  if (!shared || a0.m == 0) {
    for (int i = 0; i < count; ++i) linear_isa(calls[i], ws, prec, isa);
    return;
  }
  const ActBuf act = prepare_act(a0, ws, kind, true, pair);
  detail::KernelArgs ka[kMaxCalls];
  int64_t tiles_before[kMaxCalls + 1] = {0};
  constexpr int64_t kRowAlign = 8;
  for (int i = 0; i < count; ++i) {
    const LinearArgs& a = calls[i];
    ka[i] = detail::KernelArgs{a.type,
                               static_cast<const uint8_t*>(a.w),
                               row_bytes(a.type, a.k),
                               a.n,
                               a.k,
                               a.m,
                               &act,
                               a.x,
                               a.y,
                               a.ldy};
    ka[i].bf16_dot = isa == Isa::AVX512 && kind == ActKind::BF16 && cpu_has_avx512_bf16();
    tiles_before[i + 1] = tiles_before[i] + (a.n + kRowAlign - 1) / kRowAlign;
  }
  const int64_t tiles = tiles_before[count];
  const int nt = int(std::min<int64_t>(max_threads(), std::max<int64_t>(1, tiles)));
#pragma omp parallel num_threads(nt)
  {
    int tid = 0, cnt = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    cnt = omp_get_num_threads();
#endif
    // This thread's share of the concatenated 8-row tiles of all calls.
    const int64_t t0 = tiles * tid / cnt, t1 = tiles * (tid + 1) / cnt;
    for (int i = 0; i < count; ++i) {
      const int64_t lo = std::max(t0, tiles_before[i]), hi = std::min(t1, tiles_before[i + 1]);
      if (lo >= hi) continue;
      const int64_t r0 = (lo - tiles_before[i]) * kRowAlign;
      const int64_t r1 = std::min(ka[i].n, (hi - tiles_before[i]) * kRowAlign);
      if (isa == Isa::AVX512)
        detail::avx512::run(ka[i], r0, r1);
      else
        detail::avx2::run(ka[i], r0, r1);
    }
  }
}

void linear_multi(const LinearArgs* calls, int count, Workspace& ws, ActPrecision prec) {
  linear_multi_isa(calls, count, ws, prec, active_isa());
}

}  // namespace slm::cpu
