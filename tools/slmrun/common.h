// Helpers shared by the slmrun subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace slm {
struct QuantizeReport;
}

namespace slm::cli {

// Peak resident set size of this process, bytes.
uint64_t peak_rss_bytes();
// Expands \n, \t, \r, \\, \", \' escapes (llama.cpp's --escape behaviour).
std::string unescape(const std::string& s);
// "128000,9241,374" -> ids; throws slm::Error on junk.
std::vector<int32_t> parse_token_list(const std::string& s);
std::string read_file(const std::string& path);
// Sets the OpenMP thread count (n <= 0: leave the default) and the ISA (empty: auto/SLM_ISA).
void apply_threads_and_isa(int threads, const std::string& isa);

// Subcommand registration; each returns a callback run after parsing.
void add_run_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_mkmodel_command(CLI::App& app);

// A one-line progress bar on stderr that appears only once a job has run for a second.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line if the bar was drawn
  void update(uint64_t done, uint64_t total, const std::string& what);

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_{};
  bool shown_ = false;
};
// The per-tensor table of a quantize / mkmodel run (cmd_quantize.cpp).
void print_quantize_report(const QuantizeReport& rep, std::FILE* out);

}  // namespace slm::cli
