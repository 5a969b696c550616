// Benchmark of the CPU matrix kernels (kernels/cpu/linear.h): every weight type x ISA x the
// Llama-3.2-1B projection shapes x batch 1 (decode, GEMV) and 64 (prefill, GEMM). Prints median
// time, GB/s of weight bytes, GFLOP/s and the percentage of the machine's read bandwidth, which
// the program measures itself (a STREAM-style read of a buffer much larger than the LLC with the
// same thread count). Weights are cycled through enough copies to exceed the LLC, so every call
// streams its weights from DRAM as it does in a real forward pass.
//
//   bench_cpu_linear [--threads N] [--types Q4_0,Q8_0,...] [--isa avx2,avx512] [--reps R]
//                    [--batch 1,64] [--shapes 2048x8192,...] [--quick] [--hot]
// --hot: a single weight copy (cache-resident when it fits the LLC): the compute limit of a kernel.
// --onednn: F32/F16/BF16 prefill (default batches 16,64,256) against oneDNN (see bench_onednn).
// Columns: median_ms / min_ms wall time per call; GB/s and %BW from the median; cpu_ms = process
// CPU time per call / threads (robust to other processes on a shared machine; run with
// OMP_WAIT_POLICY=passive so barrier waits do not count), cpuGB/s and cpu%BW (against the
// bandwidth measured the same way).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"
#include "perf/list_arg.h"
#include "kernels/cpu/peak.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/linear_internal.h"
#include "kernels/quant/types.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if SLM_HAVE_ONEDNN
#include <dnnl.h>
#include <dnnl.hpp>
#endif

namespace {

using namespace slm;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of the whole process: on a shared machine, wall time includes time the scheduler gave
// to other processes; CPU time / threads does not (it does include OpenMP barrier spinning).
double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Read bandwidth in GB/s: sum 64-bit words of a 1 GiB buffer (integer sums vectorise without
// -ffast-math), best of 3 passes, over the current OpenMP thread count. Returns the wall-time
// figure and sets `cpu_bw` to bytes / (process CPU time / threads).
double measure_read_bandwidth(int threads, double& cpu_bw) {
  const size_t words = (size_t(1) << 30) / 8;
  std::vector<uint64_t> buf(words);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < words; ++i) buf[i] = i * 0x9E3779B97F4A7C15ULL;
  double best = 0;
  cpu_bw = 0;
  uint64_t sink = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const double c0 = process_cpu_seconds();
    const auto t0 = Clock::now();
    uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      // Four independent sums per thread so the loop issues loads, not a dependency chain.
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp for schedule(static)
      for (size_t i = 0; i < words; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      total += s0 + s1 + s2 + s3;
    }
    const double s = seconds_since(t0);
    const double c = (process_cpu_seconds() - c0) / threads;
    sink += total;
    best = std::max(best, double(words * 8) / s / 1e9);
    cpu_bw = std::max(cpu_bw, double(words * 8) / c / 1e9);
  }
  if (sink == 42) std::printf(" ");
  return best;
}

struct Shape {
  int64_t n, k;
  const char* name;
};

