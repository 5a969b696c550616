// safetensors reader/writer and sharded checkpoints (see safetensors.h). The header is untrusted:
// every size is checked against the file before use, offsets and shapes with overflow-safe
// arithmetic, and tensors may not overlap.
#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"

namespace slm::st {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// The HF library refuses headers above 100 MB; a real header is a few hundred KB at most.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeEntry {
  DType type;
  std::string_view name;
  size_t size;  // 0 for dtypes we only recognise
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},        {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},        {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::I64, "I64", 8},        {DType::F64, "F64", 0},         {DType::I16, "I16", 0},
    {DType::U16, "U16", 0},        {DType::U32, "U32", 0},         {DType::U64, "U64", 0},
    {DType::BOOL, "BOOL", 0},      {DType::F8_E4M3, "F8_E4M3", 0}, {DType::F8_E5M2, "F8_E5M2", 0},
    {DType::F8_E8M0, "F8_E8M0", 0}, {DType::F4, "F4", 0},          {DType::F6_E2M3, "F6_E2M3", 0},
    {DType::F6_E3M2, "F6_E3M2", 0}, {DType::C64, "C64", 0},
};

const DTypeEntry& entry(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return e;
  SLM_ASSERT(false);
  return kDTypes[0];
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Reads a JSON integer that must be >= 0 and fit int64.
int64_t json_nonneg(const ojson& v, const std::string& what, std::string_view field,
                    const std::string& tname) {
  if (!v.is_number_integer())
    fail("{}: tensor '{}': {} must be an integer, got {}", what, tname, field, v.dump());
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) fail("{}: tensor '{}': {} value {} is too large", what, tname, field, u);
    return int64_t(u);
  }
  int64_t i = v.get<int64_t>();
  if (i < 0) fail("{}: tensor '{}': negative {} {}", what, tname, field, i);
  return i;
}

}  // namespace

std::string_view dtype_name(DType t) { return entry(t).name; }
size_t dtype_size(DType t) {
  const auto& e = entry(t);
  if (e.size == 0) fail("unsupported dtype '{}'", e.name);
  return e.size;
}
bool dtype_supported(DType t) { return entry(t).size != 0; }
std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kDTypes)
    if (e.name == name) return e.type;
  return std::nullopt;
}

std::optional<QType> to_qtype(DType t) {
  switch (t) {
    case DType::F32: return QType::F32;
    case DType::F16: return QType::F16;
    case DType::BF16: return QType::BF16;
    default: return std::nullopt;
  }
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow when the header was parsed
  return n;
}

void to_f32(const Tensor& t, float* dst) {
  const size_t n = size_t(t.numel());
  switch (t.dtype) {
    case DType::F32: std::memcpy(dst, t.data, n * 4); return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    default:
      fail("tensor '{}': dtype {} cannot be converted to float (expected F32, F16 or BF16)", t.name,
           dtype_name(t.dtype));
  }
}

std::vector<float> to_f32(const Tensor& t) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    fail("tensor '{}': dtype {} cannot be converted to float (expected F32, F16 or BF16)", t.name,
         dtype_name(t.dtype));
  std::vector<float> v(size_t(t.numel()));
  to_f32(t, v.data());
  return v;
}

