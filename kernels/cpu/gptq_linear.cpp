// GPTQ CPU path, ISA-independent parts: validation and bit-field access of the raw checkpoint
// tensors, bitstream packing, the load-time repack (gptq_prepare), the dispatcher (activation
// gather, per-group activation sums, OpenMP over column tiles) and the scalar tile kernel.
#include "kernels/cpu/gptq_linear.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"

namespace slm::cpu {
namespace {

inline uint32_t load_u32(const void* base, int64_t idx) {
  uint32_t v;
  std::memcpy(&v, static_cast<const uint8_t*>(base) + size_t(idx) * 4, 4);
  return v;
}

inline float load_float(const void* base, int64_t idx, GptqFloat t) {
  const auto* p = static_cast<const uint8_t*>(base);
  if (t == GptqFloat::F32) {
    float f;
    std::memcpy(&f, p + size_t(idx) * 4, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p + size_t(idx) * 2, 2);
  return t == GptqFloat::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
}

// Value i of a little-endian bitstream of `bits`-wide fields whose 32-bit words are at
// word(0), word(1), ... A field may straddle two words (3-bit).
template <class WordAt>
inline uint32_t stream_field(WordAt word, int64_t i, int bits) {
  const uint64_t p = uint64_t(i) * uint64_t(bits);
  const int64_t wi = int64_t(p / 32);
  const unsigned sh = unsigned(p % 32);
  uint64_t v = word(wi) >> sh;
  if (sh + unsigned(bits) > 32) v |= uint64_t(word(wi + 1)) << (32 - sh);
  return uint32_t(v & ((1u << bits) - 1));
}

std::vector<int32_t> pack_streams(const uint32_t* vals, int64_t count, int64_t streams, int bits,
                                  bool along_rows) {
  // along_rows: streams are columns of a [count][streams] matrix (qweight); otherwise rows of a
  // [streams][count] matrix (qzeros). Output words are laid out the same way.
  SLM_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 8, "GPTQ pack: unsupported bits {}", bits);
  SLM_CHECK((count * bits) % 32 == 0, "GPTQ pack: {} values of {} bits do not fill whole int32 words",
            count, bits);
  const int64_t words = count * bits / 32;
  std::vector<uint32_t> out(size_t(words * streams), 0);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t s = 0; s < streams; ++s)
    for (int64_t i = 0; i < count; ++i) {
      const uint32_t v = (along_rows ? vals[i * streams + s] : vals[s * count + i]);
      SLM_CHECK(v <= mask, "GPTQ pack: value {} does not fit {} bits", v, bits);
      const uint64_t p = uint64_t(i) * uint64_t(bits);
      const int64_t wi = int64_t(p / 32);
      const unsigned sh = unsigned(p % 32);
      auto at = [&](int64_t w) -> uint32_t& {
        return along_rows ? out[size_t(w * streams + s)] : out[size_t(s * words + w)];
      };
      at(wi) |= v << sh;
      if (sh + unsigned(bits) > 32) at(wi + 1) |= v >> (32 - sh);
    }
  std::vector<int32_t> r(out.size());
  std::memcpy(r.data(), out.data(), out.size() * 4);
  return r;
}

}  // namespace

