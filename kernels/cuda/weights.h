// Device-side views of the weights the CUDA matrix kernels read (plain structs, no fmt/CUDA
// runtime dependencies beyond cuda_fp16.h, so .cu translation units can include them).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace slm::cuda {

inline constexpr int kGemvMaxM = 8;  // largest M the GEMV-style kernels (c, dp4a) accept

// GPTQ 4-bit weights in the checkpoint layout (gptq.md §2), on the device.
struct GptqCheckpointDev {
  const int32_t* qweight = nullptr;  // [K/8][N]
  const int32_t* qzeros = nullptr;   // [G][N/8]
  const __half* scales = nullptr;    // [G][N]
  const int32_t* g_idx = nullptr;    // [K], or nullptr for k / group_size
  int64_t k = 0, n = 0;
  int group_size = 128;              // resolved (never -1)
  bool zeros_v1 = true;
};

// GPTQ 4-bit weights in the repacked layout (kernels/layout/gptq_layout.h), on the device.
struct GptqFastDev {
  const uint32_t* qweight = nullptr;  // [N][K/8], shuffled nibbles
  const __half* scales = nullptr;     // [G][N]
  const uint8_t* zeros = nullptr;     // [G][N]
  const int32_t* perm = nullptr;      // [K] (act-order) or nullptr
  int64_t k = 0, n = 0;
  int group_size = 128;
};

// GPTQ 8-bit weights in the dp4a layout (kernels/layout/gptq8_layout.h), on the device.
struct Gptq8Dev {
  const int8_t* codes = nullptr;    // [N][K] q - 128, repacked column order
  const __half* scales = nullptr;   // [N][G]
  const int16_t* offs = nullptr;    // [N][G] 128 - zero
  const int32_t* perm = nullptr;    // [K] (act-order) or nullptr
  int64_t k = 0, n = 0, groups = 0;
  int group_size = 128;             // resolved (never -1), a multiple of 32
};

}  // namespace slm::cuda
