// Tests of the CPU matrix kernels (kernels/cpu/linear.h): every weight type x every ISA this CPU
// has x awkward shapes, against the scalar reference of the same activation precision; the
// activation conversion against kernels/quant's llama.cpp-exact quantizers; and the LlamaCpp
// precision against the F32 precision within the activation quantization error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/linear_internal.h"
#include "kernels/quant/blocks.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace slm::cpu {
namespace {

constexpr double kU = 1.0 / 16777216.0;  // unit roundoff of float32 (2^-24)

#if SLM_HAVE_ONEDNN
constexpr bool kBuiltWithOneDnn = true;
#else
constexpr bool kBuiltWithOneDnn = false;
#endif

std::vector<QType> weight_types() {
  std::vector<QType> out;
  for (const auto& info : all_qtypes())
    if (!info.is_activation_only) out.push_back(info.type);
  return out;
}

bool is_float(QType t) { return t == QType::F32 || t == QType::F16 || t == QType::BF16; }
bool has_offset(QType t) {
  // Types whose dot is computed as two partial sums that cancel (a min / code offset applied
  // separately): their float terms can exceed |w x| by up to ~2 block maxima (see bound below).
  switch (t) {
    case QType::Q4_1:
    case QType::Q5_1:
    case QType::Q2_K:
    case QType::Q3_K:
    case QType::Q4_K:
    case QType::Q5_K:
    case QType::Q6_K: return true;
    default: return false;
  }
}

struct Problem {
  QType type;
  int64_t n, k, m;
  std::vector<uint8_t> w;
  std::vector<float> wf;  // dequantized weights, n x k
  std::vector<float> x;   // m x k
};

Problem make_problem(QType type, int64_t n, int64_t k, int64_t m, uint32_t seed) {
  Problem p{type, n, k, m, {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> src(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) {
    // Rows with different magnitudes and an occasional offset so min/offset paths are exercised.
    const float scale = 0.25f + float(r % 5) * 0.4f, off = (r % 3 == 0) ? 0.3f : 0.f;
    for (int64_t i = 0; i < k; ++i) src[size_t(r * k + i)] = scale * u(rng) + off;
  }
  const size_t rb = row_bytes(type, k);
  p.w.resize(rb * size_t(n));
  p.wf.resize(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) {
    quantize_row(type, src.data() + r * k, p.w.data() + size_t(r) * rb, k);
    dequantize_row(type, p.w.data() + size_t(r) * rb, p.wf.data() + r * k, k);
  }
  p.x.resize(size_t(m * k));
  for (auto& v : p.x) v = u(rng) * 2.f;
  return p;
}

LinearArgs args_of(const Problem& p, float* y) {
  return LinearArgs{p.type, p.w.data(), p.n, p.k, p.x.data(), p.m, y, p.n};
}

// Upper bound on |y - y_ref| when both results evaluate the same real-number expression with
// different float rounding and summation order. Standard forward error analysis: a sum of
// products evaluated with a chain of at most `depth` roundings has error <= gamma(depth) * S,
// gamma(d) = d*u / (1 - d*u), S = sum of the magnitudes of the float terms. Two such evaluations
// differ by <= 2 gamma(depth) S.
//  * depth: float weights sum k products (the reference sequentially, SIMD in lanes): k + 8.
//    Quantized weights in LlamaCpp precision: the per-block integer dots are exact; each block
//    adds <= 2 roundings for its scale products plus one accumulation per block (and the bias
//    term of the K-quants): 2 * blocks + 8.
//  * S: |w_i| |x_i|, where for offset/min types each weight's float term may be as large as
//    |w_i| + 2 * (block max |w|), since code*scale and min (or code offset) are summed apart and
//    cancel; activations in LlamaCpp precision are the quantized values, within 1/127 of the
//    block max of the original ones.
std::vector<double> tolerance(const Problem& p, ActPrecision prec) {
  const int be = qtype_info(p.type).block_elems;
  const bool quant_dot = prec == ActPrecision::LlamaCpp && !is_float(p.type);
  const double depth = quant_dot ? 2.0 * double(p.k / be) + 8 : double(p.k) + 8;
  const double gamma = depth * kU / (1 - depth * kU);
  const int64_t len = std::max(be, 32);  // block of the weights and of the Q8 activations
  // |w_i| + extra of its block, |x_i| + pad of its block; S is their dot.
  auto widen = [&](const float* v, int64_t rows, bool is_w) {
    std::vector<float> out(size_t(rows * p.k));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b0 = 0; b0 < p.k; b0 += len) {
        const int64_t e = std::min(p.k, b0 + len);
        float vmax = 0;
        for (int64_t i = b0; i < e; ++i) vmax = std::max(vmax, std::fabs(v[r * p.k + i]));
        const float add =
            is_w ? (has_offset(p.type) ? 2 * vmax : 0.f) : (quant_dot ? vmax / 127 : 0.f);
        for (int64_t i = b0; i < e; ++i) out[size_t(r * p.k + i)] = std::fabs(v[r * p.k + i]) + add;
      }
    }
    return out;
  };
  const auto wa = widen(p.wf.data(), p.n, true);
  const auto xa = widen(p.x.data(), p.m, false);
  std::vector<double> tol(size_t(p.n * p.m));
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t t = 0; t < p.m; ++t) {
      // Eight independent partial sums (vectorisable); their own rounding is far below the bound.
      float part[8] = {};
      const float* w = wa.data() + r * p.k;
      const float* x = xa.data() + t * p.k;
      int64_t i = 0;
      for (; i + 8 <= p.k; i += 8)
        for (int j = 0; j < 8; ++j) part[j] += w[i + j] * x[i + j];
      double s = 0;
      for (; i < p.k; ++i) s += double(w[i]) * x[i];
      for (float v : part) s += v;
      tol[size_t(t * p.n + r)] = 2 * gamma * s * 1.001 + 1e-30;
    }
  }
  return tol;
}

