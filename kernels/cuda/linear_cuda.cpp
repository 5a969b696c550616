// Host side of the CUDA matrix kernels (linear_cuda.h): argument validation, workspace carving,
// NVTX ranges, launch-error checks, the cuBLAS calls, and device uploads of the weights. The
// kernels themselves live in gptq.cu / gguf.cu behind kernels/cuda/launch.h.
#include "kernels/cuda/linear_cuda.h"

#include <algorithm>
#include <climits>

#include "kernels/cuda/launch.h"
#include "kernels/layout/gguf_layout.h"

namespace slm::cuda {
namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

void check_fast(const GptqFastDev& w, int64_t m) {
  SLM_CHECK(w.qweight && w.scales && w.zeros, "gptq: null weight pointer");
  SLM_CHECK(w.k > 0 && w.k % layout::kGptqChunkK == 0 && w.n > 0 && w.n % 8 == 0,
            "gptq: unsupported shape k={} n={}", w.k, w.n);
  SLM_CHECK(w.group_size > 0 && w.group_size % layout::kGptqChunkK == 0,
            "gptq: group_size {} unsupported", w.group_size);
  SLM_CHECK(m > 0 && m <= 65535, "gptq: bad m={}", m);
}

void check_checkpoint(const GptqCheckpointDev& w, int64_t m) {
  SLM_CHECK(w.qweight && w.qzeros && w.scales, "gptq: null weight pointer");
  SLM_CHECK(w.k > 0 && w.k % layout::kGptqChunkK == 0 && w.n > 0 && w.n % 8 == 0,
            "gptq: unsupported shape k={} n={}", w.k, w.n);
  SLM_CHECK(w.group_size > 0, "gptq: group_size {} unsupported", w.group_size);
  SLM_CHECK(m > 0 && m <= 65535, "gptq: bad m={}", m);
}

void check_gguf(QType t, int64_t m, int64_t n, int64_t k) {
  SLM_CHECK(layout::gguf_cuda_supported(t), "gguf cuda: weight type {} not supported (Q4_0, Q8_0, Q4_K, Q6_K)",
            qtype_name(t));
  const int64_t blk = t == QType::Q4_K || t == QType::Q6_K ? kQK_K : kQK;
  SLM_CHECK(k > 0 && k % blk == 0, "gguf cuda: k={} not a multiple of the {} block size {}", k,
            qtype_name(t), blk);
  SLM_CHECK(n > 0 && m > 0 && m <= 65535, "gguf cuda: bad shape m={} n={}", m, n);
}

const __half* maybe_permute(const GptqFastDev& w, const __half* x, int64_t m, void* ws,
                            cudaStream_t s) {
  if (!w.perm) return x;
  auto* xp = static_cast<__half*>(ws);
  permute_columns(x, w.perm, xp, m, w.k, s);
  return xp;
}

}  // namespace

void fp16_cublas(cublasHandle_t h, const __half* w, const __half* x, __half* y, int64_t m,
                 int64_t n, int64_t k, cudaStream_t s) {
  NvtxRange r("fp16_cublas");
  SLM_CHECK(m > 0 && n > 0 && k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX,
            "fp16_cublas: bad shape m={} n={} k={}", m, n, k);
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasSetStream(h, s));
  // Row-major Y[M][N] is column-major Y^T (N x M) = W (N x K, the column-major view of row-major
  // W[N][K] transposed) * X^T (K x M, the column-major view of row-major X[M][K]).
  CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w,
                            CUDA_R_16F, int(k), x, CUDA_R_16F, int(k), &beta, y, CUDA_R_16F, int(n),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void permute_columns(const __half* x, const int32_t* perm, __half* xp, int64_t m, int64_t k,
                     cudaStream_t s) {
  if (m * k == 0) return;
  detail::launch_permute_columns(x, perm, xp, m, k, s);
  CUDA_CHECK_LAUNCH();
}

void gptq_dequantize_fp16(const GptqCheckpointDev& w, __half* w_out, cudaStream_t s) {
  NvtxRange r("gptq_dequantize_fp16");
  check_checkpoint(w, 1);
  detail::launch_gptq_dequant(w, w_out, s);
  CUDA_CHECK_LAUNCH();
}

size_t gptq_dequant_cublas_workspace_bytes(int64_t n, int64_t k) {
  return align_up(size_t(n) * size_t(k) * sizeof(__half));
}