void gptq_validate(const GptqTensors& t, std::string_view what) {
  SLM_CHECK(t.bits == 2 || t.bits == 3 || t.bits == 4 || t.bits == 8,
            "{}: unsupported GPTQ bits {} (expected 2, 3, 4 or 8)", what, t.bits);
  SLM_CHECK(t.k > 0 && t.n > 0 && t.k <= (int64_t(1) << 30) && t.n <= (int64_t(1) << 30),
            "{}: invalid GPTQ dims in_features={} out_features={}", what, t.k, t.n);
  SLM_CHECK((t.k * t.bits) % 32 == 0, "{}: in_features {} is not a multiple of {} ({}-bit packing)",
            what, t.k, 32 / std::gcd(32, t.bits), t.bits);
  SLM_CHECK((t.n * t.bits) % 32 == 0, "{}: out_features {} is not a multiple of {} ({}-bit qzeros packing)",
            what, t.n, 32 / std::gcd(32, t.bits), t.bits);
  SLM_CHECK(t.group_size == -1 || t.group_size > 0, "{}: invalid group_size {}", what, t.group_size);
  SLM_CHECK(t.groups >= 1 && t.groups <= t.k, "{}: invalid number of groups {} for in_features {}",
            what, t.groups, t.k);
  SLM_CHECK(t.qweight && t.qzeros && t.scales, "{}: missing GPTQ tensor data", what);
  if (!t.g_idx) {
    const int64_t expect = t.group_size > 0 ? (t.k + t.group_size - 1) / t.group_size : 1;
    SLM_CHECK(t.groups == expect, "{}: {} groups but in_features {} with group_size {} needs {}",
              what, t.groups, t.k, t.group_size, expect);
  } else {
    for (int64_t k = 0; k < t.k; ++k) {
      const int32_t g = int32_t(load_u32(t.g_idx, k));
      if (g < 0 || g >= t.groups)
        fail("{}: g_idx[{}] = {} out of range (groups = {})", what, k, g, t.groups);
    }
  }
}

uint32_t gptq_code(const GptqTensors& t, int64_t k, int64_t n) {
  return stream_field([&](int64_t w) { return load_u32(t.qweight, w * t.n + n); }, k, t.bits);
}

int64_t gptq_zero(const GptqTensors& t, int64_t g, int64_t n) {
  const int64_t row_words = t.n * t.bits / 32;
  const uint32_t z =
      stream_field([&](int64_t w) { return load_u32(t.qzeros, g * row_words + w); }, n, t.bits);
  // Full-width +1 (no mask), gptq.md §4: a v1 field of 2^bits-1 decodes to 2^bits.
  return int64_t(z) + (t.zero_plus_one ? 1 : 0);
}

float gptq_scale(const GptqTensors& t, int64_t g, int64_t n) {
  return load_float(t.scales, g * t.n + n, t.scales_type);
}

int64_t gptq_group(const GptqTensors& t, int64_t k) {
  if (t.g_idx) return int32_t(load_u32(t.g_idx, k));
  return t.group_size > 0 ? k / t.group_size : 0;
}

float gptq_bias(const GptqTensors& t, int64_t n) {
  return t.bias ? load_float(t.bias, n, t.bias_type) : 0.f;
}

std::vector<int32_t> gptq_pack_qweight(const uint32_t* q, int64_t k, int64_t n, int bits) {
  return pack_streams(q, k, n, bits, true);
}

std::vector<int32_t> gptq_pack_qzeros(const uint32_t* z, int64_t groups, int64_t n, int bits) {
  return pack_streams(z, n, groups, bits, false);
}

