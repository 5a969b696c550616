// GGUF v2/v3 reader and v3 writer (../shared/specs/gguf.md §1). The reader walks the header with
// a bounds-checked ByteReader, validates every count, size and offset with overflow-safe
// arithmetic before using or allocating from it, and leaves tensor data in the mapping. The writer
// reproduces llama.cpp's byte layout so a read-then-write round trip is byte-identical.
#include "formats/gguf.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/error.h"

namespace slm::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 4;        // arrays of arrays nest at most this deep
constexpr uint64_t kMaxKeyBytes = 65535; // the spec's cap on key length
constexpr uint64_t kMaxTensorNameBytes = 63;  // llama.cpp: name < GGML_MAX_NAME (64)
constexpr uint32_t kMaxDims = 4;
// Each array element becomes a ~100-byte Value, so a small file could otherwise make us allocate
// ~100x its size. A Llama 3 vocabulary needs ~540k elements (tokens + merges + types); the
// largest vocabularies in use stay well below 2M, so 4M leaves room while bounding memory.
constexpr uint64_t kMaxTotalArrayElems = uint64_t(1) << 22;
// No real dimension comes near this; it keeps products of dims far from int64 overflow paths.
constexpr int64_t kMaxDim = int64_t(1) << 40;
// A KV pair or tensor info takes ~15-35 bytes on disk but ~100+ in memory, so counts are capped
// too (real files: tens of keys, at most a few thousand tensors).
constexpr uint64_t kMaxKv = uint64_t(1) << 20;
constexpr uint64_t kMaxTensors = uint64_t(1) << 20;

// Smallest encoding of one value of a type, used to bound counts by the bytes left.
uint64_t min_value_bytes(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= uint32_t(ValueType::F64); }

bool is_pow2(uint64_t a) { return a != 0 && (a & (a - 1)) == 0; }

// Round up to a multiple of a power-of-two alignment; false on overflow.
bool align_up(uint64_t x, uint64_t a, uint64_t* out) {
  uint64_t t;
  if (add_overflows(x, a - 1, &t)) return false;
  *out = t & ~(a - 1);
  return true;
}

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& what) : r_(data, size, what) {}

  ByteReader& reader() { return r_; }
  const std::string& what() const { return r_.what(); }

  // A u64-length-prefixed string; `field` names it in errors.
  std::string read_string(std::string_view field, uint64_t max_len) {
    size_t at = r_.offset();
    uint64_t len = r_.read<uint64_t>(field);
    if (len > r_.remaining())
      fail("{}: truncated or corrupt: {} at offset {} has length {} but only {} bytes follow",
           what(), field, at, len, r_.remaining());
    if (len > max_len)
      fail("{}: {} at offset {} has absurd length {} (max {})", what(), field, at, len, max_len);
    const uint8_t* p = r_.bytes(len, field);
    return std::string(reinterpret_cast<const char*>(p), size_t(len));
  }

  void read_value(Value& v, ValueType t, int depth, const std::string& key) {
    v.type = t;
    switch (t) {
      case ValueType::U8: set_unsigned(v, r_.read<uint8_t>("u8 value")); break;
      case ValueType::U16: set_unsigned(v, r_.read<uint16_t>("u16 value")); break;
      case ValueType::U32: set_unsigned(v, r_.read<uint32_t>("u32 value")); break;
      case ValueType::U64: set_unsigned(v, r_.read<uint64_t>("u64 value")); break;
      case ValueType::BOOL: v.u = r_.read<uint8_t>("bool value"); v.i = int64_t(v.u); break;
      case ValueType::I8: v.i = r_.read<int8_t>("i8 value"); break;
      case ValueType::I16: v.i = r_.read<int16_t>("i16 value"); break;
      case ValueType::I32: v.i = r_.read<int32_t>("i32 value"); break;
      case ValueType::I64: v.i = r_.read<int64_t>("i64 value"); break;
      case ValueType::F32: v.f = r_.read<float>("f32 value"); break;
      case ValueType::F64: v.f = r_.read<double>("f64 value"); break;
      case ValueType::STRING:
        v.str = read_string("string value", std::numeric_limits<uint64_t>::max());
        break;
      case ValueType::ARRAY: read_array(v, depth, key); break;
    }
  }

 private:
  static void set_unsigned(Value& v, uint64_t x) {
    v.u = x;
    v.i = x <= uint64_t(std::numeric_limits<int64_t>::max()) ? int64_t(x) : 0;
  }

  void read_array(Value& v, int depth, const std::string& key) {
    size_t at = r_.offset();
    if (depth >= kMaxArrayDepth)
      fail("{}: key '{}': arrays nested deeper than {} at offset {}", what(), key, kMaxArrayDepth,
           at);
    uint32_t et = r_.read<uint32_t>("array element type");
    if (!valid_value_type(et))
      fail("{}: key '{}': unknown metadata value type {} for array elements at offset {}", what(),
           key, et, at);
    v.elem_type = ValueType(et);
    uint64_t count = r_.read<uint64_t>("array count");
    uint64_t need;
    if (mul_overflows(count, min_value_bytes(v.elem_type), &need) || need > r_.remaining())
      fail("{}: truncated or corrupt: key '{}': array of {} {} at offset {} cannot fit in the {} "
           "bytes left",
           what(), key, count, value_type_name(v.elem_type), at, r_.remaining());
    total_elems_ += count;
    if (total_elems_ > kMaxTotalArrayElems)
      fail("{}: key '{}': absurd array count {} at offset {} (metadata arrays hold more than {} "
           "elements in total)",
           what(), key, count, at, kMaxTotalArrayElems);
    v.items.resize(size_t(count));
    for (Value& item : v.items) read_value(item, v.elem_type, depth + 1, key);
  }

  ByteReader r_;
  uint64_t total_elems_ = 0;
};

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