void gptq_dequant_cublas(cublasHandle_t h, const GptqCheckpointDev& w, const __half* x, __half* y,
                         int64_t m, void* workspace, size_t workspace_bytes, cudaStream_t s) {
  NvtxRange r("gptq_dequant_cublas");
  check_checkpoint(w, m);
  SLM_CHECK(workspace_bytes >= gptq_dequant_cublas_workspace_bytes(w.n, w.k),
            "gptq_dequant_cublas: workspace of {} bytes, need {}", workspace_bytes,
            gptq_dequant_cublas_workspace_bytes(w.n, w.k));
  auto* wf = static_cast<__half*>(workspace);
  gptq_dequantize_fp16(w, wf, s);
  fp16_cublas(h, wf, x, y, m, w.n, w.k, s);
}

void gptq_naive(const GptqCheckpointDev& w, const __half* x, __half* y, int64_t m, cudaStream_t s) {
  NvtxRange r("gptq_naive");
  check_checkpoint(w, m);
  detail::launch_gptq_naive(w, x, y, m, s);
  CUDA_CHECK_LAUNCH();
}

int gptq_gemv_split_k(const GptqFastDev& w, int64_t m, GemvOptions opt) {
  const int64_t nchunks = w.k / layout::kGptqChunkK;
  if (opt.split_k > 0) return int(std::clamp<int64_t>(opt.split_k, 1, nchunks));
  // Aim for two blocks per SM, but keep at least 32 chunks (one per lane) in every split.
  const int64_t per_block = detail::kGemvOutputsPerBlockHost;
  const int64_t blocks = (w.n + per_block - 1) / per_block;
  const int64_t want = (2 * int64_t(current_device_info().sm_count) + blocks - 1) / blocks;
  const int64_t cap = std::max<int64_t>(1, std::min<int64_t>(16, nchunks / 32));
  return int(std::clamp<int64_t>(want, 1, cap));
}

size_t gptq_gemv_workspace_bytes(int64_t m, int64_t n, int64_t k, int max_split_k) {
  return align_up(size_t(m * k) * sizeof(__half)) +
         align_up(size_t(std::max(max_split_k, 1)) * size_t(m * n) * sizeof(float));
}

void gptq_gemv(const GptqFastDev& w, const __half* x, __half* y, int64_t m, void* workspace,
               size_t workspace_bytes, cudaStream_t s, GemvOptions opt) {
  NvtxRange r("gptq_gemv");
  check_fast(w, m);
  SLM_CHECK(m <= kGemvMaxM, "gptq_gemv: m={} exceeds {}", m, kGemvMaxM);
  const int split = gptq_gemv_split_k(w, m, opt);
  const size_t xp_bytes = align_up(size_t(m * w.k) * sizeof(__half));
  const size_t need =
      (w.perm || split > 1 ? xp_bytes : 0) + (split > 1 ? align_up(size_t(split) * size_t(m * w.n) * 4) : 0);
  SLM_CHECK(need == 0 || (workspace && workspace_bytes >= need),
            "gptq_gemv: workspace of {} bytes, need {}", workspace_bytes, need);
  const __half* xin = maybe_permute(w, x, m, workspace, s);
  float* partial =
      split > 1 ? reinterpret_cast<float*>(static_cast<char*>(workspace) + xp_bytes) : nullptr;
  detail::launch_gptq_gemv(w, xin, y, m, partial, split, s);
  CUDA_CHECK_LAUNCH();
  if (partial) {
    detail::launch_splitk_reduce(partial, y, m * w.n, split, s);
    CUDA_CHECK_LAUNCH();
  }
}

size_t gptq_mma_workspace_bytes(int64_t m, int64_t k) {
  return align_up(size_t(m * k) * sizeof(__half));
}

void gptq_mma(const GptqFastDev& w, const __half* x, __half* y, int64_t m, void* workspace,
              size_t workspace_bytes, cudaStream_t s) {
  NvtxRange r("gptq_mma");
  check_fast(w, m);
  SLM_CHECK(!w.perm || (workspace && workspace_bytes >= gptq_mma_workspace_bytes(m, w.k)),
            "gptq_mma: workspace of {} bytes, need {}", workspace_bytes,
            gptq_mma_workspace_bytes(m, w.k));
  SLM_CHECK(current_device_info().cc() >= 75, "gptq_mma: needs sm_75 or newer (device is sm_{})",
            current_device_info().cc());
  const __half* xin = maybe_permute(w, x, m, workspace, s);
  detail::launch_gptq_mma(w, xin, y, m, s);
  CUDA_CHECK_LAUNCH();
}

size_t gptq8_dp4a_workspace_bytes(int64_t m, int64_t k) {
  return align_up(size_t(m * k) * sizeof(__half)) + align_up(size_t(m) * size_t(k / kQK) * sizeof(BlockQ8_1));
}

