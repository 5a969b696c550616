// The one prefill case where oneDNN beats our kernels (docs/cpu-kernels.md, "oneDNN"): BF16
// weights x bf16-rounded activations (ActPrecision::LlamaCpp) on CPUs with AVX512_BF16, m >=
// kOneDnnMinM, through a cached oneDNN matmul primitive (bf16 x bf16 products, f32 accumulation:
// the same arithmetic as our vdpbf16ps kernel, another summation order). Without oneDNN
// (SLM_HAVE_ONEDNN unset) every call reports "not handled" and our kernels run.
#include <atomic>
#include <cstdint>

#include "kernels/cpu/linear_internal.h"

#if SLM_HAVE_ONEDNN
#include <dnnl.hpp>
#include <mutex>
#include <vector>
#endif

namespace slm::cpu::detail {

namespace {
std::atomic<bool> g_onednn_enabled{true};
}  // namespace

void set_onednn_enabled(bool on) { g_onednn_enabled.store(on, std::memory_order_relaxed); }

#if SLM_HAVE_ONEDNN
namespace {

struct Entry {
  int64_t m, n, k, ldx, ldy;
  dnnl::matmul prim;
};

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Primitive creation costs ~0.1-1 ms (kernel generation); a forward pass uses a handful of
// shapes, so they are kept. Bounded: cleared when full (prompt chunks of many lengths).
dnnl::matmul cached_matmul(int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy) {
  static std::mutex mu;
  static std::vector<Entry> cache;
  constexpr size_t kMaxEntries = 64;
  std::lock_guard<std::mutex> lock(mu);
  for (const Entry& e : cache)
    if (e.m == m && e.n == n && e.k == k && e.ldx == ldx && e.ldy == ldy) return e.prim;
  using dt = dnnl::memory::data_type;
  const dnnl::memory::desc src({m, k}, dt::bf16, {ldx, 1});
  const dnnl::memory::desc wei({k, n}, dt::bf16, {1, k});  // W[n, k] row-major = W^T column-major
  const dnnl::memory::desc dst({m, n}, dt::f32, {ldy, 1});
  dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), cpu_engine()));
  if (cache.size() >= kMaxEntries) cache.clear();
  cache.push_back({m, n, k, ldx, ldy, prim});
  return prim;
}

}  // namespace

bool onednn_bf16_gemm(const KernelArgs& a) {
  if (!a.bf16_dot || a.type != QType::BF16 || a.m < kOneDnnMinM || a.act->xb == nullptr ||
      !g_onednn_enabled.load(std::memory_order_relaxed))
    return false;
  try {
    const dnnl::matmul prim = cached_matmul(a.m, a.n, a.k, a.act->xb_stride, a.ldy);
    using dt = dnnl::memory::data_type;
    dnnl::engine& eng = cpu_engine();
    dnnl::memory src({{a.m, a.k}, dt::bf16, {a.act->xb_stride, 1}}, eng,
                     const_cast<uint16_t*>(a.act->xb));
    dnnl::memory wei({{a.k, a.n}, dt::bf16, {1, a.k}}, eng, const_cast<uint8_t*>(a.w));
    dnnl::memory dst({{a.m, a.n}, dt::f32, {a.ldy, 1}}, eng, a.y);
    dnnl::stream strm(eng);
    prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    strm.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;  // e.g. an implementation missing for this shape: our kernels run instead
  }
}

#else

bool onednn_bf16_gemm(const KernelArgs&) { return false; }

#endif

}  // namespace slm::cpu::detail