std::vector<Isa> isas_here() {
  std::vector<Isa> v{Isa::Scalar};
  if (int(detected_isa()) >= int(Isa::AVX2)) v.push_back(Isa::AVX2);
  if (int(detected_isa()) >= int(Isa::AVX512)) v.push_back(Isa::AVX512);
  return v;
}

std::string prec_name(ActPrecision p) { return p == ActPrecision::F32 ? "F32" : "LlamaCpp"; }

}  // namespace

TEST_CASE("activation conversion (scalar and AVX2) is bit-identical to llama.cpp's quantizers") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t k = 512, m = 3;
  std::vector<float> x(size_t(m * k));
  for (auto& v : x) v = nd(rng);
  for (int i = 0; i < 32; ++i) x[size_t(64 + i)] = 0.f;  // an all-zero block (d = 0)
  x[5] = 0.5f;                                           // ties to exercise rounding
  for (int i = 0; i < 32; ++i) x[size_t(128 + i)] = float(i - 16) * 0.25f;  // many exact .5 ties
  x[290] = 7.f;  // equal magnitudes, opposite signs: Q8_K takes the first one's sign
  x[300] = -7.f;
  const bool simd_here = int(detected_isa()) >= int(Isa::AVX2);
  for (int pass = 0; pass < (simd_here ? 2 : 1); ++pass)
    for (QType w : {QType::Q4_0, QType::Q4_1, QType::Q4_K}) {
      INFO((pass ? "AVX2" : "scalar") << " quantizer for " << qtype_name(w));
      const QType at = activation_type_for(w);
      std::vector<uint8_t> mem(detail::act_bytes(m, k));
      detail::ActBuf act;
      detail::convert_activations(detail::act_kind(w), x.data(), m, k, mem.data(), act, pass == 1);
      std::vector<uint8_t> ref(row_bytes(at, k));
      for (int64_t t = 0; t < m; ++t) {
        quantize_activations_ref(at, x.data() + t * k, ref.data(), k);
        const int8_t* qs = act.qs + t * act.qs_stride;
        if (at == QType::Q8_K) {
          const auto* b = reinterpret_cast<const BlockQ8_K*>(ref.data());
          for (int64_t i = 0; i < k / 256; ++i) {
            CHECK(b[i].d == act.d[t * act.d_stride + i]);
            CHECK(std::memcmp(b[i].qs, qs + 256 * i, 256) == 0);
            CHECK(std::memcmp(b[i].bsums, act.bsums + t * act.bsums_stride + 16 * i, 32) == 0);
          }
        } else if (at == QType::Q8_1) {
          const auto* b = reinterpret_cast<const BlockQ8_1*>(ref.data());
          for (int64_t i = 0; i < k / 32; ++i) {
            CHECK(fp16_to_f32(b[i].d) == act.d[t * act.d_stride + i]);
            CHECK(fp16_to_f32(b[i].s) == act.s[t * act.d_stride + i]);
            CHECK(std::memcmp(b[i].qs, qs + 32 * i, 32) == 0);
          }
        } else {
          const auto* b = reinterpret_cast<const BlockQ8_0*>(ref.data());
          for (int64_t i = 0; i < k / 32; ++i) {
            CHECK(fp16_to_f32(b[i].d) == act.d[t * act.d_stride + i]);
            CHECK(std::memcmp(b[i].qs, qs + 32 * i, 32) == 0);
          }
        }
      }
    }
}

