// ZeroPages (zero_pages.h) over mmap(MAP_ANONYMOUS | MAP_PRIVATE): zero-filled by the kernel,
// no page resident until written.
#include "core/zero_pages.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace slm {

ZeroPages::ZeroPages(size_t bytes) : n_(bytes) {
  if (bytes == 0) return;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("cannot reserve {} bytes of memory: {}", bytes, std::strerror(errno));
  p_ = static_cast<uint8_t*>(p);
}

ZeroPages::~ZeroPages() {
  if (p_) munmap(p_, n_);
}

ZeroPages& ZeroPages::operator=(ZeroPages&& o) noexcept {
  if (this != &o) {
    if (p_) munmap(p_, n_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
  }
  return *this;
}

}  // namespace slm
