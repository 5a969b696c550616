// GGUF reader on corrupt input: one test per class of damage (truncation at every byte, bad
// magic/version, absurd counts/lengths/dims, duplicates, bad alignment, bad offsets, unsupported
// types, deep nesting), each asserting an slm::Error whose text names the problem, plus seeded
// random byte flips that must either parse or throw slm::Error (never crash or over-allocate).
#include <doctest/doctest.h>

#include <random>

#include "formats/gguf.h"
#include "gguf_test_util.h"

using namespace slm;
using namespace slm::gguf;
using namespace slm::gguf::testing;

namespace {

// A small valid file exercising strings, scalars, arrays, nested arrays and three tensors. The
// last tensor is exactly 32 bytes, so the file has no trailing padding and every strict prefix
// is missing something the reader needs.
struct Small {
  float a[16];
  uint8_t b[18];     // one Q4_0 block
  uint16_t c[16];
  std::vector<uint8_t> img;
  Small() {
    for (int i = 0; i < 16; ++i) a[i] = float(i);
    for (int i = 0; i < 18; ++i) b[i] = uint8_t(i * 7);
    for (int i = 0; i < 16; ++i) c[i] = uint16_t(0x3c00 + i);
    Writer w;
    w.set("general.architecture", Value::make_string("llama"));
    w.set("test.k1", Value::make_u32(7));
    w.set("test.k2", Value::make_f32_array({1, 2, 3}));
    w.set("test.nest", Value::make_array(ValueType::ARRAY, {Value::make_i32_array({1, 2})}));
    w.set("general.alignment", Value::make_u32(32));
    w.add_tensor("blk.0.a", QType::F32, {8, 2}, a);
    w.add_tensor("blk.0.b", QType::Q4_0, {32}, b);
    w.add_tensor("blk.0.c", QType::F16, {16}, c);
    img = w.to_bytes();
  }
};

void check_error(const std::vector<uint8_t>& img, std::string_view phrase) {
  std::string err = parse_error(img);
  INFO("error text: ", err);
  CHECK(!err.empty());
  CHECK(contains(err, phrase));
  CHECK(err.find('\n') == std::string::npos);  // one line
}

}  // namespace

TEST_CASE("gguf bad input: the base image is valid") {
  Small s;
  CHECK(parse_error(s.img) == "");
  auto f = File::parse(s.img.data(), s.img.size(), "mem");
  CHECK(f->tensors().size() == 3);
  CHECK(f->tensors()[1].offset == 64);
  CHECK(f->tensors()[2].offset == 96);
  CHECK(f->data_offset() + 128 == s.img.size());
}

TEST_CASE("gguf bad input: truncation at every byte offset") {
  Small s;
  for (size_t n = 0; n < s.img.size(); ++n) {
    // A fresh exact-size copy so any read past the prefix is caught by ASan.
    std::vector<uint8_t> cut(s.img.begin(), s.img.begin() + ptrdiff_t(n));
    std::string err = parse_error(cut);
    INFO("truncated to ", n, " bytes: ", err);
    REQUIRE(!err.empty());
    CHECK(contains(err, "truncated"));
  }
}

TEST_CASE("gguf bad input: magic and version") {
  Small s;
  auto img = s.img;
  img[0] = 'X';
  check_error(img, "magic");
  check_error({}, "truncated");
  check_error({'G', 'G', 'U'}, "truncated");

  img = s.img;
  put<uint32_t>(img, 4, 1);
  check_error(img, "version 1");
  put<uint32_t>(img, 4, 4);
  check_error(img, "version 4");
  put<uint32_t>(img, 4, 0);
  check_error(img, "version 0");
  put<uint32_t>(img, 4, 0x03000000);  // 3 written big-endian
  check_error(img, "big-endian");
}

TEST_CASE("gguf bad input: tensor and metadata counts larger than the file") {
  Small s;
  auto img = s.img;
  put<uint64_t>(img, 8, uint64_t(1) << 63);
  check_error(img, "could hold");
  img = s.img;
  put<uint64_t>(img, 8, ~uint64_t(0));
  check_error(img, "could hold");
  img = s.img;
  put<uint64_t>(img, 16, uint64_t(1) << 40);
  check_error(img, "could hold");
  // Counts the file could hold but that would cost ~100x their bytes in memory.
  Raw r;
  r.header(0, (uint64_t(1) << 20) + 1).zeros(size_t(15) << 20);
  check_error(r.b, "absurd metadata count 1048577");
  Raw t;
  t.header((uint64_t(1) << 20) + 1, 0).zeros(size_t(34) << 20);
  check_error(t.b, "absurd tensor count 1048577");
  // Just one more tensor than present: caught once the metadata has been read.
  img = s.img;
  put<uint64_t>(img, 8, 4);
  CHECK(!parse_error(img).empty());
}

