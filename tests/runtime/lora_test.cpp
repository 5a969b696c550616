// LoRA adapters (PEFT layout): merging into GGUF-layout (interleaved q/k rows) and HF-layout
// models must equal W + s·B·A applied to the HF weights directly; quantized bases keep their type;
// the quantizer's merge equals merging first; malformed adapters give clear errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "runtime/gguf_export.h"
#include "runtime/gptq_quantize.h"
#include "runtime/hf_export.h"
#include "runtime/lora.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/synthetic.h"
#include "support/fixtures.h"
#include "support/small_model.h"

using namespace slm;

namespace {

ModelConfig lora_config() {
  ModelConfig c = test::small_llama_config(300);
  c.rope_divisors.assign(16, 1.f);  // plain RoPE
  return c;
}

struct Mod {
  std::string name;  // "model.layers.0.self_attn.q_proj"
  int64_t out, in;
};

const std::vector<Mod> kMods = {{"model.layers.0.self_attn.q_proj", 128, 128},
                                {"model.layers.1.self_attn.k_proj", 64, 128},
                                {"model.layers.0.self_attn.v_proj", 64, 128},
                                {"model.layers.1.mlp.down_proj", 128, 256}};
constexpr int64_t kRank = 4;
constexpr double kAlpha = 8;

// Writes a PEFT adapter with seeded random A, B (B large enough to move the logits visibly).
// Returns the (A, B) values per module. `corrupt`: 0 none, 1 wrong in-shape, 2 drop a lora_B,
// 3 unknown module.
std::vector<std::pair<std::vector<float>, std::vector<float>>> write_adapter(const std::string& dir, int corrupt = 0,
                                                                             bool rslora = false) {
  std::filesystem::create_directories(dir);
  nlohmann::json cfg = {{"peft_type", "LORA"},  {"r", kRank},       {"lora_alpha", kAlpha},
                        {"target_modules", {"q_proj", "k_proj", "v_proj", "down_proj"}},
                        {"bias", "none"},       {"fan_in_fan_out", false}, {"use_rslora", rslora}};
  std::ofstream(dir + "/adapter_config.json") << cfg.dump(2);
  std::mt19937_64 rng(42);
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<std::pair<std::vector<float>, std::vector<float>>> vals;
  st::Writer w;
  for (size_t i = 0; i < kMods.size(); ++i) {
    const Mod& m = kMods[i];
    const int64_t in = corrupt == 1 && i == 2 ? m.in + 32 : m.in;
    std::vector<float> a(size_t(kRank * in)), b(size_t(m.out * kRank));
    for (auto& v : a) v = nd(rng);
    for (auto& v : b) v = nd(rng);
    vals.emplace_back(std::move(a), std::move(b));
    std::string name = "base_model.model." + m.name;
    if (corrupt == 3 && i == 3) name = "base_model.model.model.layers.1.mlp.x_proj";
    w.add(name + ".lora_A.weight", st::DType::F32, {kRank, in}, vals.back().first.data());
    if (!(corrupt == 2 && i == 1)) w.add(name + ".lora_B.weight", st::DType::F32, {m.out, kRank}, vals.back().second.data());
  }
  w.write(dir + "/adapter_model.safetensors");
  return vals;
}


const std::vector<int32_t> kToks = {1, 50, 7, 200, 33, 90, 12, 250, 4, 61};

}  // namespace

