// CudaSession (cuda_session.h): weight upload, device buffers, the forward pass enqueued on one
// stream (a mirror of runtime/forward.cpp), the captured decode graph, and the memory report.
// Everything but cuda_available() compiles only in CUDA builds.
#include "runtime/cuda_session.h"

#include "core/error.h"

#if SLM_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include "core/half.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/linear_cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "runtime/ops.h"
#endif

namespace slm {

bool cuda_available(std::string* why) {
#if SLM_HAVE_CUDA
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = fmt::format("no CUDA device is available ({})", cudaGetErrorString(e));
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device is available (the driver reports 0 devices)";
    return false;
  }
  return true;
#else
  if (why) *why = "this binary was built without the CUDA backend (configure with -DSLM_CUDA=ON)";
  return false;
#endif
}

#if SLM_HAVE_CUDA

namespace {

static_assert(kCudaGemvMaxM == cuda::kGemvMaxM, "cuda_plan.h and kernels/cuda disagree on the GEMV batch limit");

// One weight on the device. `type` is the element type there (F16 after a conversion; unused for
// GptqFast, whose tensors are in `gptq`).
struct DevWeight {
  std::string name;
  QType type = QType::F16;
  CudaWeightFormat format = CudaWeightFormat::Fp16;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
  cuda::DeviceBuffer buf;
  cuda::GptqFastBuffers gptq;  // GptqFast: repacked qweight, scales, zeros, act-order perm
  cuda::Gptq8Buffers gptq8;    // Gptq8: signed codes, scales, offsets, act-order perm
  int gemv_split = 1;          // GptqFast: split-K of gptq_gemv (cuda_gptq_gemv_splits)
};

cuda::DeviceBuffer upload_floats(const std::vector<float>& v) {
  cuda::DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(float));
  if (!v.empty()) b.upload(v.data(), v.size() * sizeof(float));
  return b;
}

}  // namespace

struct CudaSession::Impl {
  cudaStream_t stream = nullptr;
  std::unique_ptr<cuda::CublasHandle> cublas;
  // Keyed by (host data, format, rows, cols): a tensor shared between roles is stored once.
  std::map<std::tuple<const void*, int, int64_t, int64_t>, std::unique_ptr<DevWeight>> uploads;
  std::map<std::string, const DevWeight*> by_name;
  struct Layer {
    const DevWeight *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    cuda::DeviceBuffer attn_norm, ffn_norm;
  };
  std::vector<Layer> layers;
  const DevWeight* embd = nullptr;
  const DevWeight* out = nullptr;
  cuda::DeviceBuffer out_norm;
  size_t weight_bytes = 0;
  size_t max_gptq_workspace = 0;                     // largest cuda_gptq_workspace_bytes of the uploads
  std::map<std::string, std::string> fallback_notes;  // GPTQ weights on the FP16 path, and why

  CudaMemoryPlan plan;
  cuda::DeviceBuffer x, xb, q, k, v, att, y, g, u, logits_h, logits_f, io, rope, kc, vc, partial, ws, cublas_ws;
  cuda::DeviceBuffer sample_ws;  // candidates of sample_last's first pass
  int sample_blocks = 1;
  int32_t* h_io = nullptr;     // pinned: token ids [max_batch], position, argmax result
  float* h_logits = nullptr;   // pinned: [max_batch][n_vocab]
  int64_t last_row = 0;        // row of logits_f holding the latest last-token logits

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<std::string> layer_names;
  int sm_count = 1;
  std::string device_name;
  size_t mem_total = 0, mem_min_free = SIZE_MAX;

  ~Impl() {
    // Destructors must not throw: errors here are ignored (the context may already be gone).
    // Order: finish queued work, drop the cuBLAS handle (bound to the stream and the workspace
    // buffer), then the graph, host buffers and the stream; device buffers go last (members).
    if (stream) (void)cudaStreamSynchronize(stream);
    cublas.reset();
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (h_io) cudaFreeHost(h_io);
    if (h_logits) cudaFreeHost(h_logits);
    if (stream) cudaStreamDestroy(stream);
  }

