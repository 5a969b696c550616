// TokenizerSpec from GGUF `tokenizer.ggml.*` metadata: every key type-checked, array lengths and
// token ids validated, errors naming the file and key. Kept apart from tokenizer.cpp so that
// tokenizers built from a spec do not pull in the GGUF reader.
#include <climits>
#include <cmath>

#include "core/error.h"
#include "formats/gguf.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_internal.h"

namespace slm {
namespace {

class Keys {
 public:
  explicit Keys(const gguf::File& f) : f_(f) {}

  std::optional<std::string> str(const char* key, bool required) const {
    const gguf::Value* v = get(key, required);
    if (!v) return std::nullopt;
    expect(key, *v, gguf::ValueType::STRING);
    return v->str;
  }

  std::optional<bool> boolean(const char* key) const {
    const gguf::Value* v = get(key, false);
    if (!v) return std::nullopt;
    expect(key, *v, gguf::ValueType::BOOL);
    return v->u != 0;
  }

  std::optional<int32_t> id(const char* key, size_t n_vocab) const {
    const gguf::Value* v = get(key, false);
    if (!v) return std::nullopt;
    const std::optional<int64_t> i = v->as_int();
    if (!i)
      fail("{}: {} has type {}, expected an integer", f_.path(), key,
           gguf::value_type_name(v->type));
    if (*i < 0 || uint64_t(*i) >= n_vocab)
      fail("{}: {} = {} is out of range for a vocabulary of {} tokens", f_.path(), key, *i,
           n_vocab);
    return int32_t(*i);
  }

  // The items of an array key; nullptr when absent and not required.
  const std::vector<gguf::Value>* array(const char* key, bool required) const {
    const gguf::Value* v = get(key, required);
    if (!v) return nullptr;
    expect(key, *v, gguf::ValueType::ARRAY);
    return &v->items;
  }

  std::vector<std::string> strings(const char* key, bool required) const {
    std::vector<std::string> out;
    const auto* items = array(key, required);
    if (!items) return out;
    out.reserve(items->size());
    for (size_t i = 0; i < items->size(); ++i) {
      const gguf::Value& it = (*items)[i];
      if (it.type != gguf::ValueType::STRING)
        fail("{}: {}[{}] has type {}, expected string", f_.path(), key, i,
             gguf::value_type_name(it.type));
      out.push_back(it.str);
    }
    return out;
  }

  [[noreturn]] void bad_length(const char* key, size_t got, size_t want) const {
    fail("{}: {} has {} entries but tokenizer.ggml.tokens has {}", f_.path(), key, got, want);
  }
  const std::string& path() const { return f_.path(); }

 private:
  const gguf::Value* get(const char* key, bool required) const {
    const gguf::Value* v = f_.find(key);
    if (!v && required) fail("{}: missing tokenizer metadata key {}", f_.path(), key);
    return v;
  }
  void expect(const char* key, const gguf::Value& v, gguf::ValueType t) const {
    if (v.type != t)
      fail("{}: {} has type {}, expected {}", f_.path(), key, gguf::value_type_name(v.type),
           gguf::value_type_name(t));
  }
  const gguf::File& f_;
};

}  // namespace

TokenizerSpec Tokenizer::spec_from_gguf(const gguf::File& f) {
  const Keys k(f);
  TokenizerSpec s;
  s.model = *k.str("tokenizer.ggml.model", true);
  s.pre = k.str("tokenizer.ggml.pre", false).value_or("");
  s.tokens = k.strings("tokenizer.ggml.tokens", true);
  const size_t n = s.tokens.size();
  SLM_CHECK(n > 0, "{}: tokenizer.ggml.tokens is empty", f.path());
  SLM_CHECK(n <= size_t(INT32_MAX), "{}: tokenizer.ggml.tokens has {} entries, too many", f.path(),
            n);

  if (const auto* scores = k.array("tokenizer.ggml.scores", false)) {
    if (scores->size() != n) k.bad_length("tokenizer.ggml.scores", scores->size(), n);
    s.scores.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const std::optional<double> d = (*scores)[i].as_double();
      SLM_CHECK(d && !std::isnan(*d), "{}: tokenizer.ggml.scores[{}] is not a number", f.path(),
                i);
      s.scores.push_back(float(*d));
    }
  }
  if (const auto* types = k.array("tokenizer.ggml.token_type", false)) {
    if (types->size() != n) k.bad_length("tokenizer.ggml.token_type", types->size(), n);
    s.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const std::optional<int64_t> t = (*types)[i].as_int();
      SLM_CHECK(t && *t >= 0 && *t <= int64_t(TokenType::Byte),
                "{}: tokenizer.ggml.token_type[{}] is not a valid token type (0..6)", f.path(), i);
      s.types.push_back(TokenType(*t));
    }
  }
  s.merges = k.strings("tokenizer.ggml.merges", false);

  s.bos = k.id("tokenizer.ggml.bos_token_id", n);
  s.eos = k.id("tokenizer.ggml.eos_token_id", n);
  s.eot = k.id("tokenizer.ggml.eot_token_id", n);
  s.eom = k.id("tokenizer.ggml.eom_token_id", n);
  s.unk = k.id("tokenizer.ggml.unknown_token_id", n);
  s.pad = k.id("tokenizer.ggml.padding_token_id", n);
  s.add_bos = k.boolean("tokenizer.ggml.add_bos_token");
  s.add_eos = k.boolean("tokenizer.ggml.add_eos_token");
  s.add_space_prefix = k.boolean("tokenizer.ggml.add_space_prefix");
  tok::detect_special_ids(s);
  return s;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  TokenizerSpec spec = spec_from_gguf(f);
  try {
    return from_spec(std::move(spec));
  } catch (const Error& e) {
    fail("{}: {}", f.path(), e.what());
  }
}

}  // namespace slm
