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

// Scalar reference quantizer: the encoder llama-quantize uses for that type without an importance
// matrix (ggml-quants.c quantize_row_*_ref / quantize_iq4_*), reproduced operation for operation,
// so the bytes equal llama.cpp's (tested against the fixtures for every type). Blocks are
// independent, so callers parallelise over rows. n % block_elems == 0 (throws slm::Error).
void quantize_row(QType t, const float* src, void* dst, int64_t n);

// A whole matrix of nrows contiguous rows of ncols elements (rows row_bytes(t, ncols) apart in the
// quantized form), parallel over rows with OpenMP. Same bytes/values as a quantize_row /
// dequantize_row loop. Throws slm::Error (before any work) when ncols is not a block multiple.
void quantize_rows(QType t, const float* src, void* dst, int64_t nrows, int64_t ncols);
void dequantize_rows(QType t, const void* src, float* dst, int64_t nrows, int64_t ncols);

// llama.cpp's reference activation conversion (`from_float` of the vec_dot_type, written with the
// _ref encoders): an F32 activation row to `act_type` (Q8_0, Q8_1, Q8_K, F16, BF16 or F32). Same
// as quantize_row; throws for weight-only types. The SIMD activation quantizers are tested
// against it.
void quantize_activations_ref(QType act_type, const float* x, void* dst, int64_t n);
// The conversion llama.cpp's CPU backend really runs on x86 (AVX/AVX2/AVX-512 builds, e.g. the one
// that produced the fixtures' logits): for Q8_0/Q8_1 the SIMD path of quantize_row_q8_0/_q8_1 in
// ggml-cpu-quants.c, q = round-half-to-even(x * (127/amax)), d = half(amax/127), Q8_1
// s = half(d * sum q). It differs from the _ref encoder (x * (1/d), round half away from zero)
// by one step in rare elements (exact .5 ties, last-bit differences of the multiplier). Q8_K,
// F16, BF16, F32: as quantize_activations_ref (x86 uses quantize_row_q8_K_ref).
void quantize_activations_x86(QType act_type, const float* x, void* dst, int64_t n);
// The type llama.cpp's CPU backend converts activations to before a dot product with a weight row
// of `weight_type` (type_traits_cpu[].vec_dot_type, gguf.md §5.0): Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0,
// Q4_1/Q5_1 -> Q8_1, K-quants and IQ4_XS -> Q8_K, F16/BF16/F32 -> themselves. Throws for Q8_1/Q8_K.
QType activation_type_for(QType weight_type);

// IQ4_NL / IQ4_XS non-linear code book.
extern const int8_t kIQ4NLValues[16];

}  // namespace slm
