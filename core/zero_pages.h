// ZeroPages: a large zero-filled buffer whose pages the kernel commits on first write (an
// anonymous private mapping). A KV cache sized for the whole context then costs resident memory
// only for the positions actually written, as a run of 32 tokens in a 4096-token context
// writes 1% of it; a full context ends at the same footprint as an eagerly zeroed vector.
#pragma once
#include <cstddef>
#include <cstdint>

namespace slm {

class ZeroPages {
 public:
  ZeroPages() = default;
  explicit ZeroPages(size_t bytes);  // throws slm::Error when the mapping fails
  ~ZeroPages();
  ZeroPages(ZeroPages&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  ZeroPages& operator=(ZeroPages&& o) noexcept;
  ZeroPages(const ZeroPages&) = delete;
  ZeroPages& operator=(const ZeroPages&) = delete;

  uint8_t* data() { return p_; }
  const uint8_t* data() const { return p_; }
  size_t size() const { return n_; }
  uint8_t& operator[](size_t i) { return p_[i]; }

 private:
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace slm
