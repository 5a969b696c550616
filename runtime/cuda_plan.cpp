// Host-side planning of the CUDA backend (cuda_plan.h). Pure arithmetic on the model config.
#include "runtime/cuda_plan.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/layout/gptq8_layout.h"
#include "kernels/quant/blocks.h"

namespace slm {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

bool dp4a_type(QType t) { return t == QType::Q4_0 || t == QType::Q8_0 || t == QType::Q4_K || t == QType::Q6_K; }
int64_t block_elems(QType t) { return t == QType::Q4_K || t == QType::Q6_K ? kQK_K : kQK; }

}  // namespace

const char* cuda_mat_kernel_name(CudaMatKernel k) {
  switch (k) {
    case CudaMatKernel::Fp16Cublas: return "fp16_cublas";
    case CudaMatKernel::GgufDp4a: return "gguf_dp4a";
    case CudaMatKernel::GgufDequantCublas: return "gguf_dequant_cublas";
    case CudaMatKernel::GptqGemv: return "gptq_gemv";
    case CudaMatKernel::GptqMma: return "gptq_mma";
    case CudaMatKernel::Gptq8Dp4a: return "gptq8_dp4a";
  }
  return "?";
}

CudaWeightFormat cuda_matrix_format(QType t, int64_t cols) {
  // The dp4a / dequant kernels need whole blocks per row (always true for a valid GGUF row).
  if (dp4a_type(t) && cols % block_elems(t) == 0) return CudaWeightFormat::RawGguf;
  return CudaWeightFormat::Fp16;
}

CudaWeightFormat cuda_lookup_format(QType t, int64_t cols) {
  const bool raw = t == QType::F32 || t == QType::F16 || t == QType::BF16 || t == QType::Q6_K || dp4a_type(t);
  if (raw && cols % (t == QType::F32 || t == QType::F16 || t == QType::BF16 ? 1 : block_elems(t)) == 0)
    return t == QType::F16 ? CudaWeightFormat::Fp16 : CudaWeightFormat::RawGguf;
  return CudaWeightFormat::Fp16;
}

CudaMatKernel cuda_mat_kernel(CudaWeightFormat f, QType t, int64_t m) {
  // The GEMV reads the packed weights once per call for up to 8 rows (like dp4a); the tensor-core
  // kernel dequantizes each weight tile once per 32/64-row block of the batch.
  if (f == CudaWeightFormat::GptqFast) return m <= kCudaGemvMaxM ? CudaMatKernel::GptqGemv : CudaMatKernel::GptqMma;
  // No 8-bit GEMM: larger batches run the GEMV per 8 rows (the lm_head sees one row per eval
  // unless all logits are asked for; a whole 8-bit model's prefill pays ceil(M/8) weight passes).
  if (f == CudaWeightFormat::Gptq8) return CudaMatKernel::Gptq8Dp4a;
  if (f == CudaWeightFormat::Fp16 || !dp4a_type(t)) return CudaMatKernel::Fp16Cublas;
  // dp4a reads the weights once per call whatever M is, up to its register-tile limit of 8 rows;
  // beyond that a tensor-core GEMM on a dequantized copy amortises the extra pass.
  return m <= kCudaGemvMaxM ? CudaMatKernel::GgufDp4a : CudaMatKernel::GgufDequantCublas;
}

int cuda_attn_splits(int64_t n_tokens, int64_t max_keys, int64_t n_kv_heads, int sm_count) {
  const int64_t blocks = std::max<int64_t>(1, n_tokens * n_kv_heads);
  const int64_t want = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
  const int64_t by_keys = (std::max<int64_t>(max_keys, 1) + kCudaAttnMinKeysPerSplit - 1) / kCudaAttnMinKeysPerSplit;
  return int(std::clamp<int64_t>(std::min({want, by_keys, int64_t(kCudaAttnMaxSplits)}), 1, kCudaAttnMaxSplits));
}

int64_t cuda_dequant_chunk_rows(int64_t n, int64_t k, size_t chunk_bytes) {
  const size_t row = size_t(k) * 2;
  if (size_t(n) * row <= chunk_bytes) return n;
  const int64_t rows = int64_t(chunk_bytes / row);
  if (rows >= 8) return rows / 8 * 8;
  return std::max<int64_t>(rows, 1);
}

