// GPTQ solver, Hessian collection through Session::on_linear_input, packing and the model-level
// quantization loop writing an AutoGPTQ directory. Algorithm: ../shared/specs/gptq.md §7.
#include "runtime/gptq_quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include "core/error.h"
#include "core/half.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "runtime/hf_export.h"
#include "runtime/lora.h"

namespace slm {

namespace fs = std::filesystem;

namespace {

// Multiply-adds below which a loop runs on one thread: OpenMP start-up and barriers cost tens of
// microseconds (much more on a loaded machine), so small layers (tests, tiny models) stay serial.
constexpr int64_t kParallelWork = int64_t(1) << 24;

// ---- grid (gptq.md §4) --------------------------------------------------------------------------

struct Grid {
  float scale = 1;
  int32_t zero = 0;
};

Grid find_grid(const float* w, int64_t cnt, int64_t stride, const GptqSolverOptions& o) {
  const int maxq = (1 << o.bits) - 1;
  float xmin = 0, xmax = 0;
  for (int64_t i = 0; i < cnt; ++i) {
    xmin = std::min(xmin, w[i * stride]);
    xmax = std::max(xmax, w[i * stride]);
  }
  if (o.sym) {
    xmax = std::max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
  // The scale is stored as FP16; quantizing against the rounded value makes the checkpoint
  // dequantize to exactly the weights the solver optimised. Ranges below FP16's smallest normal
  // (all-tiny groups) use that normal instead of flushing to a zero scale.
  float s = fp16_to_f32(f32_to_fp16((xmax - xmin) / float(maxq)));
  if (!(s >= 6.103515625e-05f)) s = 6.103515625e-05f;
  Grid g{s, 0};
  if (o.sym) {
    g.zero = (maxq + 1) / 2;
  } else {
    const int lo = o.v1_zeros ? 1 : 0;
    g.zero = std::clamp(int32_t(std::nearbyint(-xmin / s)), lo, maxq);
  }
  return g;
}

inline int quant(float x, const Grid& g, int maxq) {
  const float q = std::nearbyint(x / g.scale) + float(g.zero);  // round half to even, like torch
  return int(std::clamp(q, 0.f, float(maxq)));
}
inline float dequant(int q, const Grid& g) { return g.scale * float(q - g.zero); }

void check_solver(const GptqSolverOptions& o, int64_t n, int64_t k) {
  SLM_CHECK(o.bits == 2 || o.bits == 3 || o.bits == 4 || o.bits == 8, "gptq: bits must be 2, 3, 4 or 8, not {}", o.bits);
  SLM_CHECK(o.group_size == -1 || o.group_size > 0, "gptq: group size must be positive or -1, not {}", o.group_size);
  SLM_CHECK(o.block_size > 0, "gptq: block size must be positive");
  SLM_CHECK(o.damp_percent >= 0 && std::isfinite(o.damp_percent), "gptq: invalid damp_percent {}", o.damp_percent);
  SLM_CHECK(n > 0 && k > 0, "gptq: empty weight ({} x {})", n, k);
}

int64_t n_groups(int64_t k, int group_size) { return group_size > 0 ? (k + group_size - 1) / group_size : 1; }

// ---- dense linear algebra (double) -----------------------------------------------------------------

// In-place lower Cholesky of a (k x k, row-major; only the lower triangle is read). False when a
// pivot is not positive. Left-looking in panels of kPanel columns: every row is read once per
// panel (not once per column), which keeps K = 8192 compute-bound rather than memory-bound.
constexpr int64_t kPanel = 16;

bool cholesky_lower(std::vector<double>& a, int64_t k) {
  for (int64_t j0 = 0; j0 < k; j0 += kPanel) {
    const int64_t j1 = std::min(k, j0 + kPanel);
    // Contributions of the columns before the panel.
#pragma omp parallel for schedule(static) if ((k - j0) * j0 > (int64_t(1) << 18))
    for (int64_t i = j0; i < k; ++i) {
      double* ai = a.data() + i * k;
      for (int64_t j = j0; j < std::min(j1, i + 1); ++j) {
        const double* aj = a.data() + j * k;
        double t = 0;
#pragma omp simd reduction(+ : t)
        for (int64_t p = 0; p < j0; ++p) t += ai[p] * aj[p];
        ai[j] -= t;
      }
    }
    // Factor the panel itself.
    for (int64_t j = j0; j < j1; ++j) {
      double* aj = a.data() + j * k;
      double s = aj[j];
      for (int64_t p = j0; p < j; ++p) s -= aj[p] * aj[p];
      if (!(s > 0) || !std::isfinite(s)) return false;
      const double d = std::sqrt(s);
      aj[j] = d;
#pragma omp parallel for schedule(static) if ((k - j) * (j - j0) > (int64_t(1) << 16))
      for (int64_t i = j + 1; i < k; ++i) {
        double* ai = a.data() + i * k;
        double t = ai[j];
        for (int64_t p = j0; p < j; ++p) t -= ai[p] * aj[p];
        ai[j] = t / d;
      }
    }
  }
  return true;
}

// U (upper, float, k x k) with Uᵀ U = H⁻¹ — the upper Cholesky factor of the inverse Hessian —
// from one Cholesky: with J the index reversal, chol(J H J) = L gives H = V Vᵀ for the upper
// V = J L J, and U = V⁻¹ = J L⁻¹ J. False when H is not positive definite.
bool inverse_cholesky_upper(const std::vector<double>& H, int64_t k, std::vector<float>& U) {
  std::vector<double> r(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) r[size_t(i * k + j)] = H[size_t((k - 1 - i) * k + (k - 1 - j))];
  if (!cholesky_lower(r, k)) return false;
  U.assign(size_t(k * k), 0.f);
  // L⁻¹ by forward substitution, kPanel columns at a time (each row of L read once per panel);
  // entry (i, j) of L⁻¹ is U[k-1-i][k-1-j].
#pragma omp parallel if (k * k * k / 6 > kParallelWork)
  {
    std::vector<double> x(static_cast<size_t>(k * kPanel));  // x[p][c]: column j0 + c, row p
#pragma omp for schedule(dynamic, 1)
    for (int64_t j0 = 0; j0 < k; j0 += kPanel) {
      const int64_t nc = std::min(kPanel, k - j0);
      for (int64_t i = j0; i < k; ++i) {
        const double* ri = r.data() + i * k;
        double acc[kPanel] = {};
        for (int64_t p = j0; p < i; ++p) {
          const double l = ri[p];
          const double* xp = x.data() + p * kPanel;
#pragma omp simd
          for (int64_t c = 0; c < kPanel; ++c) acc[c] += l * xp[c];
        }
        double* xi = x.data() + i * kPanel;
        for (int64_t c = 0; c < kPanel; ++c) {
          const int64_t j = j0 + c;
          xi[c] = c >= nc || i < j ? 0.0 : i == j ? 1.0 / ri[i] : -acc[c] / ri[i];
        }
      }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t i = j0 + c; i < k; ++i)
          U[size_t((k - 1 - i) * k + (k - 1 - (j0 + c)))] = float(x[size_t(i * kPanel + c)]);
    }
  }
  return true;
}

}  // namespace

std::vector<float> GptqResult::dequantize() const {
  std::vector<float> w(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const size_t gi = size_t(g_idx[size_t(c)]) * size_t(n) + size_t(r);
      w[size_t(r * k + c)] = scale[gi] * float(int32_t(q[size_t(r * k + c)]) - zero[gi]);
    }
  return w;
}

GptqResult rtn_quantize_weight(const float* w, int64_t n, int64_t k, const GptqSolverOptions& o) {
  check_solver(o, n, k);
  GptqResult res;
  res.bits = o.bits, res.group_size = o.group_size, res.n = n, res.k = k, res.groups = n_groups(k, o.group_size);
  res.q.resize(size_t(n * k));
  res.scale.resize(size_t(res.groups * n));
  res.zero.resize(size_t(res.groups * n));
  res.g_idx.resize(size_t(k));
  const int64_t gs = o.group_size > 0 ? o.group_size : k;
  for (int64_t c = 0; c < k; ++c) res.g_idx[size_t(c)] = int32_t(c / gs);
  const int maxq = (1 << o.bits) - 1;
#pragma omp parallel for schedule(static) if (n * k > kParallelWork / 16)
  for (int64_t r = 0; r < n; ++r)
    for (int64_t g = 0; g < res.groups; ++g) {
      const int64_t c0 = g * gs, c1 = std::min(k, c0 + gs);
      const Grid grid = find_grid(w + r * k + c0, c1 - c0, 1, o);
      res.scale[size_t(g * n + r)] = grid.scale;
      res.zero[size_t(g * n + r)] = grid.zero;
      for (int64_t c = c0; c < c1; ++c) res.q[size_t(r * k + c)] = uint8_t(quant(w[r * k + c], grid, maxq));
    }
  return res;
}

GptqResult gptq_quantize_weight(const float* w, int64_t n, int64_t k, std::span<const double> Hin,
                                const GptqSolverOptions& o) {
  check_solver(o, n, k);
  SLM_CHECK(int64_t(Hin.size()) == k * k, "gptq: Hessian has {} values, expected {} x {}", Hin.size(), k, k);
  std::vector<double> H(Hin.begin(), Hin.end());
  std::vector<float> W(w, w + n * k);
  // Dead inputs (never active in the calibration data): their weights cannot matter there, so they
  // are zeroed and the Hessian made invertible (§7.2 step 2).
  for (int64_t c = 0; c < k; ++c)
    if (H[size_t(c * k + c)] == 0) {
      H[size_t(c * k + c)] = 1;
      for (int64_t r = 0; r < n; ++r) W[size_t(r * k + c)] = 0;
    }
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.desc_act)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[size_t(a * k + a)] > H[size_t(b * k + b)]; });
  std::vector<double> Hp(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) Hp[size_t(i * k + j)] = H[size_t(perm[size_t(i)] * k + perm[size_t(j)])];
  std::vector<float> Wp(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) Wp[size_t(r * k + c)] = W[size_t(r * k + perm[size_t(c)])];

  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) mean_diag += Hp[size_t(i * k + i)];
  mean_diag /= double(k);
  double damp = o.damp_percent * mean_diag;
  std::vector<float> U;
  // A badly conditioned H (few calibration tokens) fails the Cholesky: raise the damping tenfold
  // and retry, as GPTQModel's damp_auto_increment does.
  for (int attempt = 0;; ++attempt) {
    std::vector<double> Hd = Hp;
    for (int64_t i = 0; i < k; ++i) Hd[size_t(i * k + i)] += damp;
    if (inverse_cholesky_upper(Hd, k, U)) break;
    SLM_CHECK(attempt < 6, "gptq: the Hessian is not positive definite even with damping {} (mean diagonal {})", damp,
              mean_diag);
    damp = std::max(damp * 10, 1e-6 * std::max(mean_diag, 1e-30));
  }

  GptqResult res;
  res.bits = o.bits, res.group_size = o.group_size, res.n = n, res.k = k, res.groups = n_groups(k, o.group_size);
  res.damp_used = damp;
  res.q.resize(size_t(n * k));
  res.scale.resize(size_t(res.groups * n));
  res.zero.resize(size_t(res.groups * n));
  res.g_idx.resize(size_t(k));
  const int maxq = (1 << o.bits) - 1;
  const int64_t B = o.block_size;
  double loss = 0;
  // Rows are independent given U (the grid is per row, the error feedback runs along a row), so
  // threads take tiles of kTile rows; each row runs the blocked schedule of §7.2 step 7 exactly.
  // Tiling makes the lazy update read each U row segment once per tile instead of once per row.
  constexpr int64_t kTile = 16;
