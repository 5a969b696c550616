// The CUDA backend's host-side planning (runtime/cuda_plan.h), tested on the CPU so CI covers
// it: weight formats per type, the kernel per (type, M), attention split counts and the memory
// plan, against values computed by hand in the comments.
#include <doctest/doctest.h>

#include "kernels/quant/blocks.h"
#include "runtime/cuda_plan.h"
#include "runtime/cuda_session.h"
#include "runtime/device_session.h"
#include "runtime/synthetic.h"

using namespace slm;

TEST_CASE("cuda plan: upload formats") {
  // Matrix kernels exist for Q4_0/Q8_0/Q4_K/Q6_K only; everything else becomes FP16 at upload.
  CHECK(cuda_matrix_format(QType::Q4_0, 2048) == CudaWeightFormat::RawGguf);
  CHECK(cuda_matrix_format(QType::Q8_0, 96) == CudaWeightFormat::RawGguf);
  CHECK(cuda_matrix_format(QType::Q4_K, 256) == CudaWeightFormat::RawGguf);
  CHECK(cuda_matrix_format(QType::Q6_K, 2048) == CudaWeightFormat::RawGguf);
  CHECK(cuda_matrix_format(QType::Q5_0, 2048) == CudaWeightFormat::Fp16);
  CHECK(cuda_matrix_format(QType::IQ4_XS, 2048) == CudaWeightFormat::Fp16);
  CHECK(cuda_matrix_format(QType::F16, 2048) == CudaWeightFormat::Fp16);
  CHECK(cuda_matrix_format(QType::BF16, 2048) == CudaWeightFormat::Fp16);
  CHECK(cuda_matrix_format(QType::F32, 2048) == CudaWeightFormat::Fp16);
  // Row lookups decode F32/BF16/Q6_K directly as well.
  CHECK(cuda_lookup_format(QType::Q6_K, 2048) == CudaWeightFormat::RawGguf);
  CHECK(cuda_lookup_format(QType::F32, 100) == CudaWeightFormat::RawGguf);
  CHECK(cuda_lookup_format(QType::BF16, 100) == CudaWeightFormat::RawGguf);
  CHECK(cuda_lookup_format(QType::Q4_0, 64) == CudaWeightFormat::RawGguf);
  CHECK(cuda_lookup_format(QType::F16, 100) == CudaWeightFormat::Fp16);
  CHECK(cuda_lookup_format(QType::IQ4_NL, 64) == CudaWeightFormat::Fp16);
  CHECK(cuda_lookup_format(QType::Q3_K, 256) == CudaWeightFormat::Fp16);
}

TEST_CASE("cuda plan: matrix kernel per type and batch size") {
  using F = CudaWeightFormat;
  using K = CudaMatKernel;
  for (QType t : {QType::Q4_0, QType::Q8_0, QType::Q4_K, QType::Q6_K}) {
    for (int64_t m = 1; m <= 8; ++m) CHECK(cuda_mat_kernel(F::RawGguf, t, m) == K::GgufDp4a);
    CHECK(cuda_mat_kernel(F::RawGguf, t, 9) == K::GgufDequantCublas);
    CHECK(cuda_mat_kernel(F::RawGguf, t, 512) == K::GgufDequantCublas);
  }
  CHECK(cuda_mat_kernel(F::Fp16, QType::F16, 1) == K::Fp16Cublas);
  CHECK(cuda_mat_kernel(F::Fp16, QType::F16, 64) == K::Fp16Cublas);
  CHECK(std::string(cuda_mat_kernel_name(K::GgufDp4a)) == "gguf_dp4a");
}