CudaWeightFormat cuda_gptq_format(const cpu::GptqTensors& t, std::string* why) {
  SLM_CHECK(t.bias == nullptr, "cuda: GPTQ linears with a bias are not supported (Llama's have none)");
  auto fallback = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return CudaWeightFormat::Fp16;
  };
  if (t.bits == 8) {
    std::string r = layout::gptq8_unsupported(t);
    if (r.empty()) {
      if (why) why->clear();
      return CudaWeightFormat::Gptq8;
    }
    return fallback(std::move(r));
  }
  if (t.bits != layout::kGptqBits) return fallback(fmt::format("{}-bit codes (the fast kernels are 4- and 8-bit)", t.bits));
  if (t.scales_type != cpu::GptqFloat::F16) return fallback("scales not in FP16");
  if (t.k % layout::kGptqChunkK != 0 || t.n % 8 != 0)
    return fallback(fmt::format("shape {}x{} (need K % 32 == 0, N % 8 == 0)", t.n, t.k));
  const int64_t gs = t.group_size == -1 ? t.k : std::min<int64_t>(t.group_size, t.k);
  if (t.group_size != -1 && (t.group_size <= 0 || gs % layout::kGptqChunkK != 0))
    return fallback(fmt::format("group size {} (need -1 or a multiple of 32)", t.group_size));
  const int64_t groups = (t.k + gs - 1) / gs;
  if (t.groups != groups) return fallback(fmt::format("{} groups for group size {}", t.groups, t.group_size));
  if (t.g_idx) {
    // Act-order is repacked as a column permutation, which needs group_size members per group.
    std::vector<int64_t> count(size_t(groups), 0);
    for (int64_t k = 0; k < t.k; ++k) {
      int32_t g = 0;
      std::memcpy(&g, static_cast<const uint8_t*>(t.g_idx) + size_t(k) * 4, 4);
      if (g < 0 || g >= groups) return fallback(fmt::format("g_idx[{}] = {} out of range", k, g));
      ++count[size_t(g)];
    }
    for (int64_t g = 0; g < groups; ++g)
      if (count[size_t(g)] != std::min(gs, t.k - g * gs))
        return fallback(fmt::format("g_idx gives group {} {} columns, not {}", g, count[size_t(g)], gs));
  }
  if (why) why->clear();
  return CudaWeightFormat::GptqFast;
}

layout::GptqTensors CudaGptqCopy::view() const {
  layout::GptqTensors v;
  v.k = k;
  v.n = n;
  v.group_size = group_size;
  v.zeros_v1 = zeros_v1;
  v.qweight = qweight;
  v.qzeros = qzeros;
  v.scales = scales;
  v.g_idx = g_idx;
  return v;
}

CudaGptqCopy cuda_gptq_copy(const cpu::GptqTensors& t) {
  SLM_CHECK(cuda_gptq_format(t) == CudaWeightFormat::GptqFast, "cuda: GPTQ tensors not in the fast 4-bit form");
  auto words = [](const void* src, size_t n) {
    std::vector<int32_t> v(n);
    if (n) std::memcpy(v.data(), src, n * 4);
    return v;
  };
  CudaGptqCopy c;
  c.k = t.k;
  c.n = t.n;
  c.group_size = t.group_size;
  c.zeros_v1 = t.zero_plus_one;
  c.qweight = words(t.qweight, size_t(t.k / 8) * size_t(t.n));
  c.qzeros = words(t.qzeros, size_t(t.groups) * size_t(t.n / 8));
  if (t.g_idx) c.g_idx = words(t.g_idx, size_t(t.k));
  c.scales.resize(size_t(t.groups) * size_t(t.n));
  std::memcpy(c.scales.data(), t.scales, c.scales.size() * 2);
  return c;
}

void cuda_gptq_dequant_rows_fp16(const cpu::GptqTensors& t, int64_t n0, int64_t rows, uint16_t* out) {
  SLM_CHECK(n0 >= 0 && rows >= 0 && n0 + rows <= t.n, "cuda: GPTQ rows [{}, {}) outside {}", n0, n0 + rows, t.n);
  std::vector<int64_t> grp(size_t(t.k));
  for (int64_t k = 0; k < t.k; ++k) grp[size_t(k)] = cpu::gptq_group(t, k);
  // K outer, outputs inner: the checkpoint packs along K within each output column, so this walks
  // each qweight row of N words in order.
  std::vector<float> scale(static_cast<size_t>(rows)), zero(static_cast<size_t>(rows));
  int64_t g_cur = -1;
  for (int64_t k = 0; k < t.k; ++k) {
    if (grp[size_t(k)] != g_cur) {
      g_cur = grp[size_t(k)];
      for (int64_t r = 0; r < rows; ++r) {
        scale[size_t(r)] = cpu::gptq_scale(t, g_cur, n0 + r);
        zero[size_t(r)] = float(cpu::gptq_zero(t, g_cur, n0 + r));
      }
    }
    for (int64_t r = 0; r < rows; ++r)
      out[size_t(r) * size_t(t.k) + size_t(k)] =
          f32_to_fp16(scale[size_t(r)] * (float(cpu::gptq_code(t, k, n0 + r)) - zero[size_t(r)]));
  }
}

