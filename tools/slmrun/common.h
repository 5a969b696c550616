// Helpers shared by the slmrun subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace slm::cli
