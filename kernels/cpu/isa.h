// CPU instruction-set levels and run-time dispatch. The level is detected once from CPUID (and
// XGETBV for OS support of the wide registers); it can be forced lower with set_isa() (the
// `--isa` flag) or the SLM_ISA environment variable (scalar|avx2|avx512), for tests and benches.
#pragma once
#include <string_view>

namespace slm::cpu {

enum class Isa : int {
  Scalar = 0,  // plain x86-64 (SSE2): the reference kernels
  AVX2 = 1,    // AVX2 + FMA + F16C (Haswell / Zen 1 and later)
  AVX512 = 2,  // AVX-512 F/BW/VL/DQ + VNNI (Ice Lake / Zen 4 and later); BF16 used when present
};

std::string_view isa_name(Isa isa);
Isa parse_isa(std::string_view s);  // throws slm::Error for an unknown name

Isa detected_isa();           // best level this CPU and OS support
bool cpu_has_avx512_bf16();   // AVX512_BF16 present (vdpbf16ps)
Isa active_isa();             // level kernels use now
// Forces a level; throws slm::Error if the CPU does not support it.
void set_isa(Isa isa);
// Applies SLM_ISA from the environment if set (called by tools at start-up).
void apply_isa_env();

// Whether the decode GEMVs prefetch upcoming weight rows into L2 (gemv_rows8 in
// kernels/cpu/linear_simd.inc). A property of the machine, not of the forced ISA: measured to
// help on Zen 4 (AVX-512; Q8_0 8192x2048 at 2 threads 35 -> 47 GB/s) and to hurt on Zen 1
// (AVX2 only; 1B Q8_0 tg32 4.6-4.9 -> 5.3-5.6 tok/s without it), so it is on when the CPU has
// AVX-512 and off otherwise. SLM_PREFETCH=0|1 overrides (read once).
bool decode_prefetch();

}  // namespace slm::cpu
