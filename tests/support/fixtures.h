// Test helpers: where the shared fixtures are, reading them, running the slmrun binary, and
// comparison metrics.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace slm::test {

// ../shared/fixtures (or $SLM_FIXTURES) if it exists, else nullopt. Tests that need it call
// SLM_REQUIRE_FIXTURES() which prints a skip message and returns when absent.
std::optional<std::string> fixtures_dir();

std::vector<float> read_f32_file(const std::string& path);
std::string read_text_file(const std::string& path);

// Runs `slmrun <args>` (path compiled in), capturing stdout and stderr separately.
struct RunResult {
  int exit_code = -1;
  std::string out, err;
};
RunResult run_slmrun(const std::string& args);

// Fresh temporary directory for a test, removed by the destructor.
struct TempDir {
  TempDir();
  ~TempDir();
  std::string path;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

double rel_l2(const float* a, const float* ref, size_t n);
double max_abs_diff(const float* a, const float* b, size_t n);

}  // namespace slm::test

#define SLM_REQUIRE_FIXTURES(dirvar)                                                      \
  auto dirvar##_opt = ::slm::test::fixtures_dir();                                        \
  if (!dirvar##_opt) {                                                                    \
    MESSAGE("SKIP: ../shared/fixtures not found (set SLM_FIXTURES to run this test)");    \
    return;                                                                               \
  }                                                                                       \
  const std::string dirvar = *dirvar##_opt