TEST_CASE("gguf bad input: duplicate tensor names and keys") {
  Small s;
  auto img = s.img;
  img[find_bytes(img, "blk.0.b") + 6] = 'a';
  check_error(img, "duplicate tensor name 'blk.0.a'");

  img = s.img;
  img[find_bytes(img, "test.k2") + 6] = '1';
  check_error(img, "duplicate metadata key 'test.k1'");
}

TEST_CASE("gguf bad input: tensor data offsets") {
  Small s;
  auto img = s.img;
  put<uint64_t>(img, tensor_info_pos(img, "blk.0.c", 1).offset, uint64_t(1) << 20);
  check_error(img, "past end");
  img = s.img;
  put<uint64_t>(img, tensor_info_pos(img, "blk.0.c", 1).offset, ~uint64_t(0) - 31);  // overflows
  check_error(img, "past end");
  img = s.img;
  put<uint64_t>(img, tensor_info_pos(img, "blk.0.b", 1).offset, 80);
  check_error(img, "misaligned");
  // Cutting the last tensor short by one byte.
  img = s.img;
  img.pop_back();
  check_error(img, "past end");
}

TEST_CASE("gguf bad input: general.alignment") {
  Small s;
  size_t at = kv_type_pos(s.img, "general.alignment");
  auto img = s.img;
  put<uint32_t>(img, at + 4, 48);
  check_error(img, "power of two");
  put<uint32_t>(img, at + 4, 0);
  check_error(img, "power of two");
  img = s.img;
  put<uint32_t>(img, at, uint32_t(ValueType::I32));
  check_error(img, "must be u32");
  // A larger power of two is fine in the header but puts the data section past the end.
  img = s.img;
  put<uint32_t>(img, at + 4, 1u << 30);
  check_error(img, "past end");
}

TEST_CASE("gguf bad input: dimensions") {
  Small s;
  auto p = tensor_info_pos(s.img, "blk.0.a", 2);
  auto img = s.img;
  put<uint32_t>(img, p.n_dims, 5);
  check_error(img, "dimensions");
  put<uint32_t>(img, p.n_dims, 0);
  check_error(img, "dimensions");
  img = s.img;
  put<int64_t>(img, p.ne0, 0);
  check_error(img, "invalid dimension ne[0] = 0");
  put<int64_t>(img, p.ne0, -8);
  check_error(img, "invalid dimension ne[0] = -8");
  put<int64_t>(img, p.ne0 + 8, int64_t(1) << 50);
  put<int64_t>(img, p.ne0, 8);
  check_error(img, "invalid dimension ne[1]");

  // Four dims that are each plausible but whose product overflows int64.
  Raw r;
  r.header(1, 0).tensor("big", {int64_t(1) << 32, int64_t(1) << 32, 1 << 20, 1 << 20}, 0, 0);
  r.pad(32).zeros(64);
  check_error(r.b, "overflows");
}

TEST_CASE("gguf bad input: tensor types and block sizes") {
  Small s;
  auto img = s.img;
  put<uint32_t>(img, tensor_info_pos(img, "blk.0.a", 2).type, 16);
  check_error(img, "tensor 'blk.0.a' has unsupported type IQ2_XXS (16)");
  put<uint32_t>(img, tensor_info_pos(img, "blk.0.a", 2).type, 4);  // removed Q4_2
  check_error(img, "unsupported type");
  put<uint32_t>(img, tensor_info_pos(img, "blk.0.a", 2).type, 0xFFFFFFFFu);
  check_error(img, "unsupported type");

  img = s.img;
  put<int64_t>(img, tensor_info_pos(img, "blk.0.b", 1).ne0, 33);
  check_error(img, "not a multiple of the block size 32");
}

