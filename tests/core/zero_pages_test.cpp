// ZeroPages: zero-filled, writable, movable, and lazily committed — the property the KV cache
// relies on for its resident-memory footprint (checked with mincore, which reports residency).
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "core/zero_pages.h"

using slm::ZeroPages;

namespace {
size_t resident_pages(const ZeroPages& z) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((z.size() + page - 1) / page);
  REQUIRE(mincore(const_cast<uint8_t*>(z.data()), z.size(), v.data()) == 0);
  size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}
}  // namespace

TEST_CASE("ZeroPages: zero-filled, committed page by page as written") {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  ZeroPages z(64 * page + 123);  // not a page multiple
  REQUIRE(z.data() != nullptr);
  CHECK(z.size() == 64 * page + 123);
  CHECK(resident_pages(z) == 0);
  z[5 * page + 7] = 42;
  z[z.size() - 1] = 7;
  CHECK(resident_pages(z) == 2);
  size_t nonzero = 0;
  for (size_t i = 0; i < z.size(); ++i) nonzero += z.data()[i] != 0;
  CHECK(nonzero == 2);  // reading the rest maps the shared zero page, still all zeros
  CHECK(z[5 * page + 7] == 42);
}

TEST_CASE("ZeroPages: move transfers ownership, empty buffers are valid") {
  ZeroPages a(4096);
  a[10] = 1;
  ZeroPages b(std::move(a));
  CHECK(a.data() == nullptr);
  CHECK(a.size() == 0);
  CHECK(b[10] == 1);
  ZeroPages c;
  c = std::move(b);
  CHECK(c[10] == 1);
  CHECK(b.data() == nullptr);
  ZeroPages empty(0);
  CHECK(empty.size() == 0);
}