  void track_memory() {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      mem_total = total_b;
      mem_min_free = std::min(mem_min_free, free_b);
    } else {
      (void)cudaGetLastError();
    }
  }

  const DevWeight* upload(const WeightTensor& w, CudaWeightFormat f) {
    SLM_CHECK(!w.gptq, "cuda: weight {} is GPTQ; the CUDA session runs GGUF weights only so far (use --device cpu)",
              w.name);
    SLM_CHECK(w.data && w.rows > 0 && w.cols > 0, "cuda: weight {} is empty", w.name);
    const auto key = std::make_tuple(w.data, int(f), w.rows, w.cols);
    if (auto it = uploads.find(key); it != uploads.end()) return it->second.get();
    std::unique_ptr<DevWeight> d = new_weight(w, f);
    if (f == CudaWeightFormat::RawGguf) {
      d->type = w.type;
      d->row_bytes = row_bytes(w.type, w.cols);
      d->buf = cuda::DeviceBuffer(w.bytes());
      d->buf.upload(w.data, w.bytes());
    } else {
      d->type = QType::F16;
      d->row_bytes = size_t(w.cols) * 2;
      if (w.type == QType::F16) {
        d->buf = cuda::DeviceBuffer(w.bytes());
        d->buf.upload(w.data, w.bytes());
      } else {
        std::vector<float> tmp;
        upload_fp16_rows(*d, [&](int64_t r0, int64_t nr, uint16_t* out) {
          tmp.resize(size_t(nr * w.cols));
          dequantize_rows(w.type, w.row(r0), tmp.data(), nr, w.cols);
          for (size_t i = 0; i < tmp.size(); ++i) out[i] = f32_to_fp16(tmp[i]);
        });
      }
    }
    const size_t bytes = d->buf.bytes();
    return keep(key, std::move(d), bytes);
  }

  // A device weight with `w`'s name and shape in format f; the caller fills its buffers.
  static std::unique_ptr<DevWeight> new_weight(const WeightTensor& w, CudaWeightFormat f) {
    auto d = std::make_unique<DevWeight>();
    d->name = w.name;
    d->rows = w.rows;
    d->cols = w.cols;
    d->format = f;
    return d;
  }

  // Fills d's FP16 [rows][cols] buffer on the host in slices of about 4 M elements (bounded host
  // memory): fill(r0, nr, out) writes rows r0..r0+nr-1 as FP16 bits.
  template <class Fill>
  static void upload_fp16_rows(DevWeight& d, Fill fill) {
    d.buf = cuda::DeviceBuffer(size_t(d.rows) * d.row_bytes);
    const int64_t per = std::max<int64_t>(1, (int64_t(1) << 22) / d.cols);
    std::vector<uint16_t> h;
    for (int64_t r0 = 0; r0 < d.rows; r0 += per) {
      const int64_t nr = std::min(per, d.rows - r0);
      h.resize(size_t(nr * d.cols));
      fill(r0, nr, h.data());
      CUDA_CHECK(cudaMemcpy(d.buf.as<uint8_t>() + size_t(r0) * d.row_bytes, h.data(), h.size() * 2,
                            cudaMemcpyHostToDevice));
    }
  }

  // Registers an uploaded weight under its key and name; `bytes` is its device footprint.
  template <class Key>
  const DevWeight* keep(const Key& key, std::unique_ptr<DevWeight> d, size_t bytes) {
    weight_bytes += bytes;
    const DevWeight* p = d.get();
    by_name[p->name] = p;
    uploads.emplace(key, std::move(d));
    return p;
  }

  // A GPTQ linear (WeightTensor::gptq_src: the checkpoint tensors): 4-bit ones repacked for
  // gptq_gemv / gptq_mma, 8-bit ones (e.g. an --lm-head-bits 8 head) for gptq8_dp4a (act-order
  // becomes a column permutation in both), others (2/3-bit, BF16 scales) dequantized to FP16 on
  // the host for fp16_cublas.
  const DevWeight* upload_gptq(const WeightTensor& w, int64_t max_batch) {
    const cpu::GptqTensors& t = w.gptq_src;
    SLM_CHECK(t.qweight && t.k == w.cols && t.n == w.rows,
              "cuda: GPTQ weight {} has no checkpoint tensors to upload (only models loaded from a GPTQ directory "
              "carry them)", w.name);
    std::string why;
    const CudaWeightFormat f = cuda_gptq_format(t, &why);
    const auto key = std::make_tuple(static_cast<const void*>(w.gptq), int(f), w.rows, w.cols);
    if (auto it = uploads.find(key); it != uploads.end()) return it->second.get();
    std::unique_ptr<DevWeight> d = new_weight(w, f);
    d->type = QType::F16;
    d->row_bytes = size_t(w.cols) * 2;
    size_t bytes = 0;
    if (f == CudaWeightFormat::GptqFast) {
      const CudaGptqCopy copy = cuda_gptq_copy(t);
      const layout::GptqRepacked r = layout::gptq_repack(copy.view());
      d->gptq = cuda::upload_gptq_fast(r);
      d->gemv_split = cuda_gptq_gemv_splits(w.rows, w.cols, sm_count);
      max_gptq_workspace =
          std::max(max_gptq_workspace, cuda_gptq_workspace_bytes(w.rows, w.cols, r.has_perm(), max_batch, sm_count));
      bytes = d->gptq.qweight.bytes() + d->gptq.scales.bytes() + d->gptq.zeros.bytes() + d->gptq.perm.bytes();
    } else if (f == CudaWeightFormat::Gptq8) {
      const layout::Gptq8Repacked r = layout::gptq8_repack(t);
      d->gptq8 = cuda::upload_gptq8(r);
      max_gptq_workspace = std::max(max_gptq_workspace, cuda_gptq8_workspace_bytes(w.cols, max_batch));
      bytes = d->gptq8.codes.bytes() + d->gptq8.scales.bytes() + d->gptq8.offs.bytes() + d->gptq8.perm.bytes();
    } else {
      upload_fp16_rows(*d, [&](int64_t r0, int64_t nr, uint16_t* out) { cuda_gptq_dequant_rows_fp16(t, r0, nr, out); });
      bytes = d->buf.bytes();
      fallback_notes[w.name] = why;
    }
    return keep(key, std::move(d), bytes);
  }

  void gemm(const __half* w, const __half* xin, __half* yout, int64_t m, int64_t n, int64_t kk, int64_t ldy) {
    // The handle was bound to `stream` once at construction (cublasSetStream would also reset the
    // fixed workspace the graph capture relies on).
    const float alpha = 1.0f, beta = 0.0f;
    // Row-major Y[M][ldy] (first n columns) = X[M][K] W[N][K]^T, in cuBLAS's column-major terms
    // Y^T = W^T^T X^T (as kernels/cuda/linear_cuda.cpp's fp16_cublas, plus the output stride).
    CUBLAS_CHECK(cublasGemmEx(cublas->get(), CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(kk), &alpha, w, CUDA_R_16F,
                              int(kk), xin, CUDA_R_16F, int(kk), &beta, yout, CUDA_R_16F, int(ldy), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  }

  void linear(const DevWeight& w, const __half* xin, __half* yout, int64_t m) {
    switch (cuda_mat_kernel(w.format, w.type, m)) {
      case CudaMatKernel::Fp16Cublas:
        gemm(w.buf.as<__half>(), xin, yout, m, w.rows, w.cols, w.rows);
        break;
      case CudaMatKernel::GgufDp4a:
        cuda::gguf_dp4a(w.type, w.buf.get(), xin, yout, m, w.rows, w.cols, ws.get(), ws.bytes(), stream);
        break;
      case CudaMatKernel::GgufDequantCublas: {
        cuda::NvtxRange r("gguf_dequant_cublas");
        const int64_t chunk = cuda_dequant_chunk_rows(w.rows, w.cols, ws.bytes());
        for (int64_t n0 = 0; n0 < w.rows; n0 += chunk) {
          const int64_t nc = std::min(chunk, w.rows - n0);
          cuda::gguf_dequantize_fp16(w.type, w.buf.as<uint8_t>() + size_t(n0) * w.row_bytes, ws.as<__half>(), nc,
                                     w.cols, stream);
          gemm(ws.as<__half>(), xin, yout + n0, m, nc, w.cols, w.rows);
        }
        break;
      }
      case CudaMatKernel::GptqGemv:
        cuda::gptq_gemv(w.gptq.dev, xin, yout, m, ws.get(), ws.bytes(), stream, cuda::GemvOptions{w.gemv_split});
        break;
      case CudaMatKernel::GptqMma:
        cuda::gptq_mma(w.gptq.dev, xin, yout, m, ws.get(), ws.bytes(), stream);
        break;
      case CudaMatKernel::Gptq8Dp4a:
        for (int64_t i0 = 0; i0 < m; i0 += kCudaGemvMaxM)
          cuda::gptq8_dp4a(w.gptq8.dev, xin + i0 * w.cols, yout + i0 * w.rows, std::min(kCudaGemvMaxM, m - i0), ws.get(),
                           ws.bytes(), stream);
        break;
    }
  }
};

CudaSession::CudaSession(const Model& model, const CudaSessionOptions& opts)
    : model_(model), opts_(opts), impl_(std::make_unique<Impl>()) {
  const ModelConfig& c = model.config();
  std::string why;
  SLM_CHECK(cuda_available(&why), "CUDA device requested but {}", why);
  SLM_CHECK(opts.n_ctx > 0 && opts.n_ctx <= (int64_t(1) << 24), "context size {} is out of range", opts.n_ctx);
  SLM_CHECK(opts.max_batch > 0 && opts.max_batch <= 4096, "batch size {} is out of range", opts.max_batch);
  opts_.max_batch = std::min(opts.max_batch, opts.n_ctx);
  int n_dev = cuda::device_count_or_zero();
  SLM_CHECK(opts.device >= 0 && opts.device < n_dev, "CUDA device {} requested but {} device(s) are present",
            opts.device, n_dev);
  CUDA_CHECK(cudaSetDevice(opts.device));
  const int group = int(c.n_heads / c.n_kv_heads);
  SLM_CHECK(ops_attention_fits(c), "cuda: attention of {} query heads per KV head of dimension {} needs {} bytes of "
            "shared memory (limit 48 KiB)", group, c.head_dim, cuda::ops::attention_smem_bytes(group, int(c.head_dim)));
  SLM_CHECK(int64_t(c.rope_divisors.size()) == c.n_rot / 2, "cuda: rope divisors missing");

  Impl& I = *impl_;
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, opts.device));
  I.sm_count = prop.multiProcessorCount;
  I.device_name = prop.name;
  CUDA_CHECK(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking));
  I.cublas = std::make_unique<cuda::CublasHandle>();

  // Weights: matrices in their matrix format, the embedding table in its lookup format unless it
  // is tied to the output projection (then one upload serves both).
  const Weights& W = model.weights();
  size_t max_dequant = 0;
  SLM_CHECK(W.tok_embd.gptq == nullptr, "cuda: a GPTQ-quantized embedding table is not supported");
  auto mat = [&](const WeightTensor& w) {
    const DevWeight* d = w.gptq ? I.upload_gptq(w, opts_.max_batch) : I.upload(w, cuda_matrix_format(w.type, w.cols));
    if (d->format == CudaWeightFormat::RawGguf) max_dequant = std::max(max_dequant, size_t(d->rows) * size_t(d->cols) * 2);
    return d;
  };
  for (const LayerWeights& L : W.layers) {
    Impl::Layer dl;
    dl.wq = mat(L.wq);
    dl.wk = mat(L.wk);
    dl.wv = mat(L.wv);
    dl.wo = mat(L.wo);
    dl.wg = mat(L.w_gate);
    dl.wu = mat(L.w_up);
    dl.wd = mat(L.w_down);
    dl.attn_norm = upload_floats(L.attn_norm);
    dl.ffn_norm = upload_floats(L.ffn_norm);
    I.weight_bytes += dl.attn_norm.bytes() + dl.ffn_norm.bytes();
    I.layers.push_back(std::move(dl));
  }
  I.out = mat(W.output);
  const bool tied = W.output.gptq == nullptr && W.output.data == W.tok_embd.data;
  I.embd = tied ? I.out : I.upload(W.tok_embd, cuda_lookup_format(W.tok_embd.type, W.tok_embd.cols));
  I.out_norm = upload_floats(W.output_norm);
  I.weight_bytes += I.out_norm.bytes();
  for (int64_t l = 0; l < c.n_layers; ++l) I.layer_names.push_back("layer " + std::to_string(l));

  // Activations, cache and workspaces, exactly as planned.
  I.plan = plan_cuda_memory(c, opts_.n_ctx, opts_.max_batch, I.sm_count, max_dequant, I.max_gptq_workspace);
  const size_t B = size_t(opts_.max_batch), dim = size_t(c.dim), qd = size_t(c.q_dim()), kvd = size_t(c.kv_dim());
  const size_t V = size_t(c.n_vocab), hid = size_t(c.hidden_dim);
  I.x = cuda::DeviceBuffer(B * dim * 4);
  I.xb = cuda::DeviceBuffer(B * std::max(dim, qd) * 2);
  I.q = cuda::DeviceBuffer(B * qd * 2);
  I.att = cuda::DeviceBuffer(B * qd * 2);
  I.k = cuda::DeviceBuffer(B * kvd * 2);
  I.v = cuda::DeviceBuffer(B * kvd * 2);
  I.y = cuda::DeviceBuffer(B * dim * 2);
  I.g = cuda::DeviceBuffer(B * hid * 2);
  I.u = cuda::DeviceBuffer(B * hid * 2);
  I.logits_h = cuda::DeviceBuffer(B * V * 2);
  I.logits_f = cuda::DeviceBuffer(B * V * 4);
  I.io = cuda::DeviceBuffer((B + 2) * 4);
  std::vector<float> rope_host(ops::rope_table_floats(opts_.n_ctx, c.n_rot));
  ops::RopeTable rt;
  rt.data = rope_host.data();
  ops::rope_table_init(rt, c, opts_.n_ctx);
  I.rope = upload_floats(rope_host);
  I.kc = cuda::DeviceBuffer(I.plan.kv_cache / 2);
  I.vc = cuda::DeviceBuffer(I.plan.kv_cache / 2);
  I.partial = cuda::DeviceBuffer(I.plan.attn_partial);
  I.ws = cuda::DeviceBuffer(I.plan.mat_workspace);
  SLM_CHECK(I.ws.bytes() >= cuda::gguf_dp4a_workspace_bytes(cuda::kGemvMaxM, int64_t(std::max({dim, hid, qd}))),
            "cuda: matrix workspace plan too small");
  I.cublas_ws = cuda::DeviceBuffer(I.plan.cublas_workspace);
  I.sample_blocks = layout::sample_blocks(int64_t(V), I.sm_count);
  I.sample_ws = cuda::DeviceBuffer(cuda::ops::sample_workspace_bytes(I.sample_blocks));
  // A fixed cuBLAS workspace keeps cuBLAS from allocating while the decode graph is captured;
  // it must follow cublasSetStream, which resets the workspace to cuBLAS's default pool.
  CUBLAS_CHECK(cublasSetStream(I.cublas->get(), I.stream));
  CUBLAS_CHECK(cublasSetWorkspace(I.cublas->get(), I.cublas_ws.get(), I.cublas_ws.bytes()));
  CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&I.h_io), (B + 2) * 4));
  CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&I.h_logits), B * V * 4));
  logits_.assign(V, 0.f);
  last_logits_ = logits_.data();
  CUDA_CHECK(cudaDeviceSynchronize());
  I.track_memory();
}

