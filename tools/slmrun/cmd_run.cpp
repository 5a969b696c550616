// `slmrun run`: generate text from a prompt (or chat), stream it to stdout, report timings on
// stderr; --json / --logits / --logits-all for exact comparisons with other runtimes.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/isa.h"
#include "runtime/device_session.h"
#include "runtime/generate.h"
#include "runtime/lora.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tools/slmrun/common.h"

namespace slm::cli {
namespace {

struct RunOptions {
  std::string model, prompt, file, tokens, system, logits_file, logits_all_file, isa, precision = "auto";
  std::string cache_type = "f16";
  std::string lora;
  float lora_scale = 1.f;
  std::string device = "cpu";
  int64_t n_predict = 64, n_ctx = 4096, batch = 64;
  int threads = 0;
  SamplerParams sp;
  bool chat = false, json = false, no_escape = false, ignore_eos = false, verbose = false;
};

void write_f32(const std::string& path, const float* v, size_t n) {
  std::ofstream f(path, std::ios::binary);
  SLM_CHECK(bool(f), "{}: cannot open for writing", path);
  f.write(reinterpret_cast<const char*>(v), std::streamsize(n * sizeof(float)));
  SLM_CHECK(bool(f), "{}: write failed", path);
}

cpu::ActPrecision parse_precision(const std::string& p) {
  if (p == "auto" || p == "q8" || p == "llamacpp") return cpu::ActPrecision::LlamaCpp;
  if (p == "f32") return cpu::ActPrecision::F32;
  fail("--precision: unknown value '{}' (expected q8 or f32)", p);
}

std::unique_ptr<Model> load_model(const std::string& path, double* ms) {
  auto t0 = std::chrono::steady_clock::now();
  bool shown = false;
  LoadOptions lo;
  lo.progress = [&](size_t done, size_t total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 1.0 || shown) {
      std::fprintf(stderr, "\rloading %zu/%zu tensors", done, total);
      shown = true;
      if (done == total) std::fprintf(stderr, "\n");
    }
  };
  auto m = Model::load(path, lo);
  *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

// Multi-turn chat on stdin: each line is a user turn; the KV cache keeps the conversation, so
// every turn only evaluates its own tokens. Ends at EOF or an empty line.
void interactive_chat(const RunOptions& o, Model& model, Session& session) {
  const Tokenizer& tok = model.tokenizer();
  Sampler sampler(o.sp, session.n_vocab());
  std::vector<ChatMessage> first = {{"system", o.no_escape ? o.system : unescape(o.system)}};
  bool started = false;
  std::string line;
  while (true) {
    std::fprintf(stderr, "\n> ");
    if (!std::getline(std::cin, line) || line.empty()) break;
    std::vector<int32_t> turn;
    if (!started) {
      first.push_back({"user", line});
      turn = encode_llama3_chat(tok, first, true);
      started = true;
    } else {
      // The previous reply ended with <|eot_id|> (sampled, not yet evaluated) or was cut off.
      turn = tok.encode("<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n", false, true);
      auto content = tok.encode(line, false, false);
      turn.insert(turn.end(), content.begin(), content.end());
      auto tail = tok.encode("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false, true);
      turn.insert(turn.end(), tail.begin(), tail.end());
    }
    if (session.n_past() + int64_t(turn.size()) >= session.n_ctx()) {
      std::fprintf(stderr, "note: the conversation filled the context (-c %lld); ending\n", (long long)session.n_ctx());
      break;
    }
    Utf8Stream stream;
    GenerateOptions go;
    go.n_predict = o.n_predict;
    go.on_token = [&](int32_t id) {
      if (!tok.is_eog(id)) {
        std::string piece = stream.push(tok.token_bytes(id));
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      }
      return true;
    };
    GenerateResult r = generate(session, sampler, turn, go);
    std::string tail = stream.flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "[%lld tokens, %.2f tok/s]", (long long)r.timings.n_gen, r.timings.gen_tps());
    if (r.hit_context_end) break;
  }
}

void run(const RunOptions& o) {
  SLM_CHECK(o.device == "cpu" || o.device == "cuda", "--device: unknown value '{}' (cpu or cuda)", o.device);
  if (o.device == "cuda") {  // before the (possibly long) model load
    std::string why;
    SLM_CHECK(cuda_backend_available(&why), "CUDA device requested but {}", why);
  }
  apply_threads_and_isa(o.threads, o.isa);
  const cpu::ActPrecision prec = parse_precision(o.precision);
  SLM_CHECK(o.n_ctx > 0, "-c must be positive");
  SLM_CHECK(o.batch > 0, "-b must be positive");
  int n_sources = int(!o.prompt.empty()) + int(!o.file.empty()) + int(!o.tokens.empty());
  SLM_CHECK(n_sources <= 1, "give only one of -p, -f and --tokens");
  SLM_CHECK(n_sources == 1 || o.chat, "no prompt: give -p TEXT, -f FILE or --tokens IDS");
  SLM_CHECK(!(o.chat && !o.tokens.empty()), "--chat takes a text prompt, not --tokens");

  double load_ms = 0;
  auto model = load_model(o.model, &load_ms);
  if (!o.lora.empty()) model = merge_lora(*model, load_lora_adapter(o.lora), o.lora_scale);
  const Tokenizer& tok = model->tokenizer();

  std::string text = o.file.empty() ? (o.no_escape ? o.prompt : unescape(o.prompt)) : read_file(o.file);
  if (o.chat && n_sources == 0) {
    SLM_CHECK(o.device == "cpu", "interactive --chat runs on the CPU only (give -p with --device cuda)");
    SessionOptions so;
    so.n_ctx = o.n_ctx;
    so.max_batch = o.batch;
    so.precision = prec;
    so.kv_type = o.cache_type == "f32" ? cpu::KvType::F32 : cpu::KvType::F16;
    Session session(*model, so);
    interactive_chat(o, *model, session);
    return;
  }
  std::vector<int32_t> prompt;
  if (!o.tokens.empty()) {
    prompt = parse_token_list(o.tokens);
  } else if (o.chat) {
    std::vector<ChatMessage> msgs;
    msgs.push_back({"system", o.no_escape ? o.system : unescape(o.system)});
    msgs.push_back({"user", text});
    prompt = encode_llama3_chat(tok, msgs, true);  // message text never becomes control tokens
  } else {
    prompt = tok.encode(text, true, true);
  }
  SLM_CHECK(!prompt.empty(), "the prompt tokenized to nothing");

  SessionOptions so;
  so.n_ctx = o.n_ctx;
  so.max_batch = o.batch;
  so.precision = prec;
  SLM_CHECK(o.cache_type == "f16" || o.cache_type == "f32", "--cache-type: unknown value '{}' (f16 or f32)", o.cache_type);
  so.kv_type = o.cache_type == "f32" ? cpu::KvType::F32 : cpu::KvType::F16;
  SLM_CHECK(o.device == "cpu" || o.cache_type == "f16", "--cache-type f32 is not supported with --device cuda");
  auto body = [&](auto& session) {
    const bool want_all = !o.logits_all_file.empty();
    SLM_CHECK(int64_t(prompt.size()) <= o.n_ctx,
              "context overflow: the prompt has {} tokens but the context is {} (raise -c)", prompt.size(), o.n_ctx);
    auto t0 = std::chrono::steady_clock::now();
    session.eval(prompt, want_all);
    const double prompt_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!o.logits_file.empty()) write_f32(o.logits_file, session.last_logits(), size_t(session.n_vocab()));
    if (want_all) write_f32(o.logits_all_file, session.all_logits().data(), session.all_logits().size());

    Sampler sampler(o.sp, session.n_vocab());
    Utf8Stream stream;
    std::string text_out;
    GenerateOptions go;
    go.n_predict = o.n_predict;
    go.stop_at_eog = !o.ignore_eos;
    go.prompt_evaluated = true;
    go.on_token = [&](int32_t id) {
      if (!tok.is_eog(id)) {
        std::string piece = stream.push(tok.token_bytes(id));
        text_out += piece;
        if (!o.json) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
      }
      return true;
    };
    GenerateResult r;
    if (o.n_predict != 0) r = generate(session, sampler, prompt, go);
    r.timings.prompt_ms = prompt_ms;
    r.timings.n_prompt = int64_t(prompt.size());
    std::string tail = stream.flush();
    text_out += tail;
    const uint64_t rss = peak_rss_bytes();

    if (o.json) {
      nlohmann::json j;
      j["prompt_tokens"] = prompt;
      j["tokens"] = r.tokens;
      j["text"] = text_out;  // invalid UTF-8 was already replaced by U+FFFD
      j["timings"] = {{"load_ms", load_ms},
                      {"prompt_ms", r.timings.prompt_ms},
                      {"prompt_tokens_per_s", r.timings.prompt_tps()},
                      {"gen_ms", r.timings.gen_ms},
                      {"gen_tokens_per_s", r.timings.gen_tps()}};
      j["peak_rss"] = rss;
      j["isa"] = std::string(cpu::isa_name(cpu::active_isa()));
      j["device"] = o.device;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::fwrite(tail.data(), 1, tail.size(), stdout);
      std::printf("\n");
    }
    if (r.hit_context_end) std::fprintf(stderr, "note: generation stopped at the end of the context (-c %lld)\n", (long long)o.n_ctx);
    std::fprintf(stderr,
                 "load: %.1f ms | prompt: %lld tokens, %.1f ms, %.2f tok/s | generation: %lld tokens, %.2f tok/s | "
                 "peak RSS: %.1f MiB | isa: %s\n",
                 load_ms, (long long)r.timings.n_prompt, r.timings.prompt_ms, r.timings.prompt_tps(),
                 (long long)r.timings.n_gen, r.timings.gen_tps(), double(rss) / (1024.0 * 1024.0),
                 o.device == "cuda" ? "cuda" : std::string(cpu::isa_name(cpu::active_isa())).c_str());
  };
  if (o.device == "cuda") {
    CudaSessionOptions co;
    co.n_ctx = o.n_ctx;
    co.max_batch = o.batch;
    body(*open_cuda_session(*model, co));
  } else {
    Session session(*model, so);
    body(session);
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* c = app.add_subcommand("run", "generate text from a prompt");
  c->alias("chat");
  c->add_option("-m,--model", o->model, "model file (GGUF)")->required();
  c->add_option("-p,--prompt", o->prompt, "prompt text (\\n escapes are expanded)");
  c->add_option("-f,--file", o->file, "read the prompt from a file");
  c->add_option("--tokens", o->tokens, "prompt as comma-separated token ids (no tokenization, no BOS added)");
  c->add_option("-n,--n-predict", o->n_predict, "tokens to generate (-1: until end of generation)")->capture_default_str();
  c->add_option("-c,--ctx-size", o->n_ctx, "context size (KV cache length)")->capture_default_str();
  c->add_option("-b,--batch-size", o->batch, "prompt tokens per forward pass")->capture_default_str();
  c->add_option("-t,--threads", o->threads, "threads (default: all cores)");
  c->add_option("--temp", o->sp.temperature, "temperature (0: greedy)")->capture_default_str();
  c->add_option("--top-k", o->sp.top_k, "top-k (0: off)")->capture_default_str();
  c->add_option("--top-p", o->sp.top_p, "top-p (1: off)")->capture_default_str();
  c->add_option("--min-p", o->sp.min_p, "min-p (0: off)")->capture_default_str();
  c->add_option("--repeat-penalty", o->sp.repeat_penalty, "repetition penalty (1: off)")->capture_default_str();
  c->add_option("--repeat-last-n", o->sp.repeat_last_n, "tokens the penalty looks back")->capture_default_str();
  c->add_option("--seed", o->sp.seed, "random seed")->capture_default_str();
  c->add_flag("--chat", o->chat, "wrap the prompt in the Llama 3 chat template");
  c->add_option("-s,--system", o->system, "system prompt for --chat");
  c->add_flag("--json", o->json, "print one JSON object (prompt_tokens, tokens, text, timings)");
  c->add_option("--logits", o->logits_file, "write the last prompt position's logits (float32 LE)");
  c->add_option("--logits-all", o->logits_all_file, "write every prompt position's logits (n_prompt x n_vocab)");
  c->add_option("--isa", o->isa, "force the CPU kernel level: scalar, avx2, avx512 (default: best)");
  c->add_option("--precision", o->precision, "activation precision of matrix kernels: q8 (llama.cpp-like, default) or f32");
  c->add_option("--cache-type", o->cache_type, "KV cache type: f16 (default, as llama.cpp) or f32")->capture_default_str();
  c->add_option("--device", o->device, "where the model runs: cpu (default) or cuda")->capture_default_str();
  c->add_option("--lora", o->lora, "PEFT LoRA adapter directory, merged into the weights at load");
  c->add_option("--lora-scale", o->lora_scale, "multiplier on the adapter's alpha/r scale")->capture_default_str();
  c->add_flag("--no-escape", o->no_escape, "do not expand \\n escapes in -p");
  c->add_flag("--ignore-eos", o->ignore_eos, "do not stop at end-of-generation tokens");
  c->callback([o] { run(*o); });
}

}  // namespace slm::cli
