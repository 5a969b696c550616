#include "support/fixtures.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"

namespace slm::test {
namespace fs = std::filesystem;

std::optional<std::string> fixtures_dir() {
  std::string d;
  if (const char* e = std::getenv("SLM_FIXTURES"); e && *e) d = e;
  else d = SLM_DEFAULT_FIXTURES;
  std::error_code ec;
  if (fs::is_directory(d, ec)) return d;
  return std::nullopt;
}

std::vector<float> read_f32_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open {}", path);
  f.seekg(0, std::ios::end);
  size_t n = size_t(f.tellg());
  f.seekg(0);
  std::vector<float> v(n / 4);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
  return v;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

RunResult run_slmrun(const std::string& args) {
  TempDir tmp;
  std::string cmd = std::string("'") + SLM_SLMRUN_PATH + "' " + args + " >" + tmp.file("out") +
                    " 2>" + tmp.file("err") + " </dev/null";
  int st = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.out = read_text_file(tmp.file("out"));
  r.err = read_text_file(tmp.file("err"));
  return r;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "slmtest-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) fail("mkdtemp failed");
  path = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

double rel_l2(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

}  // namespace slm::test