CudaSession::~CudaSession() = default;

bool CudaSession::ops_attention_fits(const ModelConfig& c) {
  return cuda::ops::attention_smem_bytes(int(c.n_heads / c.n_kv_heads), int(c.head_dim)) <= 48 * 1024;
}

void CudaSession::forward(int64_t n, int64_t first, int splits) {
  Impl& I = *impl_;
  const ModelConfig& c = model_.config();
  const int64_t dim = c.dim, kvd = c.kv_dim(), hid = c.hidden_dim, ctx = opts_.n_ctx;
  const int32_t* d_tok = I.io.as<int32_t>();
  const int32_t* d_pos = d_tok + opts_.max_batch;
  cudaStream_t st = I.stream;
  float* x = I.x.as<float>();
  __half* xb = I.xb.as<__half>();
  const float att_scale = 1.f / std::sqrt(float(c.head_dim));
  {
    cuda::NvtxRange r("embed");
    CUDA_CHECK(cuda::ops::get_rows(uint32_t(I.embd->type), I.embd->buf.get(), int64_t(I.embd->row_bytes), dim, d_tok, n,
                                  x, st));
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    cuda::NvtxRange lr(I.layer_names[size_t(l)].c_str());
    const Impl::Layer& L = I.layers[size_t(l)];
    __half* kc = I.kc.as<__half>() + size_t(l) * size_t(ctx) * size_t(kvd);
    __half* vc = I.vc.as<__half>() + size_t(l) * size_t(ctx) * size_t(kvd);
    {
      cuda::NvtxRange r("attn");
      CUDA_CHECK(cuda::ops::rmsnorm(x, L.attn_norm.as<float>(), xb, n, dim, c.rms_eps, st));
      I.linear(*L.wq, xb, I.q.as<__half>(), n);
      I.linear(*L.wk, xb, I.k.as<__half>(), n);
      I.linear(*L.wv, xb, I.v.as<__half>(), n);
      CUDA_CHECK(cuda::ops::rope(I.q.as<__half>(), I.k.as<__half>(), I.rope.as<float>(), d_pos, n, int(c.n_heads),
                                int(c.n_kv_heads), int(c.head_dim), int(c.n_rot), c.rope_style == RopeStyle::Interleaved,
                                st));
      CUDA_CHECK(cuda::ops::kv_append(I.k.as<__half>(), I.v.as<__half>(), kc, vc, d_pos, n, kvd, st));
      CUDA_CHECK(cuda::ops::attention(I.q.as<__half>(), kc, vc, d_pos, n, int(c.n_heads), int(c.n_kv_heads),
                                     int(c.head_dim), att_scale, splits, I.partial.as<float>(), I.att.as<__half>(), st));
      I.linear(*L.wo, I.att.as<__half>(), I.y.as<__half>(), n);
      CUDA_CHECK(cuda::ops::add_residual(x, I.y.as<__half>(), n * dim, st));
    }
    {
      cuda::NvtxRange r("ffn");
      CUDA_CHECK(cuda::ops::rmsnorm(x, L.ffn_norm.as<float>(), xb, n, dim, c.rms_eps, st));
      I.linear(*L.wg, xb, I.g.as<__half>(), n);
      I.linear(*L.wu, xb, I.u.as<__half>(), n);
      CUDA_CHECK(cuda::ops::swiglu(I.g.as<__half>(), I.u.as<__half>(), I.g.as<__half>(), n * hid, st));
      I.linear(*L.wd, I.g.as<__half>(), I.y.as<__half>(), n);
      CUDA_CHECK(cuda::ops::add_residual(x, I.y.as<__half>(), n * dim, st));
    }
  }
  {
    cuda::NvtxRange r("lm_head");
    const int64_t rows = n - first;
    CUDA_CHECK(cuda::ops::rmsnorm(x + first * dim, I.out_norm.as<float>(), xb, rows, dim, c.rms_eps, st));
    I.linear(*I.out, xb, I.logits_h.as<__half>(), rows);
    CUDA_CHECK(cuda::ops::f16_to_f32(I.logits_h.as<__half>(), I.logits_f.as<float>(), rows * c.n_vocab, st));
  }
}

