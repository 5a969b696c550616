#include "core/membw.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace slm {

Bandwidth measure_read_bandwidth(size_t bytes, int threads, int reps) {
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;  // first touch by the reading thread
  std::vector<double> gbs;
  volatile uint64_t sink = 0;
  for (int r = 0; r < std::max(reps, 1) + 1; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(^ : total)
    for (size_t blk = 0; blk < n; blk += 8) {
      // Eight independent xors per 64-byte line keep the loads, not the ALU, the bottleneck.
      uint64_t a = 0;
      const size_t end = std::min(blk + 8, n);
      for (size_t i = blk; i < end; ++i) a ^= buf[i];
      total ^= a;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink ^ total;
    if (r > 0) gbs.push_back(double(n * sizeof(uint64_t)) / s / 1e9);  // the first pass is a warm-up
  }
  std::sort(gbs.begin(), gbs.end());
  return {gbs[gbs.size() / 2], gbs.back()};
}

}  // namespace slm
