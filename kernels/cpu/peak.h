// Single-core compute peaks measured the way the matrix kernels compute: F32 FMAs and int8 dot
// products (vpdpbusd with VNNI, vpmaddubsw + vpmaddwd without) in registers, 12 independent
// accumulator chains, no memory traffic. perf/bench_cpu_linear divides prefill GFLOP/s by these
// to say how far a kernel is from what the core can do at all (docs/cpu-kernels.md).
#pragma once
#include "kernels/cpu/isa.h"

namespace slm::cpu {

struct ComputePeak {
  double f32_gflops = 0;  // 2 flops per FMA lane
  double int8_gops = 0;   // 2 ops per int8 product (multiply + add), as GEMM GOP/s are counted
};

// Best of a few ~20 ms runs on the calling thread with the kernels of `isa` (Scalar: 0, 0).
ComputePeak measure_compute_peak(Isa isa);

namespace detail {
ComputePeak compute_peak_avx2();
ComputePeak compute_peak_avx512();
}  // namespace detail

}  // namespace slm::cpu
