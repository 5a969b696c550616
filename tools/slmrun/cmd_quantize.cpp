// `slmrun quantize`: F32/F16/BF16 GGUF -> GGUF in any type or llama.cpp mixture (runtime/quantize.h),
// with a progress bar on stderr for long runs and a per-tensor size/error table at the end.
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "runtime/quantize.h"
#include "tools/slmrun/common.h"

namespace slm::cli {

void print_quantize_report(const QuantizeReport& rep, std::FILE* out) {
  std::fprintf(out, "%-32s %-7s %-7s %-16s %12s %10s\n", "tensor", "from", "type", "shape", "bytes", "rel_rms");
  for (const TensorReport& t : rep.tensors) {
    const std::string err = std::isnan(t.rel_rms) ? "-" : t.rel_rms == 0 ? "0" : fmt::format("{:.3e}", t.rel_rms);
    std::fprintf(out, "%-32s %-7s %-7s %-16s %12llu %10s\n", t.name.c_str(), std::string(qtype_name(t.src_type)).c_str(),
                 std::string(qtype_name(t.type)).c_str(), fmt::format("[{}]", fmt::join(t.ne, ", ")).c_str(),
                 (unsigned long long)t.bytes, err.c_str());
  }
  std::fprintf(out, "%s: %zu tensors, %.2f MiB -> %.2f MiB file, %.2f s\n", rep.mixture.c_str(), rep.tensors.size(),
               double(rep.src_bytes) / 1048576.0, double(rep.out_bytes) / 1048576.0, rep.seconds);
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(uint64_t done, uint64_t total, const std::string& what) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // Quick jobs stay silent; long ones redraw at most ten times a second (and once at the end).
  if (elapsed < 1.0 || (done < total && std::chrono::duration<double>(now - last_).count() < 0.1)) return;
  last_ = now;
  const double frac = total ? double(done) / double(total) : 1.0;
  constexpr int kWidth = 30;
  const int fill = int(frac * kWidth + 0.5);
  std::fprintf(stderr, "\r%s [%s%s] %3d%% %6.1fs %-32.32s", label_.c_str(), std::string(size_t(fill), '#').c_str(),
               std::string(size_t(kWidth - fill), '.').c_str(), int(frac * 100 + 0.5), elapsed, what.c_str());
  shown_ = true;
  std::fflush(stderr);
}

ProgressBar::~ProgressBar() {
  if (shown_) std::fprintf(stderr, "\n");
}

namespace {

struct QuantizeArgs {
  std::string input, output, type;
  bool pure = false, quiet = false, no_error = false;
  int threads = 0;
};

void quantize(const QuantizeArgs& a) {
  apply_threads_and_isa(a.threads, "");
  QuantizeOptions opts;
  opts.type = a.type;
  opts.pure = a.pure;
  opts.write.compute_error = !a.no_error;
  ProgressBar bar("quantize");
  if (!a.quiet) opts.write.progress = [&bar](uint64_t d, uint64_t t, const std::string& n) { bar.update(d, t, n); };
  QuantizeReport rep = quantize_gguf_file(a.input, a.output, opts);
  bar.update(1, 1, "");
  if (!a.quiet) print_quantize_report(rep, stdout);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* c = app.add_subcommand(
      "quantize", "convert an F32/F16/BF16 GGUF model to a quantized type or llama.cpp mixture (e.g. Q4_K_M)");
  c->add_option("-m,--model", a->input, "input model (GGUF with F32, F16 or BF16 weights)")->required();
  c->add_option("-o,--output", a->output, "output GGUF file")->required();
  c->add_option("--type", a->type,
                "type or mixture: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K "
                "IQ4_NL IQ4_XS F16 BF16 F32")
      ->required();
  c->add_flag("--pure", a->pure, "every 2-D weight gets the type itself (no mixture rules)");
  c->add_option("-t,--threads", a->threads, "threads (default: all cores)");
  c->add_flag("-q,--quiet", a->quiet, "no progress bar and no summary table");
  c->add_flag("--no-error", a->no_error, "skip measuring the reconstruction error (faster)");
  c->callback([a] { quantize(*a); });
}

}  // namespace slm::cli
