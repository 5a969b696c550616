// `slmrun quantize`: F32/F16/BF16 GGUF -> GGUF in any type or llama.cpp mixture (runtime/quantize.h),
// optionally with a LoRA adapter merged first; or any model -> GPTQ / RTN directory
// (runtime/gptq_quantize.h). Progress on stderr for long runs and a per-tensor table at the end.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "runtime/gguf_export.h"
#include "runtime/gptq_quantize.h"
#include "runtime/lora.h"
#include "runtime/mixtures.h"
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
  // GPTQ / RTN (--type gptq|rtn): an AutoGPTQ directory.
  int bits = 4, group_size = 128;
  bool act_order = false, sym = false, lm_head = false;
  int lm_head_bits = 16;
  double damp = 0.01;
  std::string calib;
  int64_t samples = 128, seq_len = 512;
  // LoRA merged into the float weights before quantizing.
  std::string lora;
  float lora_scale = 1.f;
};

// --type gptq / rtn: quantize every linear (GPTQ with calibration text, or round-to-nearest) and
// write an AutoGPTQ-compatible directory.
void quantize_gptq(const QuantizeArgs& a) {
  const bool rtn = a.type == "rtn" || a.type == "RTN";
  SLM_CHECK(rtn || !a.calib.empty(), "--type gptq needs --calib FILE (calibration text)");
  auto model = Model::load(a.input);
  GptqQuantizeOptions qo;
  qo.solver.bits = a.bits;
  qo.solver.group_size = a.group_size;
  qo.solver.desc_act = a.act_order;
  qo.solver.sym = a.sym;
  qo.solver.damp_percent = a.damp;
  qo.rtn = rtn;
  qo.lm_head = a.lm_head;
  qo.lm_head_bits = a.lm_head_bits;
  if (!rtn) qo.calibration_text = read_file(a.calib);
  qo.n_samples = a.samples;
  qo.seq_len = a.seq_len;
  if (!a.quiet) qo.log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  std::optional<LoraAdapter> lora;
  if (!a.lora.empty()) {
    lora = load_lora_adapter(a.lora);
    qo.lora = &*lora;
    qo.lora_scale = a.lora_scale;
  }
  GptqQuantizeReport rep = gptq_quantize_model(*model, a.output, qo);
  if (!a.quiet) {
    std::printf("%-48s %5s %8s\n", "tensor", "bits", "rel err");
    for (const GptqTensorReport& t : rep.tensors) std::printf("%-48s %5d %8.4f\n", t.name.c_str(), t.bits, t.rel_error);
    std::printf("%s: %zu linears in %.1f s\n", a.output.c_str(), rep.tensors.size(), rep.seconds);
  }
}

// GGUF output from a loaded model: a Hugging Face directory, or any input with a LoRA adapter
// (merged into float weights first); quantized from memory with the same mixture rules and file
// layout as the GGUF file-to-file path.
QuantizeReport quantize_from_model(const QuantizeArgs& a, const WriteOptions& w) {
  auto merged = Model::load(a.input);
  if (!a.lora.empty()) merged = merge_lora(*merged, load_lora_adapter(a.lora), a.lora_scale);
  auto mix = mixture_from_name(a.type, a.pure);
  SLM_CHECK(mix.has_value(), "--type: unknown type or mixture '{}'", a.type);
  const ModelConfig& c = merged->config();
  ModelTensorSource src(*merged);
  const auto types = plan_tensor_types(src, *mix, MixtureContext{c.n_layers, c.n_heads, c.n_kv_heads, c.tied_embeddings});
  std::vector<std::string> names;
  for (const SourceTensor& t : src.tensors()) names.push_back(t.name);
  const auto meta = llama_gguf_metadata(c, merged->has_tokenizer() ? &merged->tokenizer().spec() : nullptr, mix->file_type);
  return write_gguf(src, types, llama_quantize_order(names), meta, a.output, w);
}

void quantize(const QuantizeArgs& a) {
  apply_threads_and_isa(a.threads, "");
  if (a.type == "gptq" || a.type == "GPTQ" || a.type == "rtn" || a.type == "RTN") return quantize_gptq(a);
  SLM_CHECK(a.lm_head_bits == 16 && !a.lm_head,
            "--lm-head-bits / --quantize-lm-head apply to --type gptq or rtn (GGUF mixtures choose the output type "
            "themselves), not to --type {}", a.type);
  QuantizeOptions opts;
  opts.type = a.type;
  opts.pure = a.pure;
  opts.write.compute_error = !a.no_error;
  ProgressBar bar("quantize");
  if (!a.quiet) opts.write.progress = [&bar](uint64_t d, uint64_t t, const std::string& n) { bar.update(d, t, n); };
  const bool from_file = a.lora.empty() && !std::filesystem::is_directory(a.input);
  QuantizeReport rep = from_file ? quantize_gguf_file(a.input, a.output, opts) : quantize_from_model(a, opts.write);
  bar.update(1, 1, "");
  if (!a.quiet) print_quantize_report(rep, stdout);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* c = app.add_subcommand(
      "quantize", "convert an F32/F16/BF16 GGUF model to a quantized type or llama.cpp mixture (e.g. Q4_K_M)");
  c->add_option("-m,--model", a->input, "input model: GGUF with F32/F16/BF16 weights, or a Hugging Face directory")->required();
  c->add_option("-o,--output", a->output, "output GGUF file")->required();
  c->add_option("--type", a->type,
                "type or mixture: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K "
                "IQ4_NL IQ4_XS F16 BF16 F32; or gptq / rtn (-o is then a directory)")
      ->required();
  c->add_flag("--pure", a->pure, "every 2-D weight gets the type itself (no mixture rules)");
  c->add_option("-t,--threads", a->threads, "threads (default: all cores)");
  c->add_flag("-q,--quiet", a->quiet, "no progress bar and no summary table");
  c->add_flag("--no-error", a->no_error, "skip measuring the reconstruction error (faster)");
  c->add_option("--bits", a->bits, "gptq/rtn: bits per weight (2, 3, 4, 8)")->capture_default_str();
  c->add_option("--group-size", a->group_size, "gptq/rtn: group size (-1: one group per row)")->capture_default_str();
  c->add_flag("--act-order", a->act_order, "gptq: quantize columns in order of decreasing Hessian diagonal (desc_act)");
  c->add_flag("--sym", a->sym, "gptq/rtn: symmetric grid");
  c->add_flag("--quantize-lm-head", a->lm_head, "gptq/rtn: also quantize an untied lm_head (with --bits)");
  c->add_option("--lm-head-bits", a->lm_head_bits,
                "gptq/rtn: 16 keeps the lm_head as it is; 8 or 4 GPTQ-quantize it as its own tensor (a tied "
                "embedding is untied and stays FP16 for lookups)")
      ->capture_default_str();
  c->add_option("--damp", a->damp, "gptq: dampening, fraction of the mean Hessian diagonal")->capture_default_str();
  c->add_option("--calib", a->calib, "gptq: calibration text file");
  c->add_option("--samples", a->samples, "gptq: calibration sequences")->capture_default_str();
  c->add_option("--seq-len", a->seq_len, "gptq: tokens per calibration sequence")->capture_default_str();
  c->add_option("--lora", a->lora, "PEFT LoRA adapter directory merged into the weights before quantizing");
  c->add_option("--lora-scale", a->lora_scale, "multiplier on the adapter's alpha/r scale")->capture_default_str();
  c->callback([a] { quantize(*a); });
}

}  // namespace slm::cli
