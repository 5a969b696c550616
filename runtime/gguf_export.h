// Writing Llama models as GGUF the way llama.cpp's converter (float files) and llama-quantize
// (quantized files) do: the metadata key set and order of ../shared/specs/gguf.md §2.1, tokenizer
// arrays, rope_freqs.weight for Llama 3 RoPE scaling, converter tensor order for F32/F16/BF16 and
// llama-quantize's order otherwise. Sources: a random-weight Llama (`slmrun mkmodel`) or an
// in-memory Model (the synthetic benchmark models).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/model.h"
#include "runtime/quantize.h"
#include "runtime/tokenizer/tokenizer.h"

namespace slm {

// Metadata of a float (converter-written) Llama GGUF in convert_hf_to_gguf's key order, with
// general.file_type = `file_type`. Tokenizer keys only when `tok` is given (tokens, token_type,
// merges when non-empty, scores when non-empty, bos/eos/pad ids, add_bos/add_eos when set).
// `chat_template` is written when non-empty.
GgufMetadata llama_gguf_metadata(const ModelConfig& cfg, const TokenizerSpec* tok, uint32_t file_type,
                                 const std::string& chat_template = "");

// A byte-level BPE vocabulary of `n_vocab` tokens (>= 267) that `slmrun run/tokenize` can use
// without any tokenizer file: the 256 byte tokens, merges of common letter pairs, [PAD] fillers,
// and Llama 3's special tokens at the top (<|begin_of_text|> = n_vocab - n_special, <|eot_id|>
// 9 above it; 256 specials when n_vocab >= 1024, fewer, down to 11, for smaller vocabularies).
TokenizerSpec synthetic_byte_tokenizer(int64_t n_vocab);
// Pads a tokenizer to `n_vocab` with "[PAD<i>]" UNUSED tokens, as the converter does when
// config.json's vocab_size exceeds the tokenizer (throws if the tokenizer is larger).
void pad_tokenizer(TokenizerSpec& tok, int64_t n_vocab);

// A random-weight Llama model computed on the fly (nothing held in memory): 2-D weights
// ~ N(0, 0.02^2) (the initialisation scale of Llama checkpoints), norms 1 + N(0, 0.05^2), every
// row from its own seeded generator so the values do not depend on thread count or read order.
// Tensors in converter order, F32; rope_freqs.weight when cfg has non-unit rope divisors;
// output.weight only when !cfg.tied_embeddings.
class RandomLlamaSource : public TensorSource {
 public:
  RandomLlamaSource(const ModelConfig& cfg, uint64_t seed);
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  void read_rows(size_t i, int64_t row0, int64_t n, float* dst) const override;
  std::string describe() const override { return "random Llama model"; }

 private:
  enum class Fill { Weight, Norm, RopeFreqs };
  ModelConfig cfg_;
  uint64_t seed_;
  std::vector<SourceTensor> tensors_;
  std::vector<Fill> fill_;
};

// The tensors of an in-memory Model (weights as stored, norms as F32, rope divisors as
// rope_freqs.weight when not all 1), in converter order.
class ModelTensorSource : public TensorSource {
 public:
  explicit ModelTensorSource(const Model& m);
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  void read_rows(size_t i, int64_t row0, int64_t n, float* dst) const override;
  // nullptr for tensors whose rows are reordered on the way out (see qk_head_dim_).
  const uint8_t* raw(size_t i) const override { return qk_head_dim_[i] ? nullptr : raw_[i]; }
  std::string describe() const override;

 private:
  const Model& model_;
  std::vector<SourceTensor> tensors_;
  std::vector<const uint8_t*> raw_;
  // Head size for attn_q/attn_k of a model in HF row order (RopeStyle::HalfSplit): GGUF stores
  // those rows in interleaved-pair order, so read_rows maps GGUF row g to HF row
  // gguf_to_hf_qk_row(g) (llama.md §3.4). 0 for every other tensor.
  std::vector<int64_t> qk_head_dim_;
  std::vector<float> rope_freqs_;
};

struct ExportOptions {
  // A mixture or type name (mixture_from_name): F32/F16/BF16 give a converter-style file, any
  // other a llama-quantize-style one (file_type and quantization_version last, quantize order).
  std::string type = "F32";
  bool pure = false;
  std::string chat_template;
  WriteOptions write;
};

// Writes a model `src` with configuration `cfg` (and tokenizer `tok`, may be null) as GGUF.
// Float sources are converted/quantized to the mixture; a source that stores other types (a
// quantized Model) is written with its tensors' own types when `opts.type` is empty.
QuantizeReport export_llama_gguf(const TensorSource& src, const ModelConfig& cfg, const TokenizerSpec* tok,
                                 const std::string& path, const ExportOptions& opts);

// An in-memory Model (e.g. make_synthetic_model) as GGUF with its tensors' own types and its
// tokenizer when it has one (else `tok`, may be null).
QuantizeReport export_model_gguf(const Model& m, const std::string& path, const TokenizerSpec* tok = nullptr);

}  // namespace slm
