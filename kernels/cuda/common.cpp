// Host side of kernels/cuda/common.cuh: error translation, device facts, buffers, handles.
#include "kernels/cuda/common.cuh"

#include <mutex>
#include <vector>

namespace slm::cuda {

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(e), cudaGetErrorString(e), expr, file,
       line);
}

void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line) {
  fail("cuBLAS error {} ({}) in {} at {}:{}", cublasGetStatusName(s), cublasGetStatusString(s), expr,
       file, line);
}

int device_count_or_zero() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device"/"insufficient driver" error
    return 0;
  }
  return n;
}

const DeviceInfo& current_device_info() {
  static std::mutex mu;
  static std::vector<DeviceInfo> cache;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (cache.empty()) {
    int n = 0;
    CUDA_CHECK(cudaGetDeviceCount(&n));
    cache.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
      DeviceInfo& d = cache[size_t(i)];
      d.device = i;
      CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, i));
      CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_minor, cudaDevAttrComputeCapabilityMinor, i));
      CUDA_CHECK(cudaDeviceGetAttribute(&d.sm_count, cudaDevAttrMultiProcessorCount, i));
      CUDA_CHECK(cudaDeviceGetAttribute(&d.l2_bytes, cudaDevAttrL2CacheSize, i));
    }
  }
  SLM_CHECK(dev >= 0 && size_t(dev) < cache.size(), "CUDA: current device {} out of range", dev);
  return cache[size_t(dev)];
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* src, size_t n) {
  SLM_CHECK(n <= bytes_, "DeviceBuffer::upload: {} bytes into a {}-byte buffer", n, bytes_);
  if (n) CUDA_CHECK(cudaMemcpy(ptr_, src, n, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* dst, size_t n) const {
  SLM_CHECK(n <= bytes_, "DeviceBuffer::download: {} bytes from a {}-byte buffer", n, bytes_);
  if (n) CUDA_CHECK(cudaMemcpy(dst, ptr_, n, cudaMemcpyDeviceToHost));
}

CublasHandle::CublasHandle() { CUBLAS_CHECK(cublasCreate(&h_)); }
CublasHandle::~CublasHandle() {
  if (h_) cublasDestroy(h_);
}

}  // namespace slm::cuda
