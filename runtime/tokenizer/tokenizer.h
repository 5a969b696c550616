// Tokenizers built from model metadata: Llama 3 byte-level BPE ("gpt2" in GGUF, pre-tokenizer
// regex via PCRE2) and SentencePiece-style ("llama": scores, byte fallback). Spec:
// ../shared/specs/llama.md §5-6.
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

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Builds from `tokenizer.ggml.*` metadata; throws slm::Error for missing/invalid keys.
  static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& f);
  static std::unique_ptr<Tokenizer> from_spec(TokenizerSpec spec);
  static TokenizerSpec spec_from_gguf(const gguf::File& f);

  // Text -> ids. `add_bos`: prepend BOS if the model adds one (metadata); `parse_special`: text of
  // special (CONTROL/USER_DEFINED) tokens becomes those ids instead of being tokenized as text.
  // Throws slm::Error if `text` is not valid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // The raw bytes a token stands for (may be a partial UTF-8 sequence). Control tokens give
  // their text only when `render_special`.
  virtual std::string token_bytes(int32_t id, bool render_special = false) const = 0;
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t n_vocab() const { return int32_t(spec_.tokens.size()); }
  const TokenizerSpec& spec() const { return spec_; }
  const std::string& token_text(int32_t id) const { return spec_.tokens.at(size_t(id)); }
  std::optional<int32_t> find_token(std::string_view text) const;
  bool adds_bos() const;
  std::optional<int32_t> bos() const { return spec_.bos; }
  // End-of-generation: eos, eot, eom and any control token whose text is one of the known
  // end markers (<|eot_id|>, <|eom_id|>, <|end_of_text|>, </s>).
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }

 protected:
  explicit Tokenizer(TokenizerSpec spec);
  TokenizerSpec spec_;
  std::vector<int32_t> eog_;
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

bool is_valid_utf8(std::string_view s, size_t* bad_offset = nullptr);

// Llama 3 Instruct chat template (llama.md §5.5), rendered to text with special-token text;
// starts with <|begin_of_text|>, so encode it with add_bos = false, parse_special = true.
struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};
std::string render_llama3_chat(std::span<const ChatMessage> messages, bool add_generation_prompt,
                               std::string_view date_string = "26 Jul 2024");

}  // namespace slm
