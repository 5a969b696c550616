// perf/bench_cuda_linear: the dequantization-overhead study program (docs/dequant-overhead.md).
// usage: bench_cuda_linear [--csv FILE] [--runs N] [--quick] [--act-order] [--naive-max-m M]
// The implementation is slm::cuda::run_linear_bench (kernels/cuda/linear_bench.cpp).
#include "kernels/cuda/linear_bench.h"

int main(int argc, char** argv) { return slm::cuda::run_linear_bench(argc, argv); }
