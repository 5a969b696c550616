// Dispatch of the compute-peak probe (peak.h) to the ISA files.
#include "kernels/cpu/peak.h"

namespace slm::cpu {

ComputePeak measure_compute_peak(Isa isa) {
  switch (isa) {
    case Isa::AVX512: return detail::compute_peak_avx512();
    case Isa::AVX2: return detail::compute_peak_avx2();
    default: return {};
  }
}

}  // namespace slm::cpu
