// `--device` of `slmrun run` and `slmrun bench`: on a machine without a usable CUDA device (CI),
// or in a build without the CUDA module, `--device cuda` must stop before loading the model with
// one line "error: CUDA device requested but ..." and exit code 1. The GPU path itself is covered
// by tests/cuda. The slmrun binary itself tells whether a device is present: with one, the
// nonexistent model file is the first error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "support/fixtures.h"

using slm::test::run_slmrun;

TEST_CASE("slmrun --device cuda without a device: one clear error, exit 1") {
  const auto probe = run_slmrun("run -m /nonexistent/model.gguf -p hi --device cuda");
  if (probe.err.find("CUDA device requested but") == std::string::npos) {
    CHECK(probe.err.find("/nonexistent/model.gguf") != std::string::npos);
    MESSAGE("SKIP: a CUDA device is present (the error path cannot be exercised)");
    return;
  }
  for (const char* args : {"run -m /nonexistent/model.gguf -p hi --device cuda",
                           "bench --quick -p 4 -n 2 -r 1 --no-bw --device cuda"}) {
    const auto r = run_slmrun(args);
    INFO(args << " -> " << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.rfind("error: CUDA device requested but ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}

TEST_CASE("slmrun --device rejects unknown devices") {
  const auto r = run_slmrun("run -m /nonexistent/model.gguf -p hi --device tpu");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--device: unknown value 'tpu'") != std::string::npos);
}

TEST_CASE("slmrun --device cuda with a missing or broken CUDA module: one clear error, exit 1") {
  // SLM_CUDA_MODULE is an explicit choice: no fallback to the module beside the binary.
  slm::test::TempDir tmp;
  const std::string broken = tmp.file("libslm_cuda.so");
  {
    std::FILE* f = std::fopen(broken.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("not a shared object\n", f);
    std::fclose(f);
  }
  const std::pair<std::string, const char*> cases[] = {
      {tmp.file("missing.so"), "error: CUDA device requested but this slmrun has no CUDA backend"},
      {broken, "error: CUDA device requested but the CUDA module"}};
  for (const auto& [path, expect] : cases) {
    setenv("SLM_CUDA_MODULE", path.c_str(), 1);
    const auto r = run_slmrun("run -m /nonexistent/model.gguf -p hi --device cuda");
    unsetenv("SLM_CUDA_MODULE");
    INFO(path << " -> " << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.rfind(expect, 0) == 0);
    CHECK(r.err.find(path) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