void CudaSession::capture_decode_graph() {
  Impl& I = *impl_;
  CUDA_CHECK(cudaStreamBeginCapture(I.stream, cudaStreamCaptureModeThreadLocal));
  try {
    forward(1, 0, I.plan.decode_splits);
  } catch (...) {
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(I.stream, &g);
    if (g) cudaGraphDestroy(g);
    (void)cudaGetLastError();
    throw;
  }
  CUDA_CHECK(cudaStreamEndCapture(I.stream, &I.graph));
  CUDA_CHECK(cudaGraphInstantiate(&I.exec, I.graph, 0));
}

void CudaSession::eval(std::span<const int32_t> tokens, bool all_logits) {
  const int64_t n = int64_t(tokens.size());
  SLM_CHECK(n > 0, "eval: no tokens");
  SLM_CHECK(n_past_ + n <= opts_.n_ctx,
            "context overflow: {} tokens in the cache + {} new tokens exceed the context size {} (raise -c)", n_past_,
            n, opts_.n_ctx);
  const int64_t V = model_.config().n_vocab;
  for (int32_t t : tokens)
    SLM_CHECK(t >= 0 && t < V, "token id {} is out of range (vocabulary has {} tokens)", t, V);
  if (all_logits) all_logits_.assign(size_t(n) * size_t(V), 0.f);
  Impl& I = *impl_;
  for (int64_t i = 0; i < n; i += opts_.max_batch) {
    const int64_t nb = std::min(opts_.max_batch, n - i);
    std::copy(tokens.data() + i, tokens.data() + i + nb, I.h_io);
    I.h_io[opts_.max_batch] = int32_t(n_past_);
    CUDA_CHECK(cudaMemcpyAsync(I.io.get(), I.h_io, size_t(opts_.max_batch + 1) * 4, cudaMemcpyHostToDevice, I.stream));
    const int64_t first = all_logits ? 0 : nb - 1;
    const int64_t rows = nb - first;
    if (nb == 1 && opts_.use_graph && !I.exec) {
      // A failed capture (e.g. a library call that cannot be captured) falls back to eager
      // decoding for the rest of the session; the reason is kept for graph_error().
      try {
        capture_decode_graph();
      } catch (const Error& e) {
        opts_.use_graph = false;
        graph_error_ = e.what();
      }
      I.track_memory();
    }
    if (nb == 1 && opts_.use_graph) {
      CUDA_CHECK(cudaGraphLaunch(I.exec, I.stream));
    } else {
      // Single tokens use the graph's fixed split count so eager and graph decoding agree.
      const int splits = nb == 1 ? I.plan.decode_splits
                                 : cuda_attn_splits(nb, n_past_ + nb, model_.config().n_kv_heads, I.sm_count);
      forward(nb, first, splits);
    }
    CUDA_CHECK(cudaMemcpyAsync(I.h_logits, I.logits_f.get(), size_t(rows * V) * 4, cudaMemcpyDeviceToHost, I.stream));
    CUDA_CHECK(cudaStreamSynchronize(I.stream));
    if (all_logits) std::copy(I.h_logits, I.h_logits + rows * V, all_logits_.begin() + i * V);
    std::copy(I.h_logits + (rows - 1) * V, I.h_logits + rows * V, logits_.begin());
    I.last_row = rows - 1;
    n_past_ += nb;
    if (nb > 1) I.track_memory();
  }
  last_logits_ = logits_.data();
}