TEST_CASE("LoRA merge equals W + s·B·A applied to the HF weights, for GGUF and HF bases") {
  test::TempDir tmp;
  const auto vals = write_adapter(tmp.file("adapter"));
  const LoraAdapter ad = load_lora_adapter(tmp.file("adapter"));
  CHECK(ad.r == kRank);
  CHECK(ad.scale == doctest::Approx(kAlpha / kRank));
  CHECK(ad.modules.size() == kMods.size());

  auto base = make_synthetic_model(lora_config(), "F32", 3);  // GGUF layout: interleaved q/k rows
  HfExportOptions ho;
  ho.dtype = QType::F32;
  const TokenizerSpec tok = synthetic_byte_tokenizer(300);
  export_llama_hf(ModelTensorSource(*base), base->config(), tok, tmp.file("base_hf"), ho);

  // Independent expectation: edit the HF checkpoint's tensors (HF row order, no permutation).
  std::filesystem::create_directories(tmp.file("want_hf"));
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(tmp.file("base_hf") + "/" + f, tmp.file("want_hf") + "/" + f);
  {
    auto ck = st::Checkpoint::open(tmp.file("base_hf"));
    st::Writer w;
    std::vector<std::vector<float>> keep;
    for (const st::Tensor* t : ck->tensors()) {
      keep.push_back(st::to_f32(*t));
      for (size_t i = 0; i < kMods.size(); ++i)
        if (t->name == kMods[i].name + ".weight") {
          const auto& [a, b] = vals[i];
          for (int64_t o = 0; o < kMods[i].out; ++o)
            for (int64_t c = 0; c < kMods[i].in; ++c) {
              double s = 0;
              for (int64_t j = 0; j < kRank; ++j) s += double(b[size_t(o * kRank + j)]) * a[size_t(j * kMods[i].in + c)];
              keep.back()[size_t(o * kMods[i].in + c)] += float(kAlpha / kRank * s);
            }
        }
      w.add(t->name, st::DType::F32, t->shape, keep.back().data());
    }
    w.write(tmp.file("want_hf") + "/model.safetensors");
  }
  auto want_model = Model::load(tmp.file("want_hf"));
  const auto want = test::f32_last_logits(*want_model, kToks);
  const auto before = test::f32_last_logits(*base, kToks);
  // The adapter must matter, or the comparisons below would prove nothing.
  CHECK(test::rel_l2(before.data(), want.data(), want.size()) > 1e-3);

  // GGUF base: B's q/k rows are permuted into interleaved order during the merge. Same weights up
  // to float rounding of the merge; the RoPE pairing differs (as in hf_model_test): 1e-5.
  auto merged = merge_lora(*base, ad);
  CHECK(merged->weights().layers[0].wq.type == QType::F32);
  const auto got = test::f32_last_logits(*merged, kToks);
  CHECK(test::rel_l2(got.data(), want.data(), want.size()) < 1e-5);

  // HF base (HalfSplit): no permutation.
  auto hf_base = Model::load(tmp.file("base_hf"));
  auto merged_hf = merge_lora(*hf_base, ad);
  const auto got_hf = test::f32_last_logits(*merged_hf, kToks);
  CHECK(test::rel_l2(got_hf.data(), want.data(), want.size()) < 1e-5);

  // A scale multiplier of 0 leaves the model unchanged.
  auto zero = merge_lora(*base, ad, 0.f);
  const auto got0 = test::f32_last_logits(*zero, kToks);
  CHECK(test::rel_l2(got0.data(), before.data(), before.size()) < 1e-7);
}

