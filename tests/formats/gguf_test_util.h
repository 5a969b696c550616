// Helpers shared by the GGUF tests: an independent little-endian byte encoder (to hand-build files
// the Writer refuses to produce), byte patching, and "parse and return the error text".
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"

namespace slm::gguf::testing {

struct Raw {
  std::vector<uint8_t> b;
  template <class T>
  Raw& pod(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Raw& u8(uint8_t v) { return pod(v); }
  Raw& u32(uint32_t v) { return pod(v); }
  Raw& u64(uint64_t v) { return pod(v); }
  Raw& str(std::string_view s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
  Raw& pad(size_t a) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  // Tensor info with the given raw type id.
  Raw& tensor(std::string_view name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(uint32_t(ne.size()));
    for (int64_t d : ne) pod<int64_t>(d);
    return u32(type).u64(offset);
  }
};

// Message of the slm::Error the parser throws for `img`, or "" if it parses.
inline std::string parse_error(const std::vector<uint8_t>& img, std::string what = "mem.gguf") {
  try {
    File::parse(img.data(), img.size(), std::move(what));
  } catch (const slm::Error& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, std::string_view needle) {
  return s.find(needle) != std::string::npos;
}

// Offset of the first occurrence of `needle`; fails the test harness via slm::Error if absent.
inline size_t find_bytes(const std::vector<uint8_t>& img, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= img.size(); ++i)
    if (std::memcmp(img.data() + i, needle.data(), needle.size()) == 0) return i;
  slm::fail("test helper: '{}' not found in image", needle);
}

template <class T>
void put(std::vector<uint8_t>& img, size_t off, T v) {
  if (off + sizeof(T) > img.size()) slm::fail("test helper: patch at {} out of range", off);
  std::memcpy(img.data() + off, &v, sizeof(T));
}

// Field positions of the tensor info whose name is `name` (found by its bytes preceded by the
// u64 length; names in the test images are unique strings).
struct InfoPos {
  size_t len, n_dims, ne0, type, offset;
};
inline InfoPos tensor_info_pos(const std::vector<uint8_t>& img, std::string_view name,
                               uint32_t n_dims) {
  size_t name_at = find_bytes(img, name);
  InfoPos p;
  p.len = name_at - 8;
  p.n_dims = name_at + name.size();
  p.ne0 = p.n_dims + 4;
  p.type = p.ne0 + 8 * n_dims;
  p.offset = p.type + 4;
  return p;
}

// Position of the value-type u32 that follows metadata key `key`.
inline size_t kv_type_pos(const std::vector<uint8_t>& img, std::string_view key) {
  return find_bytes(img, key) + key.size();
}

}  // namespace slm::gguf::testing
