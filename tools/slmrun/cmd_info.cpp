// `slmrun info`: GGUF metadata (long arrays abbreviated) and the tensor table.
#include <cstdio>

#include "core/error.h"
#include "formats/gguf.h"
#include "tools/slmrun/common.h"

namespace slm::cli {
namespace {

std::string show_value(const gguf::Value& v, int depth = 0) {
  using gguf::ValueType;
  switch (v.type) {
    case ValueType::STRING: {
      std::string s = v.str.size() > 120 ? v.str.substr(0, 120) + "..." : v.str;
      for (char& ch : s)
        if (ch == '\n') ch = ' ';
      return fmt::format("\"{}\"", s);
    }
    case ValueType::BOOL: return v.u ? "true" : "false";
    case ValueType::F32:
    case ValueType::F64: return fmt::format("{}", v.f);
    case ValueType::ARRAY: {
      std::string s = fmt::format("[{} x {}]", v.items.size(), gguf::value_type_name(v.elem_type));
      if (depth == 0 && !v.items.empty()) {
        s += " {";
        for (size_t i = 0; i < v.items.size() && i < 6; ++i) s += (i ? ", " : "") + show_value(v.items[i], depth + 1);
        if (v.items.size() > 6) s += ", ...";
        s += "}";
      }
      return s;
    }
    default:
      if (auto i = v.as_int()) return fmt::format("{}", *i);
      return fmt::format("{}", v.u);
  }
}

void info(const std::string& path) {
  auto f = gguf::File::open(path);
  std::printf("file: %s\nformat: GGUF v%u, %zu bytes, alignment %llu, data at offset %llu\n", path.c_str(),
              f->version(), f->file_size(), (unsigned long long)f->alignment(),
              (unsigned long long)f->data_offset());
  std::printf("\nmetadata (%zu keys):\n", f->metadata().size());
  for (const auto& [k, v] : f->metadata())
    std::printf("  %-44s %-7s %s\n", k.c_str(), std::string(gguf::value_type_name(v.type)).c_str(),
                show_value(v).c_str());
  std::printf("\ntensors (%zu):\n  %-36s %-7s %-22s %14s\n", f->tensors().size(), "name", "type", "shape", "bytes");
  uint64_t total = 0;
  for (const gguf::TensorInfo& t : f->tensors()) {
    std::printf("  %-36s %-7s %-22s %14llu\n", t.name.c_str(), std::string(qtype_name(t.type)).c_str(),
                fmt::format("[{}]", fmt::join(t.ne, ", ")).c_str(), (unsigned long long)t.nbytes);
    total += t.nbytes;
  }
  std::printf("  total tensor bytes: %llu\n", (unsigned long long)total);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("info", "print a model's metadata and tensor table");
  c->add_option("-m,--model", *path, "model file (GGUF)")->required();
  c->callback([path] { info(*path); });
}

}  // namespace slm::cli
