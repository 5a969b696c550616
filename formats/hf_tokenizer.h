// Hugging Face tokenizer files -> TokenizerSpec: tokenizer.json (model BPE: vocab, merges in
// either "a b" or ["a", "b"] form, added tokens, pre-tokenizer, post-processor) and
// tokenizer_config.json (bos/eos/pad tokens, add_bos_token). Tokenizer::from_spec builds the
// tokenizer; this file only reads (slm_formats does not link the tokenizer library).
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "runtime/tokenizer/tokenizer.h"

namespace slm {

// `tokenizer_config` may be empty (no tokenizer_config.json). `what` names the source in errors.
// Byte-level vocabularies (a ByteLevel pre-tokenizer or decoder) give model "gpt2"; BPE with
// byte_fallback and no ByteLevel step (Llama 2 style) gives model "llama" with scores -id (the
// SentencePiece BPE priority order). pre is "llama-bpe" when the split regex is Llama 3's.
TokenizerSpec parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                 std::string_view what);
// Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json.
TokenizerSpec read_hf_tokenizer_dir(const std::string& dir);
TokenizerSpec read_hf_tokenizer(const std::string& tokenizer_json_path,
                                const std::optional<std::string>& tokenizer_config_path);

// Llama 3's pre-tokenizer regex as written in its tokenizer.json (llama.md §5.2).
extern const std::string_view kLlama3PretokenizerRegex;

}  // namespace slm
