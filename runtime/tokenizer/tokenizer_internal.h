// Pieces shared by the tokenizer sources (not part of the public API): UTF-8 scanning, the
// concrete tokenizer factories, and the metadata defaults that both the GGUF path and
// Tokenizer::from_spec apply.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

namespace slm::tok {

// What the bytes at the start of a buffer hold (RFC 3629: no overlongs, no surrogates, nothing
// above U+10FFFF).
struct Utf8Scan {
  enum Kind { Ok, Invalid, Truncated } kind;
  // Ok: sequence length (1-4). Invalid: length of the maximal ill-formed subpart (Unicode §3.9
  // "U+FFFD substitution of maximal subparts"), at least 1. Truncated: bytes available.
  size_t len;
};
Utf8Scan utf8_scan(const unsigned char* p, size_t n);
// Code point of a sequence that utf8_scan accepted with length `len`.
uint32_t utf8_decode(const unsigned char* p, size_t len);
// Length of the (valid) sequence starting with lead byte `b`.
inline size_t utf8_len_from_lead(unsigned char b) {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

// Pre-tokenizer families for byte-level BPE vocabularies.
enum class PreKind { Llama3, Gpt2 };
// nullopt for an unsupported `pre` value.
std::optional<PreKind> pre_kind(std::string_view pre);

// Fills eot/eom from well-known token texts when the metadata leaves them out.
void detect_special_ids(TokenizerSpec& spec);

std::unique_ptr<Tokenizer> make_bpe(TokenizerSpec spec);
std::unique_ptr<Tokenizer> make_spm(TokenizerSpec spec);

}  // namespace slm::tok