#if SLM_HAVE_ONEDNN
// fp16 -> f32 with F16C, 8 per instruction (the cost a oneDNN path for F16 weights would pay per
// weight element and call, unless it kept an f32 copy of the weights).
__attribute__((target("avx2,f16c"))) void fp16_to_f32_f16c(const uint16_t* h, float* f,
                                                            int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(f + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  for (; i < n; ++i) f[i] = fp16_to_f32(h[i]);
}

// --onednn: prefill GEMM of F32 / F16 / BF16 weights, ours (linear() with the given precision)
// against oneDNN: F32 -> f32 matmul primitive (dnnl_sgemm with SLM_BENCH_SGEMM=1); F16 -> F16C
// fp16->f32 conversion of the whole weight (timed separately: oneDNN 2.6 has no f16 GEMM on CPUs
// without AVX512-FP16) + the f32 matmul; BF16 -> a
// matmul primitive with bf16 weights and bf16-rounded activations (= ActPrecision::LlamaCpp),
// f32 output. Variants alternate per repetition (A B A B ...); medians of process CPU time per
// call / threads; the weights stay cache-resident across calls for the small shapes, which is what
// a compute-bound GEMM sees anyway (m = 64 reads each weight byte once per 64 tokens).
void bench_onednn(const std::vector<QType>& types, const std::vector<Shape>& shapes,
                  const std::vector<int64_t>& batches, int threads, int reps, cpu::Isa isa,
                  bool sgemm) {
  std::printf("oneDNN %d.%d.%d comparison, threads %d, isa %s: GFLOP/s from CPU time (ms/call)\n",
              DNNL_VERSION_MAJOR, DNNL_VERSION_MINOR, DNNL_VERSION_PATCH, threads,
              std::string(cpu::isa_name(isa)).c_str());
  std::printf("%-5s %6s %6s %4s %-9s %16s %16s %16s %16s\n", "type", "n", "k", "m", "prec",
              "ours", "onednn", "conv_ms", "onednn+conv");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  cpu::Workspace ws;
  for (QType type : types) {
    if (type != QType::F32 && type != QType::F16 && type != QType::BF16) continue;
    for (const Shape& sh : shapes) {
      const size_t nk = size_t(sh.n) * size_t(sh.k);
      std::vector<float> wf(nk);
      for (auto& v : wf) v = nd(rng) * 0.05f;
      std::vector<uint8_t> w(row_bytes(type, sh.k) * size_t(sh.n));
      for (int64_t r = 0; r < sh.n; ++r)
        quantize_row(type, wf.data() + size_t(r) * size_t(sh.k),
                     w.data() + size_t(r) * row_bytes(type, sh.k), sh.k);
      std::vector<float> wconv(type == QType::F16 ? nk : 0);
      for (int64_t m : batches) {
        ws.reserve(cpu::linear_workspace_bytes(m, sh.k));
        std::vector<float> x(size_t(m * sh.k)), y(size_t(m * sh.n)), y2(size_t(m * sh.n));
        for (auto& v : x) v = nd(rng);
        std::vector<uint16_t> xb(type == QType::BF16 ? x.size() : 0);
        // BF16: matmul primitive src bf16 [m, k], weights bf16 [k, n] stored as W[n, k] (ba).
        dnnl::matmul bf_prim;
        dnnl::memory bf_src, bf_wei, bf_dst;
        if (type == QType::BF16) {
          using dt = dnnl::memory::data_type;
          using tag = dnnl::memory::format_tag;
          dnnl::memory::desc src_md({m, sh.k}, dt::bf16, tag::ab);
          dnnl::memory::desc wei_md({sh.k, sh.n}, dt::bf16, tag::ba);
          dnnl::memory::desc dst_md({m, sh.n}, dt::f32, tag::ab);
          bf_prim = dnnl::matmul(dnnl::matmul::primitive_desc(
              dnnl::matmul::desc(src_md, wei_md, dst_md), eng));
          bf_src = dnnl::memory(src_md, eng, xb.data());
          bf_wei = dnnl::memory(wei_md, eng, w.data());
          bf_dst = dnnl::memory(dst_md, eng, y2.data());
        }
        // F32 / F16 (converted): matmul primitive on f32 (brgemm kernels; dnnl_sgemm measured
        // 3x slower on this machine), weights [k, n] stored as W[n, k].
        dnnl::matmul f_prim;
        dnnl::memory f_src, f_wei, f_dst;
        if (type != QType::BF16) {
          using dt = dnnl::memory::data_type;
          using tag = dnnl::memory::format_tag;
          dnnl::memory::desc src_md({m, sh.k}, dt::f32, tag::ab);
          dnnl::memory::desc wei_md({sh.k, sh.n}, dt::f32, tag::ba);
          dnnl::memory::desc dst_md({m, sh.n}, dt::f32, tag::ab);
          f_prim = dnnl::matmul(dnnl::matmul::primitive_desc(
              dnnl::matmul::desc(src_md, wei_md, dst_md), eng));
          f_src = dnnl::memory(src_md, eng, x.data());
          f_wei = dnnl::memory(wei_md, eng, type == QType::F16 ? static_cast<void*>(wconv.data())
                                                               : static_cast<void*>(w.data()));
          f_dst = dnnl::memory(dst_md, eng, y2.data());
        }
        const cpu::ActPrecision prec =
            type == QType::F32 ? cpu::ActPrecision::F32 : cpu::ActPrecision::LlamaCpp;
        std::vector<double> t_ours, t_dnnl, t_conv;
        for (int rep = -1; rep < reps; ++rep) {
          double c0 = process_cpu_seconds();
          cpu::LinearArgs a{type, w.data(), sh.n, sh.k, x.data(), m, y.data(), sh.n};
          cpu::detail::set_onednn_enabled(false);  // our kernel, not linear()'s oneDNN route
          cpu::linear_isa(a, ws, prec, isa);
          cpu::detail::set_onednn_enabled(true);
          const double ours = (process_cpu_seconds() - c0) / threads;
          c0 = process_cpu_seconds();
          if (type == QType::F16) {
            const auto* h = reinterpret_cast<const uint16_t*>(w.data());
            const int64_t chunk = 65536;
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < int64_t(nk); i += chunk)
              fp16_to_f32_f16c(h + i, wconv.data() + i, std::min<int64_t>(chunk, int64_t(nk) - i));
          } else if (type == QType::BF16) {
            // LlamaCpp precision: activations rounded to bf16 (the weights are bf16 already).
            for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
          }
          const double conv = (process_cpu_seconds() - c0) / threads;
          c0 = process_cpu_seconds();
          if (type == QType::BF16) {
            bf_prim.execute(strm, {{DNNL_ARG_SRC, bf_src},
                                   {DNNL_ARG_WEIGHTS, bf_wei},
                                   {DNNL_ARG_DST, bf_dst}});
            strm.wait();
          } else if (sgemm) {
            const float* wp =
                type == QType::F16 ? wconv.data() : reinterpret_cast<const float*>(w.data());
            SLM_CHECK(dnnl_sgemm('N', 'T', m, sh.n, sh.k, 1.f, x.data(), sh.k, wp, sh.k, 0.f,
                                 y2.data(), sh.n) == dnnl_success,
                      "dnnl_sgemm failed");
          } else {
            f_prim.execute(strm, {{DNNL_ARG_SRC, f_src},
                                  {DNNL_ARG_WEIGHTS, f_wei},
                                  {DNNL_ARG_DST, f_dst}});
            strm.wait();
          }
          const double dn = (process_cpu_seconds() - c0) / threads;
          if (rep >= 0) {
            t_ours.push_back(ours);
            t_dnnl.push_back(dn);
            t_conv.push_back(conv);
          }
        }
        // Sanity: the two products agree to float accuracy (bf16: both use bf16 inputs).
        double maxdiff = 0, maxy = 0;
        for (size_t i = 0; i < y.size(); ++i) {
          maxdiff = std::max(maxdiff, double(std::abs(y[i] - y2[i])));
          maxy = std::max(maxy, double(std::abs(y[i])));
        }
        SLM_CHECK(maxdiff <= 1e-3 * maxy + 1e-3, "oneDNN and linear() disagree: {} (max |y| {})",
                  maxdiff, maxy);
        auto med = [](std::vector<double> v) {
          std::sort(v.begin(), v.end());
          return v[v.size() / 2];
        };
        const double flop = 2.0 * double(nk) * double(m);
        const double o = med(t_ours), d = med(t_dnnl), c = med(t_conv);
        std::printf(
            "%-5s %6lld %6lld %4lld %-9s %7.1f (%6.2f) %7.1f (%6.2f) %16.3f %7.1f (%6.2f)\n",
            std::string(qtype_name(type)).c_str(), (long long)sh.n, (long long)sh.k, (long long)m,
            type == QType::F32 ? "f32" : "llamacpp", flop / o / 1e9, o * 1e3, flop / d / 1e9,
            d * 1e3, c * 1e3, flop / (d + c) / 1e9, (d + c) * 1e3);
        std::fflush(stdout);
      }
    }
  }
}
#endif

}  // namespace

