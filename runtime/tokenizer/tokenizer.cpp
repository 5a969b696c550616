// Tokenizer base: spec validation, the end-of-generation set, special-token splitting and the
// model-independent helpers (decode, lookups); from_spec picks the concrete tokenizer.
#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/error.h"
#include "runtime/tokenizer/tokenizer_internal.h"

namespace slm {
namespace tok {

std::optional<PreKind> pre_kind(std::string_view pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return PreKind::Llama3;
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2") return PreKind::Gpt2;
  return std::nullopt;
}

std::string_view TextIndex::Slot::text() const {
  if (len <= kInline) return {bytes, len};
  const char* p;
  std::memcpy(&p, bytes, sizeof p);
  return {p, len};
}

void TextIndex::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;  // load factor <= 1/2: short linear probes
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  used_ = 0;
  for (const Slot& s : old)
    if (s.id >= 0) place(s.text(), s.hash, s.id);
}

void TextIndex::place(std::string_view text, uint32_t hash, int32_t id) {
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.id < 0) {
      s.hash = hash;
      s.id = id;
      s.len = uint32_t(text.size());
      if (text.size() <= kInline) {
        std::memcpy(s.bytes, text.data(), text.size());
      } else {
        const char* p = text.data();
        std::memcpy(s.bytes, &p, sizeof p);
      }
      ++used_;
      return;
    }
    if (s.hash == hash && s.text() == text) return;  // first id wins
  }
}

void TextIndex::insert(std::string_view text, int32_t id) {
  SLM_ASSERT(id >= 0 && text.size() <= UINT32_MAX);
  if (2 * (used_ + 1) > slots_.size()) reserve(std::max<size_t>(8, 2 * used_ + 2));
  place(text, hash(text), id);
}

int32_t TextIndex::find(std::string_view text) const { return find(text, {}, hash(text)); }

void TextIndex::prefetch(uint32_t hash) const {
  if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
}

int32_t TextIndex::find(std::string_view a, std::string_view b, uint32_t hash) const {
  if (slots_.empty()) return -1;
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.hash != hash || s.len != a.size() + b.size()) continue;
    const std::string_view t = s.text();
    if (t.substr(0, a.size()) == a && t.substr(a.size()) == b) return s.id;
  }
}

void detect_special_ids(TokenizerSpec& spec) {
  auto find = [&](std::initializer_list<std::string_view> texts) -> std::optional<int32_t> {
    for (std::string_view t : texts)
      for (size_t i = 0; i < spec.tokens.size(); ++i)
        if (spec.tokens[i] == t) return int32_t(i);
    return std::nullopt;
  };
  if (!spec.eot) spec.eot = find({"<|eot_id|>", "<|im_end|>", "<end_of_turn>"});
  if (!spec.eom) spec.eom = find({"<|eom_id|>"});
}

}  // namespace tok

namespace {

// Control-token texts that end a generation even when the metadata does not name them.
constexpr std::string_view kEndMarkers[] = {"<|eot_id|>",   "<|eom_id|>",    "<|end_of_text|>",
                                            "</s>",         "<|im_end|>",    "<|endoftext|>",
                                            "<end_of_turn>"};

}  // namespace

