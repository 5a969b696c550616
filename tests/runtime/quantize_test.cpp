// runtime/quantize + runtime/gguf_export: llama-quantize's order/metadata rules, the mixture plan
// and the tensor bytes against the llama.cpp fixtures (tiny-a-*.gguf), and the export paths
// (random model, in-memory Model) read back through the GGUF loader.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "formats/gguf.h"
#include "runtime/gguf_export.h"
#include "runtime/hf_export.h"
#include "runtime/quantize.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// sqrt(sum (dequant(t) - ref)^2 / sum ref^2) for a tensor and its F32 source.
double rel_rms(const gguf::TensorInfo& t, const gguf::TensorInfo& ref) {
  const int64_t cols = t.ne[0], rows = t.rows();
  std::vector<float> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
  double e = 0, s = 0;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(t.type, t.data + row_bytes(t.type, cols) * size_t(r), a.data(), cols);
    dequantize_row(ref.type, ref.data + row_bytes(ref.type, cols) * size_t(r), b.data(), cols);
    for (int64_t c = 0; c < cols; ++c) {
      const double d = double(a[size_t(c)]) - double(b[size_t(c)]);
      e += d * d;
      s += double(b[size_t(c)]) * double(b[size_t(c)]);
    }
  }
  return std::sqrt(e / s);
}

ModelConfig small_config() {
  ModelConfig c = tiny_llama_config();
  c.n_vocab = 1024;
  c.dim = 256;
  c.hidden_dim = 768;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  return c;
}

}  // namespace

TEST_CASE("llama-quantize tensor order: by name, then stably by block number") {
  const std::vector<std::string> names = {"token_embd.weight",     "blk.10.attn_q.weight", "blk.2.ffn_up.weight",
                                          "output_norm.weight",    "blk.2.attn_k.weight",  "rope_freqs.weight",
                                          "blk.10.attn_norm.weight", "output.weight"};
  std::vector<std::string> got;
  for (size_t i : llama_quantize_order(names)) got.push_back(names[i]);
  const std::vector<std::string> want = {"output.weight",       "output_norm.weight",     "rope_freqs.weight",
                                         "token_embd.weight",   "blk.2.attn_k.weight",    "blk.2.ffn_up.weight",
                                         "blk.10.attn_norm.weight", "blk.10.attn_q.weight"};
  CHECK(got == want);
}

TEST_CASE("quantized metadata: file_type and quantization_version move to the end, split keys go") {
  GgufMetadata in = {{"general.architecture", gguf::Value::make_string("llama")},
                     {"general.file_type", gguf::Value::make_u32(1)},
                     {"split.count", gguf::Value::make_u32(2)},
                     {"llama.block_count", gguf::Value::make_u32(2)}};
  const GgufMetadata out = quantized_metadata(in, *mixture_from_name("Q4_K_M"));
  REQUIRE(out.size() == 4);
  CHECK(out[0].first == "general.architecture");
  CHECK(out[1].first == "llama.block_count");
  CHECK(out[2].first == "general.quantization_version");
  CHECK(out[2].second.u == 2);
  CHECK(out[3].first == "general.file_type");
  CHECK(out[3].second.u == 15);  // llama_ftype MOSTLY_Q4_K_M
}

TEST_CASE("tensor selection, kinds and row-length fallbacks") {
  CHECK(is_quantizable_tensor("blk.0.attn_q.weight", 2));
  CHECK_FALSE(is_quantizable_tensor("blk.0.attn_norm.weight", 2));
  CHECK_FALSE(is_quantizable_tensor("rope_freqs.weight", 1));
  CHECK_FALSE(is_quantizable_tensor("blk.0.attn_q.bias", 2));
  CHECK(tensor_kind("blk.12.ffn_down.weight") == std::pair{TensorKind::FfnDown, int64_t(12)});
  CHECK(tensor_kind("token_embd.weight") == std::pair{TensorKind::TokenEmbd, int64_t(0)});
  CHECK_FALSE(tensor_kind("blk.x.ffn_down.weight").has_value());
  // ggml's substitutes for K-quants on rows that are not a multiple of 256 (but are of 32).
  CHECK(fit_type_to_row(QType::Q4_K, 4096) == QType::Q4_K);
  CHECK(fit_type_to_row(QType::Q4_K, 96) == QType::Q5_0);
  CHECK(fit_type_to_row(QType::Q5_K, 96) == QType::Q5_1);
  CHECK(fit_type_to_row(QType::Q6_K, 96) == QType::Q8_0);
  CHECK(fit_type_to_row(QType::Q3_K, 96) == QType::IQ4_NL);
  CHECK(fit_type_to_row(QType::Q4_0, 40) == QType::F16);
}

