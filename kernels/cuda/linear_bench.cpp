// The dequantization-overhead study (docs/dequant-overhead.md), the body of
// perf/bench_cuda_linear (kept in slm_cuda and compiled by the host compiler, because nvcc
// cannot compile the fmt headers that core/error.h pulls in): times every CUDA matrix
// variant of kernels/cuda/linear_cuda.h on the Llama 3.2 1B linear shapes for M = 1..512 and
// reports µs, GB/s (compulsory bytes), TFLOP/s, % of roofline (device copy bandwidth and cuBLAS
// FP16 peak measured in the same run) and the FP16/variant time ratio.
//
// usage: bench_cuda_linear [--csv FILE] [--runs N] [--quick] [--act-order] [--naive-max-m M]
// Timing: CUDA events around each call, 5 warm-up calls, median of N (default 50) timed calls;
// weights and activations rotate over enough copies that the working set exceeds 2x the L2, so
// every call streams its weights from DRAM as in a real forward pass.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/cuda/linear_bench.h"
#include "kernels/cuda/linear_cuda.h"
#include "kernels/layout/gptq_layout.h"

namespace slm::cuda {
namespace {

struct Options {
  std::string csv;
  int runs = 50;
  bool quick = false;
  bool act_order = false;
  int naive_max_m = 64;
};

struct Shape {
  int64_t n, k;  // out_features x in_features
  const char* what;
};

const Shape kShapes[] = {
    {2048, 2048, "q_proj/o_proj"}, {512, 2048, "k_proj/v_proj"}, {8192, 2048, "gate/up_proj"},
    {2048, 8192, "down_proj"},     {128256, 2048, "lm_head"},
};
const int64_t kMs[] = {1, 2, 4, 8, 16, 32, 64, 128, 512};

// Cheap deterministic filler (the timings do not depend on the values; the weights only need to
// be finite so no NaN/Inf slow path is measured).
struct Fill {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  void bytes(uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t v = next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = uint8_t(next());
  }
  uint16_t small_half(float scale) {  // uniform in [-scale, scale]
    return f32_to_fp16(scale * (float(next() >> 40) / float(1ull << 24) * 2.0f - 1.0f));
  }
};

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

// Median time in microseconds of fn(i) over `runs` timed calls after `warmup` untimed ones.
float time_us(cudaStream_t s, int runs, const std::function<void(int)>& fn, int warmup = 5) {
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<cudaEvent_t> ev(size_t(2 * runs));
  for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * i)], s));
    fn(warmup + i);
    CUDA_CHECK(cudaEventRecord(ev[size_t(2 * i + 1)], s));
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<float> t(static_cast<size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ev[size_t(2 * i)], ev[size_t(2 * i + 1)]));
    t[size_t(i)] = ms * 1000.0f;
  }
  for (auto& e : ev) CUDA_CHECK(cudaEventDestroy(e));
  return median(t);
}

// Copies of one buffer so that `copies * bytes` exceeds the rotation target.
int copies_for(size_t bytes, size_t target) {
  if (bytes == 0) return 1;
  return int(std::clamp<size_t>((target + bytes - 1) / bytes, 1, 64));
}

struct Rotated {
  std::vector<DeviceBuffer> bufs;
  void* at(int i) const { return bufs[size_t(i) % bufs.size()].get(); }
};
Rotated make_rotated(const void* host, size_t bytes, int copies) {
  Rotated r;
  for (int c = 0; c < copies; ++c) {
    r.bufs.emplace_back(bytes);
    r.bufs.back().upload(host, bytes);
  }
  return r;
}

struct Row {
  std::string shape, variant;
  int64_t n, k, m;
  float us;
  double gbs, tflops, pct_roof, fp16_ratio;
};

std::vector<uint8_t> random_gguf(QType t, int64_t n, int64_t k, Fill& f) {
  const size_t rb = row_bytes(t, k);
  std::vector<uint8_t> w(rb * size_t(n));
  f.bytes(w.data(), w.size());
  const int bb = qtype_info(t).block_bytes;
  for (size_t off = 0; off < w.size(); off += size_t(bb)) {
    // The block scale must be a finite small half (random bytes could be Inf/NaN); Q6_K keeps it
    // at the end of its 210-byte block, the other types first.
    const uint16_t d = f.small_half(0.01f);
    std::memcpy(&w[off + (t == QType::Q6_K ? 208 : 0)], &d, 2);
    if (t == QType::Q4_K) {
      const uint16_t dmin = f.small_half(0.01f);
      std::memcpy(&w[off + 2], &dmin, 2);
    }
  }
  return w;
}

