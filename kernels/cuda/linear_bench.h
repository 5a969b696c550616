// Entry point of the CUDA linear-kernel study (perf/bench_cuda_linear): argument parsing, device
// checks, timing and reporting live in linear_bench.cpp. Returns the process exit code; prints
// "error: no CUDA device" and returns 1 when there is no GPU.
#pragma once

namespace slm::cuda {

int run_linear_bench(int argc, char** argv);

}  // namespace slm::cuda
