// safetensors: writer -> reader round trips for every dtype, a hand-assembled file checked
// against the format's byte layout, each malformed-header case naming its problem, and sharded
// checkpoints through model.safetensors.index.json.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "formats/safetensors.h"
#include "support/fixtures.h"

using namespace slm;

namespace {

// The message of the slm::Error `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A safetensors image from a literal header and `data_bytes` bytes of data (pattern-filled).
std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> v(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  std::memcpy(v.data(), &n, 8);
  std::memcpy(v.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) v[8 + header.size() + i] = uint8_t(i * 7 + 1);
  return v;
}

std::string parse_error(const std::string& header, size_t data_bytes) {
  auto img = image(header, data_bytes);
  return error_of([&] { st::File::parse(img.data(), img.size(), "bad.safetensors"); });
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

}  // namespace

TEST_CASE("safetensors: round trip of every supported dtype with metadata") {
  const st::DType types[] = {st::DType::F32, st::DType::F16, st::DType::BF16, st::DType::I32,
                             st::DType::I8,  st::DType::U8,  st::DType::I64};
  std::mt19937 rng(1);
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<std::vector<int64_t>> shapes = {{3, 5}, {7}, {2, 3, 4}, {1, 1}, {13}, {4, 0}, {}};
  st::Writer w;
  for (size_t i = 0; i < std::size(types); ++i) {
    int64_t n = 1;
    for (auto d : shapes[i]) n *= d;
    payloads.emplace_back(size_t(n) * st::dtype_size(types[i]));
    for (auto& b : payloads.back()) b = uint8_t(rng());
    w.add("t." + std::string(st::dtype_name(types[i])), types[i], shapes[i], payloads.back().data());
  }
  w.set_metadata("format", "pt");
  w.set_metadata("gptq_bits", "4");
  const auto bytes = w.to_bytes();

  uint64_t hlen;
  std::memcpy(&hlen, bytes.data(), 8);
  CHECK(hlen % 8 == 0);  // data section 8-byte aligned, padded with spaces as HF does
  CHECK(bytes[8 + hlen - 1] != '\0');

  auto f = st::File::parse(bytes.data(), bytes.size(), "mem");
  REQUIRE(f->tensors().size() == std::size(types));
  CHECK(f->metadata().at("format") == "pt");
  CHECK(f->metadata().at("gptq_bits") == "4");
  for (size_t i = 0; i < std::size(types); ++i) {
    const st::Tensor& t = f->tensors()[i];  // header order = insertion order
    CHECK(t.name == "t." + std::string(st::dtype_name(types[i])));
    CHECK(t.dtype == types[i]);
    CHECK(t.shape == shapes[i]);
    REQUIRE(t.nbytes() == payloads[i].size());
    if (!payloads[i].empty()) CHECK(std::memcmp(t.data, payloads[i].data(), payloads[i].size()) == 0);
    CHECK(reinterpret_cast<uintptr_t>(t.data) - reinterpret_cast<uintptr_t>(bytes.data()) ==
          8 + hlen + t.begin);
  }
  CHECK(f->find("nope") == nullptr);
  CHECK(error_of([&] { f->get("nope"); }).find("tensor 'nope' not found") != std::string::npos);
}

TEST_CASE("safetensors: hand-assembled file and the exact header the writer emits") {
  // One F32 tensor of 2 values: the header JSON HF writes is compact, 54 bytes, padded to 56.
  const float vals[2] = {1.5f, -2.0f};
  st::Writer w;
  w.add("a", st::DType::F32, {2}, vals);
  const auto bytes = w.to_bytes();
  const std::string expect = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(expect.size() == 54);
  REQUIRE(bytes.size() == 8 + 56 + 8);
  CHECK(bytes[0] == 56);
  CHECK(std::string(bytes.begin() + 8, bytes.begin() + 8 + 54) == expect);
  CHECK(std::string(bytes.begin() + 62, bytes.begin() + 64) == "  ");
  float back[2];
  std::memcpy(back, bytes.data() + 64, 8);
  CHECK(back[0] == 1.5f);
  CHECK(back[1] == -2.0f);

  // Reader on a header written by hand (key order and spacing as other writers produce them).
  const std::string hdr =
      R"({"__metadata__": {"k": "v"}, "w": {"data_offsets": [4, 8], "shape": [2], "dtype": "F16"},)"
      R"( "b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}})";
  auto img = image(hdr, 8);
  const uint16_t h[2] = {0x3E00, 0xC000}, bf[2] = {0x3FC0, 0xBF80};  // 1.5, -2 | 1.5, -1
  std::memcpy(img.data() + 8 + hdr.size(), bf, 4);
  std::memcpy(img.data() + 8 + hdr.size() + 4, h, 4);
  auto f = st::File::parse(img.data(), img.size(), "hand");
  CHECK(f->metadata().at("k") == "v");
  auto wf = st::to_f32(f->get("w"));
  auto bff = st::to_f32(f->get("b"));
  CHECK(wf == std::vector<float>{1.5f, -2.0f});
  CHECK(bff == std::vector<float>{1.5f, -1.0f});
  CHECK(error_of([&] { st::to_i32(f->get("w")); }).find("not an integer type") != std::string::npos);
  CHECK(st::to_qtype(st::DType::BF16) == QType::BF16);
  CHECK(st::to_qtype(st::DType::F16) == QType::F16);
  CHECK(!st::to_qtype(st::DType::I32));
}