TEST_CASE("fp16 / bf16 activation rounding (AVX2) is bit-identical to the scalar conversions") {
  if (int(detected_isa()) < int(Isa::AVX2)) {
    MESSAGE("SKIP: this CPU has no AVX2");
    return;
  }
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t m = 3, k = 77;  // a row length with a tail of 5 after the 8-float vectors
  std::vector<float> x(size_t(m * k));
  for (auto& v : x) v = nd(rng) * std::exp2(float(int(rng() % 40) - 20));
  // Ties, the fp16 overflow edge, subnormals of both formats, signed zeros and infinities in
  // x[8..23] (two whole 8-float vectors); NaNs with payloads in x[40..41] (their vector takes the
  // scalar rules).
  const float special[] = {65504.f, 65520.f, 65519.996f, -1e-7f, 6e-8f, 3e-8f, 1e-40f, -0.f,
                           INFINITY, -INFINITY,
                           1.00048828125f, 1.00146484375f,  // fp16 ties: to the even neighbour, below / above
                           0x1.01p0f, 0x1.03p0f,            // the same for bf16
                           -0x1.03p0f, 0x1.0018p0f};
  for (size_t i = 0; i < std::size(special); ++i) x[8 + i] = special[i];
  x[40] = std::nanf("0x12345");
  x[41] = -std::nanf("7");
  for (detail::ActKind kind : {detail::ActKind::F16, detail::ActKind::BF16}) {
    INFO((kind == detail::ActKind::F16 ? "F16" : "BF16"));
    std::vector<uint8_t> m0(detail::act_bytes(m, k)), m1(m0.size());
    detail::ActBuf a0, a1;
    detail::convert_activations(kind, x.data(), m, k, m0.data(), a0, false);
    detail::convert_activations(kind, x.data(), m, k, m1.data(), a1, true);
    for (int64_t t = 0; t < m; ++t) {
      CHECK(std::memcmp(a0.xb + t * a0.xb_stride, a1.xb + t * a1.xb_stride, size_t(k) * 2) == 0);
      CHECK(std::memcmp(a0.xf + t * a0.xf_stride, a1.xf + t * a1.xf_stride, size_t(k) * 4) == 0);
    }
  }
}