int run(const Options& opt) {
  if (device_count_or_zero() == 0) {
    std::fprintf(stderr, "error: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const DeviceInfo& di = current_device_info();
  std::printf("device: %s, sm_%d%d, %d SMs, L2 %.1f MiB, %.1f GiB\n", prop.name, di.cc_major,
              di.cc_minor, di.sm_count, di.l2_bytes / 1048576.0, double(prop.totalGlobalMem) / (1 << 30));
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CublasHandle blas;
  const size_t rotate_target = 2 * size_t(std::max(di.l2_bytes, 1 << 20));

  // Roofline inputs, measured now: device-to-device copy (read + write bytes) and the best FP16
  // cuBLAS GEMM rate on a large square problem.
  double copy_gbs = 0, peak_tflops = 0;
  {
    const size_t bytes = size_t(512) << 20;
    DeviceBuffer a(bytes), b(bytes);
    CUDA_CHECK(cudaMemsetAsync(a.get(), 0, bytes, s));
    const float us = time_us(s, 20, [&](int) {
      CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
    });
    copy_gbs = 2.0 * double(bytes) / (us * 1e3);
    const int64_t d = 8192;
    DeviceBuffer x(size_t(d * d) * 2), w(size_t(d * d) * 2), y(size_t(d * d) * 2);
    CUDA_CHECK(cudaMemsetAsync(x.get(), 0, x.bytes(), s));
    CUDA_CHECK(cudaMemsetAsync(w.get(), 0, w.bytes(), s));
    const float gus = time_us(s, 10, [&](int) {
      fp16_cublas(blas.get(), w.as<__half>(), x.as<__half>(), y.as<__half>(), d, d, d, s);
    });
    peak_tflops = 2.0 * double(d) * d * d / (gus * 1e6);
  }
  std::printf("measured: copy bandwidth %.1f GB/s, cuBLAS FP16 %.1f TFLOP/s (8192^3)\n", copy_gbs,
              peak_tflops);
  std::printf("runs per point: %d (median), warm-up 5, rotation target %.0f MiB\n\n", opt.runs,
              rotate_target / 1048576.0);
  std::printf("%-14s %5s %-24s %10s %9s %9s %7s %9s\n", "shape(NxK)", "M", "variant", "us", "GB/s",
              "TFLOP/s", "%roof", "fp16/var");

  std::vector<Row> rows;
  Fill fill;
  const size_t nshapes = opt.quick ? 1 : std::size(kShapes);
  for (size_t si = 0; si < nshapes; ++si) {
    const Shape sh = kShapes[si];
    const int64_t n = sh.n, k = sh.k;
    char shape_name[64];
    std::snprintf(shape_name, sizeof shape_name, "%lldx%lld", (long long)n, (long long)k);

    // FP16 weights.
    std::vector<uint16_t> w16(size_t(n * k));
    for (auto& v : w16) v = fill.small_half(0.05f);
    const Rotated w16d = make_rotated(w16.data(), w16.size() * 2, copies_for(w16.size() * 2, rotate_target));
    w16.clear();
    w16.shrink_to_fit();

    // GPTQ 4-bit g128 (sym v1 zeros), optional act-order, in both layouts.
    const int gs = 128;
    const int64_t groups = k / gs;
    std::vector<int32_t> qweight(size_t(k / 8 * n)), qzeros(size_t(groups * n / 8), int32_t(0x77777777));
    fill.bytes(reinterpret_cast<uint8_t*>(qweight.data()), qweight.size() * 4);
    std::vector<uint16_t> scales(size_t(groups * n));
    for (auto& v : scales) v = f32_to_fp16(0.002f + 0.01f * float(fill.next() >> 40) / float(1 << 24));
    std::vector<int32_t> g_idx(static_cast<size_t>(k));
    {
      std::vector<int32_t> order(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) order[size_t(i)] = int32_t(i);
      if (opt.act_order) std::shuffle(order.begin(), order.end(), std::mt19937(5));
      for (int64_t i = 0; i < k; ++i) g_idx[size_t(order[size_t(i)])] = int32_t(i / gs);
    }
    layout::GptqTensors gt;
    gt.k = k;
    gt.n = n;
    gt.group_size = gs;
    gt.zeros_v1 = true;
    gt.qweight = qweight;
    gt.qzeros = qzeros;
    gt.scales = scales;
    gt.g_idx = g_idx;
    const layout::GptqRepacked rep = layout::gptq_repack(gt);
    const size_t gptq_bytes = qweight.size() * 4 + qzeros.size() * 4 + scales.size() * 2 +
                              (opt.act_order ? g_idx.size() * 4 : 0);
    const int gcopies = copies_for(gptq_bytes, rotate_target);
    std::vector<GptqCheckpointBuffers> ck;
    std::vector<GptqFastBuffers> fast;
    for (int c = 0; c < gcopies; ++c) {
      ck.push_back(upload_gptq_checkpoint(gt));
      if (!opt.act_order) ck.back().dev.g_idx = nullptr;  // monotone g_idx: kernels use k / 128
      fast.push_back(upload_gptq_fast(rep));
    }

    // GGUF weights.
    struct GgufW {
      QType t;
      const char* name;
      Rotated w;
      size_t bytes;
    };
    std::vector<GgufW> gg;
    for (QType t : {QType::Q4_0, QType::Q8_0, QType::Q4_K, QType::Q6_K}) {
      const auto host = random_gguf(t, n, k, fill);
      gg.push_back({t, t == QType::Q4_0 ? "q4_0" : t == QType::Q8_0 ? "q8_0" : t == QType::Q4_K ? "q4_k" : "q6_k",
                    make_rotated(host.data(), host.size(), copies_for(host.size(), rotate_target)),
                    host.size()});
    }

    // Scratch for the largest M.
    const int64_t max_m = kMs[std::size(kMs) - 1];
    DeviceBuffer ws_dequant(std::max(gptq_dequant_cublas_workspace_bytes(n, k),
                                     gguf_dequant_cublas_workspace_bytes(n, k)));
    DeviceBuffer ws_fused(std::max({gptq_gemv_workspace_bytes(kGemvMaxM, n, k),
                                    gptq_mma_workspace_bytes(max_m, k),
                                    gguf_dp4a_workspace_bytes(kGemvMaxM, k)}));

    for (int64_t m : kMs) {
      if (opt.quick && m != 1 && m != 8 && m != 64) continue;
      std::vector<uint16_t> xh(size_t(m * k));
      for (auto& v : xh) v = fill.small_half(1.0f);
      const Rotated xd = make_rotated(xh.data(), xh.size() * 2, copies_for(xh.size() * 2, rotate_target / 8));
      DeviceBuffer yd(size_t(m * n) * 2);
      auto* y = yd.as<__half>();
      auto X = [&](int i) { return static_cast<const __half*>(xd.at(i)); };
      const double flops = 2.0 * double(m) * double(n) * double(k);
      const double act_bytes = double(m) * double(k + n) * 2.0;
      double t_fp16 = 0;

      auto report = [&](const char* variant, double weight_bytes, float us) {
        const double bytes = weight_bytes + act_bytes;
        const double t_min_us = std::max(bytes / (copy_gbs * 1e3), flops / (peak_tflops * 1e6));
        Row r{shape_name, variant, n, k, m, us, bytes / (us * 1e3), flops / (us * 1e6),
              100.0 * t_min_us / us, t_fp16 > 0 ? t_fp16 / us : 1.0};
        std::printf("%-14s %5lld %-24s %10.2f %9.1f %9.3f %7.1f %9.2f\n", shape_name, (long long)m,
                    variant, us, r.gbs, r.tflops, r.pct_roof, r.fp16_ratio);
        std::fflush(stdout);
        rows.push_back(r);
      };

      t_fp16 = time_us(s, opt.runs, [&](int i) {
        fp16_cublas(blas.get(), static_cast<const __half*>(w16d.at(i)), X(i), y, m, n, k, s);
      });
      report("fp16_cublas", double(n * k) * 2, float(t_fp16));

      report("gptq_dequant_cublas", double(gptq_bytes), time_us(s, opt.runs, [&](int i) {
               gptq_dequant_cublas(blas.get(), ck[size_t(i % gcopies)].dev, X(i), y, m, ws_dequant.get(),
                                   ws_dequant.bytes(), s);
             }));
      if (m <= opt.naive_max_m)
        report("gptq_naive", double(gptq_bytes), time_us(s, opt.runs, [&](int i) {
                 gptq_naive(ck[size_t(i % gcopies)].dev, X(i), y, m, s);
               }));
      if (m <= kGemvMaxM) {
        report("gptq_gemv", double(gptq_bytes), time_us(s, opt.runs, [&](int i) {
                 gptq_gemv(fast[size_t(i % gcopies)].dev, X(i), y, m, ws_fused.get(), ws_fused.bytes(), s);
               }));
        GemvOptions nosplit;
        nosplit.split_k = 1;
        report("gptq_gemv_nosplit", double(gptq_bytes), time_us(s, opt.runs, [&](int i) {
                 gptq_gemv(fast[size_t(i % gcopies)].dev, X(i), y, m, ws_fused.get(), ws_fused.bytes(), s,
                           nosplit);
               }));
      }
      report("gptq_mma", double(gptq_bytes), time_us(s, opt.runs, [&](int i) {
               gptq_mma(fast[size_t(i % gcopies)].dev, X(i), y, m, ws_fused.get(), ws_fused.bytes(), s);
             }));
      for (const auto& g : gg) {
        char name[48];
        if (m <= kGemvMaxM) {
          std::snprintf(name, sizeof name, "gguf_%s_dp4a", g.name);
          report(name, double(g.bytes), time_us(s, opt.runs, [&](int i) {
                   gguf_dp4a(g.t, g.w.at(i), X(i), y, m, n, k, ws_fused.get(), ws_fused.bytes(), s);
                 }));
          std::snprintf(name, sizeof name, "gguf_%s_f16_gemv", g.name);
          report(name, double(g.bytes), time_us(s, opt.runs, [&](int i) {
                   gguf_f16_gemv(g.t, g.w.at(i), X(i), y, m, n, k, s);
                 }));
        }
        std::snprintf(name, sizeof name, "gguf_%s_dequant_cublas", g.name);
        report(name, double(g.bytes), time_us(s, opt.runs, [&](int i) {
                 gguf_dequant_cublas(blas.get(), g.t, g.w.at(i), X(i), y, m, n, k, ws_dequant.get(),
                                     ws_dequant.bytes(), s);
               }));
      }
    }
  }

  if (!opt.csv.empty()) {
    FILE* f = std::fopen(opt.csv.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "error: cannot write %s\n", opt.csv.c_str());
      return 1;
    }
    std::fprintf(f, "device,cc,copy_gbs,peak_tflops,shape,n,k,m,variant,us,gbs,tflops,pct_roofline,fp16_over_variant\n");
    for (const auto& r : rows)
      std::fprintf(f, "\"%s\",%d,%.1f,%.2f,%s,%lld,%lld,%lld,%s,%.3f,%.2f,%.4f,%.2f,%.3f\n", prop.name,
                   di.cc(), copy_gbs, peak_tflops, r.shape.c_str(), (long long)r.n, (long long)r.k,
                   (long long)r.m, r.variant.c_str(), r.us, r.gbs, r.tflops, r.pct_roof, r.fp16_ratio);
    std::fclose(f);
    std::printf("\nwrote %s (%zu rows)\n", opt.csv.c_str(), rows.size());
  }
  CUDA_CHECK(cudaStreamDestroy(s));
  return 0;
}

}  // namespace

int run_linear_bench(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--csv") opt.csv = value();
    else if (a == "--runs") opt.runs = std::max(1, std::atoi(value().c_str()));
    else if (a == "--quick") opt.quick = true;
    else if (a == "--act-order") opt.act_order = true;
    else if (a == "--naive-max-m") opt.naive_max_m = std::atoi(value().c_str());
    else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_cuda_linear [--csv FILE] [--runs N] [--quick] [--act-order] "
                  "[--naive-max-m M]\n");
      return 0;
    } else {
      std::fprintf(stderr, "error: unknown argument %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {  // slm::Error (CUDA/cuBLAS failures included), bad_alloc
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace slm::cuda