GptqCpuWeight gptq_prepare(const GptqTensors& t, std::span<const int32_t> out_perm) {
  gptq_validate(t, "gptq_prepare");
  if (!out_perm.empty()) {
    SLM_CHECK(int64_t(out_perm.size()) == t.n, "gptq_prepare: out_perm has {} entries, expected {}",
              out_perm.size(), t.n);
    std::vector<char> hit(size_t(t.n), 0);
    for (int32_t v : out_perm) {
      SLM_CHECK(v >= 0 && v < t.n && !hit[size_t(v)], "gptq_prepare: out_perm is not a permutation");
      hit[size_t(v)] = 1;
    }
  }
  auto src_col = [&](int64_t n) -> int64_t { return out_perm.empty() ? n : out_perm[size_t(n)]; };
  GptqCpuWeight w;
  w.code_bits = t.bits == 8 ? 8 : 4;
  w.k = t.k;
  w.n = t.n;
  w.groups = t.groups;
  w.np = (t.n + kGptqNTile - 1) / kGptqNTile * kGptqNTile;
  const int per = w.per_word();

  // Group of every input column; stable sort by group makes groups contiguous (act-order).
  std::vector<int64_t> grp(size_t(t.k)), count(size_t(t.groups), 0);
  for (int64_t k = 0; k < t.k; ++k) {
    grp[size_t(k)] = gptq_group(t, k);
    ++count[size_t(grp[size_t(k)])];
  }
  w.group_start.assign(size_t(t.groups) + 1, 0);
  for (int64_t g = 0; g < t.groups; ++g)
    w.group_start[size_t(g) + 1] = w.group_start[size_t(g)] + (count[size_t(g)] + per - 1) / per * per;
  w.kp = w.group_start.back();
  w.perm.assign(size_t(w.kp), -1);
  std::vector<int64_t> fill(w.group_start.begin(), w.group_start.end() - 1);
  for (int64_t k = 0; k < t.k; ++k) w.perm[size_t(fill[size_t(grp[size_t(k)])]++)] = int32_t(k);
  w.gather = w.kp != t.k;
  for (int64_t i = 0; i < w.kp && !w.gather; ++i) w.gather = w.perm[size_t(i)] != i;
  if (!w.gather) w.perm.clear();

  const int64_t ntiles = w.np / kGptqNTile, wpt = w.words_per_tile();
  w.codes.assign(size_t(ntiles * wpt * kGptqNTile), 0);
  if (!w.gather && t.bits == w.code_bits) {
    // Common case (no act-order, 4- or 8-bit): the words are already right, only tiled.
    for (int64_t wi = 0; wi < wpt; ++wi)
      for (int64_t n = 0; n < t.n; ++n)
        w.codes[size_t(((n / kGptqNTile) * wpt + wi) * kGptqNTile + n % kGptqNTile)] =
            load_u32(t.qweight, wi * t.n + src_col(n));
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < t.n; ++n) {
      uint32_t* col = w.codes.data() + size_t((n / kGptqNTile) * wpt * kGptqNTile + n % kGptqNTile);
      for (int64_t kk = 0; kk < w.kp; ++kk) {
        const int64_t src = w.gather ? w.perm[size_t(kk)] : kk;
        if (src < 0) continue;  // padding: code 0, and its activation is 0
        col[size_t(kk / per) * kGptqNTile] |= gptq_code(t, src, src_col(n)) << (w.code_bits * (kk % per));
      }
    }
  }

  w.scales.assign(size_t(ntiles * t.groups * kGptqNTile), 0.f);
  w.zeros.assign(w.scales.size(), 0.f);
  for (int64_t g = 0; g < t.groups; ++g)
    for (int64_t n = 0; n < t.n; ++n) {
      const size_t i = size_t(((n / kGptqNTile) * t.groups + g) * kGptqNTile + n % kGptqNTile);
      w.scales[i] = gptq_scale(t, g, src_col(n));
      w.zeros[i] = float(gptq_zero(t, g, src_col(n)));
    }
  if (t.bias) {
    w.bias.resize(size_t(t.n));
    for (int64_t n = 0; n < t.n; ++n) w.bias[size_t(n)] = gptq_bias(t, src_col(n));
  }
  return w;
}

size_t gptq_workspace_bytes(const GptqCpuWeight& w, int64_t max_m) {
  const size_t xsum = size_t(max_m) * size_t(w.groups);
  const size_t xg = w.gather ? size_t(max_m) * size_t(w.kp) : 0;
  return (xsum + 16 + xg) * sizeof(float) + 64;
}

bool gptq_isa_available(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::AVX2: return int(detected_isa()) >= int(Isa::AVX2);
    case Isa::AVX512:
      return int(detected_isa()) >= int(Isa::AVX2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
  }
  return false;
}

void gptq_linear_isa(const GptqCpuWeight& w, const float* x, int64_t m, float* y, int64_t ldy,
                     Workspace& ws, Isa isa) {
  SLM_CHECK(gptq_isa_available(isa), "gptq_linear: ISA {} not available on this CPU", isa_name(isa));
  if (m <= 0) return;
  ws.reserve(gptq_workspace_bytes(w, m));
  float* xsum = reinterpret_cast<float*>(ws.bytes.data());
  const size_t xsum_n = (size_t(m) * size_t(w.groups) + 15) / 16 * 16;
  const float* xp = x;
  int64_t ldx = w.k;
  if (w.gather) {
    float* xg = xsum + xsum_n;
#pragma omp parallel for schedule(static) if (m > 1)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t kk = 0; kk < w.kp; ++kk) {
        const int32_t src = w.perm[size_t(kk)];
        xg[r * w.kp + kk] = src >= 0 ? x[r * w.k + src] : 0.f;
      }
    xp = xg;
    ldx = w.kp;
  }
