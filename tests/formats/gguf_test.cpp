// GGUF reader/writer on valid input: the llama.cpp-written fixtures (known facts from the fixture
// README and gguf.md §1.4/§2.1), byte-exact read-then-write round trips of those files, the
// Writer against a hand-encoded image, and writer->reader for every value type and tensor type.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "formats/gguf.h"
#include "gguf_test_util.h"
#include "support/fixtures.h"

using namespace slm;
using namespace slm::gguf;
using namespace slm::gguf::testing;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> fixture_ggufs(const std::string& dir) {
  std::vector<std::string> out;
  for (const char* sub : {"tiny-a", "vocab-llama3"}) {
    fs::path d = fs::path(dir) / sub;
    if (!fs::is_directory(d)) continue;
    for (const auto& e : fs::directory_iterator(d))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Rebuilds a file through the Writer from what the reader returned.
std::vector<uint8_t> rewrite(const File& f) {
  Writer w;
  for (const auto& [k, v] : f.metadata()) w.set(k, v);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.ne, t.data);
  return w.to_bytes();
}

void check_round_trip(const std::string& path) {
  auto f = File::open(path);
  MappedFile raw(path);
  std::vector<uint8_t> out = rewrite(*f);
  size_t n = std::min(out.size(), raw.size());
  size_t first_diff = std::mismatch(out.begin(), out.begin() + ptrdiff_t(n), raw.data()).first -
                      out.begin();
  INFO(path, ": first differing byte at ", first_diff);
  CHECK(out.size() == raw.size());
  CHECK(first_diff == n);
}

std::string type_name(QType t) { return std::string(qtype_info(t).name); }

}  // namespace

TEST_CASE("gguf: every fixture parses and is laid out as llama.cpp requires") {
  SLM_REQUIRE_FIXTURES(dir);
  auto files = fixture_ggufs(dir);
  REQUIRE(files.size() >= 20);  // 3 float + 9 mixtures + 12 pure tiny-a files, 2 vocab files
  for (const auto& path : files) {
    INFO(path);
    auto f = File::open(path);
    CHECK(f->version() == 3);
    CHECK(f->alignment() == 32);
    CHECK(f->data_offset() % 32 == 0);
    CHECK(f->get_string("general.architecture") == "llama");
    REQUIRE(!f->tensors().empty());
    // llama.cpp's stricter rule (gguf.md §1.4): offsets are the running sum of aligned sizes in
    // info order, and the file ends right after the last padded tensor.
    uint64_t expect = 0;
    for (const auto& t : f->tensors()) {
      CHECK(t.offset == expect);
      CHECK(t.nbytes == row_bytes(t.type, t.ne[0]) * uint64_t(t.rows()));
      CHECK(t.data != nullptr);
      expect += (t.nbytes + 31) / 32 * 32;
    }
    CHECK(f->data_offset() + expect == f->file_size());
    // Pure files: every 2-D weight of a block has the named type (README; the _S suffix names a
    // mixture whose pure variant is the bare K type).
    std::string stem = fs::path(path).stem().string();
    auto pure = stem.find("-pure-");
    if (pure != std::string::npos) {
      std::string want = stem.substr(pure + 6);
      if (want.size() > 2 && want.substr(want.size() - 2) == "_S") want.resize(want.size() - 2);
      const TensorInfo* q = f->find_tensor("blk.0.attn_q.weight");
      REQUIRE(q != nullptr);
      CHECK(type_name(q->type) == want);
    }
    const TensorInfo* norm = f->find_tensor("blk.0.attn_norm.weight");
    REQUIRE(norm != nullptr);
    CHECK(norm->type == QType::F32);
  }
}