TEST_CASE("gguf bad input: tensor names") {
  auto file_with_name = [](std::string name) {
    Raw r;
    r.header(1, 0).tensor(name, {8}, 0, 0).pad(32).zeros(32);
    return r.b;
  };
  CHECK(parse_error(file_with_name(std::string(63, 'x'))) == "");
  check_error(file_with_name(std::string(64, 'x')), "too long");
  check_error(file_with_name(""), "empty name");
  // A name length that runs off the end of the file.
  Small s;
  auto img = s.img;
  put<uint64_t>(img, tensor_info_pos(img, "blk.0.c", 1).len, uint64_t(1) << 60);
  check_error(img, "truncated");
}

TEST_CASE("gguf bad input: metadata strings, types and arrays") {
  Small s;
  auto img = s.img;
  put<uint64_t>(img, kv_type_pos(img, "general.architecture") + 4, uint64_t(1) << 62);
  check_error(img, "has length 4611686018427387904");

  img = s.img;
  put<uint32_t>(img, kv_type_pos(img, "test.k1"), 13);
  check_error(img, "unknown metadata value type 13");
  img = s.img;
  put<uint32_t>(img, kv_type_pos(img, "test.k2") + 4, 77);  // array element type
  check_error(img, "unknown metadata value type 77");

  img = s.img;
  put<uint64_t>(img, kv_type_pos(img, "test.k2") + 8, uint64_t(1) << 61);  // array count
  check_error(img, "cannot fit");
  put<uint64_t>(img, kv_type_pos(img, "test.k2") + 8, ~uint64_t(0));  // count * 4 overflows
  check_error(img, "cannot fit");

  // Keys: a key length past the spec's 65535 cap, an empty key.
  Raw r;
  r.header(0, 1).str(std::string(70000, 'k')).u32(4).u32(1).pad(32);
  check_error(r.b, "absurd length 70000");
  Raw e;
  e.header(0, 1).str("").u32(4).u32(1).pad(32);
  check_error(e.b, "empty metadata key");
}

TEST_CASE("gguf bad input: array nesting depth and total element count") {
  auto nested = [](int depth) {
    Raw r;
    r.header(0, 1).str("deep").u32(uint32_t(ValueType::ARRAY));
    for (int d = 1; d < depth; ++d) r.u32(uint32_t(ValueType::ARRAY)).u64(1);
    r.u32(uint32_t(ValueType::U8)).u64(1).u8(5).pad(32);
    return r.b;
  };
  CHECK(parse_error(nested(4)) == "");
  check_error(nested(5), "nested deeper than 4");
  check_error(nested(1000), "nested deeper than 4");

  // 2^22 + 1 one-byte elements: the file holds them, but each costs a ~100-byte Value.
  Raw r;
  uint64_t n = (uint64_t(1) << 22) + 1;
  r.header(0, 1).str("big").u32(uint32_t(ValueType::ARRAY)).u32(uint32_t(ValueType::U8)).u64(n);
  r.zeros(size_t(n)).pad(32);
  check_error(r.b, "absurd array count");
}

TEST_CASE("gguf bad input: missing or unreadable files") {
  CHECK_THROWS_AS(File::open("/nonexistent/dir/model.gguf"), slm::Error);
  CHECK_THROWS_AS(File::open("/"), slm::Error);
  try {
    File::open("/nonexistent/model.gguf");
  } catch (const slm::Error& e) {
    CHECK(contains(e.what(), "/nonexistent/model.gguf"));
  }
}

TEST_CASE("gguf bad input: seeded random byte flips parse or throw slm::Error") {
  Small s;
  std::mt19937 rng(20260101);
  int parsed = 0, rejected = 0;
  for (int it = 0; it < 4000; ++it) {
    auto img = s.img;
    int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Mostly hit the header (where the structure is), sometimes anywhere.
      size_t limit = (rng() % 4) ? size_t(s.img.size() - 128) : s.img.size();
      size_t pos = rng() % limit;
      img[pos] ^= uint8_t(1u << (rng() % 8));
      if (rng() % 3 == 0) img[pos] = uint8_t(rng());
    }
    try {
      auto f = File::parse(img.data(), img.size(), "fuzz");
      for (const auto& t : f->tensors()) {
        // Touch every byte the reader claims is tensor data (ASan checks the bounds).
        volatile uint8_t sum = 0;
        for (uint64_t i = 0; i < t.nbytes; ++i) sum = uint8_t(sum + t.data[i]);
      }
      ++parsed;
    } catch (const slm::Error&) {
      ++rejected;
    }
  }
  MESSAGE("random flips: ", parsed, " parsed, ", rejected, " rejected");
  CHECK(rejected > 0);
  CHECK(parsed + rejected == 4000);
}