// ---- Value ----------------------------------------------------------------------------------

namespace {
bool is_unsigned_type(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed_type(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
}  // namespace

bool Value::is_int() const { return is_unsigned_type(type) || is_signed_type(type); }
bool Value::is_float() const { return type == ValueType::F32 || type == ValueType::F64; }

std::optional<int64_t> Value::as_int() const {
  if (is_unsigned_type(type)) {
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(u);
  }
  if (is_signed_type(type)) return i;
  // Booleans read as 0/1 so flags like tokenizer.ggml.add_bos_token work with get_int.
  if (type == ValueType::BOOL) return u != 0 ? 1 : 0;
  return std::nullopt;
}

std::optional<double> Value::as_double() const {
  if (is_float()) return f;
  if (is_unsigned_type(type)) return double(u);
  if (is_signed_type(type)) return double(i);
  return std::nullopt;
}

Value Value::make_u32(uint32_t v) {
  Value r;
  r.type = ValueType::U32;
  r.u = v;
  r.i = v;
  return r;
}
Value Value::make_i32(int32_t v) {
  Value r;
  r.type = ValueType::I32;
  r.i = v;
  return r;
}
Value Value::make_u64(uint64_t v) {
  Value r;
  r.type = ValueType::U64;
  r.u = v;
  r.i = v <= uint64_t(std::numeric_limits<int64_t>::max()) ? int64_t(v) : 0;
  return r;
}
Value Value::make_f32(float v) {
  Value r;
  r.type = ValueType::F32;
  r.f = v;
  return r;
}
Value Value::make_bool(bool v) {
  Value r;
  r.type = ValueType::BOOL;
  r.u = v ? 1 : 0;
  r.i = r.u;
  return r;
}
Value Value::make_string(std::string v) {
  Value r;
  r.type = ValueType::STRING;
  r.str = std::move(v);
  return r;
}
Value Value::make_array(ValueType elem, std::vector<Value> items) {
  Value r;
  r.type = ValueType::ARRAY;
  r.elem_type = elem;
  r.items = std::move(items);
  return r;
}
Value Value::make_string_array(const std::vector<std::string>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(make_string(s));
  return make_array(ValueType::STRING, std::move(items));
}
Value Value::make_f32_array(const std::vector<float>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (float x : v) items.push_back(make_f32(x));
  return make_array(ValueType::F32, std::move(items));
}
Value Value::make_i32_array(const std::vector<int32_t>& v) {
  std::vector<Value> items;
  items.reserve(v.size());
  for (int32_t x : v) items.push_back(make_i32(x));
  return make_array(ValueType::I32, std::move(items));
}

// ---- TensorInfo -----------------------------------------------------------------------------

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

int64_t TensorInfo::rows() const {
  int64_t n = 1;
  for (size_t k = 1; k < ne.size(); ++k) n *= ne[k];
  return n;
}

// ---- File -----------------------------------------------------------------------------------

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = MappedFile(path);
  f->base_ = f->map_.data();
  f->size_ = f->map_.size();
  f->what_ = path;
  f->parse_all();
  return f;
}

std::unique_ptr<File> File::parse(const uint8_t* data, size_t size, std::string what) {
  std::unique_ptr<File> f(new File());
  f->base_ = data;
  f->size_ = size;
  f->what_ = std::move(what);
  f->parse_all();
  return f;
}

void File::parse_all() {
  static const uint8_t kEmpty = 0;
  Parser p(base_ ? base_ : &kEmpty, base_ ? size_ : 0, what_);
  ByteReader& r = p.reader();

  if (size_ < 4) fail("{}: truncated: {} bytes is too short for a GGUF file", what_, size_);
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) {
    const uint8_t* m = base_;
    fail("{}: bad magic {:02x} {:02x} {:02x} {:02x} (expected \"GGUF\"): not a GGUF file", what_,
         m[0], m[1], m[2], m[3]);
  }
  uint32_t version = r.read<uint32_t>("version");
  // Big-endian files store 3 as 0x03000000: low half zero when read little-endian.
  if (version != 0 && (version & 0xFFFF) == 0)
    fail("{}: unsupported GGUF version field 0x{:08x}: looks like a big-endian file", what_,
         version);
  if (version == 1)
    fail("{}: unsupported GGUF version 1 (obsolete; re-convert the model)", what_);
  if (version < 2 || version > 3)
    fail("{}: unsupported GGUF version {} (supported: 2, 3)", what_, version);
  version_ = version;

  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Smallest KV: 1-byte key (8+1), type (4), 1-byte value. Smallest tensor info: length (8),
  // 1-byte name, n_dims (4), one dim (8), type (4), offset (8).
  constexpr uint64_t kMinKv = 8 + 1 + 4 + 1, kMinTensorInfo = 8 + 1 + 4 + 8 + 4 + 8;
  uint64_t kv_bytes, ti_bytes, total;
  if (mul_overflows(n_kv, kMinKv, &kv_bytes) || mul_overflows(n_tensors, kMinTensorInfo, &ti_bytes) ||
      add_overflows(kv_bytes, ti_bytes, &total) || total > r.remaining())
    fail("{}: truncated or corrupt: header claims {} tensors and {} metadata keys, more than the "
         "{}-byte file could hold",
         what_, n_tensors, n_kv, size_);

