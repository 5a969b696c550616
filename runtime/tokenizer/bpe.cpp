// Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"; Llama 3): GPT-2 byte<->code point map,
// regex pre-tokenizer (PCRE2, UTF + UCP, JIT when available), whole-word lookup (ignore_merges)
// and rank-ordered merging with a heap over a linked list of symbols (llama.md §5).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#include "core/error.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_internal.h"

namespace slm {
namespace {

// GPT-2 bytes_to_unicode: printable bytes keep their code point, the other 68 bytes take
// U+0100 + n in byte order. Every mapped code point is below U+0144.
struct ByteMap {
  static constexpr uint32_t kCodePoints = 0x144;
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, kCodePoints> to_byte{};
  ByteMap() {
    to_byte.fill(-1);
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = int16_t(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// The pre-tokenizer patterns (llama.md §5.2). Two deliberate spellings, both to match llama.cpp's
// hand-written splitter rather than a generic regex engine's Unicode tables:
// - \s is spelled out as the Unicode White_Space set (llama.cpp's table; PCRE2 10.42's UCP \s
//   still includes U+180E, which left White_Space in Unicode 6.3);
// - Llama 3's case-insensitive contractions are ASCII-only ('S, 'LL ...): with Unicode case
//   folding "'ſ" (U+017F) would also match 's.
#define SLM_WS                                          \
  "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
  "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kLlama3Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
    "|\\p{N}{1,3}"
    "| ?[^" SLM_WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" SLM_WS "]*[\\r\\n]+"
    "|[" SLM_WS "]+(?![^" SLM_WS "])"
    "|[" SLM_WS "]+";
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d"
    "| ?\\p{L}+"
    "| ?\\p{N}+"
    "| ?[^" SLM_WS "\\p{L}\\p{N}]+"
    "|[" SLM_WS "]+(?![^" SLM_WS "])"
    "|[" SLM_WS "]+";
#undef SLM_WS

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return "unknown error";
  return reinterpret_cast<const char*>(buf);
}

struct Merge {
  int32_t rank, result;
};

// Open-addressing map from a (left id, right id) pair to its merge, sized once for all merges.
class PairIndex {
 public:
  void reserve(size_t n) {
    size_t bits = 4;
    while ((size_t(1) << bits) < n + n / 2) ++bits;  // load factor <= 2/3
    shift_ = 64 - int(bits);
    slots_.assign(size_t(1) << bits, Slot{kEmpty, {}});
  }
  // Keeps the first (lowest-rank) merge of a pair. Needs reserve() for at least as many pairs.
  void insert(uint64_t key, Merge m) {
    for (size_t i = slot(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, m};
        return;
      }
      if (slots_[i].key == key) return;
    }
  }
  void prefetch(uint64_t key) const { __builtin_prefetch(&slots_[slot(key)]); }
  const Merge* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = slot(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);  // ids are non-negative: never a real key
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Slot> slots_;
  int shift_ = 60;
};

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(TokenizerSpec spec);
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              bool parse_special) const override;
  std::string token_bytes(int32_t id, bool render_special) const override;

 private:
  struct Symbol {
    int32_t id, prev, next;
  };
  struct Candidate {  // an adjacent pair that some merge applies to
    int32_t rank, left, right, left_id, right_id, result;
  };
  struct Scratch {
    std::vector<Symbol> syms;
    std::vector<Candidate> heap;
  };

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  void encode_word(std::string_view word, std::vector<int32_t>& out, Scratch& s) const;
  template <class Emit>
  void pretokenize(std::string_view frag, pcre2_match_data* md, Emit&& emit) const;

  bool ignore_merges_ = false;
  std::vector<std::string> bytes_;  // per token: decoded bytes (text tokens) or raw text
  tok::TextIndex bytes_to_id_;  // text tokens only; views into bytes_
  std::array<int32_t, 256> byte_id_{};
  PairIndex merges_;
  std::unique_ptr<pcre2_code, CodeDeleter> re_;
};

bool is_text_type(TokenType t) { return t == TokenType::Normal || t == TokenType::Undefined; }