Tokenizer::Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  const size_t n = spec_.tokens.size();
  SLM_CHECK(n > 0, "tokenizer: the vocabulary is empty");
  SLM_CHECK(n <= size_t(INT32_MAX), "tokenizer: {} tokens is too many", n);
  SLM_CHECK(spec_.scores.empty() || spec_.scores.size() == n,
            "tokenizer: {} scores for {} tokens", spec_.scores.size(), n);
  SLM_CHECK(spec_.types.empty() || spec_.types.size() == n,
            "tokenizer: {} token types for {} tokens", spec_.types.size(), n);
  for (size_t i = 0; i < spec_.types.size(); ++i) {
    const auto t = int32_t(spec_.types[i]);
    SLM_CHECK(t >= 0 && t <= int32_t(TokenType::Byte), "tokenizer: token {} has invalid type {}",
              i, t);
  }
  tok::detect_special_ids(spec_);
  const std::pair<const char*, const std::optional<int32_t>*> ids[] = {
      {"bos", &spec_.bos}, {"eos", &spec_.eos}, {"eot", &spec_.eot},
      {"eom", &spec_.eom}, {"unknown", &spec_.unk}, {"padding", &spec_.pad}};
  for (const auto& [name, id] : ids)
    if (*id)
      SLM_CHECK(**id >= 0 && size_t(**id) < n, "tokenizer: {} token id {} out of range [0, {})",
                name, **id, n);

  text_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) text_to_id_.insert(spec_.tokens[i], int32_t(i));

  for (const auto* id : {&spec_.eos, &spec_.eot, &spec_.eom})
    if (*id) eog_.push_back(**id);
  for (size_t i = 0; i < spec_.types.size(); ++i)
    if (spec_.types[i] == TokenType::Control &&
        std::find(std::begin(kEndMarkers), std::end(kEndMarkers), spec_.tokens[i]) !=
            std::end(kEndMarkers))
      eog_.push_back(int32_t(i));
  std::sort(eog_.begin(), eog_.end());
  eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());

  // Only tokens whose text is non-empty valid UTF-8 can be split out: a match then always starts
  // and ends on a character boundary of the (validated) input, so every raw fragment stays valid.
  for (size_t i = 0; i < spec_.types.size(); ++i) {
    const TokenType t = spec_.types[i];
    if ((t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) &&
        !spec_.tokens[i].empty() && is_valid_utf8(spec_.tokens[i]))
      specials_.push_back(int32_t(i));
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
    return spec_.tokens[size_t(a)].size() > spec_.tokens[size_t(b)].size();
  });
}

std::unique_ptr<Tokenizer> Tokenizer::from_spec(TokenizerSpec spec) {
  if (spec.model == "gpt2") return tok::make_bpe(std::move(spec));
  if (spec.model == "llama") return tok::make_spm(std::move(spec));
  fail("tokenizer: unsupported tokenizer model '{}' (supported: 'gpt2' byte-level BPE, 'llama' "
       "SentencePiece)",
       spec.model);
}

TokenType Tokenizer::token_type(int32_t id) const {
  check_id(id);
  return spec_.types.empty() ? TokenType::Normal : spec_.types[size_t(id)];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  check_id(id);
  return spec_.tokens[size_t(id)];
}

void Tokenizer::check_id(int32_t id) const {
  SLM_CHECK(id >= 0 && id < n_vocab(), "tokenizer: token id {} out of range [0, {})", id,
            n_vocab());
}

void Tokenizer::check_utf8(std::string_view text) {
  size_t bad = 0;
  if (!is_valid_utf8(text, &bad))
    fail("tokenizer: input text is not valid UTF-8 at byte {} (0x{:02X})", bad,
         unsigned(static_cast<unsigned char>(text[bad])));
}

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text,
                                                          bool parse_special) const {
  std::vector<Fragment> frags, next;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  // Like llama.cpp: each special token in turn (longest first) claims all its occurrences in the
  // fragments that are still raw text.
  for (int32_t id : specials_) {
    if (!parse_special && spec_.types[size_t(id)] != TokenType::UserDefined) continue;
    const std::string_view st = spec_.tokens[size_t(id)];
    next.clear();
    bool hit_any = false;
    for (const Fragment& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.off;
      const size_t end = f.off + f.len;
      while (end - pos >= st.size()) {
        const size_t hit = text.substr(pos, end - pos).find(st);
        if (hit == std::string_view::npos) break;
        if (hit > 0) next.push_back({-1, pos, hit});
        next.push_back({id, pos + hit, st.size()});
        pos += hit + st.size();
        hit_any = true;
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    if (hit_any) frags.swap(next);
  }
  return frags;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  bool strip = strips_leading_space();
  for (int32_t id : ids) {
    std::string piece = token_bytes(id, render_special);
    if (strip && token_type(id) != TokenType::Control) {
      if (!piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      strip = false;
    }
    out += piece;
  }
  return out;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = text_to_id_.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool Tokenizer::adds_bos() const {
  if (!spec_.bos) return false;
  if (spec_.add_bos) return *spec_.add_bos;
  // llama.cpp's defaults: SentencePiece and Llama 3 vocabularies add BOS, other BPE ones do not.
  return spec_.model == "llama" || tok::pre_kind(spec_.pre) == tok::PreKind::Llama3;
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(eog_.begin(), eog_.end(), id);
}

}  // namespace slm
