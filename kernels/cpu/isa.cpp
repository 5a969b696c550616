#include "kernels/cpu/isa.h"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace slm::cpu {
namespace {

struct Features {
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool avx512bf16 = false;
  bool os_ymm = false, os_zmm = false;
};

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

Features probe() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (osxsave) {
    uint64_t xcr0 = xgetbv0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
    f.os_zmm = f.os_ymm && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b & (1u << 5);
    f.bmi2 = b & (1u << 8);
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = a & (1u << 5);
  }
  return f;
}

const Features& features() {
  static const Features f = probe();
  return f;
}

Isa compute_detected() {
  const Features& f = features();
  const bool avx2 = f.os_ymm && f.avx2 && f.fma && f.f16c && f.bmi2;
  if (avx2 && f.os_zmm && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni)
    return Isa::AVX512;
  if (avx2) return Isa::AVX2;
  return Isa::Scalar;
}

std::atomic<int> g_active{-1};

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::AVX2: return "avx2";
    case Isa::AVX512: return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view s) {
  if (s == "scalar") return Isa::Scalar;
  if (s == "avx2") return Isa::AVX2;
  if (s == "avx512") return Isa::AVX512;
  fail("unknown ISA '{}' (expected scalar, avx2 or avx512)", s);
}

Isa detected_isa() {
  static const Isa d = compute_detected();
  return d;
}

bool decode_prefetch() {
  static const bool on = [] {
    if (const char* e = std::getenv("SLM_PREFETCH"); e && *e) return std::string_view(e) != "0";
    return detected_isa() == Isa::AVX512;
  }();
  return on;
}

bool cpu_has_avx512_bf16() { return detected_isa() == Isa::AVX512 && features().avx512bf16; }

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  return v < 0 ? detected_isa() : static_cast<Isa>(v);
}

void set_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
    fail("ISA {} is not supported by this CPU (best available: {})", isa_name(isa),
         isa_name(detected_isa()));
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void apply_isa_env() {
  if (const char* e = std::getenv("SLM_ISA"); e && *e) set_isa(parse_isa(e));
}

}  // namespace slm::cpu
