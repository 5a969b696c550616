// GGUF quantizer: mixture planning, llama-quantize's tensor order and metadata rewrite, and the
// streaming writer that encodes each tensor (OpenMP over rows) and measures its error.
#include "runtime/quantize.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>

#include "core/error.h"

namespace slm {

int64_t SourceTensor::rows() const {
  int64_t n = 1;
  for (size_t k = 1; k < ne.size(); ++k) n *= ne[k];
  return n;
}

namespace {
bool is_float_type(QType t) { return t == QType::F32 || t == QType::F16 || t == QType::BF16; }
}  // namespace

// ---- GgufTensorSource -----------------------------------------------------------------------

GgufTensorSource::GgufTensorSource(const gguf::File& f) : file_(f) {
  tensors_.reserve(f.tensors().size());
  for (const gguf::TensorInfo& t : f.tensors()) tensors_.push_back(SourceTensor{t.name, t.type, t.ne});
}

void GgufTensorSource::read_rows(size_t i, int64_t row0, int64_t n, float* dst) const {
  const gguf::TensorInfo& t = file_.tensors().at(i);
  SLM_CHECK(is_float_type(t.type), "{}: tensor '{}' is {}: only F32/F16/BF16 tensors can be re-quantized",
            file_.path(), t.name, qtype_name(t.type));
  SLM_CHECK(row0 >= 0 && n >= 0 && row0 + n <= t.rows(), "{}: tensor '{}': rows {}..{} out of range",
            file_.path(), t.name, row0, row0 + n);
  const size_t rb = row_bytes(t.type, t.ne[0]);
  for (int64_t r = 0; r < n; ++r)
    dequantize_row(t.type, t.data + rb * size_t(row0 + r), dst + size_t(r) * size_t(t.ne[0]), t.ne[0]);
}

const uint8_t* GgufTensorSource::raw(size_t i) const { return file_.tensors().at(i).data; }

// ---- planning -------------------------------------------------------------------------------

bool is_quantizable_tensor(std::string_view name, size_t n_dims) {
  const std::string_view suffix = "weight";
  const bool ends_weight = name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  return ends_weight && n_dims >= 2 && name.find("_norm.weight") == std::string_view::npos;
}

namespace {
// "blk.<N>." prefix: N, or -1 when the name has none.
int64_t block_number(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int64_t v = 0;
  size_t k = 4;
  if (k >= name.size() || name[k] < '0' || name[k] > '9') return -1;
  for (; k < name.size() && name[k] >= '0' && name[k] <= '9'; ++k) {
    v = v * 10 + (name[k] - '0');
    if (v > (int64_t(1) << 31)) return -1;
  }
  return k < name.size() && name[k] == '.' ? v : -1;
}
}  // namespace

std::optional<std::pair<TensorKind, int64_t>> tensor_kind(std::string_view name) {
  if (name == "token_embd.weight") return std::pair{TensorKind::TokenEmbd, int64_t(0)};
  if (name == "output.weight") return std::pair{TensorKind::Output, int64_t(0)};
  const int64_t layer = block_number(name);
  if (layer < 0) return std::nullopt;
  const std::string_view rest = name.substr(name.find('.', 4) + 1);
  static constexpr std::pair<std::string_view, TensorKind> kKinds[] = {
      {"attn_q.weight", TensorKind::AttnQ},     {"attn_k.weight", TensorKind::AttnK},
      {"attn_v.weight", TensorKind::AttnV},     {"attn_output.weight", TensorKind::AttnOutput},
      {"ffn_gate.weight", TensorKind::FfnGate}, {"ffn_up.weight", TensorKind::FfnUp},
      {"ffn_down.weight", TensorKind::FfnDown},
  };
  for (const auto& [suffix, kind] : kKinds)
    if (rest == suffix) return std::pair{kind, layer};
  return std::nullopt;
}

QType fit_type_to_row(QType t, int64_t cols) {
  if (cols % qtype_info(t).block_elems == 0) return t;
  QType alt = QType::F16;
  switch (t) {
    case QType::Q2_K: case QType::Q3_K: case QType::IQ4_XS: alt = QType::IQ4_NL; break;
    case QType::Q4_K: alt = QType::Q5_0; break;
    case QType::Q5_K: alt = QType::Q5_1; break;
    case QType::Q6_K: alt = QType::Q8_0; break;
    default: break;
  }
  return cols % qtype_info(alt).block_elems == 0 ? alt : QType::F16;
}

std::vector<QType> plan_tensor_types(const TensorSource& src, const Mixture& mix, const MixtureContext& ctx) {
  std::vector<QType> types;
  types.reserve(src.tensors().size());
  for (const SourceTensor& t : src.tensors()) {
    if (!is_quantizable_tensor(t.name, t.ne.size())) {
      types.push_back(t.type);
      continue;
    }
    QType q = mix.base;
    if (!mix.pure) {
      if (auto k = tensor_kind(t.name)) q = mixture_type(mix, k->first, k->second, ctx);
      else q = mixture_type(mix, TensorKind::AttnQ, 0, ctx);  // no special rule: the base type
    }
    types.push_back(fit_type_to_row(q, t.cols()));
  }
  return types;
}

std::vector<size_t> llama_quantize_order(const std::vector<std::string>& names) {
  std::vector<size_t> idx(names.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return names[a] < names[b]; });
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t a, size_t b) { return block_number(names[a]) < block_number(names[b]); });
  return idx;
}