#pragma omp parallel reduction(+ : loss) if (n * k * k > kParallelWork)
  {
    std::vector<float> w1(static_cast<size_t>(kTile * B)), err(static_cast<size_t>(kTile * B));
    std::vector<uint8_t> qrow(static_cast<size_t>(kTile * k));
    std::vector<Grid> grid(static_cast<size_t>(kTile));
#pragma omp for schedule(dynamic, 1)
    for (int64_t r0 = 0; r0 < n; r0 += kTile) {
      const int64_t nr = std::min(kTile, n - r0);
      if (o.group_size <= 0)
        for (int64_t t = 0; t < nr; ++t) {
          grid[size_t(t)] = find_grid(Wp.data() + (r0 + t) * k, k, 1, o);
          res.scale[size_t(r0 + t)] = grid[size_t(t)].scale;
          res.zero[size_t(r0 + t)] = grid[size_t(t)].zero;
        }
      for (int64_t i1 = 0; i1 < k; i1 += B) {
        const int64_t i2 = std::min(k, i1 + B), nb = i2 - i1;
        for (int64_t t = 0; t < nr; ++t) {
          const int64_t r = r0 + t;
          float* wr = Wp.data() + r * k;
          float* w1t = w1.data() + t * B;
          float* errt = err.data() + t * B;
          uint8_t* qt = qrow.data() + t * k;
          Grid& g = grid[size_t(t)];
          std::copy(wr + i1, wr + i2, w1t);
          for (int64_t i = 0; i < nb; ++i) {
            const int64_t c = i1 + i;
            if (o.group_size > 0 && c % o.group_size == 0) {
              // As AutoGPTQ: the group's grid comes from W, which inside the current block still
              // holds its values from the start of the block.
              g = find_grid(wr + c, std::min<int64_t>(o.group_size, k - c), 1, o);
              const int64_t gi = c / o.group_size;
              res.scale[size_t(gi * n + r)] = g.scale;
              res.zero[size_t(gi * n + r)] = g.zero;
            }
            const float x = w1t[i];
            const int q = quant(x, g, maxq);
            qt[c] = uint8_t(q);
            const float* uc = U.data() + c * k;
            const float e = (x - dequant(q, g)) / uc[c];
            loss += 0.5 * double(e) * double(e);
            for (int64_t j = i + 1; j < nb; ++j) w1t[j] -= e * uc[i1 + j];
            errt[i] = e;
          }
        }
        // Lazy batch update of the columns after the block: W[:, i2:] -= Err · U[i1:i2, i2:].
        for (int64_t i = 0; i < nb; ++i) {
          const float* ui = U.data() + (i1 + i) * k;
          for (int64_t t = 0; t < nr; ++t) {
            const float e = err[size_t(t * B + i)];
            float* wr = Wp.data() + (r0 + t) * k;
            for (int64_t j = i2; j < k; ++j) wr[j] -= e * ui[j];
          }
        }
      }
      for (int64_t t = 0; t < nr; ++t)
        for (int64_t c = 0; c < k; ++c) res.q[size_t((r0 + t) * k + perm[size_t(c)])] = qrow[size_t(t * k + c)];
    }
  }
  res.loss = loss;
  for (int64_t c = 0; c < k; ++c)
    res.g_idx[size_t(perm[size_t(c)])] = o.group_size > 0 ? int32_t(c / o.group_size) : 0;
  return res;
}

