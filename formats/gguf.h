// GGUF v2/v3 reader (over a memory map, every size and offset checked) and writer.
// Layout: ../shared/specs/gguf.md §1. Tensor data is never copied by the reader: TensorInfo::data
// points into the mapping, which lives as long as the gguf::File.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "kernels/quant/types.h"

namespace slm::gguf {

namespace detail {
class Sink;  // byte destination of the Writer (gguf.cpp)
}

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

// One metadata value. Scalars are widened into u/i/f; strings are copied out of the file. `type`
// (and `elem_type` for arrays) keep the exact on-disk type so a read-then-write round trip is
// byte-identical. BOOL keeps its raw byte in u (any non-zero byte means true).
struct Value {
  ValueType type = ValueType::U32;
  uint64_t u = 0;              // U8/U16/U32/U64/BOOL
  int64_t i = 0;               // I8/I16/I32/I64 (also set for unsigned values that fit)
  double f = 0;                // F32/F64
  std::string str;             // STRING
  ValueType elem_type = ValueType::U8;  // ARRAY: element type
  std::vector<Value> items;    // ARRAY elements (nested arrays allowed)

  bool is_int() const;
  bool is_float() const;
  // Integer value of any integer type (BOOL reads as 0/1); nullopt for other types or u64 values
  // > INT64_MAX.
  std::optional<int64_t> as_int() const;
  // Numeric value of an int or float type.
  std::optional<double> as_double() const;

  static Value make_u32(uint32_t v);
  static Value make_i32(int32_t v);
  static Value make_u64(uint64_t v);
  static Value make_f32(float v);
  static Value make_bool(bool v);
  static Value make_string(std::string v);
  static Value make_array(ValueType elem, std::vector<Value> items);
  static Value make_string_array(const std::vector<std::string>& v);
  static Value make_f32_array(const std::vector<float>& v);
  static Value make_i32_array(const std::vector<int32_t>& v);
};

struct TensorInfo {
  std::string name;
  QType type = QType::F32;
  std::vector<int64_t> ne;   // ggml order: ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;       // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; nbytes readable

  int64_t n_elements() const;
  int64_t rows() const;      // product of ne[1..]
};

class File {
 public:
  // Opens and validates the whole header; throws slm::Error naming the problem (and offset).
  static std::unique_ptr<File> open(const std::string& path);
  // Parses an in-memory image (tests; the bytes must outlive the File).
  static std::unique_ptr<File> parse(const uint8_t* data, size_t size, std::string what);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }
  const std::string& path() const { return what_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // Elements of an ARRAY value of any element type (e.g. tokenizer.ggml.tokens); nullptr if absent
  // or not an array.
  const std::vector<Value>* get_array(std::string_view key) const;

  // Frees the contents of a (large) metadata value once it has been consumed, e.g. the tokenizer
  // arrays after the tokenizer is built: about 100 bytes per element that would otherwise stay
  // resident for the life of the model. The key remains, with an empty value of the same type.
  void release_value(std::string_view key);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  File() = default;
  void parse_all();
  MappedFile map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string what_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3 exactly as llama.cpp's writers do: metadata in insertion order, tensor infos,
// zero padding to the alignment, then each tensor's data padded to the alignment, in info order.
class Writer {
 public:
  // Replaces an existing key in place. Setting general.alignment (u32, power of two) also sets the
  // alignment the writer uses, as in llama.cpp.
  void set(std::string key, Value v);
  // The data is copied when the writer is written; `data` must stay valid until then.
  void add_tensor(std::string name, QType type, std::vector<int64_t> ne, const void* data);
  // Same as set("general.alignment", u32 a): the key is what tells readers the alignment.
  void set_alignment(uint32_t a);
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws slm::Error on I/O failure

  // Streaming writers (quantizer, model export) lay out the header here and write each tensor's
  // data themselves, so a multi-GB model never has to be in memory at once. A tensor added with
  // add_tensor_info has no data: header_bytes() and data_offsets() work, to_bytes()/write() throw.
  void add_tensor_info(std::string name, QType type, std::vector<int64_t> ne);
  // Everything before the first tensor's data (magic .. tensor infos, zero padding included).
  std::vector<uint8_t> header_bytes() const;
  // Absolute file offset of each tensor's data, in add order; the file ends at the last tensor's
  // offset + its bytes rounded up to the alignment (same layout as write()).
  std::vector<uint64_t> data_offsets() const;

 private:
  struct PendingTensor {
    std::string name;
    QType type;
    std::vector<int64_t> ne;
    const void* data;
    uint64_t nbytes;
  };
  void emit(detail::Sink& s) const;
  void emit_header(detail::Sink& s) const;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace slm::gguf
