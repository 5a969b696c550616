// Model quantization: re-encodes the tensors of a model source (a float GGUF today; a Hugging Face
// checkpoint or a synthetic model through the same TensorSource interface) into a GGUF file whose
// per-tensor types follow llama.cpp's mixture rules (runtime/mixtures.h), with the metadata, tensor
// order and layout llama-quantize writes. Data is streamed tensor by tensor, so the output never
// has to fit in memory.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "kernels/quant/types.h"
#include "runtime/mixtures.h"

namespace slm {

using GgufMetadata = std::vector<std::pair<std::string, gguf::Value>>;

// One tensor of a source, in GGUF naming and ggml dimension order (ne[0] = row length).
struct SourceTensor {
  std::string name;        // "blk.3.attn_q.weight"
  QType type = QType::F32; // how the source stores it
  std::vector<int64_t> ne;
  int64_t cols() const { return ne.empty() ? 0 : ne[0]; }
  int64_t rows() const;    // product of ne[1..]
};

// Where tensors come from. Implementations must allow read_rows from several threads at once.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual const std::vector<SourceTensor>& tensors() const = 0;
  // Rows [row0, row0 + n) of tensor `i` as float32 (n * cols values into dst).
  virtual void read_rows(size_t i, int64_t row0, int64_t n, float* dst) const = 0;
  // The stored bytes of tensor `i` (row_bytes(type, cols) * rows), or nullptr when the source
  // computes its rows (then a same-type output is produced by re-encoding read_rows).
  virtual const uint8_t* raw(size_t i) const { return nullptr; }
  // Names the source in messages ("model.gguf").
  virtual std::string describe() const = 0;
};

// Tensors of an open GGUF file. F32/F16/BF16 tensors read as float rows; any other type only
// through raw() (read_rows throws naming the tensor).
class GgufTensorSource : public TensorSource {
 public:
  explicit GgufTensorSource(const gguf::File& f);
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  void read_rows(size_t i, int64_t row0, int64_t n, float* dst) const override;
  const uint8_t* raw(size_t i) const override;
  std::string describe() const override { return file_.path(); }

 private:
  const gguf::File& file_;
  std::vector<SourceTensor> tensors_;
};

// llama-quantize's selection: names ending in "weight", at least 2-D, not a norm.
bool is_quantizable_tensor(std::string_view name, size_t n_dims);
// Which mixture rule applies to a tensor name ("blk.N.attn_v.weight" -> AttnV, layer N); nullopt
// for names the rules do not single out (they get the mixture's base type).
std::optional<std::pair<TensorKind, int64_t>> tensor_kind(std::string_view name);
// llama.cpp's substitute when a row length is not a multiple of the type's block: Q2_K/Q3_K/
// IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if that does not fit
// either. Returns `t` unchanged when it fits.
QType fit_type_to_row(QType t, int64_t cols);
// Output type of every tensor of `src` (same order) for mixture `mix`: non-quantizable tensors
// keep their type, the rest get mixture_type() (or the mixture's base with mix.pure), fitted to
// the row length.
std::vector<QType> plan_tensor_types(const TensorSource& src, const Mixture& mix, const MixtureContext& ctx);
// The order llama-quantize writes tensors in: by name, then stably by block number (non-block
// tensors first). Returns indices into `names`.
std::vector<size_t> llama_quantize_order(const std::vector<std::string>& names);
// Metadata of a quantized file from its source's: split keys dropped, general.quantization_version
// (2) and general.file_type (mix.file_type) removed and appended last, in that order, as
// llama-quantize does.
GgufMetadata quantized_metadata(const GgufMetadata& in, const Mixture& mix);

struct TensorReport {
  std::string name;
  QType src_type = QType::F32;
  QType type = QType::F32;
  std::vector<int64_t> ne;
  uint64_t bytes = 0;
  // sqrt(sum (dequant - src)^2 / sum src^2) over the tensor; 0 for exact copies, NaN when the
  // error was not computed.
  double rel_rms = 0;
};

struct QuantizeReport {
  std::string mixture;
  std::vector<TensorReport> tensors;  // in file order
  uint64_t src_bytes = 0;
  uint64_t out_bytes = 0;   // file size
  double seconds = 0;
};

struct WriteOptions {
  bool compute_error = true;
  // (elements done, elements total, tensor being written); called from the calling thread only.
  std::function<void(uint64_t, uint64_t, const std::string&)> progress;
};

// Writes tensors `order` of `src` (indices) with `types[i]` per source tensor, after `metadata`,
// as a GGUF file at `path` (written to path + ".tmp" first and renamed, so a failed run leaves
// no partial file and the input may be the output). Throws slm::Error naming the tensor or file.
QuantizeReport write_gguf(const TensorSource& src, const std::vector<QType>& types,
                          const std::vector<size_t>& order, const GgufMetadata& metadata,
                          const std::string& path, const WriteOptions& opts = {});

struct QuantizeOptions {
  std::string type = "Q8_0";  // a mixture or type name (mixture_from_name)
  bool pure = false;
  WriteOptions write;
};

// GGUF -> GGUF: the `slmrun quantize` library entry. The input's quantized tensors must be
// F32/F16/BF16 (else slm::Error naming the first offending tensor).
QuantizeReport quantize_gguf_file(const std::string& input, const std::string& output,
                                  const QuantizeOptions& opts);

}  // namespace slm