TEST_CASE("fixtures: quantize tiny-a-F32 like llama-quantize (types, bytes, error, whole file)") {
  SLM_REQUIRE_FIXTURES(fx);
  const std::string dir = fx + "/tiny-a/";
  auto src = gguf::File::open(dir + "tiny-a-F32.gguf");
  test::TempDir tmp;
  struct Case {
    std::string fixture, type;
    bool pure;
  };
  const std::vector<Case> cases = {
      {"pure-Q8_0", "Q8_0", true},     {"pure-Q4_0", "Q4_0", true},     {"pure-Q4_1", "Q4_1", true},
      {"pure-Q5_0", "Q5_0", true},     {"pure-Q5_1", "Q5_1", true},     {"pure-Q2_K", "Q2_K", true},
      {"pure-Q3_K_S", "Q3_K_S", true}, {"pure-Q4_K_S", "Q4_K_S", true}, {"pure-Q5_K_S", "Q5_K_S", true},
      {"pure-Q6_K", "Q6_K", true},     {"pure-IQ4_NL", "IQ4_NL", true}, {"pure-IQ4_XS", "IQ4_XS", true},
      {"Q4_K_M", "Q4_K_M", false},     {"Q5_K_M", "Q5_K_M", false},     {"Q3_K_M", "Q3_K_M", false},
      {"Q6_K", "Q6_K", false},         {"Q2_K", "Q2_K", false},         {"Q4_0", "Q4_0", false},
      {"Q8_0", "Q8_0", false},         {"IQ4_NL", "IQ4_NL", false},     {"IQ4_XS", "IQ4_XS", false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.fixture);
    const std::string out = tmp.file(c.fixture + ".gguf");
    QuantizeOptions opts;
    opts.type = c.type;
    opts.pure = c.pure;
    const QuantizeReport rep = quantize_gguf_file(dir + "tiny-a-F32.gguf", out, opts);
    auto ours = gguf::File::open(out);
    auto ref = gguf::File::open(dir + "tiny-a-" + c.fixture + ".gguf");
    REQUIRE(ours->tensors().size() == ref->tensors().size());
    int identical = 0, quantized = 0;
    double worst_ratio = 0;
    for (size_t i = 0; i < ref->tensors().size(); ++i) {
      const gguf::TensorInfo& r = ref->tensors()[i];
      const gguf::TensorInfo& o = ours->tensors()[i];
      CHECK(o.name == r.name);  // llama-quantize's order
      const gguf::TensorInfo* s = src->find_tensor(r.name);
      REQUIRE(s != nullptr);
      CHECK_MESSAGE(o.type == r.type, r.name, ": ours ", qtype_name(o.type), ", llama.cpp ", qtype_name(r.type));
      if (o.type != r.type || o.nbytes != r.nbytes) continue;
      const bool same = std::memcmp(o.data, r.data, r.nbytes) == 0;
      identical += same;
      if (r.type == QType::F32) continue;
      ++quantized;
      // Same bytes give the same error exactly; otherwise ours must not be worse (the K-quant
      // searches minimise this error, so a different choice is only acceptable if it is better).
      const double e_ours = rel_rms(o, *s), e_ref = rel_rms(r, *s);
      worst_ratio = std::max(worst_ratio, e_ours / e_ref);
      CHECK_MESSAGE(e_ours <= e_ref, r.name, ": rel RMS ours ", e_ours, " > llama.cpp ", e_ref);
      // The report's error is computed on the fly while writing; it must agree with the file's.
      for (const TensorReport& tr : rep.tensors)
        if (tr.name == r.name) CHECK(std::abs(tr.rel_rms - e_ours) <= 1e-9 * e_ours);
    }
    const bool whole_file = file_bytes(out) == file_bytes(dir + "tiny-a-" + c.fixture + ".gguf");
    MESSAGE(c.fixture, ": ", identical, "/", ref->tensors().size(), " tensors byte-identical, worst error ratio ours/llama.cpp ",
            worst_ratio, " over ", quantized, " quantized tensors, whole file identical: ", whole_file);
    // The round-to-nearest types have one correct answer: every byte must match, and with the
    // same metadata order the whole file does.
    if (c.pure && (c.type == "Q8_0" || c.type == "Q4_0" || c.type == "Q4_1" || c.type == "Q5_0" || c.type == "Q5_1")) {
      CHECK(identical == int(ref->tensors().size()));
      CHECK(whole_file);
    }
  }
}

