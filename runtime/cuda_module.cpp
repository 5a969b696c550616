// The CUDA backend as a loadable module (libslm_cuda.so): CudaSession behind the DeviceSession
// interface, and the C entry points runtime/device_session.cpp looks up. Built only in CUDA builds.
#include <cstdio>
#include <cstring>
#include <exception>

#include "runtime/cuda_session.h"
#include "runtime/device_session.h"

namespace slm {
namespace {

class CudaDeviceSession final : public DeviceSession {
 public:
  CudaDeviceSession(const Model& model, const CudaSessionOptions& opts) : s_(model, opts) {}
  void eval(std::span<const int32_t> tokens, bool all_logits) override { s_.eval(tokens, all_logits); }
  const float* last_logits() const override { return s_.last_logits(); }
  const std::vector<float>& all_logits() const override { return s_.all_logits(); }
  int64_t n_past() const override { return s_.n_past(); }
  int64_t n_ctx() const override { return s_.n_ctx(); }
  int64_t n_vocab() const override { return s_.n_vocab(); }
  void reset() override { s_.reset(); }
  const Model& model() const override { return s_.model(); }
  CudaMemoryReport memory_report() const override { return s_.memory_report(); }
  std::string device_name() const override { return s_.device_name(); }

 private:
  CudaSession s_;
};

void copy_message(const char* msg, char* out, size_t len) {
  if (len == 0) return;
  std::snprintf(out, len, "%s", msg);
}

}  // namespace
}  // namespace slm

extern "C" {

__attribute__((visibility("default"))) int slm_cuda_module_abi() { return slm::kCudaModuleAbi; }

__attribute__((visibility("default"))) bool slm_cuda_module_available(char* why, size_t why_len) {
  std::string reason;
  const bool ok = slm::cuda_available(&reason);
  slm::copy_message(reason.c_str(), why, why_len);
  return ok;
}

// Errors cross the module boundary as text: the caller rethrows them as its own slm::Error.
__attribute__((visibility("default"))) slm::DeviceSession* slm_cuda_module_open(const slm::Model* model,
                                                                                const slm::CudaSessionOptions* opts,
                                                                                char* err, size_t err_len) {
  try {
    return new slm::CudaDeviceSession(*model, *opts);
  } catch (const std::exception& e) {
    slm::copy_message(e.what(), err, err_len);
  } catch (...) {
    slm::copy_message("unknown error while creating the CUDA session", err, err_len);
  }
  return nullptr;
}

}  // extern "C"