TEST_CASE("gguf: tiny-a-F16 known facts") {
  SLM_REQUIRE_FIXTURES(dir);
  auto f = File::open(dir + "/tiny-a/tiny-a-F16.gguf");
  CHECK(f->data_offset() == 88096);  // gguf.md §1.4 worked example
  CHECK(f->file_size() == 4418720);
  CHECK(f->tensors().size() == 21);  // token_embd, output_norm, rope_freqs + 2 layers x 9

  // Key order as listed in gguf.md §2.1.
  const char* keys[] = {"general.architecture", "general.type", "general.name",
                        "llama.block_count", "llama.context_length", "llama.embedding_length",
                        "llama.feed_forward_length", "llama.attention.head_count",
                        "llama.attention.head_count_kv", "llama.rope.freq_base",
                        "llama.attention.layer_norm_rms_epsilon", "llama.attention.key_length",
                        "llama.attention.value_length", "general.file_type", "llama.vocab_size",
                        "llama.rope.dimension_count", "tokenizer.ggml.model", "tokenizer.ggml.pre",
                        "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                        "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                        "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"};
  REQUIRE(f->metadata().size() == std::size(keys));
  for (size_t i = 0; i < std::size(keys); ++i) CHECK(f->metadata()[i].first == keys[i]);

  CHECK(f->get_string("general.architecture") == "llama");
  CHECK(f->get_int("llama.block_count") == 2);
  CHECK(f->find("llama.block_count")->type == ValueType::U32);  // converter writes u32 (§2)
  CHECK(f->get_int("llama.embedding_length") == 256);
  CHECK(f->get_int("llama.feed_forward_length") == 768);
  CHECK(f->get_int("llama.attention.head_count") == 4);
  CHECK(f->get_int("llama.attention.head_count_kv") == 2);
  CHECK(f->get_int("llama.vocab_size") == 2304);
  CHECK(f->get_float("llama.rope.freq_base") == 500000.0);
  // Stored as f32, so the exact value is float(1e-5) = 9.99999975e-06 (§2).
  CHECK(f->get_float("llama.attention.layer_norm_rms_epsilon") == double(1e-5f));
  CHECK(f->find("llama.attention.layer_norm_rms_epsilon")->type == ValueType::F32);
  CHECK(f->get_string("tokenizer.ggml.model") == "gpt2");
  CHECK(f->get_string("tokenizer.ggml.pre") == "llama-bpe");
  CHECK(f->get_int("tokenizer.ggml.bos_token_id") == 2048);  // README: <|begin_of_text|> = 2048

  const auto* tokens = f->get_array("tokenizer.ggml.tokens");
  REQUIRE(tokens != nullptr);
  CHECK(f->find("tokenizer.ggml.tokens")->elem_type == ValueType::STRING);
  REQUIRE(tokens->size() == 2304);
  CHECK((*tokens)[2048].str == "<|begin_of_text|>");
  CHECK((*tokens)[2057].str == "<|eot_id|>");
  CHECK((*tokens)[0].str == "!");  // byte-level BPE: id 0 is "!" in the Llama 3 vocabulary
  const auto* types = f->get_array("tokenizer.ggml.token_type");
  REQUIRE(types != nullptr);
  CHECK(f->find("tokenizer.ggml.token_type")->elem_type == ValueType::I32);
  REQUIRE(types->size() == 2304);
  CHECK((*types)[0].as_int() == 1);     // NORMAL
  CHECK((*types)[2048].as_int() == 3);  // CONTROL
  CHECK(f->get_array("general.architecture") == nullptr);
  CHECK(f->get_string("tokenizer.ggml.tokens") == std::nullopt);
  CHECK(f->find("no.such.key") == nullptr);
  CHECK(f->get_int("no.such.key") == std::nullopt);

  const TensorInfo* emb = f->find_tensor("token_embd.weight");
  REQUIRE(emb != nullptr);
  CHECK(emb->type == QType::F16);
  CHECK(emb->ne == std::vector<int64_t>{256, 2304});
  CHECK(emb->nbytes == 256u * 2304u * 2u);
  CHECK(emb->rows() == 2304);
  CHECK(emb->n_elements() == 256 * 2304);
  const TensorInfo* rope = f->find_tensor("rope_freqs.weight");
  REQUIRE(rope != nullptr);
  CHECK(rope->type == QType::F32);
  CHECK(rope->ne == std::vector<int64_t>{32});
  CHECK(rope->nbytes == 128);
  CHECK(f->find_tensor("output.weight") == nullptr);  // tied embeddings
  // Llama 3 rope factors are >= 1 (1 for high frequencies, up to the scaling factor for low).
  float rf[32];
  std::memcpy(rf, rope->data, sizeof rf);
  CHECK(rf[0] == 1.0f);
  for (float x : rf) CHECK((x >= 1.0f && x <= 64.0f));
}

