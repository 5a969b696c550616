// `slmrun info -m FILE` on corrupt or missing GGUF files: the CLI must exit non-zero with one
// "error: ..." line naming the problem, and never die from a signal (exit code >= 128).
#include <doctest/doctest.h>

#include <fstream>

#include "../formats/gguf_test_util.h"
#include "formats/gguf.h"
#include "support/fixtures.h"

using namespace slm;
using namespace slm::gguf;
using namespace slm::gguf::testing;

namespace {

// A small valid model-like file; the cases below damage copies of it.
std::vector<uint8_t> valid_image() {
  static float a[64];
  static uint16_t b[32];
  Writer w;
  w.set("general.architecture", Value::make_string("llama"));
  w.set("llama.block_count", Value::make_u32(1));
  w.add_tensor("blk.0.attn_norm.weight", QType::F32, {64}, a);
  w.add_tensor("blk.0.ffn_norm.weight", QType::F16, {32}, b);
  return w.to_bytes();
}

void write_file(const std::string& path, const std::vector<uint8_t>& img) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(img.data()), std::streamsize(img.size()));
  REQUIRE(f.good());
}

void check_cli_error(const std::string& path, std::string_view phrase) {
  auto r = slm::test::run_slmrun("info -m '" + path + "'");
  INFO("exit ", r.exit_code, "; stderr: ", r.err, "; stdout: ", r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.exit_code < 128);  // not killed by a signal
  CHECK(contains(r.err, "error:"));
  CHECK(contains(r.err, phrase));
  CHECK(!contains(r.err, "Segmentation"));
  CHECK(!contains(r.err, "terminate called"));
  CHECK(!contains(r.err, "AddressSanitizer"));
}

}  // namespace

TEST_CASE("cli: slmrun info on corrupt GGUF files reports one clear error") {
  slm::test::TempDir tmp;
  const auto good = valid_image();
  REQUIRE(parse_error(good) == "");

  auto img = good;
  img[0] = 'X';
  write_file(tmp.file("bad_magic.gguf"), img);
  check_cli_error(tmp.file("bad_magic.gguf"), "magic");

  img.assign(good.begin(), good.begin() + ptrdiff_t(good.size() / 3));
  write_file(tmp.file("truncated.gguf"), img);
  check_cli_error(tmp.file("truncated.gguf"), "truncated");

  img = good;
  put<uint32_t>(img, 4, 1);
  write_file(tmp.file("version1.gguf"), img);
  check_cli_error(tmp.file("version1.gguf"), "version");

  img = good;
  put<uint32_t>(img, 4, 7);
  write_file(tmp.file("version7.gguf"), img);
  check_cli_error(tmp.file("version7.gguf"), "version");

  // Two equal-length names, the second patched into the first.
  {
    static float x[8];
    Writer w;
    w.set("general.architecture", Value::make_string("llama"));
    w.add_tensor("blk.0.wq", QType::F32, {8}, x);
    w.add_tensor("blk.0.wk", QType::F32, {8}, x);
    img = w.to_bytes();
    img[find_bytes(img, "blk.0.wk") + 7] = 'q';
  }
  write_file(tmp.file("dup_tensor.gguf"), img);
  check_cli_error(tmp.file("dup_tensor.gguf"), "duplicate tensor");

  img = good;
  put<uint64_t>(img, tensor_info_pos(img, "blk.0.ffn_norm.weight", 1).offset, uint64_t(1) << 30);
  write_file(tmp.file("past_end.gguf"), img);
  check_cli_error(tmp.file("past_end.gguf"), "past end");

  img = good;
  put<uint32_t>(img, tensor_info_pos(img, "blk.0.attn_norm.weight", 1).type, 16);
  write_file(tmp.file("iq2.gguf"), img);
  check_cli_error(tmp.file("iq2.gguf"), "unsupported type");

  write_file(tmp.file("empty.gguf"), {});
  check_cli_error(tmp.file("empty.gguf"), "truncated");

  check_cli_error(tmp.file("does-not-exist.gguf"), "does-not-exist.gguf");
}