std::vector<int32_t> to_i32(const Tensor& t) {
  const size_t n = size_t(t.numel());
  std::vector<int32_t> v(n);
  if (t.dtype == DType::I32) {
    std::memcpy(v.data(), t.data, n * 4);
  } else if (t.dtype == DType::I64) {
    for (size_t i = 0; i < n; ++i) {
      int64_t x;
      std::memcpy(&x, t.data + 8 * i, 8);
      if (x < INT32_MIN || x > INT32_MAX)
        fail("tensor '{}': element {} = {} does not fit int32", t.name, i, x);
      v[i] = int32_t(x);
    }
  } else {
    fail("tensor '{}': dtype {} is not an integer type (expected I32 or I64)", t.name,
         dtype_name(t.dtype));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// File

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = MappedFile(path);
  f->base_ = f->map_.data();
  f->size_ = f->map_.size();
  f->what_ = path;
  f->parse_header();
  return f;
}

std::unique_ptr<File> File::parse(const uint8_t* data, size_t size, std::string what) {
  std::unique_ptr<File> f(new File());
  f->base_ = data;
  f->size_ = size;
  f->what_ = std::move(what);
  f->parse_header();
  return f;
}

void File::parse_header() {
  ByteReader r(base_, size_, what_);
  const uint64_t n = r.read<uint64_t>("header length");
  if (n > kMaxHeaderBytes)
    fail("{}: header length {} is absurd (limit {} bytes): not a safetensors file?", what_, n,
         kMaxHeaderBytes);
  if (n > r.remaining())
    fail("{}: header length {} extends beyond the end of the file ({} bytes)", what_, n, size_);
  SLM_CHECK(n >= 2, "{}: header length {} is too small for a JSON object", what_, n);
  header_len_ = n;
  const char* hdr = reinterpret_cast<const char*>(r.bytes(n, "header"));
  const uint64_t data_size = size_ - 8 - n;
  const uint8_t* data_base = base_ + 8 + n;

  ojson j;
  try {
    j = ojson::parse(hdr, hdr + n);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON header: {}", what_, e.what());
  }
  SLM_CHECK(j.is_object(), "{}: invalid JSON header: expected an object, got {}", what_, j.type_name());

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      SLM_CHECK(v.is_object() || v.is_null(), "{}: __metadata__ must be an object of strings", what_);
      if (v.is_object())
        for (auto m = v.begin(); m != v.end(); ++m) {
          SLM_CHECK(m.value().is_string(), "{}: __metadata__ value of '{}' must be a string, got {}",
                    what_, m.key(), m.value().type_name());
          metadata_[m.key()] = m.value().get<std::string>();
        }
      continue;
    }
    SLM_CHECK(v.is_object(), "{}: tensor '{}': entry must be an object", what_, name);
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    SLM_CHECK(dt != v.end() && dt->is_string(), "{}: tensor '{}': missing or non-string 'dtype'",
              what_, name);
    SLM_CHECK(sh != v.end() && sh->is_array(), "{}: tensor '{}': missing or non-array 'shape'", what_,
              name);
    SLM_CHECK(off != v.end() && off->is_array() && off->size() == 2,
              "{}: tensor '{}': 'data_offsets' must be an array [begin, end]", what_, name);
    Tensor t;
    t.name = name;
    t.file = &what_;
    const std::string dname = dt->get<std::string>();
    auto d = dtype_from_name(dname);
    if (!d) fail("{}: tensor '{}': unknown dtype '{}'", what_, name, dname);
    if (!dtype_supported(*d))
      fail("{}: tensor '{}': unsupported dtype '{}' (supported: F32, F16, BF16, I32, I8, U8, I64)",
           what_, name, dname);
    t.dtype = *d;
    SLM_CHECK(sh->size() <= 8, "{}: tensor '{}': {} dimensions is too many", what_, name, sh->size());
    uint64_t numel = 1;
    for (const auto& e : *sh) {
      const int64_t dim = json_nonneg(e, what_, "dimension", name);
      t.shape.push_back(dim);
      if (mul_overflows(numel, uint64_t(dim), &numel))
        fail("{}: tensor '{}': shape {} overflows", what_, name, sh->dump());
    }
    uint64_t need;
    if (numel > uint64_t(INT64_MAX) || mul_overflows(numel, dtype_size(t.dtype), &need))
      fail("{}: tensor '{}': shape {} overflows", what_, name, sh->dump());
    t.begin = uint64_t(json_nonneg((*off)[0], what_, "data_offsets", name));
    t.end = uint64_t(json_nonneg((*off)[1], what_, "data_offsets", name));
    if (t.begin > t.end)
      fail("{}: tensor '{}': data_offsets [{}, {}] has begin > end", what_, name, t.begin, t.end);
    if (t.end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] out of range (data section is {} bytes)", what_,
           name, t.begin, t.end, data_size);
    if (t.end - t.begin != need)
      fail("{}: tensor '{}': size mismatch: shape {} of {} needs {} bytes, data_offsets span {}",
           what_, name, shape_str(t.shape), dname, need, t.end - t.begin);
    t.data = data_base + t.begin;
    if (index_.count(name)) fail("{}: duplicate tensor '{}'", what_, name);
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // Overlap check: sort byte ranges by start; each must begin at or after the furthest end so far.
  std::vector<const Tensor*> order;
  for (const auto& t : tensors_) if (t.nbytes()) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const Tensor* a, const Tensor* b) { return a->begin < b->begin; });
  const Tensor* furthest = nullptr;
  for (const Tensor* t : order) {
    if (furthest && t->begin < furthest->end)
      fail("{}: overlapping tensors '{}' [{}, {}) and '{}' [{}, {})", what_, furthest->name,
           furthest->begin, furthest->end, t->name, t->begin, t->end);
    if (!furthest || t->end > furthest->end) furthest = t;
  }
}

const Tensor* File::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const Tensor& File::get(std::string_view name) const {
  const Tensor* t = find(name);
  if (!t) fail("tensor '{}' not found in {}", name, what_);
  return *t;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

namespace {

std::string read_small_file(const std::string& path) {
  std::error_code ec;
  const auto sz = fs::file_size(path, ec);
  if (ec) fail("cannot read {}: {}", path, ec.message());
  SLM_CHECK(sz <= 256u * 1024 * 1024, "{}: {} bytes is too large for an index/config file", path, sz);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path);
  std::string s(size_t(sz), '\0');
  in.read(s.data(), std::streamsize(sz));
  if (!in) fail("cannot read {}", path);
  return s;
}

}  // namespace