TEST_CASE("fixtures: F16 and BF16 sources quantize to the bytes of the same values in F32") {
  // F16/BF16 -> float is exact, so quantizing tiny-a-F16 to Q8_0 must equal quantizing the F16
  // values; check it against an independent quantize_row over the dequantized rows.
  SLM_REQUIRE_FIXTURES(fx);
  test::TempDir tmp;
  for (const char* src_name : {"tiny-a-F16.gguf", "tiny-a-BF16.gguf"}) {
    CAPTURE(src_name);
    auto src = gguf::File::open(fx + "/tiny-a/" + src_name);
    QuantizeOptions opts;
    opts.type = "Q8_0";
    opts.pure = true;
    quantize_gguf_file(fx + "/tiny-a/" + src_name, tmp.file("o.gguf"), opts);
    auto out = gguf::File::open(tmp.file("o.gguf"));
    const gguf::TensorInfo* s = src->find_tensor("blk.1.ffn_down.weight");
    const gguf::TensorInfo* o = out->find_tensor("blk.1.ffn_down.weight");
    REQUIRE(s);
    REQUIRE(o);
    REQUIRE(o->type == QType::Q8_0);
    std::vector<float> row(size_t(s->ne[0]));
    std::vector<uint8_t> q(row_bytes(QType::Q8_0, s->ne[0]));
    bool same = true;
    for (int64_t r = 0; r < s->rows(); ++r) {
      dequantize_row(s->type, s->data + row_bytes(s->type, s->ne[0]) * size_t(r), row.data(), s->ne[0]);
      quantize_row(QType::Q8_0, row.data(), q.data(), s->ne[0]);
      same &= std::memcmp(q.data(), o->data + q.size() * size_t(r), q.size()) == 0;
    }
    CHECK(same);
  }
}

TEST_CASE("quantize errors: unknown type, missing input, quantized input, unwritable output") {
  test::TempDir tmp;
  QuantizeOptions opts;
  opts.type = "Q9_X";
  CHECK_THROWS_WITH_AS(quantize_gguf_file(tmp.file("a.gguf"), tmp.file("b.gguf"), opts),
                       doctest::Contains("unknown quantization type 'Q9_X'"), Error);
  opts.type = "Q4_0";
  CHECK_THROWS_WITH_AS(quantize_gguf_file(tmp.file("missing.gguf"), tmp.file("b.gguf"), opts),
                       doctest::Contains("missing.gguf"), Error);

  // A quantized model as input.
  const ModelConfig cfg = small_config();
  RandomLlamaSource src(cfg, 7);
  TokenizerSpec tok = synthetic_byte_tokenizer(cfg.n_vocab);
  ExportOptions eo;
  eo.type = "Q8_0";
  export_llama_gguf(src, cfg, &tok, tmp.file("q8.gguf"), eo);
  CHECK_THROWS_WITH_AS(quantize_gguf_file(tmp.file("q8.gguf"), tmp.file("b.gguf"), opts),
                       doctest::Contains("needs an F32, F16 or BF16 model"), Error);
  CHECK_FALSE(std::ifstream(tmp.file("b.gguf")).good());

  eo.type = "F32";
  export_llama_gguf(src, cfg, &tok, tmp.file("f32.gguf"), eo);
  CHECK_THROWS_WITH_AS(quantize_gguf_file(tmp.file("f32.gguf"), tmp.file("no/such/dir/b.gguf"), opts),
                       doctest::Contains("cannot create output file"), Error);
}