void gptq8_dp4a(const Gptq8Dev& w, const __half* x, __half* y, int64_t m, void* workspace,
                size_t workspace_bytes, cudaStream_t s) {
  NvtxRange r("gptq8_dp4a");
  SLM_CHECK(w.codes && w.scales && w.offs, "gptq8_dp4a: null weight pointer");
  SLM_CHECK(w.k > 0 && w.k % kQK == 0 && w.n > 0 && w.group_size > 0 && w.group_size % kQK == 0 &&
                w.groups == (w.k + w.group_size - 1) / w.group_size,
            "gptq8_dp4a: unsupported shape k={} n={} group_size={} groups={}", w.k, w.n, w.group_size, w.groups);
  SLM_CHECK(m > 0 && m <= kGemvMaxM, "gptq8_dp4a: m={} outside 1..{}", m, kGemvMaxM);
  SLM_CHECK(workspace && workspace_bytes >= gptq8_dp4a_workspace_bytes(m, w.k),
            "gptq8_dp4a: workspace of {} bytes, need {}", workspace_bytes, gptq8_dp4a_workspace_bytes(m, w.k));
  // [permuted x (act-order only) | Q8_1 blocks]: the quantizer groups 32 consecutive columns of
  // the order the codes are stored in.
  const __half* xin = w.perm ? static_cast<const __half*>(workspace) : x;
  if (w.perm) permute_columns(x, w.perm, static_cast<__half*>(workspace), m, w.k, s);
  auto* xq = reinterpret_cast<BlockQ8_1*>(static_cast<char*>(workspace) + align_up(size_t(m * w.k) * sizeof(__half)));
  quantize_q8_1(xin, xq, m, w.k, s);
  detail::launch_gptq8_dp4a(w, xq, y, m, s);
  CUDA_CHECK_LAUNCH();
}

void quantize_q8_1(const __half* x, BlockQ8_1* xq, int64_t m, int64_t k, cudaStream_t s) {
  NvtxRange r("quantize_q8_1");
  SLM_CHECK(m > 0 && k > 0 && k % kQK == 0, "quantize_q8_1: bad shape m={} k={}", m, k);
  detail::launch_quantize_q8_1(x, xq, m, k, s);
  CUDA_CHECK_LAUNCH();
}

size_t gguf_dp4a_workspace_bytes(int64_t m, int64_t k) {
  return align_up(size_t(m) * size_t(k / kQK) * sizeof(BlockQ8_1));
}

void gguf_dp4a_q8_1(QType t, const void* w, const BlockQ8_1* xq, __half* y, int64_t m, int64_t n,
                    int64_t k, cudaStream_t s) {
  NvtxRange r("gguf_dp4a");
  check_gguf(t, m, n, k);
  SLM_CHECK(m <= kGemvMaxM, "gguf_dp4a: m={} exceeds {}", m, kGemvMaxM);
  detail::launch_gguf_dp4a(uint32_t(t), w, xq, y, m, n, k, s);
  CUDA_CHECK_LAUNCH();
}

void gguf_dp4a(QType t, const void* w, const __half* x, __half* y, int64_t m, int64_t n, int64_t k,
               void* workspace, size_t workspace_bytes, cudaStream_t s) {
  check_gguf(t, m, n, k);
  SLM_CHECK(workspace && workspace_bytes >= gguf_dp4a_workspace_bytes(m, k),
            "gguf_dp4a: workspace of {} bytes, need {}", workspace_bytes,
            gguf_dp4a_workspace_bytes(m, k));
  auto* xq = static_cast<BlockQ8_1*>(workspace);
  quantize_q8_1(x, xq, m, k, s);
  gguf_dp4a_q8_1(t, w, xq, y, m, n, k, s);
}

void gguf_f16_gemv(QType t, const void* w, const __half* x, __half* y, int64_t m, int64_t n,
                   int64_t k, cudaStream_t s) {
  NvtxRange r("gguf_f16_gemv");
  check_gguf(t, m, n, k);
  SLM_CHECK(m <= kGemvMaxM, "gguf_f16_gemv: m={} exceeds {}", m, kGemvMaxM);
  SLM_CHECK(w && x && y, "gguf_f16_gemv: null pointer");
  // Q4_K's quants are read with 128-bit loads (16-byte aligned inside a block when the row
  // starts so), the activations always.
  SLM_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                (t != QType::Q4_K || reinterpret_cast<uintptr_t>(w) % 16 == 0),
            "gguf_f16_gemv: x ({}) and Q4_K weights ({}) must be 16-byte aligned", static_cast<const void*>(x),
            w);
  detail::launch_gguf_f16_gemv(uint32_t(t), w, x, y, m, n, k, s);
  CUDA_CHECK_LAUNCH();
}