cpu::GptqTensors GptqPacked::view() const {
  cpu::GptqTensors t;
  t.bits = bits, t.k = k, t.n = n, t.groups = groups, t.group_size = group_size, t.zero_plus_one = true;
  t.qweight = qweight.data(), t.qzeros = qzeros.data(), t.scales = scales.data();
  t.scales_type = cpu::GptqFloat::F16;
  t.g_idx = g_idx.data();
  return t;
}

GptqPacked gptq_pack(const GptqResult& r, std::span<const int32_t> row_perm) {
  SLM_CHECK(r.k % 32 == 0, "gptq pack: in_features {} is not a multiple of 32", r.k);
  SLM_CHECK(r.n * r.bits % 32 == 0 && (r.bits != 3 || r.n % 32 == 0),
            "gptq pack: out_features {} cannot be packed at {} bits", r.n, r.bits);
  SLM_CHECK(row_perm.empty() || int64_t(row_perm.size()) == r.n, "gptq pack: row permutation has {} entries, not {}",
            row_perm.size(), r.n);
  auto src_row = [&](int64_t n) -> int64_t { return row_perm.empty() ? n : row_perm[size_t(n)]; };
  GptqPacked p;
  p.bits = r.bits, p.group_size = r.group_size, p.n = r.n, p.k = r.k, p.groups = r.groups;
  std::vector<uint32_t> q(static_cast<size_t>(r.k * r.n));
  for (int64_t n = 0; n < r.n; ++n) {
    const int64_t s = src_row(n);
    SLM_CHECK(s >= 0 && s < r.n, "gptq pack: row permutation entry {} out of range", s);
    for (int64_t c = 0; c < r.k; ++c) q[size_t(c * r.n + n)] = r.q[size_t(s * r.k + c)];
  }
  p.qweight = cpu::gptq_pack_qweight(q.data(), r.k, r.n, r.bits);
  std::vector<uint32_t> z(static_cast<size_t>(r.groups * r.n));
  p.scales.resize(size_t(r.groups * r.n));
  for (int64_t g = 0; g < r.groups; ++g)
    for (int64_t n = 0; n < r.n; ++n) {
      const size_t si = size_t(g * r.n + src_row(n));
      // v1 ("gptq") stores zero - 1 (gptq.md §4).
      SLM_CHECK(r.zero[si] >= 1 && r.zero[si] <= (1 << r.bits) - 1 + 1,
                "gptq pack: zero point {} cannot be stored in a v1 checkpoint", r.zero[si]);
      z[size_t(g * r.n + n)] = uint32_t(r.zero[si] - 1);
      p.scales[size_t(g * r.n + n)] = f32_to_fp16(r.scale[si]);
    }
  p.qzeros = cpu::gptq_pack_qzeros(z.data(), r.groups, r.n, r.bits);
  p.g_idx = r.g_idx;
  return p;
}

