// Accelerator sessions behind a virtual interface, so that the slmrun binary links no CUDA
// library: the CUDA backend is a separate module (libslm_cuda.so, built from
// runtime/cuda_module.cpp) that open_cuda_session() loads with dlopen on first use. Linking
// cuBLAS directly cost every CPU run ~200 MiB of resident memory (its load-time relocations and
// kernel registration) before a single weight was touched.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/cuda_session.h"  // CudaSessionOptions, CudaMemoryReport (CUDA-free part)
#include "runtime/model.h"

namespace slm {

// The public shape of slm::Session (what generate() and the bench loop call), plus the device
// reports. Methods may throw slm::Error like Session's.
class DeviceSession {
 public:
  virtual ~DeviceSession() = default;
  virtual void eval(std::span<const int32_t> tokens, bool all_logits = false) = 0;
  virtual const float* last_logits() const = 0;
  virtual const std::vector<float>& all_logits() const = 0;
  virtual int64_t n_past() const = 0;
  virtual int64_t n_ctx() const = 0;
  virtual int64_t n_vocab() const = 0;
  virtual void reset() = 0;
  virtual const Model& model() const = 0;
  virtual CudaMemoryReport memory_report() const = 0;
  virtual std::string device_name() const = 0;
};

// Version of the interface between slmrun and the module; both sides must agree.
inline constexpr int kCudaModuleAbi = 1;

// True when the CUDA module loads and reports a usable device; otherwise false with one line in
// *why. The module is looked up in $SLM_CUDA_MODULE, beside the executable, in ../lib beside it,
// then by name through the dynamic loader's search path.
bool cuda_backend_available(std::string* why = nullptr);

// Loads the module (once per process) and constructs a CudaSession on `model`, which must
// outlive the session. Throws slm::Error with the module's or the device's reason.
std::unique_ptr<DeviceSession> open_cuda_session(const Model& model, const CudaSessionOptions& opts);

}  // namespace slm