TEST_CASE("random model export: quantized export == F32 export + quantize, and it loads") {
  const ModelConfig cfg = small_config();
  RandomLlamaSource src(cfg, 3);
  TokenizerSpec tok = synthetic_byte_tokenizer(cfg.n_vocab);
  test::TempDir tmp;
  ExportOptions eo;
  export_llama_gguf(src, cfg, &tok, tmp.file("f32.gguf"), eo);
  eo.type = "Q4_K_M";
  export_llama_gguf(src, cfg, &tok, tmp.file("direct.gguf"), eo);
  QuantizeOptions qo;
  qo.type = "Q4_K_M";
  quantize_gguf_file(tmp.file("f32.gguf"), tmp.file("via.gguf"), qo);
  CHECK(file_bytes(tmp.file("direct.gguf")) == file_bytes(tmp.file("via.gguf")));

  auto f = gguf::File::open(tmp.file("f32.gguf"));
  // Converter key order (gguf.md §2.1) and tensor order.
  const std::vector<std::string> want_keys = {
      "general.architecture", "general.type", "general.name", "llama.block_count", "llama.context_length",
      "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
      "llama.attention.head_count_kv", "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
      "llama.attention.key_length", "llama.attention.value_length", "general.file_type", "llama.vocab_size",
      "llama.rope.dimension_count", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
      "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
      "tokenizer.ggml.eos_token_id"};
  std::vector<std::string> keys;
  for (const auto& kv : f->metadata()) keys.push_back(kv.first);
  CHECK(keys == want_keys);
  REQUIRE(f->tensors().size() == 21);
  CHECK(f->tensors()[0].name == "token_embd.weight");
  CHECK(f->tensors()[1].name == "rope_freqs.weight");
  CHECK(f->tensors()[2].name == "blk.0.attn_norm.weight");
  CHECK(f->tensors()[20].name == "output_norm.weight");

  // Weight statistics: N(0, 0.02^2) over 1024*256 values has sample sd within ~0.3% (4 sigma
  // of the sd estimator, sd/sqrt(2n)); norms are 1 + N(0, 0.05^2).
  const gguf::TensorInfo* te = f->find_tensor("token_embd.weight");
  const float* v = reinterpret_cast<const float*>(te->data);
  const size_t n = size_t(te->n_elements());
  double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) s1 += v[i], s2 += double(v[i]) * v[i];
  const double mean = s1 / double(n), sd = std::sqrt(s2 / double(n) - mean * mean);
  CHECK(std::abs(mean) < 4 * 0.02 / std::sqrt(double(n)));
  CHECK(std::abs(sd - 0.02) < 4 * 0.02 / std::sqrt(2.0 * double(n)));
  const float* norm = reinterpret_cast<const float*>(f->find_tensor("output_norm.weight")->data);
  double nm = 0;
  for (int64_t i = 0; i < cfg.dim; ++i) nm += norm[i];
  CHECK(std::abs(nm / double(cfg.dim) - 1.0) < 4 * 0.05 / std::sqrt(double(cfg.dim)));

  auto m = Model::load(tmp.file("f32.gguf"));
  CHECK(m->config().n_vocab == cfg.n_vocab);
  CHECK(m->config().rope_divisors == cfg.rope_divisors);
  CHECK(m->tokenizer().bos() == std::optional<int32_t>(int32_t(cfg.n_vocab - 256)));
}