TEST_CASE("cuda plan: attention splits") {
  // Decode, 8 KV heads on 132 SMs (H100): ceil(2*132/8) = 33 splits, below the 4096/64 = 64 cap.
  CHECK(cuda_attn_splits(1, 4096, 8, 132) == 33);
  // T4 (40 SMs): ceil(80/8) = 10.
  CHECK(cuda_attn_splits(1, 4096, 8, 40) == 10);
  // Short cache: no split shorter than a 64-key tile: ceil(100/64) = 2.
  CHECK(cuda_attn_splits(1, 100, 8, 132) == 2);
  CHECK(cuda_attn_splits(1, 1, 8, 132) == 1);
  // Prefill of 64 tokens: 512 blocks already exceed 2 per SM.
  CHECK(cuda_attn_splits(64, 4096, 8, 132) == 1);
  // Never above the cap: 1 KV head, 1 token, 1000 SMs, long context.
  CHECK(cuda_attn_splits(1, 1 << 20, 1, 1000) == kCudaAttnMaxSplits);
}

TEST_CASE("cuda plan: dequantized chunk rows") {
  // FFN weight of the 1B model: 8192 x 2048 FP16 = 32 MiB fits the 64 MiB chunk whole.
  CHECK(cuda_dequant_chunk_rows(8192, 2048, size_t(64) << 20) == 8192);
  // Tied lm_head 128256 x 2048: 64 MiB / 4096 B = 16384 rows per chunk (a multiple of 8).
  CHECK(cuda_dequant_chunk_rows(128256, 2048, size_t(64) << 20) == 16384);
  // 1000 B per row (k = 500) into 9999 B: 9 rows fit, rounded down to 8.
  CHECK(cuda_dequant_chunk_rows(100, 500, 9999) == 8);
  CHECK(cuda_dequant_chunk_rows(100, 500, 5000) == 5);
}

TEST_CASE("cuda plan: memory of a Llama 3.2 1B session") {
  const ModelConfig c = llama32_1b_config();
  const CudaMemoryPlan p = plan_cuda_memory(c, 4096, 64, 132, size_t(8192) * 2048 * 2);
  // KV: 2 (K, V) x 16 layers x 4096 positions x 512 (8 heads x 64) x 2 bytes = 128 MiB.
  CHECK(p.kv_cache == size_t(128) << 20);
  CHECK(p.decode_splits == 33);
  // Partials: max over n = 1..64 of n * splits(n) is 64 (n = 32 with 2 splits, n = 64 with 1),
  // each a row of 64 + 2 floats per query head.
  CHECK(p.attn_partial == size_t(64) * 32 * 66 * 4);
  // The 32 MiB FFN weight dominates the 8 x (8192/32) x 36 B = 72 KiB of Q8_1 activations.
  CHECK(p.mat_workspace == size_t(32) << 20);
  const CudaMemoryPlan f16 = plan_cuda_memory(c, 4096, 64, 132, 0);
  CHECK(f16.mat_workspace == size_t(8) * (8192 / 32) * sizeof(BlockQ8_1));
  // Activations: x 64*2048*4 + xb 64*2048*2 + q,att 2*64*2048*2 + k,v 2*64*512*2 + y 64*2048*2
  // + gate,up 2*64*8192*2 + logits 64*128256*(2+4) + ids 66*4 = 264 (-> 512, 256-B granules)
  // + rope 4096*32*2*4.
  const size_t act = 524288 + 262144 + 2 * 262144 + 2 * 65536 + 262144 + 2 * 1048576 + 64 * 128256 * 6 + 512 +
                     1048576;
  CHECK(p.activations == act);
  CHECK(p.total() == p.activations + p.kv_cache + p.attn_partial + p.mat_workspace + p.cublas_workspace);
}

TEST_CASE("cuda availability is answered without a device") {
  // Through the module loader: in this test binary (no CUDA library linked) it must answer,
  // whether or not the module is found.
  std::string why;
  const bool ok = cuda_backend_available(&why);
  // On a machine without a GPU (CI) the reason must say so; with one it is empty.
  if (!ok) CHECK(!why.empty());
  else CHECK(why.empty());
}
