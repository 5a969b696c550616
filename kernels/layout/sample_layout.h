// Top-k sampling on the device (kernels/cuda/ops.cu: sample_top_k) written as SLM_HD pieces, so
// that tests/runtime/device_sampler_test.cpp runs the very same candidate order, sorting network,
// block slicing and softmax / top-p / min-p / draw code on the CPU against slm::Sampler.
//
// What the device reproduces of runtime/sampler.cpp (repetition penalty off, temperature > 0,
// 1 <= top_k <= kSampleMaxTopK): the candidates are the top_k logits in the order of Sampler's
// `by_logit` (larger logit first, the smaller id first on equal logits; -0 == +0), then the same
// operations in the same order and precision: softmax at temperature 1 ((l - max) / 1 in float,
// exp in float, sum in double from the best candidate down, each probability float(p / sum)),
// top-p (double cumulative sum, keep through the first index where it reaches top_p, only when
// top_p < 1), min-p (float threshold p[0] * min_p, keep while p[i] >= it, only when min_p > 0),
// softmax at the temperature over the survivors, and the draw: the first candidate whose
// double cumulative probability exceeds u, else the last. u is the double Sampler draws from its
// mt19937_64 (std::uniform_real_distribution<double>(0, 1)).
//
// The one difference is exp: the host spelling is std::exp(float) (glibc's expf, what Sampler
// calls); the device has no bit-identical expf, so it rounds CUDA's double exp to float, which is
// the correctly rounded result except for inputs within ~2^-29 ulp of a rounding boundary. glibc's
// expf is documented at <= 0.502 ulp, i.e. it, too, is correctly rounded nearly always; where the
// two differ a probability moves by one float ulp (2^-24 relative), which changes the token only
// when u or a top-p / min-p threshold falls within that distance of a boundary. NaN logits are
// outside the contract (Sampler's own sort has no strict order with NaNs either).
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/layout/hd.h"