double weighted_rel_error(const float* w, const float* w_hat, int64_t n, int64_t k, std::span<const double> H) {
  SLM_CHECK(int64_t(H.size()) == k * k, "weighted_rel_error: Hessian size mismatch");
  double num = 0, den = 0;
#pragma omp parallel reduction(+ : num, den) if (n * k * k > kParallelWork)
  {
    std::vector<double> d(static_cast<size_t>(k)), x(static_cast<size_t>(k));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        x[size_t(c)] = w[r * k + c];
        d[size_t(c)] = double(w[r * k + c]) - double(w_hat[r * k + c]);
      }
      for (int64_t i = 0; i < k; ++i) {
        const double* hi = H.data() + i * k;
        double hd = 0, hx = 0;
        const double *dp = d.data(), *xp = x.data();
#pragma omp simd reduction(+ : hd, hx)
        for (int64_t j = 0; j < k; ++j) hd += hi[j] * dp[j], hx += hi[j] * xp[j];
        num += d[size_t(i)] * hd;
        den += x[size_t(i)] * hx;
      }
    }
  }
  return den > 0 ? std::sqrt(std::max(num, 0.0) / den) : 0.0;
}

// ---- Hessians ---------------------------------------------------------------------------------------

HessianAccumulator::HessianAccumulator(int64_t k) : k_(k), sum_(static_cast<size_t>(k * k), 0.0) {}

void HessianAccumulator::add(const float* x, int64_t m) {
  for (int64_t t = 0; t < m; ++t) {
    pending_.insert(pending_.end(), x + t * k_, x + (t + 1) * k_);
    if (int64_t(pending_.size()) == kChunk * k_) flush();
  }
  count_ += m;
}

// Adds the pending rows: transposed so that each (i, j) entry is a contiguous dot product over
// up to kChunk tokens, summed in float (relative error ~1e-6 for 256 terms), then into double.
void HessianAccumulator::flush() const {
  const int64_t nt = int64_t(pending_.size()) / std::max<int64_t>(k_, 1);
  if (nt == 0) return;
  std::vector<float> xt(static_cast<size_t>(k_ * nt));
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t i = 0; i < k_; ++i) xt[size_t(i * nt + t)] = pending_[size_t(t * k_ + i)];
  pending_.clear();
