// Loader of the CUDA module (device_session.h): finds libslm_cuda.so, checks its interface
// version, and forwards to its two C entry points. Nothing here includes a CUDA header.
#include "runtime/device_session.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace slm {
namespace {

constexpr const char* kModuleName = "libslm_cuda.so";

// The entry points runtime/cuda_module.cpp exports (C linkage: no name mangling to agree on).
using AbiFn = int (*)();
using AvailableFn = bool (*)(char* why, size_t why_len);
using OpenFn = DeviceSession* (*)(const Model* model, const CudaSessionOptions* opts, char* err, size_t err_len);

struct Module {
  AvailableFn available = nullptr;
  OpenFn open = nullptr;
  std::string error;  // why the module could not be used (empty when it loaded)
};

std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string p(buf, size_t(n));
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? std::string() : p.substr(0, slash);
}

Module load_module() {
  Module m;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SLM_CUDA_MODULE"); env && *env) {
    candidates.push_back(env);  // an explicit choice: no fallback that could hide a typo
  } else {
    const std::string dir = executable_dir();
    if (!dir.empty()) {
      candidates.push_back(dir + "/" + kModuleName);
      candidates.push_back(dir + "/../lib/" + kModuleName);
    }
    candidates.push_back(kModuleName);
  }
  std::string tried;
  for (const std::string& path : candidates) {
    const bool by_name = path.find('/') == std::string::npos;
    if (!by_name && access(path.c_str(), F_OK) != 0) {
      tried += (tried.empty() ? "" : ", ") + path;
      continue;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      if (by_name && tried.size()) break;  // not on the search path either: report what was tried
      m.error = fmt::format("the CUDA module {} could not be loaded ({})", path, e ? e : "unknown error");
      return m;
    }
    const auto abi = reinterpret_cast<AbiFn>(dlsym(h, "slm_cuda_module_abi"));
    m.available = reinterpret_cast<AvailableFn>(dlsym(h, "slm_cuda_module_available"));
    m.open = reinterpret_cast<OpenFn>(dlsym(h, "slm_cuda_module_open"));
    if (!abi || !m.available || !m.open || abi() != kCudaModuleAbi) {
      m = Module{};
      m.error = fmt::format("{} is not a CUDA module of this slmrun version (interface {} expected)", path,
                            kCudaModuleAbi);
    }
    return m;  // the handle stays open for the life of the process
  }
  m.error = fmt::format("this slmrun has no CUDA backend ({} not found: {}; build with -DSLM_CUDA=ON)",
                        kModuleName, tried.empty() ? "not on the library search path" : tried);
  return m;
}

const Module& module() {
  static std::once_flag once;
  static Module m;
  std::call_once(once, [] { m = load_module(); });
  return m;
}

}  // namespace

bool cuda_backend_available(std::string* why) {
  const Module& m = module();
  if (!m.available) {
    if (why) *why = m.error;
    return false;
  }
  char buf[512] = {};
  const bool ok = m.available(buf, sizeof(buf));
  if (!ok && why) *why = buf;
  return ok;
}

std::unique_ptr<DeviceSession> open_cuda_session(const Model& model, const CudaSessionOptions& opts) {
  const Module& m = module();
  SLM_CHECK(m.open, "CUDA device requested but {}", m.error);
  char err[1024] = {};
  DeviceSession* s = m.open(&model, &opts, err, sizeof(err));
  if (!s) fail("{}", err);
  return std::unique_ptr<DeviceSession>(s);
}

}  // namespace slm