void Checkpoint::add_shard(std::unique_ptr<File> f) {
  for (const Tensor& t : f->tensors()) {
    auto [it, inserted] = index_.emplace(t.name, &t);
    if (!inserted)
      fail("{}: tensor '{}' appears in both {} and {}", path_, t.name, *it->second->file, f->path());
  }
  shards_.push_back(std::move(f));
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& path) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->path_ = path;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    const fs::path d(path);
    if (fs::exists(d / "model.safetensors.index.json", ec)) {
      file = (d / "model.safetensors.index.json").string();
    } else if (fs::exists(d / "model.safetensors", ec)) {
      file = (d / "model.safetensors").string();
    } else {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(d, ec))
        if (e.path().extension() == ".safetensors") found.push_back(e.path().string());
      if (found.size() != 1)
        fail("{}: expected model.safetensors.index.json, model.safetensors or exactly one "
             ".safetensors file, found {} .safetensors files", path, found.size());
      file = found[0];
    }
  }
  const bool is_index = file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    c->add_shard(File::open(file));
    return c;
  }

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_small_file(file));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", file, e.what());
  }
  auto wm = j.find("weight_map");
  SLM_CHECK(j.is_object() && wm != j.end() && wm->is_object(),
            "{}: missing 'weight_map' object (not a safetensors index?)", file);
  const fs::path dir = fs::path(file).parent_path();
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    SLM_CHECK(it.value().is_string(), "{}: weight_map['{}'] must be a file name", file, it.key());
    const std::string shard = it.value().get<std::string>();
    // Shards must sit next to the index: no directories, no escaping it.
    SLM_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                  shard.find('\\') == std::string::npos && shard != "." && shard != "..",
              "{}: weight_map['{}'] = '{}' is not a plain file name", file, it.key(), shard);
    by_shard[shard].push_back(it.key());
  }
  SLM_CHECK(!by_shard.empty(), "{}: weight_map is empty", file);
  for (const auto& [shard, names] : by_shard) {
    c->add_shard(File::open((dir / shard).string()));
    const File& f = *c->shards_.back();
    for (const auto& n : names)
      if (!f.find(n))
        fail("{}: weight_map lists tensor '{}' in {}, which does not contain it", file, n, shard);
  }
  return c;
}

const Tensor* Checkpoint::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : it->second;
}

const Tensor& Checkpoint::get(std::string_view name) const {
  const Tensor* t = find(name);
  if (!t) fail("tensor '{}' not found in checkpoint {}", name, path_);
  return *t;
}

std::vector<const Tensor*> Checkpoint::tensors() const {
  std::vector<const Tensor*> v;
  v.reserve(index_.size());
  for (const auto& [n, t] : index_) v.push_back(t);
  std::sort(v.begin(), v.end(), [](const Tensor* a, const Tensor* b) { return a->name < b->name; });
  return v;
}

const std::map<std::string, std::string>& Checkpoint::metadata() const {
  static const std::map<std::string, std::string> kEmpty;
  return shards_.empty() ? kEmpty : shards_.front()->metadata();
}

// ---------------------------------------------------------------------------------------------
// Writer

void Writer::add(std::string name, DType dtype, std::vector<int64_t> shape, const void* data) {
  SLM_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is reserved");
  for (const auto& t : tensors_)
    SLM_CHECK(t.name != name, "safetensors writer: duplicate tensor '{}'", name);
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    SLM_CHECK(d >= 0, "safetensors writer: tensor '{}' has negative dimension {}", name, d);
    SLM_CHECK(!mul_overflows(n, uint64_t(d), &n), "safetensors writer: tensor '{}' too large", name);
  }
  tensors_.push_back({std::move(name), dtype, std::move(shape), data, n});
}

void Writer::set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

std::vector<uint8_t> Writer::to_bytes() const {
  ojson h = ojson::object();
  if (!metadata_.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    ojson e = ojson::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + t.nbytes};
    h[t.name] = std::move(e);
    off += t.nbytes;
  }
  std::string hdr = h.dump();
  // HF pads the header with spaces so the data section starts 8-byte aligned.
  hdr.append((8 - hdr.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + hdr.size() + off);
  const uint64_t n = hdr.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, hdr.data(), hdr.size());
  uint8_t* p = out.data() + 8 + hdr.size();
  for (const auto& t : tensors_) {
    if (t.nbytes) std::memcpy(p, t.data, t.nbytes);
    p += t.nbytes;
  }
  return out;
}

void Writer::write(const std::string& path) const {
  const auto bytes = to_bytes();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create {}", path);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!out) fail("write to {} failed", path);
}

}  // namespace slm::st