BpeTokenizer::BpeTokenizer(TokenizerSpec spec) : Tokenizer(std::move(spec)) {
  const auto kind = tok::pre_kind(spec_.pre);
  SLM_CHECK(kind.has_value(),
            "tokenizer: unsupported BPE pre-tokenizer '{}' (supported: llama-bpe/llama3, "
            "default/gpt2)",
            spec_.pre);
  ignore_merges_ = *kind == tok::PreKind::Llama3;

  const size_t n = spec_.tokens.size();
  bytes_.resize(n);
  bytes_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = spec_.types.empty() ? TokenType::Normal : spec_.types[i];
    if (is_text_type(t)) {
      // A text token outside the byte map (not produced by a byte-level converter) stands for
      // its own UTF-8 text.
      auto b = byte_level_decode(spec_.tokens[i]);
      bytes_[i] = b ? std::move(*b) : spec_.tokens[i];
    } else {
      bytes_[i] = spec_.tokens[i];
    }
  }
  // Control/unknown/user-defined tokens are left out: plain text must never encode to them.
  for (size_t i = 0; i < n; ++i)
    if ((spec_.types.empty() || is_text_type(spec_.types[i])) && !bytes_[i].empty())
      bytes_to_id_.insert(bytes_[i], int32_t(i));
  for (int b = 0; b < 256; ++b) {
    const char c = char(b);
    const int32_t id = bytes_to_id_.find(std::string_view(&c, 1));
    SLM_CHECK(id >= 0, "tokenizer: byte-level BPE vocabulary has no token for byte 0x{:02X}", b);
    byte_id_[size_t(b)] = id;
  }

  // Merges are resolved to token ids once; a merge whose parts or result are not tokens can never
  // fire on ids, so it is dropped. Each needs three random lookups (left, right, left+right):
  // they are done in batches, hashed and prefetched first, so that the cache misses overlap.
  SLM_CHECK(spec_.merges.size() < size_t(INT32_MAX), "tokenizer: {} merges is too many",
            spec_.merges.size());
  std::vector<std::pair<uint64_t, Merge>> resolved;
  resolved.reserve(spec_.merges.size());
  struct Pending {
    std::string_view left, right;
    uint32_t hl, hr, hj;
  };
  constexpr size_t kBatch = 32;
  std::array<Pending, kBatch> batch;
  for (size_t base = 0; base < spec_.merges.size(); base += kBatch) {
    const size_t count = std::min(kBatch, spec_.merges.size() - base);
    for (size_t k = 0; k < count; ++k) {
      const std::string_view m = spec_.merges[base + k];
      const size_t sp = m.find(' ', 1);
      SLM_CHECK(sp != std::string_view::npos, "tokenizer: merge {} ('{}') has no space",
                base + k, m);
      Pending& p = batch[k];
      p.left = m.substr(0, sp);
      p.right = m.substr(sp + 1);
      p.hl = tok::TextIndex::hash(p.left);
      p.hr = tok::TextIndex::hash(p.right);
      p.hj = tok::TextIndex::hash_extend(p.hl, p.right);
      text_to_id_.prefetch(p.hl);
      text_to_id_.prefetch(p.hr);
      text_to_id_.prefetch(p.hj);
    }
    for (size_t k = 0; k < count; ++k) {
      const Pending& p = batch[k];
      const int32_t l = text_to_id_.find(p.left, {}, p.hl);
      const int32_t rt = text_to_id_.find(p.right, {}, p.hr);
      const int32_t res = text_to_id_.find(p.left, p.right, p.hj);
      if (l >= 0 && rt >= 0 && res >= 0)
        resolved.push_back({pair_key(l, rt), Merge{int32_t(base + k), res}});
    }
  }
  // Inserting is one cache miss per merge; prefetching a few ahead overlaps them.
  merges_.reserve(resolved.size());
  constexpr size_t kAhead = 16;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (i + kAhead < resolved.size()) merges_.prefetch(resolved[i + kAhead].first);
    merges_.insert(resolved[i].first, resolved[i].second);
  }

  int err = 0;
  PCRE2_SIZE err_off = 0;
  const char* pattern = *kind == tok::PreKind::Llama3 ? kLlama3Pattern : kGpt2Pattern;
  re_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr));
  SLM_CHECK(re_ != nullptr, "tokenizer: pre-tokenizer pattern failed to compile at {}: {}",
            size_t(err_off), pcre2_message(err));
  // Without JIT support PCRE2's interpreter is used (slower, same results).
  pcre2_jit_compile(re_.get(), PCRE2_JIT_COMPLETE);
}

