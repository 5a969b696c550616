// attn_head (kernels/cpu/attention.h): the AVX2 kernel against the scalar reference on fresh
// random data, for head sizes with and without an 8-float tail, key counts around the 8-key
// blocks, both cache types, and a peaked softmax.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"

using namespace slm;
using namespace slm::cpu;

namespace {

double gamma_n(double n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

}  // namespace

TEST_CASE("attn_head: AVX2 matches the scalar reference within the derived bound") {
  if (detected_isa() < Isa::AVX2) {
    MESSAGE("SKIP: this CPU has no AVX2");
    return;
  }
  // Bound per output element d, from the reference's p and the stored (cache-type) keys/values:
  //  * each score is a dot of hd products then a multiply by `scale`: both kernels are within
  //    gamma(hd + 1) * scale * S_i of the exact value (S_i = sum_d |q_d k_id|), so they differ
  //    by at most e_i = 2 * gamma(hd + 1) * scale * S_i; let E = max_i e_i;
  //  * softmax is shift-invariant, so p_i moves by a relative 2E (its own score and the
  //    normaliser) plus the exponentials (libmvec within 4 ulp, std::exp within 1), the
  //    subtraction of the max, the reciprocal and the product (1/2 ulp each): 8 ulp, plus the
  //    two sums of n terms (gamma(n) each);
  //  * out_d = sum_i p_i v_id adds gamma(n) relative to sum_i p_i |v_id| per kernel.
  // So |out - ref| <= (2E + 8u + 4 gamma(n)) * sum_i p_i |v_id|, checked with 1 % slack for the
  // second-order terms.
  const double u = std::ldexp(1.0, -24);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  int cases = 0;
  for (KvType t : {KvType::F32, KvType::F16}) {
    for (int64_t hd : {64, 128, 40, 12, 4}) {
      for (int64_t n : {1, 2, 7, 8, 9, 16, 63, 300}) {
        for (float qscale : {1.f, 8.f}) {  // 8: scores up to ~+-50, a peaked softmax
          const int64_t stride = 3 * hd + 5;  // other heads' elements between positions
          const int64_t off = hd + 3;         // this head's offset inside a position
          std::vector<float> q(static_cast<size_t>(hd));
          for (auto& v : q) v = qscale * nd(rng);
          std::vector<float> kf(size_t(n * stride)), vf(size_t(n * stride));
          for (auto& v : kf) v = nd(rng);
          for (auto& v : vf) v = nd(rng);
          std::vector<uint16_t> kh(kf.size()), vh(vf.size());
          for (size_t i = 0; i < kf.size(); ++i) {
            kh[i] = f32_to_fp16(kf[i]);
            vh[i] = f32_to_fp16(vf[i]);
            if (t == KvType::F16) {  // the values the kernels see
              kf[i] = fp16_to_f32(kh[i]);
              vf[i] = fp16_to_f32(vh[i]);
            }
          }
          const void* keys = t == KvType::F32 ? static_cast<const void*>(kf.data() + off) : kh.data() + off;
          const void* vals = t == KvType::F32 ? static_cast<const void*>(vf.data() + off) : vh.data() + off;
          const float scale = 1.f / std::sqrt(float(hd));
          std::vector<float> p(static_cast<size_t>(n)), p2(p.size()), ref(static_cast<size_t>(hd)), out(ref.size());
          attn_head_ref(q.data(), keys, vals, n, stride, hd, t, scale, p.data(), ref.data());
          detail::attn_head_avx2(q.data(), keys, vals, n, stride, hd, t, scale, p2.data(), out.data());
          double E = 0;
          for (int64_t i = 0; i < n; ++i) {
            double S = 0;
            for (int64_t d = 0; d < hd; ++d) S += std::fabs(double(q[size_t(d)]) * kf[size_t(i * stride + off + d)]);
            E = std::max(E, 2 * gamma_n(double(hd + 1)) * scale * S);
          }
          const double rel = 1.01 * (2 * E + 8 * u + 4 * gamma_n(double(n)));
          for (int64_t d = 0; d < hd; ++d) {
            double mass = 0;
            for (int64_t i = 0; i < n; ++i) mass += double(p[size_t(i)]) * std::fabs(vf[size_t(i * stride + off + d)]);
            INFO("kv=" << (t == KvType::F32 ? "F32" : "F16") << " hd=" << hd << " n=" << n << " qscale=" << qscale
                       << " d=" << d);
            CHECK(std::fabs(double(out[size_t(d)]) - ref[size_t(d)]) <= rel * mass + 1e-30);
          }
          ++cases;
        }
      }
    }
  }
  CHECK(cases == 2 * 5 * 8 * 2);
}