GgufMetadata quantized_metadata(const GgufMetadata& in, const Mixture& mix) {
  GgufMetadata out;
  out.reserve(in.size() + 2);
  for (const auto& [k, v] : in) {
    if (k == "general.quantization_version" || k == "general.file_type" || k == "split.no" ||
        k == "split.count" || k == "split.tensors.count")
      continue;
    out.emplace_back(k, v);
  }
  out.emplace_back("general.quantization_version", gguf::Value::make_u32(2));
  out.emplace_back("general.file_type", gguf::Value::make_u32(mix.file_type));
  return out;
}

// ---- writing --------------------------------------------------------------------------------

namespace {

class OutFile {
 public:
  // Writes `final_path` + ".tmp"; errors name the file the user asked for.
  explicit OutFile(const std::string& final_path) : path_(final_path + ".tmp"), final_(final_path) {
    f_ = std::fopen(path_.c_str(), "wb");
    if (!f_) fail("{}: cannot create output file: {}", final_, std::strerror(errno));
    std::setvbuf(f_, nullptr, _IOFBF, size_t(1) << 20);
  }
  ~OutFile() {
    if (f_) {
      std::fclose(f_);
      std::remove(path_.c_str());  // only reached when the write did not complete
    }
  }
  void put(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("{}: write failed: {}", final_, std::strerror(errno));
    written_ += n;
  }
  void pad_to(uint64_t a) {
    static const uint8_t kZero[256] = {};
    while (written_ % a) put(kZero, size_t(std::min<uint64_t>(a - written_ % a, sizeof kZero)));
  }
  uint64_t written() const { return written_; }
  // Closes and renames onto the final path.
  void commit() {
    std::FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) {
      std::remove(path_.c_str());
      fail("{}: write failed: {}", final_, std::strerror(errno));
    }
    std::error_code ec;
    std::filesystem::rename(path_, final_, ec);
    if (ec) {
      std::remove(path_.c_str());
      fail("{}: cannot move the finished file into place: {}", final_, ec.message());
    }
  }

 private:
  std::string path_, final_;
  std::FILE* f_ = nullptr;
  uint64_t written_ = 0;
};

// Encodes rows [r0, r1) of source tensor `i` as `type` into `out` (row-major), adding squared
// error / squared source norms to *err / *ref. Parallel over rows.
void encode_rows(const TensorSource& src, size_t i, QType type, int64_t r0, int64_t r1, uint8_t* out,
                 bool measure, double* err, double* ref) {
  const int64_t cols = src.tensors()[i].cols();
  const size_t rb = row_bytes(type, cols);
  std::exception_ptr failure;
  std::mutex failure_mu;
  double e_sum = 0, r_sum = 0;
#pragma omp parallel reduction(+ : e_sum, r_sum)
  {
    std::vector<float> x(static_cast<size_t>(cols)), y(measure ? static_cast<size_t>(cols) : 0);
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = r0; r < r1; ++r) {
      try {
        src.read_rows(i, r, 1, x.data());
        uint8_t* q = out + size_t(r - r0) * rb;
        quantize_row(type, x.data(), q, cols);
        if (measure) {
          dequantize_row(type, q, y.data(), cols);
          double e = 0, s = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const double d = double(y[size_t(c)]) - double(x[size_t(c)]);
            e += d * d;
            s += double(x[size_t(c)]) * double(x[size_t(c)]);
          }
          e_sum += e;
          r_sum += s;
        }
      } catch (...) {
        std::lock_guard lock(failure_mu);
        if (!failure) failure = std::current_exception();
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
  *err += e_sum;
  *ref += r_sum;
}

}  // namespace