int cuda_gptq_gemv_splits(int64_t n, int64_t k, int sm_count) {
  constexpr int64_t kOutputsPerBlock = 16;  // gptq.cu: 4 warps x 4 outputs
  const int64_t nchunks = k / layout::kGptqChunkK;
  const int64_t blocks = (n + kOutputsPerBlock - 1) / kOutputsPerBlock;
  const int64_t want = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(16, nchunks / 32));
  return int(std::clamp<int64_t>(want, 1, cap));
}

size_t cuda_gptq_workspace_bytes(int64_t n, int64_t k, bool act_order, int64_t max_batch, int sm_count) {
  // Mirrors gptq_gemv / gptq_mma in kernels/cuda/linear_cuda.cpp (each piece 256-byte aligned).
  const int split = cuda_gptq_gemv_splits(n, k, sm_count);
  const int64_t mg = std::min(max_batch, kCudaGemvMaxM);
  const size_t xp_gemv = align_up(size_t(mg * k) * 2);
  const size_t gemv = (act_order || split > 1 ? xp_gemv : 0) + (split > 1 ? align_up(size_t(split) * size_t(mg * n) * 4) : 0);
  const size_t mma = max_batch > kCudaGemvMaxM && act_order ? align_up(size_t(max_batch * k) * 2) : 0;
  return std::max(gemv, mma);
}

size_t cuda_gptq8_workspace_bytes(int64_t k, int64_t max_batch) {
  const int64_t mg = std::min(max_batch, kCudaGemvMaxM);
  return align_up(size_t(mg * k) * 2) + align_up(size_t(mg) * size_t(k / kQK) * sizeof(BlockQ8_1));
}

CudaMemoryPlan plan_cuda_memory(const ModelConfig& c, int64_t n_ctx, int64_t max_batch, int sm_count,
                                size_t max_mat_dequant_bytes, size_t gptq_workspace) {
  CudaMemoryPlan p;
  const size_t B = size_t(max_batch), dim = size_t(c.dim), qd = size_t(c.q_dim()), kvd = size_t(c.kv_dim());
  const size_t hid = size_t(c.hidden_dim), V = size_t(c.n_vocab);
  p.activations = align_up(B * dim * 4)                  // residual x (FP32)
                  + align_up(B * std::max(dim, qd) * 2)  // normed input xb
                  + align_up(B * qd * 2) * 2             // q, attention output
                  + align_up(B * kvd * 2) * 2            // k, v
                  + align_up(B * dim * 2)                // branch output before the residual add
                  + align_up(B * hid * 2) * 2            // gate, up
                  + align_up(B * V * 2) + align_up(B * V * 4)  // logits FP16 and FP32
                  + align_up((B + 2) * 4)                // token ids, position, argmax
                  + align_up(size_t(n_ctx) * size_t(c.n_rot / 2) * 2 * 4);  // RoPE table
  p.kv_cache = 2 * align_up(size_t(c.n_layers) * size_t(n_ctx) * kvd * 2);
  size_t partial = 0;
  for (int64_t n = 1; n <= max_batch; ++n) {
    const size_t s = size_t(cuda_attn_splits(n, n_ctx, c.n_kv_heads, sm_count));
    partial = std::max(partial, size_t(n) * size_t(c.n_heads) * s * size_t(c.head_dim + 2) * 4);
  }
  p.attn_partial = align_up(partial);
  p.decode_splits = cuda_attn_splits(1, n_ctx, c.n_kv_heads, sm_count);
  const size_t maxk = std::max({dim, hid, qd});
  const size_t q8 = align_up(8 * (maxk / kQK) * sizeof(BlockQ8_1));
  const size_t deq = max_mat_dequant_bytes == 0 ? 0 : align_up(std::max(std::min(max_mat_dequant_bytes, kCudaDequantChunkCap), 8 * maxk * 2));
  p.mat_workspace = std::max({q8, deq, align_up(gptq_workspace)});
  p.cublas_workspace = size_t(32) << 20;  // NVIDIA's recommendation for Hopper (4 MiB suffices before)
  return p;
}

}  // namespace slm