namespace slm::layout {

// Largest top_k the device sampler takes. llama.cpp's default is 40 and common settings stay
// under 100; 128 keeps at least 1024 - 128 - 512 = 384 free slots per sort of the candidate buffer
// (below), lets one thread of the final block own one candidate (128 <= kSampleThreads), and keeps
// the candidate workspace at blocks x 1 KiB.
inline constexpr int kSampleMaxTopK = 128;
// Candidate buffer of one block (shared memory, 8 KiB of (logit, id)), a power of two for the
// bitonic network; kSampleThreads = half of it: one compare-exchange per thread per network step.
inline constexpr int kSampleBuf = 1024;
inline constexpr int kSampleThreads = kSampleBuf / 2;
// Cap of the first pass's grid: the second pass reads blocks x top_k candidates in one block.
inline constexpr int kSampleMaxBlocks = 64;
// Empty slots hold (-inf, kSamplePadId): after every real candidate, -inf ones included (their
// ids are smaller), and never before the threshold when that is itself a pad.
inline constexpr int32_t kSamplePadId = INT32_MAX;

// Sampler parameters the device applies (SamplerParams minus the penalty and the seed).
struct SampleConfig {
  int32_t top_k = 40;
  float temperature = 0.8f;
  float top_p = 0.95f;
  float min_p = 0.05f;
};

// Sampler's by_logit: a goes before b.
SLM_HD bool cand_before(float la, int32_t ia, float lb, int32_t ib) {
  return la > lb || (la == lb && ia < ib);
}

// First-pass grid: one block per SM (the pass is a latency-bound read of 4 B per vocabulary entry:
// 40 blocks on a T4 read the 128256 logits of Llama 3 at ~3.2 k entries each), no more blocks
// than buffers' worth of entries, at most kSampleMaxBlocks.
SLM_HD int sample_blocks(int64_t n, int sm_count) {
  int64_t b = (n + kSampleBuf - 1) / kSampleBuf;
  if (b > sm_count) b = sm_count;
  if (b > kSampleMaxBlocks) b = kSampleMaxBlocks;
  return b < 1 ? 1 : int(b);
}

// Entries [begin, end) of block b of `blocks` (equal slices; trailing blocks may be empty).
SLM_HD void sample_slice(int64_t n, int blocks, int b, int64_t& begin, int64_t& end) {
  const int64_t per = (n + blocks - 1) / blocks;
  begin = int64_t(b) * per;
  if (begin > n) begin = n;
  end = begin + per;
  if (end > n) end = n;
}

// The buffer holds the current top k, sorted, in [0, k) and new entries from slot k on; `fill`
// counts those. Before a round of kSampleThreads entries the block sorts (and keeps the top k)
// when the round might not fit.
SLM_HD bool sample_flush_before_round(int fill, int k) { return fill > kSampleBuf - k - kSampleThreads; }

// Entries the sort must cover: the smallest power of two >= k + fill (>= 2). Slots past it hold
// pads, so sorting only the prefix orders the whole buffer.
SLM_HD int sample_sort_span(int used) {
  int p = 2;
  while (p < used) p <<= 1;
  return p;
}

// One compare-exchange of the bitonic network that sorts v/id[0, span) best first. Stage `size`
// (2, 4, ..., span), distance j (size/2, ..., 1); thread t < span/2 owns the pair (i, i + j) with
// i = the t-th index whose bit j is clear. The pair is put best-first where bit `size` of i is
// clear and worst-first where it is set, so runs of 2 size are bitonic for the next stage; at
// size == span every pair is best-first.
SLM_HD void bitonic_step(float* v, int32_t* id, int t, int size, int j) {
  const int i = 2 * (t & ~(j - 1)) | (t & (j - 1));
  const int l = i + j;
  const bool best_first = (i & size) == 0;
  const bool swap = best_first ? cand_before(v[l], id[l], v[i], id[i]) : cand_before(v[i], id[i], v[l], id[l]);
  if (swap) {
    const float tv = v[i];
    v[i] = v[l];
    v[l] = tv;
    const int32_t ti = id[i];
    id[i] = id[l];
    id[l] = ti;
  }
}

// exp of a softmax term (see the header comment for why the spellings differ).
SLM_HD float sample_exp(float x) {
#if defined(__CUDA_ARCH__)
  return float(exp(double(x)));
#else
  return std::exp(x);
#endif
}

// Unnormalized probability of a candidate: exp((logit - max) / temp) in float, as Sampler.
SLM_HD float softmax_term(float logit, float mx, float temp) { return sample_exp((logit - mx) / temp); }

// Sum of p[0, m) in double, in index order.
SLM_HD double sum_terms(const float* p, int m) {
  double s = 0;
  for (int i = 0; i < m; ++i) s += p[i];
  return s;
}

SLM_HD float normalize_term(float p, double sum) { return float(p / sum); }

// Candidates kept by top-p (all when top_p >= 1).
SLM_HD int top_p_keep(const float* p, int m, float top_p) {
  if (!(top_p < 1.f)) return m;
  double cum = 0;
  for (int i = 0; i < m; ++i) {
    cum += p[i];
    if (cum >= top_p) return i + 1;
  }
  return m;
}

// Candidates kept by min-p (all when min_p <= 0; always the first).
SLM_HD int min_p_keep(const float* p, int m, float min_p) {
  if (!(min_p > 0.f)) return m;
  const float thr = p[0] * min_p;
  int keep = 1;
  while (keep < m && p[keep] >= thr) ++keep;
  return keep;
}

// The draw: the first candidate whose double cumulative probability exceeds u, else the last.
SLM_HD int32_t draw_candidate(const float* p, const int32_t* id, int m, double u) {
  double cum = 0;
  for (int i = 0; i < m; ++i) {
    cum += p[i];
    if (u < cum) return id[i];
  }
  return id[m - 1];
}

// The whole sampling step on sorted candidates v/id[0, m), one step after another, as the final
// block of the device runs it with one thread per candidate for the elementwise steps (p: m
// floats of scratch). Host composition for the CPU tests; the kernel composes the same helpers.
inline int32_t sample_sorted(const float* v, const int32_t* id, float* p, int m, const SampleConfig& c, double u) {
  const float mx = v[0];
  for (int i = 0; i < m; ++i) p[i] = softmax_term(v[i], mx, 1.f);
  double sum = sum_terms(p, m);
  for (int i = 0; i < m; ++i) p[i] = normalize_term(p[i], sum);
  m = min_p_keep(p, top_p_keep(p, m, c.top_p), c.min_p);
  for (int i = 0; i < m; ++i) p[i] = softmax_term(v[i], mx, c.temperature);
  sum = sum_terms(p, m);
  for (int i = 0; i < m; ++i) p[i] = normalize_term(p[i], sum);
  return draw_candidate(p, id, m, u);
}

}  // namespace slm::layout