TEST_CASE("every type x ISA x shape matches the scalar reference of the same precision") {
  // 27 = 16 + 8 + 3 rows: a 16-row (AVX-512) tile, an 8-row tile and a remainder of the packed
  // prefill GEMMs; 67 = 4 x 16 + 3.
  const int64_t ns[] = {1, 3, 27, 67};
  const int64_t ms[] = {1, 2, 5, 64};
  const auto isas = isas_here();
#ifdef _OPENMP
  // One thread: this case makes thousands of small calls, and with more threads on a loaded
  // machine libgomp's barrier spinning dominated the run time. Thread splits are covered by the
  // thread-count test below.
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  MESSAGE("ISAs tested on this CPU: " << isas.size() << " (best: " << isa_name(detected_isa())
                                      << ")");
  Workspace ws;
  uint32_t seed = 1;
  for (QType type : weight_types()) {
    double type_worst = 0;
    const int be = qtype_info(type).block_elems;
    const int64_t blk = std::max(be, 32);  // float types: "one block" = 32 elements
    const int64_t ks[] = {blk, 3 * blk, 2048};
    for (int64_t k : ks) {
      const Problem full = make_problem(type, 67, k, 1, seed++);
      for (int64_t n : ns) {
        for (int64_t m : ms) {
          // The full cross product at k = 2048 costs most of the time; the large shapes run
          // with n in {27, 67} only (n = 1, 3 are covered at the small k).
          if (k == 2048 && ((n < 27 && m > 2) || (n == 67 && m == 64))) continue;
          Problem p = full;  // the first n rows of the shared weights, fresh activations
          p.n = n;
          p.m = m;
          p.w.resize(row_bytes(type, k) * size_t(n));
          p.wf.resize(size_t(n * k));
          p.x = make_problem(QType::F32, 1, k, m, seed++).x;
          for (ActPrecision prec : {ActPrecision::F32, ActPrecision::LlamaCpp}) {
            std::vector<float> yref(size_t(m * n)), y(size_t(m * n));
            linear_ref(args_of(p, yref.data()), ws, prec);
            const auto tol = tolerance(p, prec);
            for (Isa isa : isas) {
              // Scalar is linear_ref itself; one small shape checks the dispatch reaches it.
              if (isa == Isa::Scalar && (k > blk || m > 2)) continue;
              std::fill(y.begin(), y.end(), std::nanf(""));
              linear_isa(args_of(p, y.data()), ws, prec, isa);
              int bad = 0;
              double worst = 0;
              for (size_t i = 0; i < y.size(); ++i) {
                const double err = std::fabs(double(y[i]) - double(yref[i]));
                if (!(err <= tol[i])) ++bad;
                worst = std::max(worst, err / tol[i]);
              }
              INFO(qtype_name(type) << " " << isa_name(isa) << " " << prec_name(prec) << " n=" << n
                                    << " k=" << k << " m=" << m << " worst err/tol=" << worst);
              CHECK(bad == 0);
              type_worst = std::max(type_worst, worst);
            }
          }
        }
      }
    }
    MESSAGE(qtype_name(type) << ": largest |y - y_ref| / bound over all shapes and ISAs = "
                             << type_worst);
  }
#ifdef _OPENMP
  omp_set_num_threads(saved_threads);
#endif
}

TEST_CASE("LlamaCpp precision is within the activation rounding error of the F32 precision") {
  Workspace ws;
  uint32_t seed = 1000;
  for (QType type : weight_types()) {
    const int64_t n = 9, k = 512, m = 3;
    const Problem p = make_problem(type, n, k, m, seed++);
    std::vector<float> y32(size_t(m * n)), yq(size_t(m * n));
    linear_ref(args_of(p, y32.data()), ws, ActPrecision::F32);
    linear_ref(args_of(p, yq.data()), ws, ActPrecision::LlamaCpp);
    const auto tol_q = tolerance(p, ActPrecision::LlamaCpp);
    const auto tol_f = tolerance(p, ActPrecision::F32);
    const QType at = activation_type_for(type);
    const int ab = at == QType::Q8_K ? 256 : 32;
    for (int64_t t = 0; t < m; ++t) {
      const float* x = p.x.data() + t * k;
      for (int64_t r = 0; r < n; ++r) {
        const float* w = p.wf.data() + r * k;
        // Per-element activation error: Q8 blocks round x/d to an integer (<= d/2) with d =
        // amax/127, and Q8_0/Q8_1 store d as fp16 (relative 2^-11, times |q| <= 127); the Q8_1
        // sum s is an fp16 (relative 2^-11) multiplied by the block min. F16/BF16 round each
        // element (relative 2^-11 / 2^-8).
        double bound = 0;
        for (int64_t b0 = 0; b0 < k; b0 += ab) {
          double xmax = 0, wmax = 0;
          for (int64_t i = b0; i < b0 + ab; ++i) {
            xmax = std::max(xmax, double(std::fabs(x[i])));
            wmax = std::max(wmax, double(std::fabs(w[i])));
          }
          for (int64_t i = b0; i < b0 + ab; ++i) {
            double e = 0;
            if (at == QType::F16)
              e = std::fabs(x[i]) * std::ldexp(1.0, -11);
            else if (at == QType::BF16)
              e = std::fabs(x[i]) * std::ldexp(1.0, -8);
            else if (at != QType::F32)
              e = xmax / 127 * (0.5 + 127 * std::ldexp(1.0, -11));
            bound += std::fabs(w[i]) * e;
            if (at == QType::Q8_1) bound += wmax * std::fabs(x[i]) * std::ldexp(1.0, -10);
          }
        }
        const size_t i = size_t(t * n + r);
        bound += tol_q[i] + tol_f[i];
        INFO(qtype_name(type) << " r=" << r << " t=" << t);
        CHECK(std::fabs(double(yq[i]) - double(y32[i])) <= bound);
      }
    }
  }
}