  if (n_kv > kMaxKv) fail("{}: absurd metadata count {} (max {})", what_, n_kv, kMaxKv);
  if (n_tensors > kMaxTensors)
    fail("{}: absurd tensor count {} (max {})", what_, n_tensors, kMaxTensors);

  kv_.reserve(size_t(n_kv));
  kv_index_.reserve(size_t(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    size_t at = r.offset();
    std::string key = p.read_string("metadata key", kMaxKeyBytes);
    if (key.empty()) fail("{}: empty metadata key at offset {}", what_, at);
    size_t type_at = r.offset();
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (!valid_value_type(t))
      fail("{}: key '{}': unknown metadata value type {} at offset {}", what_, key, t, type_at);
    if (kv_index_.count(key)) fail("{}: duplicate metadata key '{}' at offset {}", what_, key, at);
    Value v;
    p.read_value(v, ValueType(t), 0, key);
    if (key == "general.alignment") {
      if (v.type != ValueType::U32)
        fail("{}: general.alignment must be u32, found {}", what_, value_type_name(v.type));
      if (!is_pow2(v.u))
        fail("{}: general.alignment {} is not a power of two", what_, v.u);
      alignment_ = v.u;
    }
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  // Re-check the tensor count against what is really left now the metadata is known.
  if (mul_overflows(n_tensors, kMinTensorInfo, &ti_bytes) || ti_bytes > r.remaining())
    fail("{}: truncated or corrupt: header claims {} tensors, more than the {} bytes after the "
         "metadata could hold",
         what_, n_tensors, r.remaining());

  tensors_.reserve(size_t(n_tensors));
  tensor_index_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    size_t at = r.offset();
    uint64_t name_len = r.read<uint64_t>("tensor name length");
    if (name_len == 0) fail("{}: tensor {} at offset {} has an empty name", what_, k, at);
    if (name_len > kMaxTensorNameBytes) {
      if (name_len > r.remaining())
        fail("{}: truncated or corrupt: tensor {} name at offset {} has length {} but only {} "
             "bytes follow",
             what_, k, at, name_len, r.remaining());
      fail("{}: tensor {} name at offset {} is too long ({} bytes, max {})", what_, k, at, name_len,
           kMaxTensorNameBytes);
    }
    const uint8_t* np = r.bytes(name_len, "tensor name");
    TensorInfo ti;
    ti.name.assign(reinterpret_cast<const char*>(np), size_t(name_len));
    if (tensor_index_.count(ti.name))
      fail("{}: duplicate tensor name '{}' at offset {}", what_, ti.name, at);

    uint32_t n_dims = r.read<uint32_t>("tensor n_dims");
    if (n_dims < 1 || n_dims > kMaxDims)
      fail("{}: tensor '{}' has {} dimensions (must be 1..{})", what_, ti.name, n_dims, kMaxDims);
    ti.ne.resize(n_dims);
    int64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      int64_t ne = r.read<int64_t>("tensor dimension");
      if (ne <= 0 || ne > kMaxDim)
        fail("{}: tensor '{}' has invalid dimension ne[{}] = {}", what_, ti.name, d, ne);
      if (__builtin_mul_overflow(n_el, ne, &n_el))
        fail("{}: tensor '{}': element count overflows (absurd dimensions)", what_, ti.name);
      ti.ne[d] = ne;
    }
    uint32_t raw_type = r.read<uint32_t>("tensor type");
    const QTypeInfo* qi = find_qtype(raw_type);
    if (!qi)
      fail("{}: tensor '{}' has unsupported type {} ({})", what_, ti.name,
           ggml_type_name(raw_type), raw_type);
    ti.type = qi->type;
    if (ti.ne[0] % qi->block_elems != 0)
      fail("{}: tensor '{}' ({}): ne[0] = {} is not a multiple of the block size {}", what_,
           ti.name, qi->name, ti.ne[0], qi->block_elems);
    uint64_t row = uint64_t(ti.ne[0] / qi->block_elems) * uint64_t(qi->block_bytes);
    uint64_t nbytes;
    if (mul_overflows(row, uint64_t(n_el / ti.ne[0]), &nbytes))
      fail("{}: tensor '{}': byte size overflows (absurd dimensions)", what_, ti.name);
    ti.nbytes = nbytes;
    ti.offset = r.read<uint64_t>("tensor offset");
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  uint64_t data_off = 0;
  if (!align_up(r.offset(), alignment_, &data_off) || data_off > size_)
    fail("{}: truncated: data section would start at offset {} (tensor infos end at {}, "
         "alignment {}) past end of file ({} bytes)",
         what_, data_off, r.offset(), alignment_, size_);
  data_offset_ = data_off;

  for (TensorInfo& ti : tensors_) {
    if (ti.offset % alignment_ != 0)
      fail("{}: tensor '{}' data offset {} is misaligned (alignment {})", what_, ti.name,
           ti.offset, alignment_);
    uint64_t begin, end;
    if (add_overflows(data_offset_, ti.offset, &begin) || add_overflows(begin, ti.nbytes, &end) ||
        end > size_)
      fail("{}: tensor '{}' data ({} bytes at data offset {}) runs past end of file ({} bytes): "
           "truncated or corrupt",
           what_, ti.name, ti.nbytes, ti.offset, size_);
    ti.data = base_ + begin;
  }
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_double() : std::nullopt;
}

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::STRING) return std::nullopt;
  return v->str;
}