#pragma omp parallel for schedule(dynamic, 8) if (k_ * k_ * nt / 2 > kParallelWork)
  for (int64_t i = 0; i < k_; ++i) {
    const float* xi = xt.data() + i * nt;
    double* si = sum_.data() + i * k_;
    int64_t j = 0;
    for (; j + 4 <= i + 1; j += 4) {  // four columns at once share the loads of xi
      const float *x0 = xt.data() + j * nt, *x1 = x0 + nt, *x2 = x1 + nt, *x3 = x2 + nt;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t t = 0; t < nt; ++t) s0 += xi[t] * x0[t], s1 += xi[t] * x1[t], s2 += xi[t] * x2[t], s3 += xi[t] * x3[t];
      si[j] += s0, si[j + 1] += s1, si[j + 2] += s2, si[j + 3] += s3;
    }
    for (; j <= i; ++j) {
      const float* xj = xt.data() + j * nt;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t t = 0; t < nt; ++t) s += xi[t] * xj[t];
      si[j] += s;
    }
  }
}

std::vector<double> HessianAccumulator::finish() const {
  flush();
  std::vector<double> h(static_cast<size_t>(k_ * k_));
  const double f = count_ > 0 ? 2.0 / double(count_) : 0.0;
  for (int64_t i = 0; i < k_; ++i)
    for (int64_t j = 0; j <= i; ++j) h[size_t(i * k_ + j)] = h[size_t(j * k_ + i)] = f * sum_[size_t(i * k_ + j)];
  return h;
}

LinearInputClass input_class(LinearSlot s) {
  switch (s) {
    case LinearSlot::Q: case LinearSlot::K: case LinearSlot::V: return LinearInputClass::Attn;
    case LinearSlot::O: return LinearInputClass::AttnOut;
    case LinearSlot::Gate: case LinearSlot::Up: return LinearInputClass::Ffn;
    case LinearSlot::Down: return LinearInputClass::FfnDown;
    case LinearSlot::Output: return LinearInputClass::Output;
  }
  return LinearInputClass::Attn;
}

namespace {

struct StopForward {};

// The slot whose call carries a class's input first in the forward pass (forward.cpp order).
bool first_of_class(LinearSlot s) {
  return s == LinearSlot::Q || s == LinearSlot::O || s == LinearSlot::Gate || s == LinearSlot::Down ||
         s == LinearSlot::Output;
}

// Runs every sample through `m` with F32 activations; `target(layer, class)` says where the input
// goes (null: nowhere). With `stop`, each sample's pass is abandoned right after that call, so
// quantizing layer l costs only layers 0..l.
void run_calibration(const Model& m, const std::vector<std::vector<int32_t>>& samples,
                     const std::function<HessianAccumulator*(int64_t, LinearInputClass)>& target,
                     std::optional<std::pair<int64_t, LinearSlot>> stop) {
  int64_t longest = 1;
  for (const auto& s : samples) longest = std::max<int64_t>(longest, int64_t(s.size()));
  SessionOptions so;
  so.n_ctx = longest;
  so.max_batch = longest;
  so.precision = cpu::ActPrecision::F32;
  so.kv_type = cpu::KvType::F32;
  so.on_linear_input = [&](const LinearInput& in) {
    if (first_of_class(in.slot))
      if (HessianAccumulator* acc = target(in.layer, input_class(in.slot))) {
        if (acc->k() != in.k) *acc = HessianAccumulator(in.k);
        acc->add(in.x, in.m);
      }
    if (stop && stop->first == in.layer && stop->second == in.slot) throw StopForward{};
  };
  Session s(m, so);
  for (const auto& toks : samples) {
    if (toks.empty()) continue;
    s.reset();
    try {
      s.eval(toks);
    } catch (const StopForward&) {
    }
  }
}

}  // namespace

std::vector<std::vector<std::vector<double>>> collect_hessians(const Model& m,
                                                               const std::vector<std::vector<int32_t>>& samples,
                                                               bool with_output) {
  const int64_t L = m.config().n_layers;
  std::vector<std::vector<HessianAccumulator>> acc(size_t(L + 1), std::vector<HessianAccumulator>(4));
  run_calibration(
      m, samples,
      [&](int64_t layer, LinearInputClass c) -> HessianAccumulator* {
        if (layer < 0) return &acc[size_t(L)][0];
        return &acc[size_t(layer)][size_t(c)];
      },
      with_output ? std::nullopt : std::make_optional(std::make_pair(L - 1, LinearSlot::Down)));
  std::vector<std::vector<std::vector<double>>> out(size_t(L + 1));
  for (int64_t l = 0; l <= L; ++l)
    for (auto& a : acc[size_t(l)]) out[size_t(l)].push_back(a.count() ? a.finish() : std::vector<double>{});
  return out;
}

std::vector<std::vector<int32_t>> calibration_samples(const Tokenizer& tok, const std::string& text,
                                                      int64_t n_samples, int64_t seq_len, uint64_t seed) {
  SLM_CHECK(n_samples > 0 && seq_len > 1, "calibration: need at least one sample of 2+ tokens");
  std::vector<int32_t> ids = tok.encode(text, false, false);
  SLM_CHECK(!ids.empty(), "calibration: the text tokenizes to no tokens");
  const bool bos = tok.bos().has_value();
  const int64_t body = seq_len - (bos ? 1 : 0);
  // Repeat the text until one window fits, then draw windows at random offsets.
  std::vector<int32_t> stream;
  while (int64_t(stream.size()) < body + 1) stream.insert(stream.end(), ids.begin(), ids.end());
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> out;
  for (int64_t s = 0; s < n_samples; ++s) {
    const int64_t off = int64_t(rng() % uint64_t(int64_t(stream.size()) - body + 1));
    std::vector<int32_t> v;
    if (bos) v.push_back(*tok.bos());
    v.insert(v.end(), stream.begin() + off, stream.begin() + off + body);
    out.push_back(std::move(v));
  }
  return out;
}

