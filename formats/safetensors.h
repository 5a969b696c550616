// safetensors reader (over a memory map; header, dtypes, shapes and byte ranges all validated),
// sharded checkpoints (model.safetensors.index.json) and a writer producing HF-identical headers.
// Layout: 8-byte LE header length N, N bytes of JSON, then the data buffer; offsets in the JSON
// are relative to the first data byte; shapes are row-major, outermost first. docs/formats.md.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "kernels/quant/types.h"

namespace slm::st {

// Element types. The first group is readable; the second is recognised by name only so that a
// checkpoint using one fails with "unsupported dtype" rather than "unknown dtype".
enum class DType : int {
  F32, F16, BF16, I32, I8, U8, I64,
  F64, I16, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2, F8_E8M0, F4, F6_E2M3, F6_E3M2, C64,
};

std::string_view dtype_name(DType t);
// Bytes per element of a supported dtype.
size_t dtype_size(DType t);
bool dtype_supported(DType t);
// Any name the format defines (supported or not); nullopt for names it does not define.
std::optional<DType> dtype_from_name(std::string_view name);

// The GGUF tensor type with the same element encoding (F32, F16, BF16), nullopt otherwise. An
// HF [out, in] weight of such a dtype has exactly the bytes of a GGUF tensor with ne = [in, out].
std::optional<QType> to_qtype(DType t);

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;     // row-major, outermost first (no GGUF-style reversal)
  uint64_t begin = 0, end = 0;    // data_offsets, relative to the data section
  const uint8_t* data = nullptr;  // into the mapping; nbytes() readable. Alignment is only
                                  // guaranteed to 8 for the data section start: read elements
                                  // through memcpy or the helpers below.
  const std::string* file = nullptr;  // path of the file holding it (error messages)

  uint64_t nbytes() const { return end - begin; }
  int64_t numel() const;
  int64_t dim(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

// Converts a F32/F16/BF16 tensor to float32 (n = numel() values into dst); throws slm::Error for
// other dtypes, naming the tensor.
void to_f32(const Tensor& t, float* dst);
std::vector<float> to_f32(const Tensor& t);
// Copies an I32 tensor (I64 values are narrowed with a range check).
std::vector<int32_t> to_i32(const Tensor& t);

class File {
 public:
  // Maps and validates the whole header; throws slm::Error naming the file, tensor and problem.
  static std::unique_ptr<File> open(const std::string& path);
  // Parses an in-memory image (tests; the bytes must outlive the File).
  static std::unique_ptr<File> parse(const uint8_t* data, size_t size, std::string what);

  const std::string& path() const { return what_; }
  uint64_t header_size() const { return header_len_; }
  uint64_t data_offset() const { return 8 + header_len_; }
  size_t file_size() const { return size_; }

  // Tensors in header order.
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const Tensor* find(std::string_view name) const;
  const Tensor& get(std::string_view name) const;  // throws "tensor 'x' not found in <file>"
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  File() = default;
  void parse_header();
  MappedFile map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string what_;
  uint64_t header_len_ = 0;
  std::vector<Tensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint: one .safetensors file or the shards listed by an index.json, each shard
// mapped once. Tensor names are unique across the set.
class Checkpoint {
 public:
  // `path` is a .safetensors file, a *.safetensors.index.json, or a directory holding
  // model.safetensors.index.json or model.safetensors (or exactly one *.safetensors file).
  static std::unique_ptr<Checkpoint> open(const std::string& path);

  const Tensor* find(std::string_view name) const;
  const Tensor& get(std::string_view name) const;  // throws, naming the checkpoint
  // All tensors, sorted by name.
  std::vector<const Tensor*> tensors() const;
  size_t size() const { return index_.size(); }
  const std::vector<std::unique_ptr<File>>& shards() const { return shards_; }
  // __metadata__ of the first shard (AutoGPTQ writes its settings there).
  const std::map<std::string, std::string>& metadata() const;
  const std::string& path() const { return path_; }

 private:
  Checkpoint() = default;
  void add_shard(std::unique_ptr<File> f);
  std::string path_;
  std::vector<std::unique_ptr<File>> shards_;
  std::unordered_map<std::string, const Tensor*> index_;
};

// Writes a safetensors file as the HF library does: JSON header (tensors in insertion order,
// optional __metadata__) padded with spaces to a multiple of 8 bytes, data in insertion order.
class Writer {
 public:
  // `data` must hold numel*dtype_size bytes and stay valid until to_bytes()/write().
  void add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data);
  void set_metadata(std::string key, std::string value);
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws slm::Error on I/O failure

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    uint64_t nbytes;
  };
  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace slm::st