void gguf_dequantize_fp16(QType t, const void* w, __half* w_out, int64_t n, int64_t k,
                          cudaStream_t s) {
  NvtxRange r("gguf_dequantize_fp16");
  check_gguf(t, 1, n, k);
  detail::launch_gguf_dequant(uint32_t(t), w, w_out, n, k, s);
  CUDA_CHECK_LAUNCH();
}

size_t gguf_dequant_cublas_workspace_bytes(int64_t n, int64_t k) {
  return align_up(size_t(n) * size_t(k) * sizeof(__half));
}

void gguf_dequant_cublas(cublasHandle_t h, QType t, const void* w, const __half* x, __half* y,
                         int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                         cudaStream_t s) {
  NvtxRange r("gguf_dequant_cublas");
  check_gguf(t, m, n, k);
  SLM_CHECK(workspace && workspace_bytes >= gguf_dequant_cublas_workspace_bytes(n, k),
            "gguf_dequant_cublas: workspace of {} bytes, need {}", workspace_bytes,
            gguf_dequant_cublas_workspace_bytes(n, k));
  auto* wf = static_cast<__half*>(workspace);
  gguf_dequantize_fp16(t, w, wf, n, k, s);
  fp16_cublas(h, wf, x, y, m, n, k, s);
}

namespace {
// A device copy of a host vector (synchronous).
template <class T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  b.upload(v.data(), v.size() * sizeof(T));
  return b;
}
}  // namespace

GptqFastBuffers upload_gptq_fast(const layout::GptqRepacked& r) {
  GptqFastBuffers b;
  b.qweight = to_device(r.qweight);
  b.scales = to_device(r.scales);
  b.zeros = to_device(r.zeros);
  if (r.has_perm()) b.perm = to_device(r.perm);
  b.dev.qweight = b.qweight.as<uint32_t>();
  b.dev.scales = b.scales.as<__half>();
  b.dev.zeros = b.zeros.as<uint8_t>();
  b.dev.perm = r.has_perm() ? b.perm.as<int32_t>() : nullptr;
  b.dev.k = r.k;
  b.dev.n = r.n;
  b.dev.group_size = r.group_size;
  return b;
}

Gptq8Buffers upload_gptq8(const layout::Gptq8Repacked& r) {
  SLM_CHECK(r.codes.size() == size_t(r.n) * size_t(r.k) && r.scales.size() == size_t(r.n) * size_t(r.groups) &&
                r.offs.size() == r.scales.size() && (r.perm.empty() || r.perm.size() == size_t(r.k)),
            "upload_gptq8: inconsistent repacked weight");
  Gptq8Buffers b;
  b.codes = to_device(r.codes);
  b.scales = to_device(r.scales);
  b.offs = to_device(r.offs);
  if (r.has_perm()) b.perm = to_device(r.perm);
  b.dev.codes = b.codes.as<int8_t>();
  b.dev.scales = b.scales.as<__half>();
  b.dev.offs = b.offs.as<int16_t>();
  b.dev.perm = r.has_perm() ? b.perm.as<int32_t>() : nullptr;
  b.dev.k = r.k;
  b.dev.n = r.n;
  b.dev.groups = r.groups;
  b.dev.group_size = r.group_size;
  return b;
}

GptqCheckpointBuffers upload_gptq_checkpoint(const layout::GptqTensors& t) {
  layout::gptq_validate(t);
  GptqCheckpointBuffers b;
  b.qweight = DeviceBuffer(t.qweight.size_bytes());
  b.qweight.upload(t.qweight.data(), t.qweight.size_bytes());
  b.qzeros = DeviceBuffer(t.qzeros.size_bytes());
  b.qzeros.upload(t.qzeros.data(), t.qzeros.size_bytes());
  b.scales = DeviceBuffer(t.scales.size_bytes());
  b.scales.upload(t.scales.data(), t.scales.size_bytes());
  if (!t.g_idx.empty()) {
    b.g_idx = DeviceBuffer(t.g_idx.size_bytes());
    b.g_idx.upload(t.g_idx.data(), t.g_idx.size_bytes());
  }
  b.dev.qweight = b.qweight.as<int32_t>();
  b.dev.qzeros = b.qzeros.as<int32_t>();
  b.dev.scales = b.scales.as<__half>();
  b.dev.g_idx = t.g_idx.empty() ? nullptr : b.g_idx.as<int32_t>();
  b.dev.k = t.k;
  b.dev.n = t.n;
  b.dev.group_size = layout::gptq_group_size(t);
  b.dev.zeros_v1 = t.zeros_v1;
  return b;
}

}  // namespace slm::cuda
