// `slmrun bench -o json` on the built-in synthetic models (--quick shape): one row per model x
// test with the llama-bench-style fields the CPU-speed issue asks for, plausible values, and the
// roofline / compute-peak shares on the rows they belong to.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "support/fixtures.h"

using namespace slm;

TEST_CASE("slmrun bench -o json: one row per synthetic model and test, every field filled") {
  const auto r = test::run_slmrun("bench --quick -p 8 -n 4 -r 2 -t 1 -o json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json a = nlohmann::json::parse(r.out);
  REQUIRE(a.is_array());
  CHECK(a.size() == 8);  // F16, Q8_0, Q4_K_M, Q4_0 x pp8, tg4
  std::set<std::string> types;
  for (const auto& row : a) {
    INFO(row.dump());
    for (const char* key : {"model", "model_type", "model_size", "n_threads", "isa", "test", "avg_ts",
                            "stddev_ts", "peak_rss", "read_bw_gbs", "roofline_pct", "compute_pct"})
      CHECK(row.contains(key));
    types.insert(row["model_type"].get<std::string>());
    CHECK(row["model_size"].get<uint64_t>() > 0);
    CHECK(row["n_threads"].get<int>() == 1);
    CHECK(row["avg_ts"].get<double>() > 0);
    CHECK(row["stddev_ts"].get<double>() >= 0);
    CHECK(row["peak_rss"].get<uint64_t>() >= row["model_size"].get<uint64_t>());  // the weights are resident
    CHECK(row["read_bw_gbs"].get<double>() > 0);
    const std::string test = row["test"].get<std::string>();
    CHECK((test == "pp8" || test == "tg4"));
    // Decode rows carry the bandwidth share, prefill rows the compute share; a share of a
    // measured peak cannot be negative, and the compute share of matrix flops alone cannot
    // exceed the peak those flops run at (the probe has no memory traffic at all).
    if (test == "tg4") {
      CHECK(row["roofline_pct"].get<double>() > 0);
      CHECK(row["compute_pct"].get<double>() == 0);
    } else {
      CHECK(row["roofline_pct"].get<double>() == 0);
      CHECK(row["compute_pct"].get<double>() > 0);
      CHECK(row["compute_pct"].get<double>() <= 100);
    }
  }
  CHECK(types == std::set<std::string>{"F16", "Q8_0", "Q4_K", "Q4_0"});
}

TEST_CASE("slmrun bench -d: each test again with that many tokens already in the KV cache") {
  const auto r = test::run_slmrun("bench --quick --synthetic Q4_0 -p 8 -n 4 -d 0,24 -r 1 -t 1 --no-bw -o json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json a = nlohmann::json::parse(r.out);
  REQUIRE(a.is_array());
  std::set<std::string> tests;
  for (const auto& row : a) {
    INFO(row.dump());
    const std::string test = row["test"].get<std::string>();
    tests.insert(test);
    // llama-bench's naming: "ppN @ dD" when the cache held D tokens before the test.
    CHECK(row["n_depth"].get<int>() == (test.find(" @ d24") != std::string::npos ? 24 : 0));
    CHECK(row["avg_ts"].get<double>() > 0);
  }
  CHECK(tests == std::set<std::string>{"pp8", "tg4", "pp8 @ d24", "tg4 @ d24"});
}