TEST_CASE("gguf: vocab-llama3 parses fast and has the full vocabulary") {
  SLM_REQUIRE_FIXTURES(dir);
  std::string path = dir + "/vocab-llama3/vocab-llama3-F16.gguf";
  auto t0 = std::chrono::steady_clock::now();
  auto f = File::open(path);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("vocab-llama3-F16.gguf parsed in ", secs * 1e3, " ms");
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  CHECK(secs < 0.2);  // the brief's budget for a 128k-token, 280k-merge header
#endif
  REQUIRE(f->get_array("tokenizer.ggml.tokens") != nullptr);
  CHECK(f->get_array("tokenizer.ggml.tokens")->size() == 128256);
  REQUIRE(f->get_array("tokenizer.ggml.merges") != nullptr);
  CHECK(f->get_array("tokenizer.ggml.merges")->size() == 280147);
  CHECK(f->get_array("tokenizer.ggml.tokens")->at(128000).str == "<|begin_of_text|>");
  CHECK(f->get_int("llama.embedding_length") == 64);
}

TEST_CASE("gguf: read-then-write reproduces llama.cpp files byte for byte") {
  SLM_REQUIRE_FIXTURES(dir);
  check_round_trip(dir + "/tiny-a/tiny-a-Q4_K_M.gguf");
  check_round_trip(dir + "/tiny-a/tiny-a-F16.gguf");
  for (const auto& path : fixture_ggufs(dir)) check_round_trip(path);

  // The same through Writer::write (the streaming file path).
  std::string path = dir + "/tiny-a/tiny-a-Q4_K_M.gguf";
  auto f = File::open(path);
  Writer w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.ne, t.data);
  slm::test::TempDir tmp;
  w.write(tmp.file("copy.gguf"));
  MappedFile a(path), b(tmp.file("copy.gguf"));
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
}

TEST_CASE("gguf: writer output matches a hand-encoded image") {
  // Independent encoding of gguf.md §1: header, KVs, tensor infos, pad to 32, data padded to 32.
  float a[5] = {1, 2, 3, 4, 5};  // 20 bytes -> padded to 32
  uint16_t b[16];
  for (int i = 0; i < 16; ++i) b[i] = uint16_t(0x3c00 + i);
  Raw r;
  r.header(2, 2);
  r.str("general.architecture").u32(8).str("llama");
  r.str("x.list").u32(9).u32(4).u64(2).u32(7).u32(9);
  r.tensor("a", {5}, 0, 0);
  r.tensor("b", {16}, 1, 32);
  r.pad(32);
  size_t data_off = r.b.size();
  r.b.insert(r.b.end(), reinterpret_cast<uint8_t*>(a), reinterpret_cast<uint8_t*>(a) + 20);
  r.pad(32);
  r.b.insert(r.b.end(), reinterpret_cast<uint8_t*>(b), reinterpret_cast<uint8_t*>(b) + 32);

  Writer w;
  w.set("general.architecture", Value::make_string("llama"));
  w.set("x.list", Value::make_array(ValueType::U32, {Value::make_u32(7), Value::make_u32(9)}));
  w.add_tensor("a", QType::F32, {5}, a);
  w.add_tensor("b", QType::F16, {16}, b);
  CHECK(w.to_bytes() == r.b);

  auto f = File::parse(r.b.data(), r.b.size(), "hand");
  CHECK(f->data_offset() == data_off);
  CHECK(f->find_tensor("b")->data == r.b.data() + data_off + 32);
}

TEST_CASE("gguf: writer replaces keys in place and writes files") {
  Writer w;
  w.set("k1", Value::make_u32(1));
  w.set("k2", Value::make_u32(2));
  w.set("k1", Value::make_string("one"));
  auto img = w.to_bytes();
  auto f = File::parse(img.data(), img.size(), "mem");
  REQUIRE(f->metadata().size() == 2);
  CHECK(f->metadata()[0].first == "k1");
  CHECK(f->get_string("k1") == "one");
  CHECK(f->tensors().empty());

  slm::test::TempDir tmp;
  w.write(tmp.file("w.gguf"));
  auto g = File::open(tmp.file("w.gguf"));
  CHECK(g->file_size() == img.size());
  CHECK(g->get_int("k2") == 2);
  CHECK_THROWS_AS(w.write(tmp.file("no/such/dir/x.gguf")), slm::Error);
}

