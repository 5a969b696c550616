// Benchmark of the per-head attention kernel (kernels/cpu/attention.h): the AVX2 kernel against
// the scalar reference, in the same process, for a range of cached-key counts. Each call is one
// query head over n keys of one KV head in the session's head-major layout (contiguous keys);
// calls cycle over --heads KV heads (8: Llama-3.2-1B), so the K/V working set is what one layer
// of that model reads at that depth. One thread.
//
//   bench_cpu_attention [--keys 128,512,2048,8192] [--hd 64] [--kv f16,f32] [--heads 8] [--reps 9]
//
// Columns: median time per call (µs), ns per key (scores + softmax + weighted sum of one head),
// GB/s of K+V bytes read, GFLOP/s (4 * hd flops per key), and the speed-up over the reference.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"
#include "perf/list_arg.h"

namespace {

using namespace slm;
using Clock = std::chrono::steady_clock;

using Kernel = void (*)(const float*, const void*, const void*, int64_t, int64_t, int64_t, cpu::KvType,
                        float, float*, float*);

// Median seconds per call of `kernel` over `reps` rounds of `heads` calls.
double time_kernel(Kernel kernel, const std::vector<float>& q, const uint8_t* k, const uint8_t* v,
                   int64_t n, int64_t hd, int heads, cpu::KvType t, int reps) {
  const size_t head_bytes = size_t(n * hd * cpu::kv_elem_bytes(t));
  std::vector<float> scratch(static_cast<size_t>(n)), out(static_cast<size_t>(hd));
  std::vector<double> ts;
  for (int r = -1; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int h = 0; h < heads; ++h)
      kernel(q.data() + h * hd, k + h * head_bytes, v + h * head_bytes, n, hd, hd, t, 0.125f,
             scratch.data(), out.data());
    const double s = std::chrono::duration<double>(Clock::now() - t0).count() / heads;
    if (r >= 0) ts.push_back(s);
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> keys = {128, 512, 2048, 8192};
  int64_t hd = 64;
  int heads = 8, reps = 9;
  std::vector<std::string> kvs = {"f16", "f32"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--keys") {
      keys.clear();
      for (const auto& s : perf::split_list(next())) keys.push_back(std::atoll(s.c_str()));
    } else if (a == "--hd") {
      hd = std::atoll(next().c_str());
    } else if (a == "--heads") {
      heads = std::atoi(next().c_str());
    } else if (a == "--reps") {
      reps = std::atoi(next().c_str());
    } else if (a == "--kv") {
      kvs = perf::split_list(next());
    } else {
      std::fprintf(stderr,
                   "usage: bench_cpu_attention [--keys 128,512,...] [--hd 64] [--kv f16,f32] [--heads 8] [--reps 9]\n");
      return 2;
    }
  }
  for (int64_t n : keys) {
    if (n < 1 || hd < 1 || heads < 1 || reps < 1) {
      std::fprintf(stderr, "bench_cpu_attention: keys, --hd, --heads and --reps must be positive\n");
      return 2;
    }
  }
  if (cpu::detected_isa() < cpu::Isa::AVX2) {
    std::printf("this CPU has no AVX2: only the scalar reference exists\n");
    return 0;
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::printf("one thread, hd %lld, %d KV heads cycled\n", (long long)hd, heads);
  std::printf("kv    keys   ref_us   avx2_us  ns/key  GB/s   GFLOP/s  speed-up\n");
  for (const std::string& kvn : kvs) {
    const cpu::KvType t = kvn == "f32" ? cpu::KvType::F32 : cpu::KvType::F16;
    if (kvn != "f32" && kvn != "f16") {
      std::fprintf(stderr, "--kv: unknown cache type '%s' (f16, f32)\n", kvn.c_str());
      return 2;
    }
    const int64_t eb = cpu::kv_elem_bytes(t);
    for (int64_t n : keys) {
      const size_t bytes = size_t(heads) * size_t(n * hd * eb);
      std::vector<uint8_t> k(bytes), v(bytes);
      for (size_t i = 0; i < bytes / size_t(eb); ++i) {
        const float a = nd(rng), b = nd(rng);
        if (t == cpu::KvType::F32) {
          reinterpret_cast<float*>(k.data())[i] = a;
          reinterpret_cast<float*>(v.data())[i] = b;
        } else {
          reinterpret_cast<uint16_t*>(k.data())[i] = f32_to_fp16(a);
          reinterpret_cast<uint16_t*>(v.data())[i] = f32_to_fp16(b);
        }
      }
      std::vector<float> q(static_cast<size_t>(heads * hd));
      for (float& x : q) x = nd(rng);
      const double ref = time_kernel(cpu::attn_head_ref, q, k.data(), v.data(), n, hd, heads, t, reps);
      const double fast = time_kernel(cpu::detail::attn_head_avx2, q, k.data(), v.data(), n, hd, heads, t, reps);
      std::printf("%-4s %6lld %8.1f %9.1f %7.2f %6.1f %8.1f %8.2fx\n", kvn.c_str(), (long long)n, ref * 1e6,
                  fast * 1e6, fast / double(n) * 1e9, 2.0 * double(n * hd * eb) / fast / 1e9,
                  4.0 * double(n * hd) / fast / 1e9, ref / fast);
    }
  }
  return 0;
}