TEST_CASE("LoRA on a quantized base re-quantizes to the same type") {
  test::TempDir tmp;
  write_adapter(tmp.file("adapter"));
  const LoraAdapter ad = load_lora_adapter(tmp.file("adapter"));
  auto base = make_synthetic_model(lora_config(), "Q8_0", 4);
  auto merged = merge_lora(*base, ad);
  const WeightTensor& q0 = base->weights().layers[0].wq;
  const WeightTensor& m0 = merged->weights().layers[0].wq;
  CHECK(m0.type == QType::Q8_0);
  // Expected: dequant(base) + s·B·A in GGUF row order; the merged tensor is that re-quantized to
  // Q8_0, whose error per element is at most half a step, amax/254 per 32-value block: relative
  // RMS error below 1 % for Gaussian-like rows.
  const auto& mod = ad.modules[0];
  REQUIRE(mod.name.find("layers.0.self_attn.q_proj") != std::string::npos);
  std::vector<float> want(size_t(q0.rows * q0.cols)), got(want.size());
  dequantize_rows(q0.type, q0.data, want.data(), q0.rows, q0.cols);
  dequantize_rows(m0.type, m0.data, got.data(), m0.rows, m0.cols);
  for (int64_t r = 0; r < q0.rows; ++r) {
    const int64_t h = gguf_to_hf_qk_row(r, 32);
    for (int64_t c = 0; c < q0.cols; ++c) {
      double s = 0;
      for (int64_t j = 0; j < kRank; ++j) s += double(mod.b[size_t(h * kRank + j)]) * mod.a[size_t(j * q0.cols + c)];
      want[size_t(r * q0.cols + c)] += float(ad.scale * s);
    }
  }
  CHECK(test::rel_l2(got.data(), want.data(), want.size()) < 0.01);
  // Untouched tensors are copied bit for bit.
  CHECK(std::memcmp(base->weights().layers[0].w_up.data, merged->weights().layers[0].w_up.data,
                    base->weights().layers[0].w_up.bytes()) == 0);
}

TEST_CASE("the quantizer's LoRA merge equals quantizing the merged model") {
  test::TempDir tmp;
  write_adapter(tmp.file("adapter"));
  const LoraAdapter ad = load_lora_adapter(tmp.file("adapter"));
  auto base = make_synthetic_model(lora_config(), "F32", 5);
  HfExportOptions ho;
  ho.dtype = QType::F32;
  export_llama_hf(ModelTensorSource(*base), base->config(), synthetic_byte_tokenizer(300), tmp.file("hf"), ho);
  auto hf = Model::load(tmp.file("hf"));
  GptqQuantizeOptions qo;
  qo.rtn = true;
  qo.lora = &ad;
  gptq_quantize_model(*hf, tmp.file("a"), qo);
  auto merged = merge_lora(*hf, ad);
  qo.lora = nullptr;
  qo.tokenizer_dir = tmp.file("hf");
  gptq_quantize_model(*merged, tmp.file("b"), qo);
  CHECK(test::read_text_file(tmp.file("a") + "/model.safetensors") == test::read_text_file(tmp.file("b") + "/model.safetensors"));
}

TEST_CASE("malformed LoRA adapters give clear errors") {
  test::TempDir tmp;
  auto base = make_synthetic_model(lora_config(), "F32", 6);
  write_adapter(tmp.file("shape"), 1);
  const LoraAdapter bad = load_lora_adapter(tmp.file("shape"));
  CHECK_THROWS_WITH_AS(merge_lora(*base, bad), doctest::Contains("v_proj"), slm::Error);
  write_adapter(tmp.file("missing"), 2);
  CHECK_THROWS_WITH_AS(load_lora_adapter(tmp.file("missing")), doctest::Contains("no lora_B"), slm::Error);
  write_adapter(tmp.file("unknown"), 3);
  CHECK_THROWS_WITH_AS(load_lora_adapter(tmp.file("unknown")), doctest::Contains("x_proj"), slm::Error);
  CHECK_THROWS_WITH_AS(load_lora_adapter(tmp.file("nothing")), doctest::Contains("adapter_config.json"), slm::Error);
  // A 3-layer adapter on a 2-layer model.
  write_adapter(tmp.file("ok"));
  LoraAdapter deep = load_lora_adapter(tmp.file("ok"));
  deep.modules[0].layer = 2;
  CHECK_THROWS_WITH_AS(merge_lora(*base, deep), doctest::Contains("layer 2"), slm::Error);
  // rsLoRA scaling: alpha / sqrt(r).
  write_adapter(tmp.file("rs"), 0, true);
  CHECK(load_lora_adapter(tmp.file("rs")).scale == doctest::Approx(kAlpha / 2.0));
}
