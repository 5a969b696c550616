// tokenizer.json / tokenizer_config.json -> TokenizerSpec (see hf_tokenizer.h). Ids and sizes
// come from untrusted JSON: every id is range-checked before it sizes or indexes anything.
#include "formats/hf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace slm {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string_view kLlama3PretokenizerRegex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

// Far above any real vocabulary (Llama 3: 128256), low enough that a corrupt id cannot make us
// allocate gigabytes.
constexpr int64_t kMaxVocab = 1 << 21;

int32_t token_id(const json& v, std::string_view what, std::string_view ctx) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxVocab)
    fail("{}: {}: invalid token id {}", what, ctx, v.dump());
  return int32_t(v.get<int64_t>());
}

// Lenient field reads for the optional, descriptive parts of tokenizer.json: a missing, null or
// differently typed value gives the default (the parts that matter are checked explicitly).
bool jbool(const json& o, const char* key, bool def) {
  auto it = o.find(key);
  return it != o.end() && it->is_boolean() ? it->get<bool>() : def;
}
std::string jstr(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Visits a pre-tokenizer / post-processor / decoder and every member of a "Sequence".
template <class F>
void visit(const json& node, const char* list_key, F&& f) {
  if (!node.is_object()) return;
  f(node);
  if (auto it = node.find(list_key); it != node.end() && it->is_array())
    for (const auto& c : *it) visit(c, list_key, f);
}

// bos_token / eos_token in tokenizer_config.json: a string or an AddedToken object.
std::optional<std::string> token_text(const json& cfg, const char* key, std::string_view what) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  fail("{}: '{}' must be a string or an object with 'content'", what, key);
}

}  // namespace

