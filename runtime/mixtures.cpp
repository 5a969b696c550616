#include "runtime/mixtures.h"

#include <algorithm>
#include <cctype>

namespace slm {

namespace {
struct NamedMix {
  const char* name;
  QType base;
  uint32_t ftype;
};
// llama_ftype values: ../shared/specs/gguf.md §2.3.
constexpr NamedMix kMixes[] = {
    {"F32", QType::F32, 0},        {"F16", QType::F16, 1},        {"BF16", QType::BF16, 32},
    {"Q8_0", QType::Q8_0, 7},      {"Q4_0", QType::Q4_0, 2},      {"Q4_1", QType::Q4_1, 3},
    {"Q5_0", QType::Q5_0, 8},      {"Q5_1", QType::Q5_1, 9},      {"Q2_K", QType::Q2_K, 10},
    {"Q3_K_S", QType::Q3_K, 11},   {"Q3_K_M", QType::Q3_K, 12},   {"Q4_K_S", QType::Q4_K, 14},
    {"Q4_K_M", QType::Q4_K, 15},   {"Q5_K_S", QType::Q5_K, 16},   {"Q5_K_M", QType::Q5_K, 17},
    {"Q6_K", QType::Q6_K, 18},     {"IQ4_NL", QType::IQ4_NL, 25}, {"IQ4_XS", QType::IQ4_XS, 30},
};

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = char(std::toupper(static_cast<unsigned char>(c)));
  return u;
}
}  // namespace

bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

std::optional<Mixture> mixture_from_name(std::string_view name, bool pure) {
  const std::string u = upper(name);
  for (const NamedMix& m : kMixes)
    if (u == m.name) return Mixture{m.name, m.base, m.ftype, pure};
  // Bare K-quant names as llama-quantize spells the pure files (Q3_K -> Q3_K_S etc.).
  if (u == "Q3_K") return Mixture{"Q3_K_S", QType::Q3_K, 11, pure};
  if (u == "Q4_K") return Mixture{"Q4_K_S", QType::Q4_K, 14, pure};
  if (u == "Q5_K") return Mixture{"Q5_K_S", QType::Q5_K, 16, pure};
  return std::nullopt;
}

std::vector<std::string> mixture_names() {
  std::vector<std::string> v;
  for (const NamedMix& m : kMixes) v.emplace_back(m.name);
  return v;
}

QType mixture_type(const Mixture& m, TensorKind kind, int64_t i, const MixtureContext& ctx) {
  const QType base = m.base;
  if (m.pure) return base;
  const bool is_float = base == QType::F32 || base == QType::F16 || base == QType::BF16;
  if (is_float) return base;
  const int64_t n = ctx.n_layers;
  const int64_t n_gqa = ctx.n_kv_heads > 0 ? ctx.n_heads / ctx.n_kv_heads : 1;
  const std::string& name = m.name;

  const bool output_rule = kind == TensorKind::Output || (kind == TensorKind::TokenEmbd && ctx.tied_embeddings);
  if (output_rule) return base == QType::Q8_0 ? QType::Q8_0 : QType::Q6_K;
  if (kind == TensorKind::TokenEmbd) return base;

  switch (kind) {
    case TensorKind::AttnV:
      if (name == "Q4_K_M" || name == "Q5_K_M") return use_more_bits(i, n) ? QType::Q6_K : base;
      if (name == "Q3_K_M") return i < 2 ? QType::Q5_K : QType::Q4_K;
      if (name == "Q4_K_S") return i < 4 ? QType::Q5_K : base;
      if (name == "Q2_K") return n_gqa >= 4 ? QType::Q4_K : QType::Q3_K;
      if (name == "IQ4_NL" || name == "IQ4_XS") return n_gqa >= 4 ? QType::Q5_K : base;
      if (name == "Q3_K_S") return base;
      return base;
    case TensorKind::FfnDown:
      if (name == "Q4_K_M" || name == "Q5_K_M") return use_more_bits(i, n) ? QType::Q6_K : base;
      if (name == "Q3_K_M") return i < n / 16 ? QType::Q5_K : QType::Q4_K;
      if (name == "Q4_K_S") return i < n / 8 ? QType::Q5_K : base;
      if (name == "Q2_K") return QType::Q3_K;
      if (name == "IQ4_NL" || name == "IQ4_XS") return i < n / 8 ? QType::Q5_K : base;
      return base;
    case TensorKind::AttnOutput:
      if (name == "Q3_K_M") return QType::Q4_K;
      if (name == "Q2_K") return QType::Q3_K;
      return base;
    default:
      return base;
  }
}

}  // namespace slm