// ---- model loop ---------------------------------------------------------------------------------

namespace {

class EmptySource : public TensorSource {
 public:
  const std::vector<SourceTensor>& tensors() const override { return none_; }
  void read_rows(size_t, int64_t, int64_t, float*) const override {}
  std::string describe() const override { return "(none)"; }

 private:
  std::vector<SourceTensor> none_;
};

const char* hf_module(LinearSlot s) {
  switch (s) {
    case LinearSlot::Q: return "self_attn.q_proj";
    case LinearSlot::K: return "self_attn.k_proj";
    case LinearSlot::V: return "self_attn.v_proj";
    case LinearSlot::O: return "self_attn.o_proj";
    case LinearSlot::Gate: return "mlp.gate_proj";
    case LinearSlot::Up: return "mlp.up_proj";
    case LinearSlot::Down: return "mlp.down_proj";
    case LinearSlot::Output: return "lm_head";
  }
  return "?";
}

const WeightTensor& slot_weight(const Model& m, int64_t layer, LinearSlot s) {
  if (s == LinearSlot::Output) return m.weights().output;
  const LayerWeights& L = m.weights().layers[size_t(layer)];
  switch (s) {
    case LinearSlot::Q: return L.wq;
    case LinearSlot::K: return L.wk;
    case LinearSlot::V: return L.wv;
    case LinearSlot::O: return L.wo;
    case LinearSlot::Gate: return L.w_gate;
    case LinearSlot::Up: return L.w_up;
    default: return L.w_down;
  }
}

std::string read_file_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot open", p.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_file_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot create", p.string());
  f << s;
  SLM_CHECK(bool(f), "{}: write failed", p.string());
}

std::vector<uint16_t> to_f16(const float* x, size_t n) {
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = f32_to_fp16(x[i]);
  return h;
}

}  // namespace

