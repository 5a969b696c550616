// `slmrun mkmodel`: writes a random-weight Llama model (a preset shape, optionally resized) as a
// GGUF file in any type or mixture, with a real tokenizer (--tokenizer tokenizer.json) or a
// synthetic byte-level one, so benchmarks and tests need no download; --format hf writes the same
// model as a Hugging Face checkpoint directory.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/hf_tokenizer.h"
#include "runtime/gguf_export.h"
#include "runtime/hf_export.h"
#include "runtime/synthetic.h"
#include "tools/slmrun/common.h"

namespace slm::cli {
namespace {

struct MkmodelArgs {
  std::string output, preset = "tiny", type = "F32", tokenizer, format = "gguf", name;
  int64_t vocab = 0, layers = 0, dim = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, ctx = 0;
  uint64_t seed = 1;
  bool untied = false, pure = false, quiet = false, table = false;
  int threads = 0;
};

ModelConfig preset_config(const std::string& preset) {
  if (preset == "llama-3.2-1b" || preset == "1b") return llama32_1b_config();
  if (preset == "llama-3.2-3b" || preset == "3b") return llama32_3b_config();
  if (preset == "tiny") return tiny_llama_config();
  fail("--preset: unknown preset '{}' (known: llama-3.2-1b, llama-3.2-3b, tiny)", preset);
}

// tokenizer_config.json's chat_template next to tokenizer.json, if any ("" otherwise).
std::string sibling_chat_template(const std::string& tokenizer_json) {
  const auto cfg = std::filesystem::path(tokenizer_json).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg)) return "";
  const auto j = nlohmann::json::parse(read_file(cfg.string()), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("chat_template") || !j["chat_template"].is_string())
    return "";
  return j["chat_template"].get<std::string>();
}

void mkmodel(const MkmodelArgs& a) {
  apply_threads_and_isa(a.threads, "");
  SLM_CHECK(a.format == "gguf" || a.format == "hf", "--format: unknown format '{}' (gguf or hf)", a.format);

  ModelConfig cfg = preset_config(a.preset);
  if (!a.name.empty()) cfg.name = a.name;
  if (a.layers > 0) cfg.n_layers = a.layers;
  if (a.hidden > 0) cfg.hidden_dim = a.hidden;
  if (a.heads > 0) cfg.n_heads = a.heads;
  if (a.kv_heads > 0) cfg.n_kv_heads = a.kv_heads;
  if (a.dim > 0) cfg.dim = a.dim;
  if (a.ctx > 0) cfg.n_ctx_train = a.ctx;
  if (a.head_dim > 0) cfg.head_dim = a.head_dim;
  else if (a.dim > 0 || a.heads > 0) cfg.head_dim = cfg.n_heads > 0 ? cfg.dim / cfg.n_heads : 0;
  SLM_CHECK(cfg.head_dim > 0 && cfg.head_dim % 2 == 0, "mkmodel: head dimension {} must be positive and even",
            cfg.head_dim);
  cfg.n_rot = cfg.head_dim;
  // Llama 3.2's rope scaling (factor 32, low 1, high 4, original context 8192) for every shape.
  cfg.rope_divisors = llama3_rope_divisors(cfg.n_rot, cfg.rope_theta, 32.f, 1.f, 4.f, 8192.f);
  cfg.tied_embeddings = !a.untied;

  TokenizerSpec tok;
  std::string chat_template;
  if (!a.tokenizer.empty()) {
    const auto cfg_path = std::filesystem::path(a.tokenizer).parent_path() / "tokenizer_config.json";
    tok = read_hf_tokenizer(a.tokenizer, std::filesystem::exists(cfg_path)
                                             ? std::optional<std::string>(cfg_path.string())
                                             : std::nullopt);
    chat_template = sibling_chat_template(a.tokenizer);
    cfg.n_vocab = a.vocab > 0 ? a.vocab : int64_t(tok.tokens.size());
    pad_tokenizer(tok, cfg.n_vocab);
  } else {
    if (a.vocab > 0) cfg.n_vocab = a.vocab;
    tok = synthetic_byte_tokenizer(cfg.n_vocab);
  }
  cfg.validate();

  RandomLlamaSource src(cfg, a.seed);
  if (a.format == "hf") {
    HfExportOptions ho;
    const auto t = qtype_from_name(a.type);
    SLM_CHECK(t && (*t == QType::F32 || *t == QType::F16 || *t == QType::BF16),
              "mkmodel --format hf writes F32, F16 or BF16 checkpoints, not '{}'", a.type);
    ho.dtype = *t;
    if (!a.tokenizer.empty()) {
      ho.tokenizer_json = a.tokenizer;
      const auto tc = std::filesystem::path(a.tokenizer).parent_path() / "tokenizer_config.json";
      if (std::filesystem::exists(tc)) ho.tokenizer_config_json = tc.string();
    }
    ho.chat_template = chat_template;
    export_llama_hf(src, cfg, tok, a.output, ho);
    if (!a.quiet)
      std::printf("%s: %s, %lld layers, dim %lld, vocab %lld, %s Hugging Face checkpoint\n", a.output.c_str(),
                  cfg.name.c_str(), (long long)cfg.n_layers, (long long)cfg.dim, (long long)cfg.n_vocab,
                  std::string(qtype_name(*t)).c_str());
    return;
  }
  ExportOptions opts;
  opts.type = a.type;
  opts.pure = a.pure;
  opts.chat_template = chat_template;
  opts.write.compute_error = a.table;
  ProgressBar bar("mkmodel");
  if (!a.quiet) opts.write.progress = [&bar](uint64_t d, uint64_t t, const std::string& n) { bar.update(d, t, n); };
  QuantizeReport rep = export_llama_gguf(src, cfg, &tok, a.output, opts);
  bar.update(1, 1, "");
  if (a.table) print_quantize_report(rep, stdout);
  if (!a.quiet)
    std::printf("%s: %s, %lld layers, dim %lld, vocab %lld, %s, %zu tensors, %.2f MiB\n", a.output.c_str(),
                cfg.name.c_str(), (long long)cfg.n_layers, (long long)cfg.dim, (long long)cfg.n_vocab,
                rep.mixture.c_str(), rep.tensors.size(), double(rep.out_bytes) / 1048576.0);
}

}  // namespace

