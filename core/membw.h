// Memory read bandwidth, STREAM-style: the roofline that decode speed is compared against.
#pragma once
#include <cstddef>

namespace slm {

struct Bandwidth {
  double median_gbs = 0;  // median over repetitions, GB/s (1e9 bytes)
  double best_gbs = 0;
};

// Reads a `bytes`-sized buffer (much larger than the last-level cache) `reps` times with
// `threads` OpenMP threads (<= 0: the current default) and reports read bandwidth.
Bandwidth measure_read_bandwidth(size_t bytes, int threads, int reps);

}  // namespace slm