TEST_CASE("gguf: writer rejects what the reader would reject") {
  float x[32] = {};
  Writer w;
  w.add_tensor("t", QType::F32, {4}, x);
  CHECK_THROWS_AS(w.add_tensor("t", QType::F32, {4}, x), slm::Error);
  CHECK_THROWS_AS(w.add_tensor("", QType::F32, {4}, x), slm::Error);
  CHECK_THROWS_AS(w.add_tensor(std::string(64, 'n'), QType::F32, {4}, x), slm::Error);
  w.add_tensor(std::string(63, 'n'), QType::F32, {4}, x);
  CHECK_THROWS_AS(w.add_tensor("q", QType::Q4_0, {33}, x), slm::Error);
  CHECK_THROWS_AS(w.add_tensor("z", QType::F32, {0}, x), slm::Error);
  CHECK_THROWS_AS(w.add_tensor("d", QType::F32, {1, 1, 1, 1, 1}, x), slm::Error);
  CHECK_THROWS_AS(w.set("general.alignment", Value::make_u32(48)), slm::Error);
  CHECK_THROWS_AS(w.set("general.alignment", Value::make_i32(64)), slm::Error);
  w.set("bad", Value::make_array(ValueType::U32, {Value::make_i32(1)}));
  CHECK_THROWS_AS(w.to_bytes(), slm::Error);
}

TEST_CASE("gguf: writer -> reader preserves every value type exactly") {
  auto mk = [](ValueType t, auto setter) {
    Value v;
    v.type = t;
    setter(v);
    return v;
  };
  Writer w;
  w.set("u8", mk(ValueType::U8, [](Value& v) { v.u = 255; }));
  w.set("i8", mk(ValueType::I8, [](Value& v) { v.i = -128; }));
  w.set("u16", mk(ValueType::U16, [](Value& v) { v.u = 65535; }));
  w.set("i16", mk(ValueType::I16, [](Value& v) { v.i = -32768; }));
  w.set("u32", Value::make_u32(4294967295u));
  w.set("i32", Value::make_i32(std::numeric_limits<int32_t>::min()));
  w.set("u64", Value::make_u64(std::numeric_limits<uint64_t>::max()));
  w.set("i64", mk(ValueType::I64, [](Value& v) { v.i = std::numeric_limits<int64_t>::min(); }));
  w.set("f32", Value::make_f32(1e-5f));
  w.set("f64", mk(ValueType::F64, [](Value& v) { v.f = 0.1; }));
  w.set("bool_t", Value::make_bool(true));
  w.set("bool_f", Value::make_bool(false));
  w.set("str", Value::make_string(std::string("h\0llo \xe2\x9c\x93", 10)));
  w.set("str_empty", Value::make_string(""));
  w.set("arr_empty", Value::make_array(ValueType::F64, {}));
  w.set("arr_str", Value::make_string_array({"a", "", "ccc"}));
  w.set("arr_f32", Value::make_f32_array({0.5f, -2.0f}));
  w.set("arr_i32", Value::make_i32_array({-1, 7}));
  // Three levels: array of arrays of arrays of u16.
  Value inner = Value::make_array(ValueType::U16, {mk(ValueType::U16, [](Value& v) { v.u = 9; })});
  Value mid = Value::make_array(ValueType::ARRAY, {inner, Value::make_array(ValueType::U16, {})});
  w.set("nested", Value::make_array(ValueType::ARRAY, {mid}));

  auto img = w.to_bytes();
  auto f = File::parse(img.data(), img.size(), "mem");
  CHECK(f->metadata().size() == 19);
  CHECK(f->find("u8")->type == ValueType::U8);
  CHECK(f->get_int("u8") == 255);
  CHECK(f->find("i8")->type == ValueType::I8);
  CHECK(f->get_int("i8") == -128);
  CHECK(f->get_int("u16") == 65535);
  CHECK(f->get_int("i16") == -32768);
  CHECK(f->get_int("u32") == 4294967295ll);
  CHECK(f->get_int("i32") == std::numeric_limits<int32_t>::min());
  CHECK(f->find("u64")->u == std::numeric_limits<uint64_t>::max());
  CHECK(f->get_int("u64") == std::nullopt);  // does not fit int64
  CHECK(f->get_int("i64") == std::numeric_limits<int64_t>::min());
  CHECK(f->find("f32")->type == ValueType::F32);
  CHECK(f->get_float("f32") == double(1e-5f));
  CHECK(f->get_float("f64") == 0.1);
  CHECK(f->get_int("bool_t") == 1);
  CHECK(f->get_int("bool_f") == 0);
  CHECK(f->find("bool_t")->type == ValueType::BOOL);
  CHECK(f->get_string("str") == std::string("h\0llo \xe2\x9c\x93", 10));
  CHECK(f->get_string("str_empty") == "");
  CHECK(f->find("arr_empty")->elem_type == ValueType::F64);
  CHECK(f->get_array("arr_empty")->empty());
  REQUIRE(f->get_array("arr_str")->size() == 3);
  CHECK(f->get_array("arr_str")->at(2).str == "ccc");
  CHECK(f->get_array("arr_f32")->at(1).f == -2.0);
  CHECK(f->get_array("arr_i32")->at(0).as_int() == -1);
  const Value* n = f->find("nested");
  REQUIRE(n != nullptr);
  CHECK(n->elem_type == ValueType::ARRAY);
  REQUIRE(n->items.size() == 1);
  CHECK(n->items[0].elem_type == ValueType::ARRAY);
  REQUIRE(n->items[0].items.size() == 2);
  CHECK(n->items[0].items[0].elem_type == ValueType::U16);
  CHECK(n->items[0].items[0].items.at(0).as_int() == 9);
  CHECK(n->items[0].items[1].items.empty());
  CHECK(f->get_float("str") == std::nullopt);
  CHECK(f->get_float("u8") == 255.0);

  // And the reader's values write back to the same bytes.
  CHECK(rewrite(*f) == img);
}