const std::vector<Value>* File::get_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::ARRAY) return nullptr;
  return &v->items;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- Writer ---------------------------------------------------------------------------------

// Where the writer's bytes go: a growing vector (to_bytes) or a buffered file (write).
class detail::Sink {
 public:
  virtual ~Sink() = default;
  virtual void put(const void* p, size_t n) = 0;
  uint64_t written() const { return written_; }

  template <class T>
  void pod(T v) { put(&v, sizeof v); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void zeros(uint64_t n) {
    static const uint8_t kZero[64] = {};
    while (n > 0) {
      size_t k = n < sizeof kZero ? size_t(n) : sizeof kZero;
      put(kZero, k);
      n -= k;
    }
  }
  void pad_to(uint64_t alignment) {
    uint64_t rem = written_ % alignment;
    if (rem) zeros(alignment - rem);
  }

 protected:
  uint64_t written_ = 0;
};

namespace {

using detail::Sink;

class VectorSink : public Sink {
 public:
  explicit VectorSink(std::vector<uint8_t>& out) : out_(out) {}
  void put(const void* p, size_t n) override {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
    written_ += n;
  }

 private:
  std::vector<uint8_t>& out_;
};

class FileSink : public Sink {
 public:
  FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {
    std::setvbuf(f_, nullptr, _IOFBF, size_t(1) << 20);  // tensor data goes out in big chunks
  }
  void put(const void* p, size_t n) override {
    if (n && std::fwrite(p, 1, n, f_) != n)
      fail("{}: write failed: {}", path_, std::strerror(errno));
    written_ += n;
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

void write_value(Sink& s, const Value& v, const std::string& key, int depth) {
  switch (v.type) {
    case ValueType::U8: s.pod<uint8_t>(uint8_t(v.u)); break;
    case ValueType::I8: s.pod<int8_t>(int8_t(v.i)); break;
    case ValueType::U16: s.pod<uint16_t>(uint16_t(v.u)); break;
    case ValueType::I16: s.pod<int16_t>(int16_t(v.i)); break;
    case ValueType::U32: s.pod<uint32_t>(uint32_t(v.u)); break;
    case ValueType::I32: s.pod<int32_t>(int32_t(v.i)); break;
    case ValueType::U64: s.pod<uint64_t>(v.u); break;
    case ValueType::I64: s.pod<int64_t>(v.i); break;
    case ValueType::F32: s.pod<float>(float(v.f)); break;
    case ValueType::F64: s.pod<double>(v.f); break;
    case ValueType::BOOL: s.pod<uint8_t>(uint8_t(v.u)); break;
    case ValueType::STRING: s.str(v.str); break;
    case ValueType::ARRAY:
      if (depth >= kMaxArrayDepth)
        fail("gguf writer: key '{}': arrays nested deeper than {}", key, kMaxArrayDepth);
      s.pod<uint32_t>(uint32_t(v.elem_type));
      s.pod<uint64_t>(v.items.size());
      for (const Value& item : v.items) {
        if (item.type != v.elem_type)
          fail("gguf writer: key '{}': array of {} holds a {} element", key,
               value_type_name(v.elem_type), value_type_name(item.type));
        write_value(s, item, key, depth + 1);
      }
      break;
    default:
      fail("gguf writer: key '{}': unknown value type {}", key, uint32_t(v.type));
  }
}

}  // namespace

void Writer::set(std::string key, Value v) {
  if (key == "general.alignment") {
    SLM_CHECK(v.type == ValueType::U32 && is_pow2(v.u),
              "gguf writer: general.alignment must be a u32 power of two");
    alignment_ = v.u;
  }
  for (auto& [k, old] : kv_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  kv_.emplace_back(std::move(key), std::move(v));
}

void Writer::set_alignment(uint32_t a) { set("general.alignment", Value::make_u32(a)); }

void Writer::add_tensor(std::string name, QType type, std::vector<int64_t> ne, const void* data) {
  SLM_CHECK(!name.empty() && name.size() <= kMaxTensorNameBytes,
            "gguf writer: tensor name '{}' must be 1..{} bytes", name, kMaxTensorNameBytes);
  for (const auto& t : tensors_)
    SLM_CHECK(t.name != name, "gguf writer: duplicate tensor name '{}'", name);
  SLM_CHECK(data != nullptr, "gguf writer: tensor '{}' has no data", name);
  SLM_CHECK(!ne.empty() && ne.size() <= kMaxDims, "gguf writer: tensor '{}' has {} dimensions",
            name, ne.size());
  int64_t rows = 1;
  for (size_t k = 0; k < ne.size(); ++k) {
    int64_t d = ne[k];
    SLM_CHECK(d > 0 && d <= kMaxDim, "gguf writer: tensor '{}' has invalid dimension {}", name, d);
    if (k > 0)
      SLM_CHECK(!__builtin_mul_overflow(rows, d, &rows), "gguf writer: tensor '{}' is too large",
                name);
  }
  uint64_t nbytes;
  SLM_CHECK(!mul_overflows(uint64_t(row_bytes(type, ne[0])), uint64_t(rows), &nbytes),
            "gguf writer: tensor '{}' is too large", name);
  tensors_.push_back(PendingTensor{std::move(name), type, std::move(ne), data, nbytes});
}

void Writer::add_tensor_info(std::string name, QType type, std::vector<int64_t> ne) {
  static const uint8_t kNoData = 0;
  add_tensor(std::move(name), type, std::move(ne), &kNoData);  // same validation as add_tensor
  tensors_.back().data = nullptr;
}

void Writer::emit(Sink& s) const {
  for (const auto& t : tensors_)
    SLM_CHECK(t.data != nullptr, "gguf writer: tensor '{}' was added without data", t.name);
  emit_header(s);
  for (const auto& t : tensors_) {
    s.put(t.data, size_t(t.nbytes));
    s.pad_to(alignment_);
  }
}

std::vector<uint8_t> Writer::header_bytes() const {
  std::vector<uint8_t> out;
  VectorSink s(out);
  emit_header(s);
  return out;
}

std::vector<uint64_t> Writer::data_offsets() const {
  std::vector<uint64_t> offs;
  offs.reserve(tensors_.size());
  uint64_t at = header_bytes().size();
  for (const auto& t : tensors_) {
    offs.push_back(at);
    at += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  return offs;
}

void Writer::emit_header(Sink& s) const {
  s.pod<uint32_t>(kMagic);
  s.pod<uint32_t>(3);
  s.pod<uint64_t>(tensors_.size());
  s.pod<uint64_t>(kv_.size());
  for (const auto& [key, v] : kv_) {
    s.str(key);
    s.pod<uint32_t>(uint32_t(v.type));
    write_value(s, v, key, 0);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    s.str(t.name);
    s.pod<uint32_t>(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) s.pod<int64_t>(d);
    s.pod<uint32_t>(uint32_t(t.type));
    s.pod<uint64_t>(offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  s.pad_to(alignment_);
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> out;
  VectorSink s(out);
  emit(s);
  return out;
}

void Writer::write(const std::string& path) const {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("{}: cannot create: {}", path, std::strerror(errno));
  try {
    FileSink s(f, path);
    emit(s);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  if (std::fclose(f) != 0) fail("{}: write failed: {}", path, std::strerror(errno));
}

}  // namespace slm::gguf

namespace slm::gguf {

void File::release_value(std::string_view key) {
  auto it = kv_index_.find(std::string(key));
  if (it == kv_index_.end()) return;
  Value& v = kv_[it->second].second;
  std::vector<Value>().swap(v.items);
  std::string().swap(v.str);
}

}  // namespace slm::gguf
