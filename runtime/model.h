// Model: configuration + weights + tokenizer of one Llama-family model. Weights are views into
// the memory-mapped file (never copied) except small 1-D tensors (norms), which are decoded to
// float32 once at load.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/cpu/gptq_linear.h"
#include "kernels/quant/types.h"
#include "runtime/config.h"
#include "runtime/tokenizer/tokenizer.h"

namespace slm {
namespace gguf { class File; }
namespace st { class Checkpoint; }

// A 2-D weight: `rows` rows of `cols` elements in `type`, rows contiguous (GGUF ne = [cols, rows]),
// or a GPTQ layer (`gptq` set, prepared for the GPTQ kernels; `data` is null then).
struct WeightTensor {
  std::string name;
  QType type = QType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  const cpu::GptqCpuWeight* gptq = nullptr;
  size_t gptq_bytes = 0;  // bytes of the checkpoint tensors behind `gptq`
  cpu::GptqTensors gptq_src;  // those checkpoint tensors (views into the mapping; CUDA upload)
  size_t bytes() const { return gptq ? gptq_bytes : data ? row_bytes(type, cols) * size_t(rows) : 0; }
  std::string type_name() const { return gptq ? fmt::format("GPTQ{}", gptq->code_bits) : std::string(qtype_name(type)); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + row_bytes(type, cols) * size_t(r);
  }
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [dim]
  WeightTensor wq;               // [q_dim rows, dim]
  WeightTensor wk;               // [kv_dim rows, dim]
  WeightTensor wv;               // [kv_dim rows, dim]
  WeightTensor wo;               // [dim rows, q_dim]
  std::vector<float> ffn_norm;   // [dim]
  WeightTensor w_gate;           // [hidden rows, dim]
  WeightTensor w_up;             // [hidden rows, dim]
  WeightTensor w_down;           // [dim rows, hidden]
};

struct Weights {
  WeightTensor tok_embd;           // [n_vocab rows, dim]
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // [dim]
  WeightTensor output;             // [n_vocab rows, dim]; == tok_embd when tied
};

struct LoadOptions {
  bool verbose = false;
  // Called with (done, total) tensor counts while loading; may be empty.
  std::function<void(size_t, size_t)> progress;
};

class Model {
 public:
  ~Model();
  // Loads a GGUF file, or a Hugging Face model directory (config.json + safetensors, FP32/FP16/
  // BF16 or GPTQ); throws slm::Error naming the problem (missing tensor, wrong shape,
  // unsupported type, corrupt file, ...).
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& opts = {});
  static std::unique_ptr<Model> load_hf(const std::string& dir, const LoadOptions& opts = {});
  // A model assembled in memory (synthetic benchmark models, tests): `storage` owns the bytes
  // the weight views point into.
  static std::unique_ptr<Model> from_memory(ModelConfig config, Weights weights,
                                            std::unique_ptr<Tokenizer> tokenizer,
                                            std::vector<std::vector<uint8_t>> storage,
                                            std::string name);

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  // Throws slm::Error for models built without one (synthetic benchmark models).
  const Tokenizer& tokenizer() const;
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  const gguf::File* gguf() const { return gguf_.get(); }
  const std::string& path() const { return path_; }
  // Bytes of all weight tensors (what one decode step reads).
  size_t weight_bytes() const;
  // Bytes of the model file.
  size_t file_bytes() const;
  // The most common 2-D weight type, e.g. "Q4_K" (for reports).
  std::string dominant_type() const;

 private:
  Model() = default;
  std::string path_;
  std::unique_ptr<gguf::File> gguf_;
  ModelConfig config_;
  Weights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::vector<uint8_t>> storage_;
  std::unique_ptr<st::Checkpoint> checkpoint_;
  std::vector<std::unique_ptr<cpu::GptqCpuWeight>> gptq_;
  std::string format_ = "gguf";

 public:
  // "gguf", "hf" or "gptq" (where the weights came from).
  const std::string& format() const { return format_; }
};

}  // namespace slm