TEST_CASE("safetensors: malformed headers give clear errors") {
  // length beyond the file / absurd / too small a file
  {
    std::vector<uint8_t> img(8 + 10, ' ');
    const uint64_t n = 1000;
    std::memcpy(img.data(), &n, 8);
    auto e = error_of([&] { st::File::parse(img.data(), img.size(), "x"); });
    CHECK(e.find("extends beyond the end of the file") != std::string::npos);
  }
  {
    std::vector<uint8_t> img(64, ' ');
    const uint64_t n = uint64_t(1) << 40;
    std::memcpy(img.data(), &n, 8);
    CHECK(error_of([&] { st::File::parse(img.data(), img.size(), "x"); }).find("absurd") != std::string::npos);
  }
  {
    std::vector<uint8_t> img(5, 0);
    CHECK(error_of([&] { st::File::parse(img.data(), img.size(), "x"); }).find("truncated") != std::string::npos);
  }
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [1], )", 4).find("invalid JSON header") != std::string::npos);
  CHECK(parse_error(R"([1, 2])", 0).find("expected an object") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4)
            .find("out of range") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 16)
            .find("begin > end") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                    R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 16)
            .find("overlapping tensors 'a' [0, 8) and 'b' [4, 12)") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 16)
            .find("size mismatch: shape [3] of F32 needs 12 bytes, data_offsets span 8") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8)
            .find("unknown dtype 'Q4'") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8)
            .find("unsupported dtype 'F64'") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8)
            .find("negative dimension -2") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8)
            .find("must be an integer") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", 8)
            .find("overflows") != std::string::npos);
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [2]}})", 8).find("data_offsets") != std::string::npos);
  CHECK(parse_error(R"({"__metadata__": {"k": 1}})", 0).find("__metadata__ value of 'k'") != std::string::npos);
  // Zero-size tensors may share an offset with anything.
  CHECK(parse_error(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},)"
                    R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8) == "");
}