TEST_CASE("gguf: writer -> reader for every tensor type, default and custom alignment") {
  for (uint32_t alignment : {0u, 64u}) {
    INFO("alignment ", alignment);
    std::mt19937 rng(1234);
    std::vector<std::vector<uint8_t>> blobs;
    Writer w;
    if (alignment) w.set_alignment(alignment);
    int k = 0;
    for (const QTypeInfo& qi : all_qtypes()) {
      std::vector<int64_t> ne = {int64_t(qi.block_elems) * 2, 3};
      blobs.emplace_back(size_t(qi.block_bytes) * 2 * 3);
      for (auto& byte : blobs.back()) byte = uint8_t(rng());
      w.add_tensor(fmt::format("t{}", k++), qi.type, ne, blobs.back().data());
    }
    auto img = w.to_bytes();
    auto f = File::parse(img.data(), img.size(), "mem");
    uint64_t a = alignment ? alignment : 32;
    CHECK(f->alignment() == a);
    CHECK(f->data_offset() % a == 0);
    REQUIRE(f->tensors().size() == all_qtypes().size());
    for (size_t i = 0; i < blobs.size(); ++i) {
      const TensorInfo& t = f->tensors()[i];
      const QTypeInfo& qi = all_qtypes()[i];
      INFO(qi.name);
      CHECK(t.type == qi.type);
      CHECK(t.ne == std::vector<int64_t>{int64_t(qi.block_elems) * 2, 3});
      CHECK(t.offset % a == 0);
      REQUIRE(t.nbytes == blobs[i].size());
      CHECK(std::memcmp(t.data, blobs[i].data(), t.nbytes) == 0);
      CHECK(t.data == img.data() + f->data_offset() + t.offset);
    }
  }
}

TEST_CASE("gguf: version 2 files parse") {
  float x[8] = {};
  Writer w;
  w.set("k", Value::make_u32(1));
  w.add_tensor("t", QType::F32, {8}, x);
  auto img = w.to_bytes();
  put<uint32_t>(img, 4, 2);
  auto f = File::parse(img.data(), img.size(), "mem");
  CHECK(f->version() == 2);
  CHECK(f->get_int("k") == 1);
}
