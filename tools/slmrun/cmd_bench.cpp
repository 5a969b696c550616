// `slmrun bench`: llama-bench-style prefill (ppN) and decode (tgN) throughput. With no -m it
// builds synthetic Llama-3.2-1B-shaped models in memory (F16, Q8_0, Q4_K_M, Q4_0), so it needs
// no download. Each row also reports the read bandwidth measured just before it and, for decode,
// the share of the bandwidth roofline (tok/s x weight bytes per token / bandwidth); prefill rows
// report the share of the compute peak (matrix flops per second / measured peak of the cores).
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/membw.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/peak.h"
#include "runtime/device_session.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "tools/slmrun/common.h"

namespace slm::cli {
namespace {

struct BenchOptions {
  std::vector<std::string> models;
  std::vector<std::string> synthetic = {"F16", "Q8_0", "Q4_K_M", "Q4_0"};
  std::vector<int> prompt = {64};
  std::vector<int> gen = {32};
  std::vector<int> depth = {0};  // tokens already in the KV cache when a test starts (llama-bench -d)
  std::vector<int> threads;
  std::vector<std::string> isas;
  int reps = 3;
  std::string output = "md", precision = "q8", shape = "1b", device = "cpu";
  bool quick = false, no_bw = false;
};

struct Row {
  std::string model, model_type, isa, test;
  uint64_t model_size = 0, weight_bytes = 0, peak_rss = 0;
  int n_threads = 0, n_depth = 0;
  double avg_ts = 0, stddev_ts = 0, bw_gbs = 0, roofline_pct = 0;
  // Prefill: matrix flops per second against `n_threads` cores' measured compute peak of the
  // instruction class the weights use (int8 dots, F32 FMAs or bf16 dots); 0 when not measured.
  double compute_pct = 0;
  double peak_gflops = 0;  // that peak, all threads (set in `base` before measuring)
  double layer_macs = 0, output_macs = 0;  // multiply-adds per token in the layers / the lm_head
};

// Resets the kernel's peak-RSS counter (VmHWM) so each model's peak is its own.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";
}
uint64_t current_peak_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return uint64_t(std::stoull(line.substr(6))) * 1024;
  return peak_rss_bytes();
}

std::vector<int> parse_int_list(const std::string& s, const char* flag) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      int x = std::stoi(part, &used);
      SLM_CHECK(used == part.size() && x >= 0, "{}: '{}' is not a non-negative integer", flag, part);
      v.push_back(x);
    } catch (const std::logic_error&) {
      fail("{}: '{}' is not a non-negative integer", flag, part);
    }
  }
  SLM_CHECK(!v.empty(), "{}: empty list", flag);
  return v;
}