int main(int argc, char** argv) try {
  int threads = 0, reps = 7;
  bool quick = false;
  bool hot = false;  // one weight copy, so it stays in the LLC: measures the kernels' compute limit
  bool onednn = false;  // compare the float-weight prefill GEMM with oneDNN instead
  std::vector<std::string> shape_filter;  // "NxK" entries
  std::vector<std::string> type_names, isa_names;
  std::vector<int64_t> batches = {1, 64};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      SLM_CHECK(i + 1 < argc, "missing value after {}", a);
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::atoi(val().c_str());
    else if (a == "--types")
      type_names = perf::split_list(val());
    else if (a == "--isa")
      isa_names = perf::split_list(val());
    else if (a == "--reps")
      reps = std::max(1, std::atoi(val().c_str()));
    else if (a == "--batch") {
      batches.clear();
      for (const auto& b : perf::split_list(val())) batches.push_back(std::atoll(b.c_str()));
    } else if (a == "--quick")
      quick = true;
    else if (a == "--hot")
      hot = true;
    else if (a == "--onednn")
      onednn = true;
    else if (a == "--shapes")
      shape_filter = perf::split_list(val());
    else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_cpu_linear [--threads N] [--types list] [--isa list] [--reps R] "
          "[--batch 1,64] [--shapes NxK,...] [--quick] [--hot] [--onednn]\n");
      return 0;
    } else
      fail("unknown argument '{}'", a);
  }
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
  threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  if (quick) reps = std::min(reps, 3);

  std::vector<QType> types;
  if (type_names.empty()) {
    for (const auto& info : all_qtypes())
      if (!info.is_activation_only) types.push_back(info.type);
  } else {
    for (const auto& n : type_names) {
      auto t = qtype_from_name(n);
      SLM_CHECK(t.has_value(), "unknown type '{}'", n);
      types.push_back(*t);
    }
  }
  std::vector<cpu::Isa> isas;
  if (isa_names.empty()) {
    for (cpu::Isa i : {cpu::Isa::AVX2, cpu::Isa::AVX512})
      if (int(i) <= int(cpu::detected_isa())) isas.push_back(i);
  } else {
    for (const auto& n : isa_names) isas.push_back(cpu::parse_isa(n));
  }
  std::vector<Shape> shapes = {{2048, 2048, "attn q/o"},
                               {512, 2048, "attn k/v"},
                               {8192, 2048, "ffn gate/up"},
                               {2048, 8192, "ffn down"},
                               {128256, 2048, "lm_head"}};
  if (quick) shapes = {{8192, 2048, "ffn gate/up"}, {2048, 8192, "ffn down"}};
  if (!shape_filter.empty()) {
    shapes.clear();
    for (const auto& f : shape_filter) {
      const size_t x = f.find('x');
      SLM_CHECK(x != std::string::npos, "--shapes entries are NxK, got '{}'", f);
      shapes.push_back(
          {std::atoll(f.substr(0, x).c_str()), std::atoll(f.substr(x + 1).c_str()), ""});
    }
  }

  if (onednn) {
#if SLM_HAVE_ONEDNN
    if (type_names.empty()) types = {QType::F32, QType::F16, QType::BF16};
    if (batches.size() == 2 && batches[0] == 1) batches = {16, 64, 256};
    const bool sgemm = std::getenv("SLM_BENCH_SGEMM") != nullptr;
    for (cpu::Isa isa : isas) bench_onednn(types, shapes, batches, threads, reps, isa, sgemm);
    return 0;
#else
    fail("--onednn: built without oneDNN (SLM_ONEDNN=OFF)");
#endif
  }

  double cpu_bw = 0;
  const double bw = measure_read_bandwidth(threads, cpu_bw);
  std::printf(
      "threads %d, detected ISA %s, measured read bandwidth %.1f GB/s (wall), %.1f GB/s "
      "(CPU time)\n",
      threads, std::string(cpu::isa_name(cpu::detected_isa())).c_str(), bw, cpu_bw);
  // %peak: GFLOP/s against `threads` cores' peak of the instruction class the type's kernel
  // uses (F32 FMA for F32/F16, bf16 dot = 2 FMA lanes for BF16 on AVX-512, int8 dot otherwise).
  std::vector<cpu::ComputePeak> peaks(3);
  for (cpu::Isa isa : isas) {
    const cpu::ComputePeak pk = cpu::measure_compute_peak(isa);
    peaks[size_t(isa)] = pk;
    std::printf("compute peak %s, 1 core: F32 FMA %.1f GFLOP/s, int8 dot %.1f GOP/s\n",
                std::string(cpu::isa_name(isa)).c_str(), pk.f32_gflops, pk.int8_gops);
  }
  auto peak_of = [&](QType t, cpu::Isa isa) {
    const cpu::ComputePeak& pk = peaks[size_t(isa)];
    if (t == QType::F32 || t == QType::F16) return pk.f32_gflops * threads;
    if (t == QType::BF16) return pk.f32_gflops * threads * (isa == cpu::Isa::AVX512 && cpu::cpu_has_avx512_bf16() ? 2 : 1);
    return pk.int8_gops * threads;
  };
  std::printf("%-7s %-7s %7s %6s %4s %10s %8s %9s %6s %6s %8s %8s %9s %7s\n", "type", "isa", "n", "k",
              "m", "median_ms", "GB/s", "GFLOP/s", "%BW", "%peak", "min_ms", "cpu_ms", "cpuGB/s", "cpu%BW");

  cpu::Workspace ws;
  int64_t max_m = *std::max_element(batches.begin(), batches.end());
  ws.reserve(cpu::linear_workspace_bytes(max_m, 8192));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);

  for (QType type : types) {
    for (const Shape& sh : shapes) {
      const size_t rb = row_bytes(type, sh.k);
      const size_t bytes = rb * size_t(sh.n);
      // Quantize 64 distinct rows and tile them: realistic codes without quantizing 10^8 values.
      std::vector<uint8_t> seed_rows(rb * 64);
      {
        std::vector<float> src(size_t(sh.k));
        for (int r = 0; r < 64; ++r) {
          for (auto& v : src) v = nd(rng) * 0.05f;
          quantize_row(type, src.data(), seed_rows.data() + size_t(r) * rb, sh.k);
        }
      }
      // Enough copies that consecutive calls cannot hit in the 32+ MiB last-level cache.
      const size_t copies =
          hot ? 1 : std::max<size_t>(1, std::min<size_t>(16, (size_t(256) << 20) / bytes + 1));
      std::vector<std::vector<uint8_t>> w(copies);
      for (auto& c : w) {
        c.resize(bytes);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < sh.n; ++r)
          std::memcpy(c.data() + size_t(r) * rb, seed_rows.data() + size_t(r % 64) * rb, rb);
      }
      for (int64_t m : batches) {
        std::vector<float> x(size_t(m * sh.k)), y(size_t(m * sh.n));
        for (auto& v : x) v = nd(rng);
        for (cpu::Isa isa : isas) {
          std::vector<double> times, cpu_times;
          for (int rep = -1; rep < reps; ++rep) {
            cpu::LinearArgs a{
                type, w[size_t(rep + 1) % copies].data(), sh.n, sh.k, x.data(), m, y.data(), sh.n};
            const double c0 = process_cpu_seconds();
            const auto t0 = Clock::now();
            cpu::linear_isa(a, ws, cpu::ActPrecision::LlamaCpp, isa);
            const double s = seconds_since(t0);
            if (rep >= 0) {
              times.push_back(s);
              cpu_times.push_back((process_cpu_seconds() - c0) / threads);
            }
          }
          std::sort(times.begin(), times.end());
          std::sort(cpu_times.begin(), cpu_times.end());
          const double med = times[times.size() / 2];
          const double cpu_med = cpu_times[cpu_times.size() / 2];
          const double gbs = double(bytes) / med / 1e9;
          const double gflops = 2.0 * double(sh.n) * double(sh.k) * double(m) / med / 1e9;
          std::printf(
              "%-7s %-7s %7lld %6lld %4lld %10.3f %8.1f %9.1f %5.0f%% %5.0f%% %8.3f %8.3f %9.1f "
              "%6.0f%%\n",
              std::string(qtype_name(type)).c_str(), std::string(cpu::isa_name(isa)).c_str(),
              (long long)sh.n, (long long)sh.k, (long long)m, med * 1e3, gbs, gflops,
              100.0 * gbs / bw, peak_of(type, isa) > 0 ? 100.0 * gflops / peak_of(type, isa) : 0.0, times[0] * 1e3, cpu_med * 1e3, double(bytes) / cpu_med / 1e9,
              100.0 * double(bytes) / cpu_med / 1e9 / cpu_bw);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
} catch (const slm::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