int32_t CudaSession::argmax_last() {
  Impl& I = *impl_;
  const int64_t V = model_.config().n_vocab;
  int32_t* d_out = I.io.as<int32_t>() + opts_.max_batch + 1;
  CUDA_CHECK(cuda::ops::argmax(I.logits_f.as<float>() + I.last_row * V, V, d_out, I.stream));
  CUDA_CHECK(cudaMemcpyAsync(I.h_io + opts_.max_batch + 1, d_out, 4, cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  return I.h_io[opts_.max_batch + 1];
}

int32_t CudaSession::sample_last(const SamplerParams& p, double u) {
  SLM_CHECK(p.repeat_penalty == 1.f || p.repeat_last_n == 0,
            "cuda: sample_last applies no repetition penalty (it has no history); sample on the host instead");
  validate(p);  // Sampler's own checks first
  if (p.temperature <= 0.f) return argmax_last();
  SLM_CHECK(p.top_k >= 1 && p.top_k <= layout::kSampleMaxTopK,
            "cuda: sample_last needs top-k in [1, {}] (got {}); sample on the host instead", layout::kSampleMaxTopK,
            p.top_k);
  SLM_CHECK(u >= 0.0 && u < 1.0, "sample_last: the uniform draw {} is outside [0, 1)", u);
  Impl& I = *impl_;
  const int64_t V = model_.config().n_vocab;
  int32_t* d_out = I.io.as<int32_t>() + opts_.max_batch + 1;
  const layout::SampleConfig c{p.top_k, p.temperature, p.top_p, p.min_p};
  CUDA_CHECK(cuda::ops::sample_top_k(I.logits_f.as<float>() + I.last_row * V, V, c, u, I.sample_blocks,
                                     I.sample_ws.get(), d_out, I.stream));
  CUDA_CHECK(cudaMemcpyAsync(I.h_io + opts_.max_batch + 1, d_out, 4, cudaMemcpyDeviceToHost, I.stream));
  CUDA_CHECK(cudaStreamSynchronize(I.stream));
  return I.h_io[opts_.max_batch + 1];
}

CudaMemoryReport CudaSession::memory_report() const {
  Impl& I = *impl_;
  I.track_memory();
  CudaMemoryReport r;
  r.weights = I.weight_bytes;
  r.kv_cache = I.kc.bytes() + I.vc.bytes();
  r.workspace = I.partial.bytes() + I.ws.bytes() + I.cublas_ws.bytes() + I.sample_ws.bytes();
  r.activations = I.x.bytes() + I.xb.bytes() + I.q.bytes() + I.k.bytes() + I.v.bytes() + I.att.bytes() + I.y.bytes() +
                  I.g.bytes() + I.u.bytes() + I.logits_h.bytes() + I.logits_f.bytes() + I.io.bytes() + I.rope.bytes();
  r.device_total = I.mem_total;
  r.device_used_peak = I.mem_min_free == SIZE_MAX ? 0 : I.mem_total - I.mem_min_free;
  return r;
}

std::string CudaSession::kernel_for(const std::string& name, int64_t m) const {
  auto it = impl_->by_name.find(name);
  SLM_CHECK(it != impl_->by_name.end(), "cuda: no weight named {}", name);
  std::string k = cuda_mat_kernel_name(cuda_mat_kernel(it->second->format, it->second->type, m));
  if (auto n = impl_->fallback_notes.find(name); n != impl_->fallback_notes.end())
    k += fmt::format(" (GPTQ dequantized to FP16 at upload: {})", n->second);
  return k;
}

bool CudaSession::graph_captured() const { return impl_->exec != nullptr; }
std::string CudaSession::device_name() const { return impl_->device_name; }

#endif  // SLM_HAVE_CUDA

}  // namespace slm
