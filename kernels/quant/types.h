// The tensor-type table: every element/block type a Llama GGUF can carry, with its ggml type id,
// block geometry and the scalar reference dequantizer/quantizer. Block layouts follow
// ../shared/specs/gguf.md §4-5 (ggml-common.h). This is the one place a type is described;
// loaders, kernels, the quantizer and the tests all go through it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace slm {

// Values are the ggml_type ids stored in GGUF tensor infos.
enum class QType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
};

struct QTypeInfo {
  QType type;
  std::string_view name;   // as spelled by ggml/GGUF: "Q4_K", "BF16", ...
  int block_elems;         // weights per block (1 for float types)
  int block_bytes;         // bytes per block
  bool is_activation_only; // Q8_1, Q8_K: never stored as weights by llama.cpp
};

// Every supported type, in a fixed order (tests and benches iterate it).
std::span<const QTypeInfo> all_qtypes();

// Info for a supported type. Throws slm::Error for an id we do not support, naming it (and, for
// ids ggml knows but we do not, the ggml name, e.g. "IQ2_XXS (16)").
const QTypeInfo& qtype_info(QType t);
// nullptr when the raw id is not a supported type.
const QTypeInfo* find_qtype(uint32_t raw_id);
// Human name of any ggml type id, also unsupported or removed ones ("IQ2_XXS", "Q4_0_4_4", "?").
std::string_view ggml_type_name(uint32_t raw_id);
// Lookup by name (case-insensitive "q4_k" ok); nullopt if unknown.
std::optional<QType> qtype_from_name(std::string_view name);

inline std::string_view qtype_name(QType t) { return qtype_info(t).name; }

// Bytes for n elements (n must be a multiple of the block size; throws slm::Error otherwise).
size_t row_bytes(QType t, int64_t n);

// Scalar reference: decode n elements (n % block_elems == 0) from `src` into `dst`.
void dequantize_row(QType t, const void* src, float* dst, int64_t n);

// Scalar reference quantizer (the reference encoder llama.cpp uses for that type: bit-identical
// for F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/IQ4_NL/Q8_K; K-quants use an error-minimising scale search
// in llama.cpp's spirit). n % block_elems == 0.
void quantize_row(QType t, const float* src, void* dst, int64_t n);

// IQ4_NL / IQ4_XS non-linear code book.
extern const int8_t kIQ4NLValues[16];

}  // namespace slm
