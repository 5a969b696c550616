// Shared CUDA plumbing for kernels/cuda: error checks that throw slm::Error (a failing CUDA call
// must never exit the process), NVTX scoped ranges for nsys timelines, and RAII device buffers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <cstddef>
#include <utility>

#include "core/error.h"

namespace slm::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line);

// Number of usable devices, 0 when the driver/runtime reports none or fails (no throw): the
// tests and the bench use it to skip cleanly on machines without a GPU.
int device_count_or_zero();

// Cached per-device facts the launch heuristics need.
struct DeviceInfo {
  int device = 0;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int l2_bytes = 0;
  int cc() const { return cc_major * 10 + cc_minor; }
};
const DeviceInfo& current_device_info();

// NVTX range alive for the scope: `NvtxRange r("gptq_gemv");`
class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// Owning device allocation of `bytes` bytes (cudaMalloc alignment: 256 B).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }
  // Synchronous host <-> device copies of the first n bytes (n <= bytes()).
  void upload(const void* src, size_t n);
  void download(void* dst, size_t n) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Owning cuBLAS handle.
class CublasHandle {
 public:
  CublasHandle();
  ~CublasHandle();
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace slm::cuda

#define CUDA_CHECK(expr)                                                              \
  do {                                                                                \
    const cudaError_t slm_cuda_err_ = (expr);                                         \
    if (slm_cuda_err_ != cudaSuccess)                                                 \
      ::slm::cuda::throw_cuda_error(slm_cuda_err_, #expr, __FILE__, __LINE__);        \
  } while (0)

#define CUBLAS_CHECK(expr)                                                            \
  do {                                                                                \
    const cublasStatus_t slm_cublas_st_ = (expr);                                     \
    if (slm_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::slm::cuda::throw_cublas_error(slm_cublas_st_, #expr, __FILE__, __LINE__);     \
  } while (0)

// After a kernel launch: reports launch-configuration errors (asynchronous faults surface at the
// next synchronising call).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
