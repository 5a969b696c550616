// Tokenizers built from model metadata: Llama 3 byte-level BPE ("gpt2" in GGUF, pre-tokenizer
// regex via PCRE2) and SentencePiece-style ("llama": scores, byte fallback). Spec:
// ../shared/specs/llama.md §5-6. Also UTF-8 validation/streaming and the Llama 3 chat template.
//
// Supported `pre` values for "gpt2" vocabularies: "llama-bpe" / "llama3" / "llama-v3" (Llama 3
// pattern, whole-word lookup before merging) and "default" / "gpt2" / "" (original GPT-2 pattern,
// plain merging). Any other value is rejected with slm::Error rather than silently mis-tokenized.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm {
namespace gguf { class File; }

namespace tok {
// Open-addressing hash map from text to token id. Texts of up to kInline bytes (nearly every
// token) are copied into the slot so a lookup touches one cache line; longer ones are views into
// storage that outlives the index. Node-based maps made building the 128k-token Llama 3 tables
// cache-miss bound.
class TextIndex {
 public:
  void reserve(size_t n);
  // Keeps the first id inserted for a text.
  void insert(std::string_view text, int32_t id);
  int32_t find(std::string_view text) const;  // -1 if absent

  // Batched lookups: hash first, prefetch, then find the concatenation a + b (b may be empty)
  // with that hash. hash(a + b) == hash_extend(hash(a), b).
  static uint32_t hash(std::string_view s) { return hash_extend(2166136261u, s); }
  static uint32_t hash_extend(uint32_t h, std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 16777619u;  // FNV-1a
    return h;
  }
  void prefetch(uint32_t hash) const;
  int32_t find(std::string_view a, std::string_view b, uint32_t hash) const;

 private:
  static constexpr size_t kInline = 20;
  struct Slot {
    uint32_t hash = 0;
    int32_t id = -1;  // -1: empty
    uint32_t len = 0;
    char bytes[kInline];  // the text (len <= kInline) or a pointer to it
    std::string_view text() const;
  };
  static_assert(sizeof(Slot) == 32);
  void place(std::string_view text, uint32_t hash, int32_t id);
  std::vector<Slot> slots_;
  size_t used_ = 0;
};
}  // namespace tok

enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Everything a tokenizer is built from, independent of the file format it came from.
struct TokenizerSpec {
  std::string model;                 // "gpt2" (byte-level BPE) or "llama" (SentencePiece)
  std::string pre;                   // pre-tokenizer id, e.g. "llama-bpe", "default"
  std::vector<std::string> tokens;   // as stored (BPE: GPT-2 byte->unicode mapped; SPM: '▁' for space)
  std::vector<float> scores;         // SPM merge priorities (may be empty for BPE)
  std::vector<TokenType> types;      // may be empty: all Normal
  std::vector<std::string> merges;   // BPE "left right", rank = index
  std::optional<int32_t> bos, eos, eot, eom, unk, pad;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

// Immutable once built: encode/decode are const and safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Builds from `tokenizer.ggml.*` metadata; throws slm::Error for missing/invalid keys.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& f);
  static std::unique_ptr<Tokenizer> from_spec(TokenizerSpec spec);
  static TokenizerSpec spec_from_gguf(const gguf::File& f);

  // Text -> ids. `add_bos`: prepend BOS if the model adds one (metadata), and append EOS if the
  // metadata says add_eos (never for Llama); `parse_special`: text of CONTROL/UNKNOWN tokens
  // becomes those ids instead of being tokenized as text. USER_DEFINED token text always becomes
  // its id (as in llama.cpp and HF tokenizers). Throws slm::Error if `text` is not valid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // The raw bytes a token stands for (may be a partial UTF-8 sequence). Control tokens give
  // their text only when `render_special`. Throws slm::Error for an id out of range.
  virtual std::string token_bytes(int32_t id, bool render_special = false) const = 0;
  // Concatenated token_bytes. SentencePiece with add_space_prefix: the leading space of the first
  // text token is dropped (as SentencePiece does; llama.cpp keeps it after a BOS), so that
  // decode(encode(x, true, false)) == x.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t n_vocab() const { return int32_t(spec_.tokens.size()); }
  const TokenizerSpec& spec() const { return spec_; }
  const std::string& token_text(int32_t id) const;  // as stored; slm::Error if out of range
  std::optional<int32_t> find_token(std::string_view text) const;
  bool adds_bos() const;
  std::optional<int32_t> bos() const { return spec_.bos; }
  // End-of-generation: eos, eot, eom and any control token whose text is one of the known
  // end markers (<|eot_id|>, <|eom_id|>, <|end_of_text|>, </s>, <|im_end|>, <|endoftext|>,
  // <end_of_turn>). EOT/EOM are found by text (<|eot_id|> / <|eom_id|>) when metadata omits them.
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }
  TokenType token_type(int32_t id) const;  // Normal when the spec has no types

 protected:
  // Validates the model-independent parts of the spec (ids in range, array lengths), detects
  // EOT/EOM by text when absent and builds the EOG set and lookup tables.
  explicit Tokenizer(TokenizerSpec spec);

  // A piece of the input: raw text (id < 0; [off, off+len) of the input) or a special token.
  struct Fragment {
    int32_t id;
    size_t off, len;
  };
  // Splits `text` on special-token text, longest token first (llama.cpp's partition order).
  std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
  // Throws slm::Error naming the first invalid byte.
  static void check_utf8(std::string_view text);
  void check_id(int32_t id) const;
  bool adds_eos() const { return spec_.eos && spec_.add_eos.value_or(false); }
  // SentencePiece decoding drops the space that add_space_prefix put in front of the text.
  virtual bool strips_leading_space() const { return false; }

  TokenizerSpec spec_;
  std::vector<int32_t> eog_;
  tok::TextIndex text_to_id_;  // views into spec_.tokens
  std::vector<int32_t> specials_;  // CONTROL/UNKNOWN/USER_DEFINED ids, longest text first
};

// Streams token bytes to text: holds back an incomplete UTF-8 sequence at the end until the next
// token completes it; invalid bytes become U+FFFD.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();
 private:
  std::string pending_;
};

// Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF). On failure
// `*bad_offset` is the offset of the first byte of the first ill-formed (or truncated) sequence.
bool is_valid_utf8(std::string_view s, size_t* bad_offset = nullptr);

// GPT-2 byte-level token text (llama.md §5.1): every byte becomes one code point (" " -> "Ġ",
// "\n" -> "Ċ"). byte_level_decode is the inverse; nullopt if `text` holds a code point outside
// the map (or is not valid UTF-8).
std::string byte_level_encode(std::string_view bytes);
std::optional<std::string> byte_level_decode(std::string_view text);

// Llama 3 Instruct chat template (llama.md §5.5), rendered to text with special-token text;
// starts with <|begin_of_text|>, so encode it with add_bos = false, parse_special = true.
struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};
std::string render_llama3_chat(std::span<const ChatMessage> messages, bool add_generation_prompt,
                               std::string_view date_string = "26 Jul 2024");
// The same prompt tokenized piece by piece: template markup becomes special tokens, message text
// is encoded with parse_special = false, so special-token text typed into a message stays plain
// text (no prompt injection). Identical to encode(render_llama3_chat(...), false, true) whenever
// no message contains special-token text. Throws slm::Error if the vocabulary lacks the markup
// tokens, for unsupported roles, or for invalid UTF-8.
std::vector<int32_t> encode_llama3_chat(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                        bool add_generation_prompt,
                                        std::string_view date_string = "26 Jul 2024");

}  // namespace slm
