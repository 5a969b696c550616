// Throughput of the single AVX2 instructions the int8 and float kernels are built from, on this
// core: the numbers behind the AVX2 design choices in docs/cpu-kernels.md (which 128-bit lane
// move to use, whether a horizontal add is cheaper than a transpose, how many multiplies a dot
// costs). Each instruction runs in 8 independent chains (throughput, not latency); the clock is
// estimated from a dependent chain of vpaddd (latency 1 cycle on every AVX2 core), so the table
// reads in cycles per instruction. Compiled with -mavx2 -mfma -mf16c (perf/CMakeLists.txt);
// exits with a message on a CPU without them.
//
//   bench_avx2_ops [--iters N]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// ns per instruction of op over 8 independent chains, best of 5 runs (the least disturbed).
template <class Op>
double ns_per_op(long iters, Op op) {
  double best = 1e30;
  for (int run = 0; run < 5; ++run) {
    __m256i a0 = _mm256_set1_epi32(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0;
    __m256i k = _mm256_set1_epi32(3);
    asm volatile("" : "+x"(k));
    const auto t0 = Clock::now();
    for (long i = 0; i < iters; ++i) {
      a0 = op(a0, k), a1 = op(a1, k), a2 = op(a2, k), a3 = op(a3, k);
      a4 = op(a4, k), a5 = op(a5, k), a6 = op(a6, k), a7 = op(a7, k);
      asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6),
                   "+x"(a7));
    }
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    best = std::min(best, ns / double(iters) / 8.0);
  }
  return best;
}

// ns per cycle: one dependent vpaddd per cycle.
double ns_per_cycle(long iters) {
  double best = 1e30;
  for (int run = 0; run < 5; ++run) {
    __m256i a = _mm256_set1_epi32(1), k = _mm256_set1_epi32(3);
    asm volatile("" : "+x"(k));
    const auto t0 = Clock::now();
    for (long i = 0; i < iters; ++i) {
      a = _mm256_add_epi32(a, k);
      asm volatile("" : "+x"(a));
      a = _mm256_add_epi32(a, k);
      asm volatile("" : "+x"(a));
      a = _mm256_add_epi32(a, k);
      asm volatile("" : "+x"(a));
      a = _mm256_add_epi32(a, k);
      asm volatile("" : "+x"(a));
    }
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    best = std::min(best, ns / double(iters) / 4.0);
  }
  return best;
}

__m256 f(__m256i v) { return _mm256_castsi256_ps(v); }
__m256i i(__m256 v) { return _mm256_castps_si256(v); }

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
      !__builtin_cpu_supports("f16c")) {
    std::fprintf(stderr, "error: this CPU has no AVX2 + FMA + F16C\n");
    return 1;
  }
  long iters = 20000000;
  for (int a = 1; a < argc; ++a) {
    if (!std::strcmp(argv[a], "--iters") && a + 1 < argc) {
      iters = std::atol(argv[++a]);
    } else {
      std::fprintf(stderr, "usage: bench_avx2_ops [--iters N]\n");
      return 2;
    }
  }
  if (iters < 1000) iters = 1000;
  const double cyc = ns_per_cycle(iters);
  std::printf("clock estimate %.2f GHz (dependent vpaddd chain)\n", 1.0 / cyc);
  std::printf("%-38s %10s %10s\n", "instruction (256-bit)", "ns/instr", "cycles");
  struct Row {
    const char* name;
    double ns;
  };
  std::vector<Row> rows = {
      {"vpaddd", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_add_epi32(a, k); })},
      {"vpaddw", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_add_epi16(a, k); })},
      {"vpmaddubsw", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_maddubs_epi16(a, k); })},
      {"vpmaddwd", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_madd_epi16(a, k); })},
      {"vpsignb", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_sign_epi8(a, k); })},
      {"vpshufb", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_shuffle_epi8(a, k); })},
      {"vpsrlw imm", ns_per_op(iters, [](__m256i a, __m256i) { return _mm256_srli_epi16(a, 4); })},
      {"vpand", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_and_si256(a, k); })},
      {"vpunpcklqdq", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_unpacklo_epi64(a, k); })},
      {"vphaddd", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_hadd_epi32(a, k); })},
      {"vperm2i128 (lanes a.lo,b.lo)",
       ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_permute2x128_si256(a, k, 0x20); })},
      {"vperm2i128 (lanes a.hi,b.hi)",
       ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_permute2x128_si256(a, k, 0x31); })},
      {"vinserti128 (lanes a.lo,b.lo)",
       ns_per_op(iters, [](__m256i a, __m256i k) {
         return _mm256_inserti128_si256(a, _mm256_castsi256_si128(k), 1);
       })},
      {"vextracti128+vinserti128 (a.hi,b.hi)",
       ns_per_op(iters, [](__m256i a, __m256i k) {
         return _mm256_inserti128_si256(k, _mm256_extracti128_si256(a, 1), 0);
       })},
      {"vpermd", ns_per_op(iters, [](__m256i a, __m256i k) { return _mm256_permutevar8x32_epi32(a, k); })},
      {"vpermq imm", ns_per_op(iters, [](__m256i a, __m256i) { return _mm256_permute4x64_epi64(a, 0x4E); })},
      {"vcvtdq2ps", ns_per_op(iters, [](__m256i a, __m256i) { return i(_mm256_cvtepi32_ps(a)); })},
      {"vcvtph2ps", ns_per_op(iters, [](__m256i a, __m256i) {
         return i(_mm256_cvtph_ps(_mm256_castsi256_si128(a)));
       })},
      {"vfmadd231ps", ns_per_op(iters, [](__m256i a, __m256i k) {
         return i(_mm256_fmadd_ps(f(a), f(k), f(a)));
       })},
  };
  for (const Row& r : rows) std::printf("%-38s %10.3f %10.2f\n", r.name, r.ns, r.ns / cyc);
  return 0;
}