QuantizeReport write_gguf(const TensorSource& src, const std::vector<QType>& types,
                          const std::vector<size_t>& order, const GgufMetadata& metadata,
                          const std::string& path, const WriteOptions& opts) {
  const auto t_start = std::chrono::steady_clock::now();
  const auto& tensors = src.tensors();
  SLM_CHECK(types.size() == tensors.size(), "write_gguf: {} types for {} tensors", types.size(), tensors.size());

  gguf::Writer w;
  for (const auto& [k, v] : metadata) w.set(k, v);
  uint64_t total_elems = 0;
  QuantizeReport rep;
  for (size_t i : order) {
    SLM_CHECK(i < tensors.size(), "write_gguf: tensor index {} out of range", i);
    const SourceTensor& t = tensors[i];
    SLM_CHECK(t.cols() % qtype_info(types[i]).block_elems == 0,
              "{}: tensor '{}' has rows of {} values, not a multiple of the {} block size {}", src.describe(),
              t.name, t.cols(), qtype_name(types[i]), qtype_info(types[i]).block_elems);
    const bool copy = types[i] == t.type && src.raw(i) != nullptr;
    SLM_CHECK(copy || is_float_type(t.type) || src.raw(i) == nullptr,
              "{}: tensor '{}' is {}; only F32, F16 and BF16 tensors can be converted to {} (re-quantizing "
              "quantized weights would compound the error: start from the F32/F16/BF16 model)",
              src.describe(), t.name, qtype_name(t.type), qtype_name(types[i]));
    w.add_tensor_info(t.name, types[i], t.ne);
    total_elems += uint64_t(t.cols()) * uint64_t(t.rows());
    rep.src_bytes += row_bytes(t.type, t.cols()) * uint64_t(t.rows());
  }
  const std::vector<uint8_t> header = w.header_bytes();
  const std::vector<uint64_t> offsets = w.data_offsets();

  OutFile out(path);
  out.put(header.data(), header.size());
  uint64_t done_elems = 0;
  const uint64_t alignment = metadata.empty() ? 32 : [&] {
    for (const auto& [k, v] : metadata)
      if (k == "general.alignment") return uint64_t(v.u);
    return uint64_t(32);
  }();
  std::vector<uint8_t> buf;
  for (size_t n = 0; n < order.size(); ++n) {
    const size_t i = order[n];
    const SourceTensor& t = tensors[i];
    const QType type = types[i];
    const int64_t rows = t.rows(), cols = t.cols();
    const size_t rb = row_bytes(type, cols);
    SLM_CHECK(out.written() == offsets[n], "write_gguf: tensor '{}' would start at {} instead of {}", t.name,
              out.written(), offsets[n]);
    TensorReport tr{t.name, t.type, type, t.ne, uint64_t(rb) * uint64_t(rows), 0.0};
    if (opts.progress) opts.progress(done_elems, total_elems, t.name);
    if (type == t.type && src.raw(i)) {
      out.put(src.raw(i), size_t(tr.bytes));  // kept as stored: bit-exact, no error
      done_elems += uint64_t(rows) * uint64_t(cols);
    } else {
      // Rows in chunks of ~4M values: bounded memory, and progress between chunks.
      const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(cols, 1));
      double err = 0, ref = 0;
      for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const int64_t r1 = std::min(rows, r0 + chunk);
        buf.resize(rb * size_t(r1 - r0));
        encode_rows(src, i, type, r0, r1, buf.data(), opts.compute_error, &err, &ref);
        out.put(buf.data(), buf.size());
        done_elems += uint64_t(r1 - r0) * uint64_t(cols);
        if (opts.progress) opts.progress(done_elems, total_elems, t.name);
      }
      tr.rel_rms = !opts.compute_error ? std::numeric_limits<double>::quiet_NaN()
                                       : ref > 0 ? std::sqrt(err / ref) : std::sqrt(err);
    }
    out.pad_to(alignment);
    rep.tensors.push_back(std::move(tr));
  }
  if (opts.progress) opts.progress(total_elems, total_elems, "");
  rep.out_bytes = out.written();
  out.commit();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return rep;
}

QuantizeReport quantize_gguf_file(const std::string& input, const std::string& output,
                                  const QuantizeOptions& opts) {
  auto mix = mixture_from_name(opts.type, opts.pure);
  if (!mix) {
    std::string names;
    for (const std::string& n : mixture_names()) names += (names.empty() ? "" : ", ") + n;
    fail("unknown quantization type '{}' (known: {})", opts.type, names);
  }
  auto f = gguf::File::open(input);
  GgufTensorSource src(*f);

  MixtureContext ctx;
  const std::string arch = f->get_string("general.architecture").value_or("llama");
  int64_t max_block = -1;
  for (const SourceTensor& t : src.tensors()) max_block = std::max(max_block, block_number(t.name));
  ctx.n_layers = f->get_int(arch + ".block_count").value_or(max_block + 1);
  ctx.n_heads = f->get_int(arch + ".attention.head_count").value_or(1);
  ctx.n_kv_heads = f->get_int(arch + ".attention.head_count_kv").value_or(ctx.n_heads);
  ctx.tied_embeddings = f->find_tensor("output.weight") == nullptr;

  const std::vector<QType> types = plan_tensor_types(src, *mix, ctx);
  // Only the tensors that change type need float rows; name the first one that cannot give them.
  for (size_t i = 0; i < types.size(); ++i) {
    const SourceTensor& t = src.tensors()[i];
    if (types[i] != t.type && !is_float_type(t.type))
      fail("{}: tensor '{}' is {}: slmrun quantize needs an F32, F16 or BF16 model as input (re-quantizing "
           "quantized weights would compound the error)",
           input, t.name, qtype_name(t.type));
  }
  std::vector<std::string> names;
  for (const SourceTensor& t : src.tensors()) names.push_back(t.name);
  QuantizeReport rep = write_gguf(src, types, llama_quantize_order(names),
                                  quantized_metadata(f->metadata(), *mix), output, opts.write);
  rep.mixture = mix->name;
  return rep;
}

}  // namespace slm