std::vector<int32_t> random_tokens(int n, int64_t n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> U(0, n_vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = int32_t(U(rng));
  return t;
}

void stats(const std::vector<double>& v, double* mean, double* sd) {
  double m = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  *mean = m;
  *sd = v.size() > 1 ? std::sqrt(s / double(v.size() - 1)) : 0;
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ppN: time one batched eval of N tokens; tgN: after one token, time N single-token evals (the
// first repetition is a warm-up: page faults, caches, CUDA graph capture). With a depth d > 0 the
// cache first holds d tokens (evaluated untimed after each reset), and the test is named
// "ppN @ dD" as llama-bench names it. Works for any session type with reset()/eval() (Session,
// CudaSession).
template <class S>
void measure_tests_at(S& s, const BenchOptions& o, const Row& base, int depth, std::vector<Row>& rows) {
  const int64_t V = s.n_vocab();
  const auto ctx_toks = random_tokens(depth, V, 99);
  const std::string at = depth > 0 ? " @ d" + std::to_string(depth) : "";
  auto reset = [&] {
    s.reset();
    if (depth > 0) s.eval(ctx_toks);
  };
  for (int p : o.prompt) {
    if (p == 0) continue;
    const auto toks = random_tokens(p, V, 42);
    std::vector<double> ts;
    for (int r = -1; r < o.reps; ++r) {
      reset();
      auto t0 = std::chrono::steady_clock::now();
      s.eval(toks);
      if (r >= 0) ts.push_back(p / seconds(t0));
    }
    Row row = base;
    row.n_depth = depth;
    row.test = "pp" + std::to_string(p) + at;
    stats(ts, &row.avg_ts, &row.stddev_ts);
    if (row.peak_gflops > 0) {
      // Every prompt token goes through the layers; only the last one through the lm_head.
      const double flops = 2.0 * (double(p) * row.layer_macs + row.output_macs);
      row.compute_pct = 100.0 * flops * row.avg_ts / double(p) / (row.peak_gflops * 1e9);
    }
    row.peak_rss = current_peak_rss();
    rows.push_back(row);
  }
  for (int n : o.gen) {
    if (n == 0) continue;
    const auto toks = random_tokens(n + 1, V, 7);
    std::vector<double> ts;
    for (int r = -1; r < o.reps; ++r) {
      reset();
      s.eval(std::span<const int32_t>(toks.data(), 1));
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 1; i <= n; ++i) s.eval(std::span<const int32_t>(toks.data() + i, 1));
      if (r >= 0) ts.push_back(n / seconds(t0));
    }
    Row row = base;
    row.n_depth = depth;
    row.test = "tg" + std::to_string(n) + at;
    stats(ts, &row.avg_ts, &row.stddev_ts);
    if (row.bw_gbs > 0) row.roofline_pct = 100.0 * row.avg_ts * double(row.weight_bytes) / (row.bw_gbs * 1e9);
    row.peak_rss = current_peak_rss();
    rows.push_back(row);
  }
}

template <class S>
void measure_tests(S& s, const BenchOptions& o, const Row& base, std::vector<Row>& rows) {
  for (int d : o.depth) measure_tests_at(s, o, base, d, rows);
}

void bench_model(const Model& model, const BenchOptions& o, const std::vector<int>& threads,
                 const std::vector<cpu::Isa>& isas, cpu::ActPrecision prec, std::vector<Row>& rows) {
  int max_p = 1, max_n = 1;
  for (int p : o.prompt) max_p = std::max(max_p, p);
  for (int n : o.gen) max_n = std::max(max_n, n);
  const int max_d = *std::max_element(o.depth.begin(), o.depth.end());
  SessionOptions so;
  so.n_ctx = max_d + std::max(max_p, max_n + 1) + 1;
  so.max_batch = std::min(max_p, 512);
  so.precision = prec;
  Session s(model, so);
  double layer_macs = 0;
  for (const LayerWeights& L : model.weights().layers)
    for (const WeightTensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      layer_macs += double(w->rows) * double(w->cols);
  const WeightTensor& out = model.weights().output;
  const QType dom = out.type == QType::F16 || out.type == QType::F32 || out.type == QType::BF16
                        ? out.type
                        : model.weights().layers.front().wq.type;
  for (cpu::Isa isa : isas) {
    cpu::set_isa(isa);
    // The compute peak of this ISA for the class of instruction the matrix kernels use.
    double peak1 = 0;
    if (!o.no_bw && !model.weights().layers.front().wq.gptq) {
      const cpu::ComputePeak pk = cpu::measure_compute_peak(isa);
      const bool float_kernels = prec == cpu::ActPrecision::F32 || dom == QType::F16 || dom == QType::F32;
      if (float_kernels) peak1 = pk.f32_gflops;
      else if (dom == QType::BF16) peak1 = pk.f32_gflops * (isa == cpu::Isa::AVX512 && cpu::cpu_has_avx512_bf16() ? 2 : 1);
      else peak1 = pk.int8_gops;
    }
    for (int nt : threads) {
      omp_set_num_threads(nt);
      Row base;
      base.model = model.path();
      base.model_type = model.dominant_type();
      base.model_size = model.file_bytes();
      base.weight_bytes = model.weight_bytes();
      base.isa = std::string(cpu::isa_name(isa));
      base.n_threads = nt;
      base.layer_macs = layer_macs;
      base.output_macs = double(out.rows) * double(out.cols);
      base.peak_gflops = peak1 * nt;
      if (!o.no_bw) {
        base.bw_gbs = measure_read_bandwidth(size_t(1) << 30, nt, 3).median_gbs;
        // The probe's 1 GiB buffer is freed again: restart the peak at what the model holds now.
        reset_peak_rss();
      }
      measure_tests(s, o, base, rows);
    }
  }
}

// The same ppN / tgN measurements on a CudaSession (eval() synchronises, so wall time is GPU
// time plus launch overhead). Prints the session's VRAM report to stderr.
void bench_model_cuda(const Model& model, const BenchOptions& o, std::vector<Row>& rows) {
  int max_p = 1, max_n = 1;
  for (int p : o.prompt) max_p = std::max(max_p, p);
  for (int n : o.gen) max_n = std::max(max_n, n);
  const int max_d = *std::max_element(o.depth.begin(), o.depth.end());
  CudaSessionOptions co;
  co.n_ctx = max_d + std::max(max_p, max_n + 1) + 1;
  co.max_batch = std::min(max_p, 512);
  const std::unique_ptr<DeviceSession> sp = open_cuda_session(model, co);
  DeviceSession& s = *sp;
  Row base;
  base.model = model.path();
  base.model_type = model.dominant_type();
  base.model_size = model.file_bytes();
  base.weight_bytes = model.weight_bytes();
  base.isa = "cuda:" + s.device_name();
  measure_tests(s, o, base, rows);
  const CudaMemoryReport m = s.memory_report();
  const double MiB = 1024.0 * 1024.0;
  std::fprintf(stderr,
               "vram (%s): weights %.1f MiB | kv cache %.1f MiB | workspace %.1f MiB | activations %.1f MiB | "
               "device peak used %.1f of %.1f MiB\n",
               base.model_type.c_str(), double(m.weights) / MiB, double(m.kv_cache) / MiB, double(m.workspace) / MiB,
               double(m.activations) / MiB, double(m.device_used_peak) / MiB, double(m.device_total) / MiB);
}

void run_bench_model(const Model& model, const BenchOptions& o, const std::vector<int>& threads,
                     const std::vector<cpu::Isa>& isas, cpu::ActPrecision prec, std::vector<Row>& rows) {
  if (o.device == "cuda") return bench_model_cuda(model, o, rows);
  bench_model(model, o, threads, isas, prec, rows);
}

void print_rows(const std::vector<Row>& rows, const std::string& fmt_name) {
  if (fmt_name == "json") {
    nlohmann::json a = nlohmann::json::array();
    for (const Row& r : rows)
      a.push_back({{"model", r.model}, {"model_type", r.model_type}, {"model_size", r.model_size},
                   {"weight_bytes", r.weight_bytes}, {"n_threads", r.n_threads}, {"isa", r.isa},
                   {"test", r.test}, {"n_depth", r.n_depth}, {"avg_ts", r.avg_ts}, {"stddev_ts", r.stddev_ts}, {"peak_rss", r.peak_rss},
                   {"read_bw_gbs", r.bw_gbs}, {"roofline_pct", r.roofline_pct}, {"compute_pct", r.compute_pct}});
    std::printf("%s\n", a.dump(2).c_str());
  } else if (fmt_name == "csv") {
    std::printf("model,model_type,model_size,weight_bytes,n_threads,isa,test,n_depth,avg_ts,stddev_ts,peak_rss,read_bw_gbs,roofline_pct,compute_pct\n");
    for (const Row& r : rows)
      std::printf("\"%s\",%s,%llu,%llu,%d,%s,%s,%d,%.3f,%.3f,%llu,%.2f,%.1f,%.1f\n", r.model.c_str(), r.model_type.c_str(),
                  (unsigned long long)r.model_size, (unsigned long long)r.weight_bytes, r.n_threads, r.isa.c_str(),
                  r.test.c_str(), r.n_depth, r.avg_ts, r.stddev_ts, (unsigned long long)r.peak_rss, r.bw_gbs, r.roofline_pct,
                  r.compute_pct);
  } else {
    std::printf("| model | type | size | threads | isa | test | t/s | peak RSS | read BW | roofline | compute |\n");
    std::printf("|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|\n");
    auto pct = [](double v) { return v > 0 ? fmt::format("{:.0f}%", v) : std::string(); };
    for (const Row& r : rows)
      std::printf("| %s | %s | %.2f GiB | %d | %s | %s | %.2f ± %.2f | %.0f MiB | %.1f GB/s | %s | %s |\n",
                  r.model.c_str(), r.model_type.c_str(), double(r.model_size) / (1 << 30), r.n_threads, r.isa.c_str(),
                  r.test.c_str(), r.avg_ts, r.stddev_ts, double(r.peak_rss) / (1 << 20), r.bw_gbs,
                  pct(r.roofline_pct).c_str(), pct(r.compute_pct).c_str());
  }
  std::fflush(stdout);
}

void bench(BenchOptions o, const std::string& p_list, const std::string& n_list, const std::string& d_list,
           const std::string& t_list, const std::string& isa_list) {
  SLM_CHECK(o.device == "cpu" || o.device == "cuda", "--device: unknown value '{}' (cpu or cuda)", o.device);
  if (o.device == "cuda") {
    std::string why;
    SLM_CHECK(cuda_backend_available(&why), "CUDA device requested but {}", why);
  }
  cpu::apply_isa_env();
  o.prompt = parse_int_list(p_list, "-p");
  o.gen = parse_int_list(n_list, "-n");
  o.depth = parse_int_list(d_list, "-d");
  for (int d : o.depth) SLM_CHECK(d <= (1 << 20), "-d: depth {} out of range", d);
  std::vector<int> threads = t_list.empty() ? std::vector<int>{int(sysconf(_SC_NPROCESSORS_ONLN))}
                                            : parse_int_list(t_list, "-t");
  for (int t : threads) SLM_CHECK(t >= 1 && t <= 1024, "-t: thread count {} out of range", t);
  SLM_CHECK(o.reps >= 1 && o.reps <= 1000, "-r: repetitions {} out of range", o.reps);
  SLM_CHECK(o.output == "md" || o.output == "csv" || o.output == "json", "-o: unknown format '{}' (md, csv, json)", o.output);
  std::vector<cpu::Isa> isas;
  if (isa_list.empty()) isas.push_back(cpu::active_isa());
  else {
    std::stringstream ss(isa_list);
    std::string part;
    while (std::getline(ss, part, ',')) {
      cpu::Isa i = cpu::parse_isa(part);
      SLM_CHECK(int(i) <= int(cpu::detected_isa()), "--isa {}: not supported by this CPU (best: {})", part,
                cpu::isa_name(cpu::detected_isa()));
      isas.push_back(i);
    }
  }
  cpu::ActPrecision prec = cpu::ActPrecision::LlamaCpp;
  if (o.precision == "f32") prec = cpu::ActPrecision::F32;
  else SLM_CHECK(o.precision == "q8", "--precision: unknown value '{}' (q8 or f32)", o.precision);

  std::vector<Row> rows;
  if (!o.models.empty()) {
    for (const std::string& path : o.models) {
      reset_peak_rss();
      auto m = Model::load(path);
      run_bench_model(*m, o, threads, isas, prec, rows);
    }
  } else {
    ModelConfig cfg = o.quick ? tiny_llama_config() : o.shape == "3b" ? llama32_3b_config() : llama32_1b_config();
    SLM_CHECK(o.quick || o.shape == "1b" || o.shape == "3b", "--shape: unknown shape '{}' (1b, 3b)", o.shape);
    for (const std::string& fmt_name : o.synthetic) {
      reset_peak_rss();
      auto t0 = std::chrono::steady_clock::now();
      std::fprintf(stderr, "bench: building synthetic %s model (%s)...", fmt_name.c_str(), cfg.name.c_str());
      auto m = make_synthetic_model(cfg, fmt_name, 1);
      std::fprintf(stderr, " %.1f s\n", seconds(t0));
      run_bench_model(*m, o, threads, isas, prec, rows);
    }
  }
  print_rows(rows, o.output);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto p = std::make_shared<std::string>("64"), n = std::make_shared<std::string>("32");
  auto d = std::make_shared<std::string>("0");
  auto t = std::make_shared<std::string>(), isa = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("bench", "benchmark prefill and decode throughput (llama-bench style)");
  c->add_option("-m,--model", o->models, "model file(s); none: synthetic Llama-3.2-1B-shaped models");
  c->add_option("--synthetic", o->synthetic, "formats of the synthetic models")->delimiter(',')->capture_default_str();
  c->add_option("--shape", o->shape, "synthetic model shape: 1b or 3b")->capture_default_str();
  c->add_option("-p,--n-prompt", *p, "prompt lengths (comma list)")->capture_default_str();
  c->add_option("-n,--n-gen", *n, "generation lengths (comma list)")->capture_default_str();
  c->add_option("-d,--n-depth", *d, "tokens already in the KV cache before each test (comma list)")
      ->capture_default_str();
  c->add_option("-t,--threads", *t, "thread counts (comma list; default: all cores)");
  c->add_option("-r,--repetitions", o->reps, "repetitions per test")->capture_default_str();
  c->add_option("--isa", *isa, "ISA levels to run (comma list of scalar, avx2, avx512; default: best)");
  c->add_option("-o,--output", o->output, "output format: md, csv, json")->capture_default_str();
  c->add_option("--precision", o->precision, "activation precision of matrix kernels: q8 or f32")->capture_default_str();
  c->add_option("--device", o->device, "where to run: cpu (default) or cuda")->capture_default_str();
  c->add_flag("--quick", o->quick, "use a small synthetic shape (dim 512, 4 layers) instead of 1B");
  c->add_flag("--no-bw", o->no_bw, "skip the read-bandwidth measurement");
  c->callback([o, p, n, d, t, isa] { bench(*o, *p, *n, *d, *t, *isa); });
}

}  // namespace slm::cli
