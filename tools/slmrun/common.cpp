#include "tools/slmrun/common.h"

#include <omp.h>
#include <sys/resource.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "kernels/cpu/isa.h"

namespace slm::cli {

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;
}

std::string unescape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      switch (s[i + 1]) {
        case 'n': o += '\n'; ++i; continue;
        case 't': o += '\t'; ++i; continue;
        case 'r': o += '\r'; ++i; continue;
        case '\\': o += '\\'; ++i; continue;
        case '"': o += '"'; ++i; continue;
        case '\'': o += '\''; ++i; continue;
        default: break;
      }
    }
    o += s[i];
  }
  return o;
}

std::vector<int32_t> parse_token_list(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string part = s.substr(i, j - i);
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    while (!part.empty() && part.back() == ' ') part.pop_back();
    int32_t v = 0;
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    SLM_CHECK(!part.empty() && ec == std::errc() && p == part.data() + part.size() && v >= 0,
              "--tokens: '{}' is not a token id (expected comma-separated non-negative integers)", part);
    ids.push_back(v);
    i = j + 1;
  }
  SLM_CHECK(!ids.empty(), "--tokens: no token ids given");
  return ids;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot open file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void apply_threads_and_isa(int threads, const std::string& isa) {
  if (threads > 0) omp_set_num_threads(threads);
  cpu::apply_isa_env();
  if (!isa.empty() && isa != "auto") cpu::set_isa(cpu::parse_isa(isa));
}

}  // namespace slm::cli