TEST_CASE("results do not depend on the thread count and the call does not read past its rows") {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  Workspace ws;
  for (QType type : {QType::Q4_0, QType::Q8_0, QType::Q4_K, QType::Q6_K, QType::F16}) {
    for (int64_t m : {1, 5}) {
      const Problem p = make_problem(type, 37, 512, m, 99);
      std::vector<float> y1(size_t(m * 37)), y3(size_t(m * 37));
      for (Isa isa : isas_here()) {
        omp_set_num_threads(1);
        linear_isa(args_of(p, y1.data()), ws, ActPrecision::LlamaCpp, isa);
        omp_set_num_threads(3);
        linear_isa(args_of(p, y3.data()), ws, ActPrecision::LlamaCpp, isa);
        INFO(qtype_name(type) << " m=" << m << " " << isa_name(isa));
        CHECK(std::memcmp(y1.data(), y3.data(), y1.size() * sizeof(float)) == 0);
      }
    }
  }
  omp_set_num_threads(saved);
#endif
}

TEST_CASE("linear_multi equals separate linear calls, also with mixed weight types") {
  Workspace ws;
  for (int64_t m : {1, 6}) {
    // q/k/v-like shapes sharing x; the Q4_K + Q6_K pair shares Q8_K activations, Q8_0 + F16
    // needs different formats (the fallback path).
    const std::vector<std::vector<QType>> sets = {{QType::Q4_0, QType::Q4_0, QType::Q4_0},
                                                  {QType::Q4_K, QType::Q6_K},
                                                  {QType::Q8_0, QType::F16}};
    for (const auto& types : sets) {
      std::vector<Problem> ps;
      for (size_t i = 0; i < types.size(); ++i)
        ps.push_back(make_problem(types[i], 24 + 13 * int64_t(i), 512, m, 300 + uint32_t(i)));
      for (auto& p : ps) p.x = ps[0].x;
      for (Isa isa : isas_here()) {
        std::vector<std::vector<float>> ys(ps.size()), yref(ps.size());
        std::vector<LinearArgs> calls;
        for (size_t i = 0; i < ps.size(); ++i) {
          ys[i].assign(size_t(m * ps[i].n), 0.f);
          yref[i].assign(size_t(m * ps[i].n), 0.f);
          linear_isa(args_of(ps[i], yref[i].data()), ws, ActPrecision::LlamaCpp, isa);
          calls.push_back(args_of(ps[i], ys[i].data()));
        }
        linear_multi_isa(calls.data(), int(calls.size()), ws, ActPrecision::LlamaCpp, isa);
        for (size_t i = 0; i < ps.size(); ++i) {
          INFO(qtype_name(types[i]) << " m=" << m << " " << isa_name(isa));
          CHECK(std::memcmp(ys[i].data(), yref[i].data(), ys[i].size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("ldy > n leaves the padding columns untouched; bad shapes throw") {
  Workspace ws;
  const Problem p = make_problem(QType::Q8_0, 5, 64, 2, 5);
  const int64_t ldy = 8;
  std::vector<float> y(size_t(2 * ldy), -7.f);
  LinearArgs a{p.type, p.w.data(), p.n, p.k, p.x.data(), p.m, y.data(), ldy};
  linear(a, ws, ActPrecision::LlamaCpp);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t c = p.n; c < ldy; ++c) CHECK(y[size_t(t * ldy + c)] == -7.f);
  LinearArgs bad = a;
  bad.k = 48;  // not a multiple of 32
  CHECK_THROWS_AS(linear(bad, ws, ActPrecision::LlamaCpp), Error);
  bad = a;
  bad.ldy = 3;
  CHECK_THROWS_AS(linear(bad, ws, ActPrecision::F32), Error);
}

TEST_CASE("BF16 prefill through oneDNN matches the bf16 reference within the float bound") {
  // The path linear() takes for BF16 weights, LlamaCpp precision, m >= kOneDnnMinM on AVX-512
  // CPUs with AVX512_BF16 when built with oneDNN: bf16 x bf16 products (exact in float), f32
  // accumulation in oneDNN's order, so the float-weight bound of `tolerance` applies (depth k + 8).
  // Called directly to know the path was taken, and through linear_isa with ldy > n.
  const bool expect_onednn = kBuiltWithOneDnn && int(detected_isa()) >= int(Isa::AVX512) &&
                             cpu_has_avx512_bf16();
  Workspace ws;
  // k = 100: the bf16 activation plane's row stride (128) differs from k.
  const std::pair<int64_t, int64_t> shapes[] = {{detail::kOneDnnMinM, 512}, {77, 100}};
  for (const auto& [m, k] : shapes) {
    const Problem p = make_problem(QType::BF16, 67, k, m, 4242);
    const int64_t ldy = p.n + 3;
    std::vector<float> yref(size_t(m * p.n)), y(size_t(m * ldy), -7.f), yd(size_t(m * p.n), 0.f);
    linear_ref(args_of(p, yref.data()), ws, ActPrecision::LlamaCpp);
    const auto tol = tolerance(p, ActPrecision::LlamaCpp);
    LinearArgs a{p.type, p.w.data(), p.n, p.k, p.x.data(), p.m, y.data(), ldy};
    linear_isa(a, ws, ActPrecision::LlamaCpp, detected_isa());
    // Direct call on converted activations.
    ws.reserve(linear_workspace_bytes(m, p.k));
    detail::ActBuf act;
    detail::convert_activations(detail::ActKind::BF16, p.x.data(), m, p.k, ws.bytes.data(), act);
    detail::KernelArgs ka{p.type, p.w.data(), row_bytes(p.type, p.k), p.n, p.k, m, &act,
                          p.x.data(), yd.data(), p.n};
    ka.bf16_dot = expect_onednn;
    CHECK(detail::onednn_bf16_gemm(ka) == expect_onednn);
    int bad = 0, bad_direct = 0, pad_changed = 0;
    double worst = 0;
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t r = 0; r < p.n; ++r) {
        const size_t i = size_t(t * p.n + r);
        const double err = std::fabs(double(y[size_t(t * ldy + r)]) - yref[i]);
        if (!(err <= tol[i])) ++bad;
        if (expect_onednn && !(std::fabs(double(yd[i]) - yref[i]) <= tol[i])) ++bad_direct;
        worst = std::max(worst, err / tol[i]);
      }
      for (int64_t c = p.n; c < ldy; ++c) pad_changed += y[size_t(t * ldy + c)] != -7.f;
    }
    INFO("m=" << m << " k=" << k << " oneDNN expected: " << expect_onednn
                << " worst err/tol=" << worst);
    CHECK(bad == 0);
    CHECK(bad_direct == 0);
    CHECK(pad_changed == 0);
  }
}

TEST_CASE("the activation kind of every weight type is llama.cpp's vec_dot_type") {
  for (QType type : weight_types()) {
    const QType at = activation_type_for(type);
    const auto kind = detail::act_kind(type);
    const char* name = kind == detail::ActKind::F32    ? "F32"
                       : kind == detail::ActKind::F16  ? "F16"
                       : kind == detail::ActKind::BF16 ? "BF16"
                       : kind == detail::ActKind::Q8_0 ? "Q8_0"
                       : kind == detail::ActKind::Q8_1 ? "Q8_1"
                                                       : "Q8_K";
    CHECK(qtype_name(at) == name);
  }
}

}  // namespace slm::cpu