void add_mkmodel_command(CLI::App& app) {
  auto a = std::make_shared<MkmodelArgs>();
  CLI::App* c = app.add_subcommand("mkmodel", "write a random-weight Llama model (GGUF) for tests and benchmarks");
  c->add_option("-o,--output", a->output, "output file")->required();
  c->add_option("--preset", a->preset, "shape: llama-3.2-1b, llama-3.2-3b or tiny")->capture_default_str();
  c->add_option("--type", a->type, "weight type or mixture (F32, F16, BF16, Q8_0, Q4_K_M, ...)")->capture_default_str();
  c->add_flag("--pure", a->pure, "every 2-D weight gets --type itself (no mixture rules)");
  c->add_option("--vocab", a->vocab, "vocabulary size (default: the preset's, or the tokenizer's)");
  c->add_option("--layers", a->layers, "number of layers");
  c->add_option("--dim", a->dim, "embedding width");
  c->add_option("--hidden", a->hidden, "FFN width");
  c->add_option("--heads", a->heads, "attention heads");
  c->add_option("--kv-heads", a->kv_heads, "key/value heads");
  c->add_option("--head-dim", a->head_dim, "head dimension (default: dim / heads)");
  c->add_option("--ctx", a->ctx, "training context length written to the metadata");
  c->add_option("--name", a->name, "general.name");
  c->add_flag("--untied", a->untied, "separate output.weight instead of tied embeddings");
  c->add_option("--tokenizer", a->tokenizer, "Hugging Face tokenizer.json (default: a synthetic byte-level vocabulary)");
  c->add_option("--seed", a->seed, "random seed")->capture_default_str();
  c->add_option("--format", a->format, "gguf, or hf (a Hugging Face directory: config.json, model.safetensors, tokenizer files)")->capture_default_str();
  c->add_option("-t,--threads", a->threads, "threads (default: all cores)");
  c->add_flag("--table", a->table, "print the per-tensor table with quantization errors");
  c->add_flag("-q,--quiet", a->quiet, "no progress bar or summary line");
  c->callback([a] { mkmodel(*a); });
}

}  // namespace slm::cli