namespace {
TokenizerSpec parse_impl(std::string_view tokenizer_json, std::string_view tokenizer_config,
                         std::string_view what) {
  const json j = parse_json(tokenizer_json, what);
  SLM_CHECK(j.is_object(), "{}: expected a JSON object", what);
  auto mit = j.find("model");
  SLM_CHECK(mit != j.end() && mit->is_object(), "{}: missing 'model' object", what);
  const json& model = *mit;
  auto type = model.find("type");
  SLM_CHECK(type != model.end() && type->is_string(), "{}: model.type missing", what);
  if (type->get<std::string>() != "BPE")
    fail("{}: unsupported tokenizer model type '{}' (only BPE is supported)", what,
         type->get<std::string>());

  // Vocabulary: base vocab, then added tokens (which may extend it or restate ids).
  auto vit = model.find("vocab");
  SLM_CHECK(vit != model.end() && vit->is_object(), "{}: model.vocab must be an object", what);
  struct Entry {
    std::string text;
    TokenType type = TokenType::Normal;
    bool set = false;
  };
  std::vector<Entry> entries;
  auto put = [&](int32_t id, std::string text, TokenType tt, bool added) {
    if (size_t(id) >= entries.size()) entries.resize(size_t(id) + 1);
    Entry& e = entries[size_t(id)];
    if (e.set && !added) fail("{}: token id {} used twice ('{}' and '{}')", what, id, e.text, text);
    e = Entry{std::move(text), tt, true};
  };
  for (auto it = vit->begin(); it != vit->end(); ++it) put(token_id(it.value(), what, "model.vocab"), it.key(), TokenType::Normal, false);
  if (auto at = j.find("added_tokens"); at != j.end() && !at->is_null()) {
    SLM_CHECK(at->is_array(), "{}: added_tokens must be an array", what);
    for (const auto& t : *at) {
      SLM_CHECK(t.is_object() && t.contains("id") && t.contains("content") && t["content"].is_string(),
                "{}: added_tokens entry needs 'id' and 'content': {}", what, t.dump());
      const bool special = jbool(t, "special", false);
      put(token_id(t["id"], what, "added_tokens"), t["content"].get<std::string>(),
          special ? TokenType::Control : TokenType::UserDefined, true);
    }
  }
  SLM_CHECK(!entries.empty(), "{}: empty vocabulary", what);

  TokenizerSpec s;
  s.tokens.reserve(entries.size());
  s.types.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].set) {
      s.tokens.push_back(std::move(entries[i].text));
      s.types.push_back(entries[i].type);
    } else {
      // Holes in the id space are filled as llama.cpp's converter does.
      s.tokens.push_back("[PAD" + std::to_string(i) + "]");
      s.types.push_back(TokenType::Unused);
    }
  }
  auto find_id = [&](const std::string& text) -> std::optional<int32_t> {
    // Added/special tokens sit at the end; search from the back to prefer them.
    for (size_t i = s.tokens.size(); i-- > 0;)
      if (s.tokens[i] == text && s.types[i] != TokenType::Unused) return int32_t(i);
    return std::nullopt;
  };

  // Merges: "left right" strings (older files) or ["left", "right"] pairs (tokenizers >= 0.20).
  if (auto mg = model.find("merges"); mg != model.end() && !mg->is_null()) {
    SLM_CHECK(mg->is_array(), "{}: model.merges must be an array", what);
    s.merges.reserve(mg->size());
    for (const auto& m : *mg) {
      if (m.is_string()) {
        const std::string& str = m.get_ref<const std::string&>();
        SLM_CHECK(str.find(' ', 1) != std::string::npos, "{}: merge '{}' has no separating space", what, str);
        s.merges.push_back(str);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        s.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        fail("{}: invalid merge entry {}", what, m.dump());
      }
    }
  }

  // Byte-level (GPT-2 / Llama 3) or SentencePiece-style (byte_fallback) BPE.
  bool byte_level = false, gpt2_regex = false;
  std::string split_regex;
  auto scan_pre = [&](const json& n) {
    const std::string t = jstr(n, "type");
    if (t == "ByteLevel") {
      byte_level = true;
      if (jbool(n, "use_regex", true)) gpt2_regex = true;
    } else if (t == "Split") {
      if (auto p = n.find("pattern"); p != n.end() && p->is_object()) {
        if (auto r = p->find("Regex"); r != p->end() && r->is_string()) split_regex = r->get<std::string>();
      }
    }
  };
  if (auto pt = j.find("pre_tokenizer"); pt != j.end()) visit(*pt, "pretokenizers", scan_pre);
  if (auto dec = j.find("decoder"); dec != j.end())
    visit(*dec, "decoders", [&](const json& n) {
      if (jstr(n, "type") == "ByteLevel") byte_level = true;
    });
  const bool byte_fallback = jbool(model, "byte_fallback", false);
  if (byte_level) {
    s.model = "gpt2";
    if (split_regex == kLlama3PretokenizerRegex) s.pre = "llama-bpe";
    else if (split_regex.empty() && gpt2_regex) s.pre = "gpt2";
    else s.pre = "default";
    s.add_space_prefix = false;
  } else if (byte_fallback) {
    s.model = "llama";
    s.pre = "default";
    s.scores.assign(s.tokens.size(), 0.f);
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      const std::string& t = s.tokens[i];
      if (s.types[i] == TokenType::Normal && t.size() == 6 && t.rfind("<0x", 0) == 0 && t[5] == '>')
        s.types[i] = TokenType::Byte;
      // SentencePiece BPE merges by score = -rank, and the rank of a piece is its id.
      if (s.types[i] == TokenType::Normal) s.scores[i] = -float(i);
    }
    bool prepend = false;
    if (auto nz = j.find("normalizer"); nz != j.end())
      visit(*nz, "normalizers", [&](const json& n) {
        if (jstr(n, "type") == "Prepend") prepend = true;
      });
    s.add_space_prefix = prepend;
  } else {
    fail("{}: BPE tokenizer is neither byte-level nor byte-fallback: not supported", what);
  }
  if (auto u = model.find("unk_token"); u != model.end() && u->is_string()) {
    s.unk = find_id(u->get<std::string>());
    if (s.unk) s.types[size_t(*s.unk)] = TokenType::Unknown;
  }

  // Post-processor: TemplateProcessing "single" = [SpecialToken BOS?, Sequence A, SpecialToken EOS?].
  std::optional<std::string> tmpl_first, tmpl_last;
  bool have_template = false;
  if (auto pp = j.find("post_processor"); pp != j.end())
    visit(*pp, "processors", [&](const json& n) {
      if (jstr(n, "type") != "TemplateProcessing") return;
      auto single = n.find("single");
      if (single == n.end() || !single->is_array() || single->empty()) return;
      have_template = true;
      auto special_id = [](const json& e) -> std::optional<std::string> {
        if (auto st = e.find("SpecialToken"); st != e.end() && st->is_object())
          if (auto id = st->find("id"); id != st->end() && id->is_string()) return id->get<std::string>();
        return std::nullopt;
      };
      tmpl_first = special_id(single->front());
      if (single->size() > 1) tmpl_last = special_id(single->back());
    });

  // tokenizer_config.json: bos/eos/pad text and explicit add_bos_token/add_eos_token.
  std::optional<std::string> bos_text, eos_text, pad_text;
  std::optional<bool> cfg_add_bos, cfg_add_eos;
  if (!tokenizer_config.empty()) {
    const std::string cwhat = std::string(what) + " (tokenizer_config)";
    const json c = parse_json(tokenizer_config, cwhat);
    SLM_CHECK(c.is_object(), "{}: expected a JSON object", cwhat);
    bos_text = token_text(c, "bos_token", cwhat);
    eos_text = token_text(c, "eos_token", cwhat);
    pad_text = token_text(c, "pad_token", cwhat);
    if (auto b = c.find("add_bos_token"); b != c.end() && b->is_boolean()) cfg_add_bos = b->get<bool>();
    if (auto e = c.find("add_eos_token"); e != c.end() && e->is_boolean()) cfg_add_eos = e->get<bool>();
  }
  if (!bos_text && tmpl_first) bos_text = tmpl_first;
  auto resolve = [&](const std::optional<std::string>& text, const char* role) -> std::optional<int32_t> {
    if (!text) return std::nullopt;
    auto id = find_id(*text);
    if (!id) fail("{}: {} token '{}' is not in the vocabulary", what, role, *text);
    return id;
  };
  s.bos = resolve(bos_text, "bos");
  s.eos = resolve(eos_text, "eos");
  s.pad = resolve(pad_text, "pad");
  if (cfg_add_bos) s.add_bos = *cfg_add_bos;
  else if (have_template) s.add_bos = tmpl_first.has_value() && tmpl_first == bos_text;
  if (cfg_add_eos) s.add_eos = *cfg_add_eos;
  else if (have_template) s.add_eos = tmpl_last.has_value() && tmpl_last == eos_text;
  // End-of-turn markers of the Llama 3 family, when the vocabulary has them.
  if (auto id = find_id("<|eot_id|>"); id && s.types[size_t(*id)] == TokenType::Control) s.eot = id;
  if (auto id = find_id("<|eom_id|>"); id && s.types[size_t(*id)] == TokenType::Control) s.eom = id;
  return s;
}
}  // namespace

TokenizerSpec read_hf_tokenizer(const std::string& tokenizer_json_path,
                                const std::optional<std::string>& tokenizer_config_path) {
  const std::string tj = read_text_file(tokenizer_json_path);
  const std::string tc = tokenizer_config_path ? read_text_file(*tokenizer_config_path) : std::string();
  return parse_hf_tokenizer(tj, tc, tokenizer_json_path);
}

TokenizerSpec read_hf_tokenizer_dir(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  std::optional<std::string> cfg;
  if (fs::exists(d / "tokenizer_config.json", ec)) cfg = (d / "tokenizer_config.json").string();
  return read_hf_tokenizer((d / "tokenizer.json").string(), cfg);
}

TokenizerSpec parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                 std::string_view what) {
  // Every access above checks types first; this turns anything missed into the one error type.
  try {
    return parse_impl(tokenizer_json, tokenizer_config, what);
  } catch (const json::exception& e) {
    fail("{}: unexpected JSON structure: {}", what, e.what());
  }
}

}  // namespace slm