template <class Emit>
void BpeTokenizer::pretokenize(std::string_view frag, pcre2_match_data* md, Emit&& emit) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(frag.data());
  size_t pos = 0;
  while (pos < frag.size()) {
    // The input was validated once up front; re-checking at every match would be quadratic.
    int rc = pcre2_match(re_.get(), subject, frag.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(re_.get(), subject, frag.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                       nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      emit(frag.substr(pos));  // text no alternative covers stays one piece
      return;
    }
    SLM_CHECK(rc >= 0, "tokenizer: pre-tokenizer match failed at byte {}: {}", pos,
              pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t start = ov[0], end = ov[1];
    if (start > pos) emit(frag.substr(pos, start - pos));
    if (end == start)  // cannot happen with these patterns; never loop on an empty match
      end = start + tok::utf8_len_from_lead(static_cast<unsigned char>(frag[start]));
    emit(frag.substr(start, end - start));
    pos = end;
  }
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out,
                               Scratch& s) const {
  const auto* p = reinterpret_cast<const unsigned char*>(word.data());
  const size_t n = word.size();
  if (n == 1) {
    out.push_back(byte_id_[p[0]]);
    return;
  }
  if (ignore_merges_) {
    const int32_t id = bytes_to_id_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  auto& syms = s.syms;
  auto& heap = s.heap;
  syms.resize(n);
  for (size_t i = 0; i < n; ++i)
    syms[i] = {byte_id_[p[i]], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  // Heap order: lowest rank first, then leftmost.
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  auto candidate = [&](int32_t l, int32_t r) -> bool {
    const Merge* m = merges_.find(pair_key(syms[size_t(l)].id, syms[size_t(r)].id));
    if (!m) return false;
    heap.push_back({m->rank, l, r, syms[size_t(l)].id, syms[size_t(r)].id, m->result});
    return true;
  };
  heap.clear();
  for (size_t i = 0; i + 1 < n; ++i) candidate(int32_t(i), int32_t(i + 1));
  std::make_heap(heap.begin(), heap.end(), worse);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = syms[size_t(c.left)];
    // Stale if either side has merged since: a symbol's id changes whenever it grows.
    if (left.id != c.left_id || left.next != c.right || syms[size_t(c.right)].id != c.right_id)
      continue;
    Symbol& right = syms[size_t(c.right)];
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) syms[size_t(right.next)].prev = c.left;
    right.id = -1;
    if (left.prev >= 0 && candidate(left.prev, c.left))
      std::push_heap(heap.begin(), heap.end(), worse);
    if (left.next >= 0 && candidate(c.left, left.next))
      std::push_heap(heap.begin(), heap.end(), worse);
  }
  for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) out.push_back(syms[size_t(i)].id);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos,
                                          bool parse_special) const {
  check_utf8(text);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && adds_bos()) out.push_back(*spec_.bos);
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(re_.get(), nullptr));
  SLM_CHECK(md != nullptr, "tokenizer: out of memory for regex match data");
  Scratch scratch;
  for (const Fragment& f : split_special(text, parse_special)) {
    if (f.id >= 0) {
      out.push_back(f.id);
      continue;
    }
    pretokenize(text.substr(f.off, f.len), md.get(),
                [&](std::string_view word) { encode_word(word, out, scratch); });
  }
  if (add_bos && adds_eos()) out.push_back(*spec_.eos);
  return out;
}

std::string BpeTokenizer::token_bytes(int32_t id, bool render_special) const {
  switch (token_type(id)) {
    case TokenType::Normal:
    case TokenType::Undefined:
    case TokenType::UserDefined:
      return bytes_[size_t(id)];
    case TokenType::Control:
    case TokenType::Unknown:
      return render_special ? bytes_[size_t(id)] : std::string();
    default:  // Unused, Byte: no text in a byte-level vocabulary
      return {};
  }
}

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  const ByteMap& m = byte_map();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) append_utf8(out, m.to_cp[b]);
  return out;
}

std::optional<std::string> byte_level_decode(std::string_view text) {
  const ByteMap& m = byte_map();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const tok::Utf8Scan r = tok::utf8_scan(p + i, text.size() - i);
    if (r.kind != tok::Utf8Scan::Ok) return std::nullopt;
    const uint32_t cp = tok::utf8_decode(p + i, r.len);
    if (cp >= ByteMap::kCodePoints || m.to_byte[cp] < 0) return std::nullopt;
    out += char(m.to_byte[cp]);
    i += r.len;
  }
  return out;
}

namespace tok {
std::unique_ptr<Tokenizer> make_bpe(TokenizerSpec spec) {
  return std::make_unique<BpeTokenizer>(std::move(spec));
}
}  // namespace tok

}  // namespace slm
