// MappedFile: a read-only memory map of a whole file (the weights are never copied), and
// ByteReader: a bounds-checked cursor over a byte range; every read checks the bytes left first,
// so a truncated or corrupt file produces slm::Error, never an out-of-bounds read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"

namespace slm {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws slm::Error (missing, directory, unreadable)
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Overflow-checked arithmetic for sizes and offsets read from files.
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }
inline bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

class ByteReader {
 public:
  // `what` names the source in error messages (usually the file path).
  ByteReader(const uint8_t* data, size_t size, std::string what)
      : data_(data), size_(size), what_(std::move(what)) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& what() const { return what_; }

  // Ensures n more bytes exist; `field` names what was being read.
  void need(uint64_t n, std::string_view field) const {
    if (n > size_ - pos_)
      fail("{}: truncated: reading {} needs {} bytes at offset {}, only {} left", what_, field, n,
           pos_, size_ - pos_);
  }
  template <class T>
  T read(std::string_view field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* bytes(uint64_t n, std::string_view field) {
    need(n, field);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  void seek(size_t pos) {
    if (pos > size_) fail("{}: seek to {} past end ({} bytes)", what_, pos, size_);
    pos_ = pos;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace slm