TEST_CASE("safetensors: sharded checkpoint through the index") {
  test::TempDir dir;
  const float a[3] = {1, 2, 3}, b[2] = {4, 5};
  const int32_t c[4] = {7, 8, 9, 10};
  {
    st::Writer w1;
    w1.add("model.a", st::DType::F32, {3}, a);
    w1.add("model.c", st::DType::I32, {2, 2}, c);
    w1.set_metadata("format", "pt");
    w1.write(dir.file("model-00001-of-00002.safetensors"));
    st::Writer w2;
    w2.add("model.b", st::DType::F32, {2}, b);
    w2.write(dir.file("model-00002-of-00002.safetensors"));
  }
  auto write_index = [&](const std::string& body) {
    std::ofstream(dir.file("model.safetensors.index.json")) << body;
  };
  write_index(R"({"metadata": {"total_size": 36}, "weight_map": {
      "model.a": "model-00001-of-00002.safetensors", "model.b": "model-00002-of-00002.safetensors",
      "model.c": "model-00001-of-00002.safetensors"}})");
  for (const std::string& p : {dir.path, dir.file("model.safetensors.index.json")}) {
    auto ck = st::Checkpoint::open(p);
    CHECK(ck->shards().size() == 2);  // shard 1 holds two tensors but is mapped once
    REQUIRE(ck->size() == 3);
    CHECK(st::to_f32(ck->get("model.b")) == std::vector<float>{4, 5});
    CHECK(st::to_i32(ck->get("model.c")) == std::vector<int32_t>{7, 8, 9, 10});
    CHECK(ck->metadata().at("format") == "pt");
    auto all = ck->tensors();
    REQUIRE(all.size() == 3);
    CHECK(all[0]->name == "model.a");
    CHECK(all[2]->name == "model.c");
    CHECK(error_of([&] { ck->get("x"); }).find("not found in checkpoint") != std::string::npos);
  }
  write_index(R"({"weight_map": {"model.b": "model-00001-of-00002.safetensors"}})");
  CHECK(error_of([&] { st::Checkpoint::open(dir.path); }).find("which does not contain it") != std::string::npos);
  write_index(R"({"weight_map": {"model.b": "../model-00001-of-00002.safetensors"}})");
  CHECK(error_of([&] { st::Checkpoint::open(dir.path); }).find("not a plain file name") != std::string::npos);
  write_index(R"({"weight_map": {"model.b": "missing.safetensors"}})");
  CHECK(error_of([&] { st::Checkpoint::open(dir.path); }).find("missing.safetensors") != std::string::npos);
  write_index(R"({"weights": {}})");
  CHECK(error_of([&] { st::Checkpoint::open(dir.path); }).find("weight_map") != std::string::npos);

  // The same tensor in two shards is ambiguous.
  st::Writer w3;
  w3.add("model.a", st::DType::F32, {3}, a);
  w3.write(dir.file("dup.safetensors"));
  write_index(R"({"weight_map": {"model.a": "dup.safetensors", "model.c": "model-00001-of-00002.safetensors"}})");
  CHECK(error_of([&] { st::Checkpoint::open(dir.path); }).find("appears in both") != std::string::npos);

  // A single file, opened directly and as a directory's model.safetensors.
  test::TempDir one;
  st::Writer w;
  w.add("x", st::DType::F32, {2}, b);
  w.write(one.file("model.safetensors"));
  CHECK(st::to_f32(st::Checkpoint::open(one.path)->get("x")) == std::vector<float>{4, 5});
  auto f = st::File::open(one.file("model.safetensors"));
  CHECK(f->file_size() == f->data_offset() + 8);
  write_bytes(one.file("model.safetensors"), {1, 2, 3});
  CHECK(error_of([&] { st::File::open(one.file("model.safetensors")); }).find("truncated") != std::string::npos);
}

TEST_CASE("safetensors: random header corruption parses or throws slm::Error") {
  // Flipped header bytes must never crash or yield a tensor outside the image.
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const int32_t b[4] = {1, 2, 3, 4};
  const uint16_t c[3] = {1, 2, 3};
  st::Writer w;
  w.add("model.a", st::DType::F32, {2, 3}, a);
  w.add("model.b", st::DType::I32, {4}, b);
  w.add("model.c", st::DType::BF16, {3}, c);
  w.set_metadata("format", "pt");
  const auto good = w.to_bytes();
  uint64_t hlen;
  std::memcpy(&hlen, good.data(), 8);
  std::mt19937 rng(123);
  const char alphabet[] = "0123456789[]{},:\" -eE.F";
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto img = good;
    const int flips = 1 + int(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = rng() % (8 + hlen);
      img[pos] = rng() % 2 ? uint8_t(rng()) : uint8_t(alphabet[rng() % (sizeof(alphabet) - 1)]);
    }
    try {
      auto f = st::File::parse(img.data(), img.size(), "fuzz");
      for (const auto& t : f->tensors()) {
        CHECK(t.data >= img.data());
        CHECK(t.data + t.nbytes() <= img.data() + img.size());
      }
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    }
  }
  MESSAGE("random header flips: " << parsed << " parsed, " << rejected << " rejected");
  CHECK(parsed + rejected == 3000);
}