#pragma omp parallel for schedule(static) if (m > 1)
  for (int64_t r = 0; r < m; ++r)
    for (int64_t g = 0; g < w.groups; ++g) {
      float s = 0.f;
      for (int64_t kk = w.group_start[size_t(g)]; kk < w.group_start[size_t(g) + 1]; ++kk)
        s += xp[r * ldx + kk];
      xsum[r * w.groups + g] = s;
    }

  const detail::GptqRun run{&w, xp, ldx, xsum, m, y, ldy};
  auto fn = isa == Isa::AVX512 ? detail::gptq_tiles_avx512
            : isa == Isa::AVX2 ? detail::gptq_tiles_avx2
                               : detail::gptq_tiles_scalar;
  const int64_t ntiles = w.np / kGptqNTile;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < ntiles; ++t) fn(run, t, t + 1);
}

void gptq_linear(const GptqCpuWeight& w, const float* x, int64_t m, float* y, int64_t ldy,
                 Workspace& ws) {
  // AVX-512 only when the project-wide level says so (it also gates on VNNI, which this kernel
  // does not need; gptq_linear_isa reaches the AVX-512 path on such CPUs for tests and benches).
  gptq_linear_isa(w, x, m, y, ldy, ws, active_isa());
}

namespace detail {

void gptq_tiles_scalar(const GptqRun& r, int64_t t0, int64_t t1) {
  constexpr int MT = 4, NT = kGptqNTile;
  const GptqCpuWeight& w = *r.w;
  const int per = w.per_word(), cb = w.code_bits;
  const uint32_t mask = (1u << cb) - 1;
  const int64_t wpt = w.words_per_tile();
  for (int64_t t = t0; t < t1; ++t) {
    const uint32_t* codes = w.codes.data() + size_t(t * wpt * NT);
    const float* sc = w.scales.data() + size_t(t * w.groups * NT);
    const float* zs = w.zeros.data() + size_t(t * w.groups * NT);
    for (int64_t m0 = 0; m0 < r.m; m0 += MT) {
      const int mt = int(std::min<int64_t>(MT, r.m - m0));
      float acc[MT][NT] = {};
      for (int64_t g = 0; g < w.groups; ++g) {
        const int64_t w0 = w.group_start[size_t(g)] / per, w1 = w.group_start[size_t(g) + 1] / per;
        if (w0 == w1) continue;
        float accg[MT][NT] = {};
        for (int64_t wi = w0; wi < w1; ++wi)
          for (int j = 0; j < per; ++j) {
            float qf[NT];
            for (int c = 0; c < NT; ++c) qf[c] = float((codes[wi * NT + c] >> (cb * j)) & mask);
            for (int i = 0; i < mt; ++i) {
              const float xv = r.xp[(m0 + i) * r.ldx + wi * per + j];
              for (int c = 0; c < NT; ++c) accg[i][c] += qf[c] * xv;
            }
          }
        for (int i = 0; i < mt; ++i) {
          const float xs = r.xsum[(m0 + i) * w.groups + g];
          for (int c = 0; c < NT; ++c) acc[i][c] += sc[g * NT + c] * (accg[i][c] - zs[g * NT + c] * xs);
        }
      }
      for (int i = 0; i < mt; ++i)
        for (int c = 0; c < NT; ++c) {
          const int64_t n = t * NT + c;
          if (n < w.n) r.y[(m0 + i) * r.ldy + n] = acc[i][c] + (w.bias.empty() ? 0.f : w.bias[size_t(n)]);
        }
    }
  }
}

}  // namespace detail
}  // namespace slm::cpu