TEST_CASE("synthetic byte tokenizer: round trip, merges, specials") {
  auto tok = Tokenizer::from_spec(synthetic_byte_tokenizer(600));
  CHECK(tok->n_vocab() == 600);
  const std::string text = "the quick brown fox \xF0\x9F\xA6\x8A\n";
  const auto ids = tok->encode(text, true, false);
  REQUIRE(!ids.empty());
  CHECK(ids[0] == 600 - 11);  // 11 specials below a 1024 vocabulary; BOS first
  CHECK(tok->decode(std::span(ids).subspan(1)) == text);
  CHECK(ids.size() < text.size() + 1);  // letter-pair merges apply
  CHECK(tok->is_eog(600 - 11 + 9));     // <|eot_id|>
  CHECK(tok->encode("<|eot_id|>", false, true) == std::vector<int32_t>{600 - 11 + 9});
  CHECK_THROWS_AS(synthetic_byte_tokenizer(200), Error);
}

TEST_CASE("in-memory Model export keeps every tensor's type and bytes") {
  ModelConfig cfg = small_config();
  auto m = make_synthetic_model(cfg, "Q4_K_M", 5);
  TokenizerSpec tok = synthetic_byte_tokenizer(cfg.n_vocab);
  test::TempDir tmp;
  export_model_gguf(*m, tmp.file("m.gguf"), &tok);
  auto back = Model::load(tmp.file("m.gguf"));
  auto same = [](const WeightTensor& a, const WeightTensor& b) {
    return a.type == b.type && a.rows == b.rows && a.cols == b.cols && a.bytes() == b.bytes() &&
           std::memcmp(a.data, b.data, a.bytes()) == 0;
  };
  CHECK(same(back->weights().tok_embd, m->weights().tok_embd));
  for (size_t l = 0; l < m->weights().layers.size(); ++l) {
    const LayerWeights &a = back->weights().layers[l], &b = m->weights().layers[l];
    CHECK(same(a.wq, b.wq));
    CHECK(same(a.wv, b.wv));
    CHECK(same(a.w_down, b.w_down));
    CHECK(a.attn_norm == b.attn_norm);
  }
  CHECK(back->gguf()->get_int("general.file_type") == 14);  // dominant Q4_K -> Q4_K_S's ftype
}

TEST_CASE("GGUF -> Hugging Face tensor names") {
  CHECK(gguf_to_hf_name("token_embd.weight") == "model.embed_tokens.weight");
  CHECK(gguf_to_hf_name("blk.11.attn_q.weight") == "model.layers.11.self_attn.q_proj.weight");
  CHECK(gguf_to_hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight");
  CHECK(gguf_to_hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight");
  CHECK(gguf_to_hf_name("output.weight") == "lm_head.weight");
  CHECK_FALSE(gguf_to_hf_name("rope_freqs.weight").has_value());
}

TEST_CASE("gguf::Writer streaming layout equals the in-memory writer's") {
  // header_bytes + data at data_offsets must reproduce to_bytes exactly (what write_gguf relies on).
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::make_string("llama"));
  const std::vector<float> a(40, 1.5f), b(64, -2.f);
  w.add_tensor("a", QType::F32, {40}, a.data());
  w.add_tensor("b", QType::F32, {32, 2}, b.data());
  const std::vector<uint8_t> whole = w.to_bytes();
  const std::vector<uint8_t> header = w.header_bytes();
  const std::vector<uint64_t> offs = w.data_offsets();
  REQUIRE(offs.size() == 2);
  CHECK(offs[0] == header.size());
  CHECK(offs[1] == header.size() + 160);  // 160 bytes of "a" are already a multiple of 32
  CHECK(std::equal(header.begin(), header.end(), whole.begin()));
  CHECK(std::memcmp(whole.data() + offs[1], b.data(), 256) == 0);
  CHECK(whole.size() == offs[1] + 256);
  gguf::Writer info_only;
  info_only.add_tensor_info("x", QType::Q8_0, {64, 3});
  CHECK_FALSE(info_only.header_bytes().empty());
  CHECK_THROWS_AS(info_only.to_bytes(), Error);
}
