// SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama"; Llama 2): characters merged
// by piece score (highest first, ties leftmost), "▁" for spaces with an optional space prefix,
// and byte fallback to <0xXX> tokens (llama.md §6).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_internal.h"

namespace slm {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

// llama.cpp's defaults for SentencePiece vocabularies whose metadata leaves the ids out.
TokenizerSpec with_spm_defaults(TokenizerSpec spec) {
  const auto n = int64_t(spec.tokens.size());
  if (!spec.unk && n > 0) spec.unk = 0;
  if (!spec.bos && n > 1) spec.bos = 1;
  if (!spec.eos && n > 2) spec.eos = 2;
  return spec;
}

// "<0xAB>" -> 0xAB; -1 if the text is not of that form.
int parse_byte_piece(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(TokenizerSpec spec);
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              bool parse_special) const override;
  std::string token_bytes(int32_t id, bool render_special) const override;

 protected:
  bool strips_leading_space() const override { return add_space_prefix_; }

 private:
  struct Symbol {
    size_t off, len;  // into the escaped fragment; len 0 once merged into its left neighbour
    int32_t prev, next;
  };
  struct Candidate {
    float score;
    int32_t left, right;
    size_t len;
  };
  void encode_fragment(std::string_view s, std::vector<int32_t>& out) const;
  float score(int32_t id) const { return spec_.scores.empty() ? 0.f : spec_.scores[size_t(id)]; }

  bool add_space_prefix_ = true;
  tok::TextIndex piece_to_id_;  // mergeable pieces only
  std::array<int32_t, 256> byte_id_{};
};

SpmTokenizer::SpmTokenizer(TokenizerSpec spec) : Tokenizer(with_spm_defaults(std::move(spec))) {
  add_space_prefix_ = spec_.add_space_prefix.value_or(true);
  for (size_t i = 0; i < spec_.scores.size(); ++i)
    SLM_CHECK(!std::isnan(spec_.scores[i]), "tokenizer: score of token {} is NaN", i);
  byte_id_.fill(-1);
  const size_t n = spec_.tokens.size();
  piece_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = spec_.types.empty() ? TokenType::Normal : spec_.types[i];
    const std::string_view text = spec_.tokens[i];
    if (t == TokenType::Byte) {
      const int b = parse_byte_piece(text);
      if (b >= 0 && byte_id_[size_t(b)] < 0) byte_id_[size_t(b)] = int32_t(i);
    } else if (t != TokenType::Control && t != TokenType::Unknown && !text.empty()) {
      // Control, unknown and byte pieces are never reached by merging plain text.
      piece_to_id_.insert(text, int32_t(i));
    }
  }
  // Vocabularies without token types still spell the byte pieces "<0xXX>".
  for (int b = 0; b < 256; ++b) {
    if (byte_id_[size_t(b)] >= 0) continue;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const int32_t id = text_to_id_.find(name);
    if (id >= 0 && token_type(id) != TokenType::Control) byte_id_[size_t(b)] = id;
  }
}

void SpmTokenizer::encode_fragment(std::string_view s, std::vector<int32_t>& out) const {
  std::vector<Symbol> syms;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const size_t l = std::min(tok::utf8_len_from_lead(p[i]), s.size() - i);
    const auto idx = int32_t(syms.size());
    syms.push_back({i, l, idx - 1, i + l < s.size() ? idx + 1 : -1});
    i += l;
  }
  if (syms.empty()) return;
  // Heap order: highest score first, then leftmost.
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Candidate> heap;
  auto candidate = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = syms[size_t(l)];
    const size_t len = a.len + syms[size_t(r)].len;
    const int32_t id = piece_to_id_.find(s.substr(a.off, len));
    if (id < 0) return;
    heap.push_back({score(id), l, r, len});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i) candidate(int32_t(i), int32_t(i + 1));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = syms[size_t(c.left)];
    Symbol& right = syms[size_t(c.right)];
    // Stale if either side changed: only a right neighbour is ever absorbed, so equal lengths
    // mean both symbols are still the ones this pair was made from.
    if (left.len == 0 || right.len == 0 || left.len + right.len != c.len) continue;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[size_t(right.next)].prev = c.left;
    candidate(left.prev, c.left);
    candidate(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) {
    const Symbol& sym = syms[size_t(i)];
    const std::string_view piece = s.substr(sym.off, sym.len);
    if (const int32_t id = piece_to_id_.find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Byte fallback: a character that is no piece becomes its UTF-8 bytes.
    for (unsigned char b : piece) {
      if (byte_id_[b] >= 0) {
        out.push_back(byte_id_[b]);
      } else {
        SLM_CHECK(spec_.unk.has_value(),
                  "tokenizer: no piece for byte 0x{:02X} and no unknown token", unsigned(b));
        out.push_back(*spec_.unk);
      }
    }
  }
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos,
                                          bool parse_special) const {
  check_utf8(text);
  std::vector<int32_t> out;
  if (add_bos && adds_bos()) out.push_back(*spec_.bos);
  bool after_special = true;  // the first fragment gets the space prefix too
  std::string escaped;
  for (const Fragment& f : split_special(text, parse_special)) {
    if (f.id >= 0) {
      out.push_back(f.id);
      after_special = true;
      continue;
    }
    escaped.clear();
    if (add_space_prefix_ && after_special) escaped += kSpace;
    for (char c : text.substr(f.off, f.len)) {
      if (c == ' ') escaped += kSpace;
      else escaped += c;
    }
    encode_fragment(escaped, out);
    after_special = false;
  }
  if (add_bos && adds_eos()) out.push_back(*spec_.eos);
  return out;
}

std::string SpmTokenizer::token_bytes(int32_t id, bool render_special) const {
  const TokenType type = token_type(id);  // checks the id
  const std::string& text = spec_.tokens[size_t(id)];
  if (type == TokenType::Byte || spec_.types.empty()) {
    if (const int b = parse_byte_piece(text); b >= 0) return std::string(1, char(b));
  }
  switch (type) {
    case TokenType::Control:
    case TokenType::Unknown:
      return render_special ? text : std::string();
    case TokenType::UserDefined:
    case TokenType::Byte:  // not of the <0xXX> form: its text
      return text;
    default: {
      std::string out;
      out.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        if (text.compare(i, kSpace.size(), kSpace) == 0) {
          out += ' ';
          i += kSpace.size();
        } else {
          out += text[i++];
        }
      }
      return out;
    }
  }
}

}  // namespace

namespace tok {
std::unique_ptr<Tokenizer> make_spm(TokenizerSpec spec) {
  return std::make_unique<SpmTokenizer>(std::move(spec));
}
}  // namespace tok

}  // namespace slm