GptqQuantizeReport gptq_quantize_model(const Model& m, const std::string& out_dir, const GptqQuantizeOptions& opts) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto log = [&](const std::string& s) {
    if (opts.log) opts.log(s);
  };
  check_solver(opts.solver, 1, 1);
  SLM_CHECK(opts.lm_head_bits == 16 || opts.lm_head_bits == 8 || opts.lm_head_bits == 4,
            "gptq: lm_head bits {} unsupported (16 keeps it as it is; 8 or 4 quantize it)", opts.lm_head_bits);
  SLM_CHECK(!opts.lm_head || opts.lm_head_bits == 16 || opts.lm_head_bits == opts.solver.bits,
            "gptq: lm_head quantization requested with the model's {} bits and with {} bits; give one of them",
            opts.solver.bits, opts.lm_head_bits);
  // Explicit bits quantize a tied head too (untying it); the plain flag only an untied one.
  const bool quant_head = opts.lm_head_bits != 16 || (opts.lm_head && !m.config().tied_embeddings);
  const int head_bits = opts.lm_head_bits != 16 ? opts.lm_head_bits : opts.solver.bits;
  if (quant_head) {
    // Checked before the (long) quantization of the layers: qzeros pack 32/bits columns per word.
    const int64_t per_word = 32 / head_bits;
    SLM_CHECK(m.config().n_vocab % per_word == 0,
              "gptq: cannot quantize lm_head to {} bits: the vocabulary of {} rows is not a multiple of {} "
              "(qzeros pack {} output columns per int32)", head_bits, m.config().n_vocab, per_word, per_word);
  }
  std::unique_ptr<Model> work = clone_model_f32(m, opts.lora, opts.lora_scale);
  const ModelConfig& cfg = work->config();

  std::vector<std::vector<int32_t>> samples = opts.calibration;
  if (!opts.rtn && samples.empty()) {
    SLM_CHECK(!opts.calibration_text.empty(), "gptq: no calibration data (give a calibration text)");
    samples = calibration_samples(work->tokenizer(), opts.calibration_text, opts.n_samples, opts.seq_len);
  }
  GptqQuantizeReport report;
  for (const auto& s : samples) report.calibration_tokens += int64_t(s.size());
  if (!opts.rtn) log(fmt::format("gptq: {} calibration sequences, {} tokens", samples.size(), report.calibration_tokens));

  struct Done {
    std::string prefix;
    GptqPacked packed;
  };
  std::vector<Done> done;
  auto qk_rows = [&](int64_t rows) {
    std::vector<int32_t> p(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      p[size_t(r)] = int32_t(cfg.rope_style == RopeStyle::Interleaved ? hf_to_gguf_qk_row(r, cfg.head_dim) : r);
    return p;
  };

  auto quantize_slot = [&](int64_t layer, LinearSlot slot, const std::vector<double>* H, int bits) {
    const auto t0 = Clock::now();
    const WeightTensor& wt = slot_weight(*work, layer, slot);
    // The working copy owns its F32 storage (clone_model_f32), so it may be updated in place:
    // later layers then see the quantized weights.
    float* w = static_cast<float*>(const_cast<void*>(wt.data));
    GptqSolverOptions so = opts.solver;
    so.bits = bits;
    GptqResult res = (opts.rtn || H == nullptr) ? rtn_quantize_weight(w, wt.rows, wt.cols, so)
                                                : gptq_quantize_weight(w, wt.rows, wt.cols, *H, so);
    std::vector<float> w_hat = res.dequantize();
    double err;
    if (H) {
      err = weighted_rel_error(w, w_hat.data(), wt.rows, wt.cols, *H);
    } else {  // no calibration data: plain weight-space error
      double num = 0, den = 0;
      for (size_t i = 0; i < w_hat.size(); ++i) num += double(w[i] - w_hat[i]) * (w[i] - w_hat[i]), den += double(w[i]) * w[i];
      err = den > 0 ? std::sqrt(num / den) : 0;
    }
    // Later layers must see the quantized weights; the output projection is the last matrix, and
    // when tied its storage is the embedding, which is written unquantized.
    if (slot != LinearSlot::Output) std::copy(w_hat.begin(), w_hat.end(), w);
    const bool qk = slot == LinearSlot::Q || slot == LinearSlot::K;
    const std::string prefix = slot == LinearSlot::Output ? std::string("lm_head")
                                                          : fmt::format("model.layers.{}.{}", layer, hf_module(slot));
    done.push_back({prefix, gptq_pack(res, qk ? qk_rows(wt.rows) : std::vector<int32_t>{})});
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    report.tensors.push_back({prefix, bits, opts.solver.group_size, err, secs});
    log(fmt::format("  {:<36} {} bits  group {:>4}  rel.err {:.5f}  {:.2f} s", prefix, bits, opts.solver.group_size, err,
                    secs));
  };

  using S = LinearSlot;
  const std::vector<std::vector<S>> seq_groups = {{S::Q, S::K, S::V}, {S::O}, {S::Gate, S::Up}, {S::Down}};
  const std::vector<std::vector<S>> one_group = {{S::Q, S::K, S::V, S::O, S::Gate, S::Up, S::Down}};
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    log(fmt::format("gptq: layer {}/{}", l + 1, cfg.n_layers));
    for (const auto& grp : opts.true_sequential ? seq_groups : one_group) {
      std::vector<HessianAccumulator> acc(4);
      if (!opts.rtn) {
        run_calibration(
            *work, samples,
            [&](int64_t layer, LinearInputClass c) -> HessianAccumulator* {
              if (layer != l) return nullptr;
              for (S s : grp)
                if (input_class(s) == c) return &acc[size_t(c)];
              return nullptr;
            },
            std::make_pair(l, grp.back()));
      }
      std::vector<std::vector<double>> H(4);
      for (S s : grp) {
        const size_t c = size_t(input_class(s));
        if (!opts.rtn && H[c].empty()) H[c] = acc[c].finish();
        quantize_slot(l, s, opts.rtn ? nullptr : &H[c], opts.solver.bits);
      }
    }
  }
  if (quant_head) {
    log("gptq: lm_head");
    HessianAccumulator acc;
    if (!opts.rtn)
      run_calibration(
          *work, samples,
          [&](int64_t layer, LinearInputClass) -> HessianAccumulator* { return layer < 0 ? &acc : nullptr; },
          std::nullopt);
    std::vector<double> H = opts.rtn ? std::vector<double>{} : acc.finish();
    quantize_slot(-1, S::Output, opts.rtn ? nullptr : &H, head_bits);
  }

  // ---- the directory: config + tokenizer through the HF exporter, then our safetensors ----
  std::string tok_dir = opts.tokenizer_dir;
  if (tok_dir.empty() && m.format() != "gguf" && fs::is_directory(m.path()) &&
      fs::exists(fs::path(m.path()) / "tokenizer.json"))
    tok_dir = m.path();
  HfExportOptions ho;
  ho.dtype = QType::F16;
  if (!tok_dir.empty()) {
    ho.tokenizer_json = (fs::path(tok_dir) / "tokenizer.json").string();
    if (fs::exists(fs::path(tok_dir) / "tokenizer_config.json"))
      ho.tokenizer_config_json = (fs::path(tok_dir) / "tokenizer_config.json").string();
  }
  TokenizerSpec spec;
  if (work->has_tokenizer()) spec = work->tokenizer().spec();
  // Models loaded from an HF directory compute the Llama 3 divisors from config.json in another
  // precision than the GGUF-side formula the exporter compares against (1e-7 relative): snap
  // them to the exporter's values when they agree to 1e-5, so the scaling is written back.
  ModelConfig out_cfg = cfg;
  if (quant_head) out_cfg.tied_embeddings = false;  // lm_head.* is its own tensor now
  if (!out_cfg.rope_divisors.empty()) {
    const auto l3 = llama3_rope_divisors(cfg.n_rot, cfg.rope_theta, 32.f, 1.f, 4.f, 8192.f);
    bool close = l3.size() == out_cfg.rope_divisors.size();
    for (size_t j = 0; close && j < l3.size(); ++j)
      close = std::fabs(l3[j] - out_cfg.rope_divisors[j]) <= 1e-5f * std::fabs(l3[j]);
    bool unit = true;
    for (float d : out_cfg.rope_divisors) unit &= d == 1.f;
    if (close && !unit) out_cfg.rope_divisors = l3;
  }
  export_llama_hf(EmptySource{}, out_cfg, spec, out_dir, ho);
  if (!tok_dir.empty())
    for (const char* f : {"special_tokens_map.json", "generation_config.json"})
      if (fs::exists(fs::path(tok_dir) / f)) fs::copy_file(fs::path(tok_dir) / f, fs::path(out_dir) / f, fs::copy_options::overwrite_existing);

  nlohmann::ordered_json qc;
  qc["bits"] = opts.solver.bits;
  qc["group_size"] = opts.solver.group_size;
  qc["damp_percent"] = opts.solver.damp_percent;
  qc["desc_act"] = opts.solver.desc_act;
  qc["static_groups"] = false;
  qc["sym"] = opts.solver.sym;
  qc["true_sequential"] = opts.true_sequential;
  qc["lm_head"] = quant_head;
  if (quant_head && head_bits != opts.solver.bits) {
    // GPTQModel's per-module override (a regex matched at the start of the module name).
    nlohmann::ordered_json dyn;
    dyn["+:lm_head"] = {{"bits", head_bits}};
    qc["dynamic"] = dyn;
  }
  qc["model_name_or_path"] = nullptr;
  qc["model_file_base_name"] = "model";
  qc["quant_method"] = "gptq";
  qc["checkpoint_format"] = "gptq";
  write_file_text(fs::path(out_dir) / "quantize_config.json", qc.dump(2) + "\n");
  {
    const fs::path cp = fs::path(out_dir) / "config.json";
    nlohmann::ordered_json cj = nlohmann::ordered_json::parse(read_file_text(cp));
    cj["torch_dtype"] = "float16";
    cj["quantization_config"] = qc;
    write_file_text(cp, cj.dump(2) + "\n");
  }

  // model.safetensors: linears packed, everything else FP16 (AutoGPTQ keeps the model dtype).
  std::vector<std::pair<std::string, std::vector<uint16_t>>> f16;  // name -> data
  std::vector<std::vector<int64_t>> f16_shape;
  auto add_f16 = [&](const std::string& name, const float* x, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    f16.emplace_back(name, to_f16(x, n));
    f16_shape.push_back(std::move(shape));
  };
  const Weights& W = work->weights();
  add_f16("model.embed_tokens.weight", static_cast<const float*>(W.tok_embd.data), {W.tok_embd.rows, W.tok_embd.cols});
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const LayerWeights& L = W.layers[size_t(l)];
    add_f16(fmt::format("model.layers.{}.input_layernorm.weight", l), L.attn_norm.data(), {int64_t(L.attn_norm.size())});
    add_f16(fmt::format("model.layers.{}.post_attention_layernorm.weight", l), L.ffn_norm.data(),
            {int64_t(L.ffn_norm.size())});
  }
  add_f16("model.norm.weight", W.output_norm.data(), {int64_t(W.output_norm.size())});
  if (!cfg.tied_embeddings && !quant_head)
    add_f16("lm_head.weight", static_cast<const float*>(W.output.data), {W.output.rows, W.output.cols});

  struct Entry {
    std::string name;
    st::DType dt;
    std::vector<int64_t> shape;
    const void* data;
  };
  std::vector<Entry> entries;
  for (size_t i = 0; i < f16.size(); ++i) entries.push_back({f16[i].first, st::DType::F16, f16_shape[i], f16[i].second.data()});
  for (const Done& d : done) {
    const GptqPacked& p = d.packed;
    entries.push_back({d.prefix + ".qweight", st::DType::I32, {p.k * p.bits / 32, p.n}, p.qweight.data()});
    entries.push_back({d.prefix + ".qzeros", st::DType::I32, {p.groups, p.n * p.bits / 32}, p.qzeros.data()});
    entries.push_back({d.prefix + ".scales", st::DType::F16, {p.groups, p.n}, p.scales.data()});
    entries.push_back({d.prefix + ".g_idx", st::DType::I32, {p.k}, p.g_idx.data()});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  st::Writer wr;
  wr.set_metadata("format", "pt");
  wr.set_metadata("gptq_bits", std::to_string(opts.solver.bits));
  wr.set_metadata("gptq_group_size", std::to_string(opts.solver.group_size));
  wr.set_metadata("gptq_desc_act", opts.solver.desc_act ? "True" : "False");
  wr.set_metadata("gptq_damp_percent", fmt::format("{}", opts.solver.damp_percent));
  wr.set_metadata("gptq_checkpoint_format", "gptq");
  wr.set_metadata("gptq_quant_method", "gptq");
  for (const Entry& e : entries) wr.add(e.name, e.dt, e.shape, e.data);
  wr.write((fs::path(out_dir) / "model.safetensors").string());
  report.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  log(fmt::format("gptq: wrote {} ({} linears, {:.1f} s)", out_dir, done.size(), report.seconds));
  return report;
}

}  // namespace slm
