// Tokenizer tests that need no fixtures: the GPT-2 byte map, UTF-8 validation and streaming,
// hand-built BPE and SentencePiece vocabularies with hand-derived encodings (llama.md §5.4, §6.2),
// spec validation, GGUF metadata errors, and the Llama 3 chat template (§5.5).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "runtime/tokenizer/tokenizer.h"

namespace slm {
namespace {

using Ids = std::vector<int32_t>;

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- GPT-2 byte map (llama.md §5.1) --------------------------------------------------------

TEST_CASE("byte-level map: printable bytes keep their code point, the other 68 move to U+0100+") {
  CHECK(byte_level_encode("!") == "!");
  CHECK(byte_level_encode("~") == "~");
  CHECK(byte_level_encode("Az") == "Az");
  CHECK(byte_level_encode(" ") == "\xC4\xA0");           // U+0120 "Ġ": 0x20 is the 33rd moved byte
  CHECK(byte_level_encode("\n") == "\xC4\x8A");          // U+010A "Ċ"
  CHECK(byte_level_encode(std::string(1, '\0')) == "\xC4\x80");  // U+0100
  CHECK(byte_level_encode("\x7F") == "\xC4\xA1");        // U+0121: 34th moved byte
  CHECK(byte_level_encode("\xA0") == "\xC5\x82");        // U+0142: 0x7F..0xA0 are 34 bytes
  CHECK(byte_level_encode("\xA1") == "\xC2\xA1");        // printable: U+00A1
  CHECK(byte_level_encode("\xAD") == "\xC5\x83");        // U+0143: the 68th and last moved byte
  CHECK(byte_level_encode("\xFF") == "\xC3\xBF");        // U+00FF
  // Token 271 of Llama 3, "\n\n", is stored as "ĊĊ".
  CHECK(byte_level_encode("\n\n") == "\xC4\x8A\xC4\x8A");

  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  const std::string enc = byte_level_encode(all);
  CHECK(is_valid_utf8(enc));
  auto dec = byte_level_decode(enc);
  REQUIRE(dec.has_value());
  CHECK(*dec == all);
  CHECK_FALSE(byte_level_decode("\xE4\xB8\x80").has_value());  // U+4E00 is not in the map
  CHECK_FALSE(byte_level_decode("\xC4").has_value());          // truncated UTF-8
}

// ---- UTF-8 ---------------------------------------------------------------------------------

TEST_CASE("is_valid_utf8 accepts well-formed text and locates the first bad byte") {
  size_t off = 99;
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain ascii"));
  CHECK(is_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\xA6\x99"));  // é € 🦙
  CHECK(is_valid_utf8(std::string_view("a\0b", 3)));               // NUL is a character
  CHECK(is_valid_utf8("\xF4\x8F\xBF\xBF"));                          // U+10FFFF
  struct Bad {
    std::string s;
    size_t at;
  };
  const Bad bad[] = {
      {"ab\x80", 2},              // lone continuation byte
      {"\xC0\x80", 0},            // overlong NUL
      {"x\xC1\xBF", 1},           // overlong
      {"\xE0\x80\x80", 0},        // overlong 3-byte
      {"\xED\xA0\x80", 0},        // surrogate U+D800
      {"\xF0\x80\x80\x80", 0},    // overlong 4-byte
      {"\xF4\x90\x80\x80", 0},    // U+110000
      {"\xF5\x80\x80\x80", 0},    // lead byte beyond F4
      {"abc\xE2\x82", 3},         // truncated at the end
      {"\xC3(", 0},               // continuation missing
  };
  for (const Bad& b : bad) {
    CAPTURE(b.s);
    off = 99;
    CHECK_FALSE(is_valid_utf8(b.s, &off));
    CHECK(off == b.at);
  }
}

TEST_CASE("Utf8Stream holds back split characters and replaces invalid bytes") {
  Utf8Stream s;
  // "é" = C3 A9 fed byte by byte.
  CHECK(s.push("\xC3") == "");
  CHECK(s.push("\xA9") == "\xC3\xA9");
  // 🦙 = F0 9F A6 99 split 1 + 3, with text around it.
  CHECK(s.push("a\xF0") == "a");
  CHECK(s.push("\x9F\xA6\x99!") == "\xF0\x9F\xA6\x99!");
  // Split 3 + 1 and 2 + 2.
  CHECK(s.push("\xF0\x9F\xA6") == "");
  CHECK(s.push("\x99") == "\xF0\x9F\xA6\x99");
  CHECK(s.push("\xE2\x82") == "");
  CHECK(s.push("\xAC") == "\xE2\x82\xAC");
  CHECK(s.flush() == "");
  // A lone continuation byte and a bad lead byte each become one U+FFFD.
  CHECK(s.push("x\x80y\xFFz") == "x\xEF\xBF\xBDy\xEF\xBF\xBDz");
  // An incomplete sequence interrupted by ASCII: one U+FFFD for the maximal subpart "E2 82".
  CHECK(s.push("\xE2\x82") == "");
  CHECK(s.push("A") == "\xEF\xBF\xBD" "A");
  // An incomplete sequence at the end of the stream.
  CHECK(s.push("\xF0\x9F") == "");
  CHECK(s.flush() == "\xEF\xBF\xBD");
  CHECK(s.flush() == "");
}

// ---- a hand-built byte-level BPE vocabulary ------------------------------------------------

// Ids 0..255: the bytes in byte order (shown through the byte map, as GGUF stores them), then a
// few merged tokens and special tokens.
constexpr int32_t kAb = 256, kBc = 257, kAbc = 258, kAa = 259, kEnd = 260, kUser = 261,
                  kSpaceA = 262, kBos = 263;

TokenizerSpec small_bpe(std::string pre, std::vector<std::string> merges) {
  TokenizerSpec s;
  s.model = "gpt2";
  s.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_level_encode(std::string(1, char(b))));
  s.tokens.insert(s.tokens.end(), {"ab", "bc", "abc", "aa", "<|end|>", "<u>",
                                   byte_level_encode(" a"), "<|bos|>"});
  s.types.assign(s.tokens.size(), TokenType::Normal);
  s.types[kEnd] = TokenType::Control;
  s.types[kUser] = TokenType::UserDefined;
  s.types[kBos] = TokenType::Control;
  s.merges = std::move(merges);
  s.bos = kBos;
  s.eos = kEnd;
  return s;
}

TEST_CASE("BPE merges apply lowest rank first, ties leftmost") {
  // "abc": whichever of "a b" / "b c" ranks lower merges first.
  auto t1 = Tokenizer::from_spec(small_bpe("gpt2", {"a b", "b c"}));
  CHECK(t1->encode("abc", false, false) == Ids{kAb, 'c'});
  auto t2 = Tokenizer::from_spec(small_bpe("gpt2", {"b c", "a b"}));
  CHECK(t2->encode("abc", false, false) == Ids{'a', kBc});
  // A later merge can consume the result of an earlier one.
  auto t3 = Tokenizer::from_spec(small_bpe("gpt2", {"a b", "b c", "ab c"}));
  CHECK(t3->encode("abc", false, false) == Ids{kAbc});
  auto t4 = Tokenizer::from_spec(small_bpe("gpt2", {"b c", "a bc"}));
  CHECK(t4->encode("abc", false, false) == Ids{kAbc});
  // Equal ranks (the same pair twice): the leftmost occurrence wins, "aaa" -> "aa" "a".
  auto t5 = Tokenizer::from_spec(small_bpe("gpt2", {"a a"}));
  CHECK(t5->encode("aaa", false, false) == Ids{kAa, 'a'});
  CHECK(t5->encode("aaaa", false, false) == Ids{kAa, kAa});
  // Merges whose parts or result are not tokens are ignored.
  auto t6 = Tokenizer::from_spec(small_bpe("gpt2", {"x y", "q zz", "b c"}));
  CHECK(t6->encode("xyabc", false, false) == Ids{'x', 'y', 'a', kBc});
}

TEST_CASE("BPE: llama3 looks up the whole pre-token first (ignore_merges), gpt2 does not") {
  auto llama = Tokenizer::from_spec(small_bpe("llama-bpe", {"b c"}));
  auto gpt2 = Tokenizer::from_spec(small_bpe("gpt2", {"b c"}));
  CHECK(llama->encode("abc", false, false) == Ids{kAbc});
  CHECK(gpt2->encode("abc", false, false) == Ids{'a', kBc});
  // " abc" is one pre-token with no whole-word token: it is merged from its bytes.
  CHECK(llama->encode(" abc", false, false) == Ids{' ', 'a', kBc});
  CHECK(llama->encode(" a", false, false) == Ids{kSpaceA});
  CHECK(gpt2->encode(" a", false, false) == Ids{' ', 'a'});  // no " a" merge
}

TEST_CASE("BPE: special tokens, BOS/EOS flags and decoding") {
  auto t = Tokenizer::from_spec(small_bpe("llama-bpe", {"b c"}));
  CHECK(t->adds_bos());  // llama3 default when the metadata says nothing
  CHECK(t->encode("abc", true, false) == Ids{kBos, kAbc});
  // CONTROL text is only parsed when asked; USER_DEFINED text always.
  const std::string text = "a<|end|>b<u>c";
  CHECK(t->encode(text, false, true) == Ids{'a', kEnd, 'b', kUser, 'c'});
  const Ids plain = t->encode(text, false, false);
  CHECK(std::find(plain.begin(), plain.end(), kEnd) == plain.end());
  CHECK(std::find(plain.begin(), plain.end(), kUser) != plain.end());
  CHECK(t->decode(plain) == text);
  // Control tokens render only when asked.
  CHECK(t->decode(Ids{kBos, 'h', 'i', kEnd}) == "hi");
  CHECK(t->decode(Ids{kBos, 'h', 'i', kEnd}, true) == "<|bos|>hi<|end|>");
  CHECK(t->token_bytes(' ') == " ");
  CHECK(t->token_bytes(kSpaceA) == " a");
  CHECK(t->find_token("<|end|>") == kEnd);
  CHECK(t->find_token(byte_level_encode(" a")) == kSpaceA);
  CHECK_FALSE(t->find_token("nope").has_value());

  TokenizerSpec s = small_bpe("llama-bpe", {});
  s.add_bos = false;
  s.add_eos = true;
  auto u = Tokenizer::from_spec(std::move(s));
  CHECK(u->encode("a", true, false) == Ids{'a', kEnd});
  CHECK(u->encode("a", false, false) == Ids{'a'});

  auto g = Tokenizer::from_spec(small_bpe("gpt2", {}));
  CHECK_FALSE(g->adds_bos());  // non-Llama-3 BPE: no BOS unless the metadata asks
  CHECK(g->encode("", true, true).empty());
}

TEST_CASE("BPE: every byte string round-trips and long inputs stay fast") {
  auto t = Tokenizer::from_spec(small_bpe("llama-bpe", {"a a", "b c", "aa aa"}));
  const std::string texts[] = {"",
                               " ",
                               "  \n\n\t x",
                               "I'M here's 12345678",
                               "caf\xC3\xA9",
                               "\xF0\x9F\xA6\x99.cpp",
                               "a\xC2\x85" "b  \xE3\x80\x80z",
                               std::string("nul\0byte", 8)};
  for (const std::string& x : texts) {
    CAPTURE(x);
    CHECK(t->decode(t->encode(x, false, false)) == x);
  }
  // 200k letters form one pre-token: the heap-based merge must be ~n log n, not quadratic.
  const std::string big(200000, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = t->encode(big, false, false);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ids.size() == 200000 / 2);  // all "aa": "aa aa" is dropped, "aaaa" being no token
  MESSAGE("BPE 200k-letter word: " << secs * 1e3 << " ms");
  CHECK(secs < 2.0);  // generous: ~30 ms expected; a quadratic merge would take minutes
  // Whitespace runs are pre-tokens too (and exercise the regex lookahead on a long subject).
  const std::string spaces(100000, ' ');
  CHECK(t->decode(t->encode(spaces + "x", false, false)) == spaces + "x");
}

TEST_CASE("encode rejects invalid UTF-8 naming the byte offset") {
  auto t = Tokenizer::from_spec(small_bpe("llama-bpe", {}));
  const std::string msg = error_of([&] { t->encode("abc\xFF" "def", true, false); });
  CHECK(msg.find("not valid UTF-8 at byte 3") != std::string::npos);
  CHECK_THROWS_AS(t->encode("\xED\xA0\x80", false, false), Error);  // surrogate
  CHECK_THROWS_AS(t->encode("x\xC3", false, false), Error);          // truncated
}

TEST_CASE("spec validation: clear errors for inconsistent specs") {
  CHECK(error_of([] { Tokenizer::from_spec(small_bpe("qwen2", {})); })
            .find("unsupported BPE pre-tokenizer 'qwen2'") != std::string::npos);
  {
    TokenizerSpec s = small_bpe("llama-bpe", {});
    s.model = "bert";
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("unsupported tokenizer model 'bert'") !=
          std::string::npos);
  }
  {
    TokenizerSpec s = small_bpe("llama-bpe", {});
    s.bos = int32_t(s.tokens.size());
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("bos token id 264 out of range") !=
          std::string::npos);
  }
  {
    TokenizerSpec s = small_bpe("llama-bpe", {});
    s.scores.assign(3, 0.f);
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("3 scores for 264 tokens") !=
          std::string::npos);
  }
  {
    TokenizerSpec s = small_bpe("llama-bpe", {});
    s.types.pop_back();
    CHECK_THROWS_AS(Tokenizer::from_spec(s), Error);
  }
  {
    TokenizerSpec s = small_bpe("llama-bpe", {});
    s.tokens[10] = "zz";  // byte 0x0A now has no token
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("no token for byte 0x0A") !=
          std::string::npos);
  }
  {
    TokenizerSpec s = small_bpe("llama-bpe", {"abc"});
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("merge 0 ('abc') has no space") !=
          std::string::npos);
  }
  {
    TokenizerSpec s;
    s.model = "gpt2";
    CHECK(error_of([&] { Tokenizer::from_spec(s); }).find("vocabulary is empty") !=
          std::string::npos);
  }
}

TEST_CASE("EOG: eos, eot, eom and end-marker control tokens") {
  TokenizerSpec s = small_bpe("llama-bpe", {});
  s.tokens.insert(s.tokens.end(), {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>"});
  s.types.insert(s.types.end(), {TokenType::Control, TokenType::Control, TokenType::Control,
                                 TokenType::Normal});
  auto t = Tokenizer::from_spec(std::move(s));
  // eot/eom found by text, <|end_of_text|> matched as a control marker; the *normal* "</s>" is not.
  CHECK(t->spec().eot == 264);
  CHECK(t->spec().eom == 265);
  CHECK(t->eog_ids() == Ids{kEnd, 264, 265, 266});
  CHECK(t->is_eog(kEnd));
  CHECK_FALSE(t->is_eog(267));
  CHECK_FALSE(t->is_eog('a'));
}

// ---- a hand-built SentencePiece vocabulary (Llama 2 layout, llama.md §6.1) -----------------

const std::string kU = "\xE2\x96\x81";  // "▁"

TokenizerSpec small_spm(bool byte_tokens = true) {
  TokenizerSpec s;
  s.model = "llama";
  s.pre = "default";
  auto add = [&](std::string text, float score, TokenType type) {
    s.tokens.push_back(std::move(text));
    s.scores.push_back(score);
    s.types.push_back(type);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    add(byte_tokens ? buf : "unused" + std::to_string(b), 0,
        byte_tokens ? TokenType::Byte : TokenType::Unused);
  }
  // 259.. pieces: merge priority is the score (higher first).
  add(kU + kU, -1e9f, TokenType::Normal);   // 259
  add(kU + "t", -1, TokenType::Normal);     // 260
  add("he", -2, TokenType::Normal);         // 261
  add(kU + "the", -3, TokenType::Normal);   // 262
  add("th", -4, TokenType::Normal);         // 263
  add("aa", -1, TokenType::Normal);         // 264
  add(kU + "a", -5, TokenType::Normal);     // 265
  add(kU, -10, TokenType::Normal);          // 266
  for (const char* c : {"t", "h", "e", "a", "c"}) add(c, -20, TokenType::Normal);  // 267..271
  add("<tool>", 0, TokenType::UserDefined);  // 272
  return s;
}
constexpr int32_t kSpmTheWord = 262, kSpmAA = 264, kSpmSpace = 266, kSpmT = 267, kSpmHe = 261,
                  kSpmC = 271, kSpmTool = 272;
int32_t byte_tok(int b) { return 3 + b; }

TEST_CASE("SPM: hand-derived merges by score with the space prefix") {
  auto t = Tokenizer::from_spec(small_spm());
  // "the" -> "▁the": pairs ▁t (-1), th (-4), he (-2). ▁t merges first, then he, then ▁t+he =
  // "▁the" (-3); th is stale by then.
  CHECK(t->encode("the", false, false) == Ids{kSpmTheWord});
  CHECK(t->adds_bos());
  CHECK(t->encode("the", true, false) == Ids{1, kSpmTheWord});
  // Ties go leftmost: "▁aaaa" -> aa at 1 merges first, then aa at 3; ▁a (-5) is stale.
  CHECK(t->encode("aaaa", false, false) == Ids{kSpmSpace, kSpmAA, kSpmAA});
  // Two spaces: "▁the▁▁the". "▁▁" has the lowest score, so by the time it is popped the second
  // "▁" already belongs to "▁the" and the pair is stale: ▁the ▁ ▁the.
  CHECK(t->encode("the  the", false, false) == Ids{kSpmTheWord, kSpmSpace, kSpmTheWord});
}

TEST_CASE("SPM: byte fallback, specials, unknown and decoding") {
  auto t = Tokenizer::from_spec(small_spm());
  // "é" (C3 A9) and "🦙" (F0 9F A6 99) are no pieces: their bytes become <0xXX> = byte + 3.
  CHECK(t->encode("\xC3\xA9", false, false) == Ids{kSpmSpace, byte_tok(0xC3), byte_tok(0xA9)});
  CHECK(t->encode("c\xF0\x9F\xA6\x99", false, false) ==
        Ids{kSpmSpace, kSpmC, byte_tok(0xF0), byte_tok(0x9F), byte_tok(0xA6), byte_tok(0x99)});
  // A special token: the fragment after it gets the space prefix again.
  CHECK(t->encode("<s>the", false, true) == Ids{1, kSpmTheWord});
  CHECK(t->encode("c</s>the", false, true) == Ids{kSpmSpace, kSpmC, 2, kSpmTheWord});
  // Not parsing specials: "<s>" is text; '<', 's', '>' fall back to bytes.
  CHECK(t->encode("<s>", false, false) ==
        Ids{kSpmSpace, byte_tok('<'), byte_tok('s'), byte_tok('>')});
  // USER_DEFINED text is always its token.
  CHECK(t->encode("<tool>c", false, false) == Ids{kSpmTool, kSpmSpace, kSpmC});

  // Decoding: "▁" -> " ", bytes reassembled, the prefix space dropped.
  for (const std::string x : {"the", "the  the", "c\xC3\xA9 \xF0\x9F\xA6\x99 aa", " the", ""}) {
    CAPTURE(x);
    CHECK(t->decode(t->encode(x, true, false)) == x);
  }
  CHECK(t->decode(Ids{1, kSpmTheWord, 2}, true) == "<s>the</s>");
  CHECK(t->token_bytes(byte_tok(0x41)) == "A");
  CHECK(t->token_bytes(kSpmTheWord) == " the");
  CHECK(t->token_bytes(0) == "");
  CHECK(t->token_bytes(0, true) == "<unk>");
  // Llama 2 ids by default; </s> ends generation.
  CHECK(t->spec().unk == 0);
  CHECK(t->spec().bos == 1);
  CHECK(t->spec().eos == 2);
  CHECK(t->is_eog(2));

  // Without token types the "<0xXX>" pieces still serve as byte fallback.
  TokenizerSpec untyped = small_spm();
  untyped.types.clear();
  auto v = Tokenizer::from_spec(std::move(untyped));
  CHECK(v->encode("\xC3\xA9", false, false) == Ids{kSpmSpace, byte_tok(0xC3), byte_tok(0xA9)});
  CHECK(v->decode(v->encode("\xC3\xA9 the", false, false)) == "\xC3\xA9 the");

  // Without byte tokens an unknown character becomes <unk>, one per byte.
  auto u = Tokenizer::from_spec(small_spm(false));
  CHECK(u->encode("\xC3\xA9", false, false) == Ids{kSpmSpace, 0, 0});
}

TEST_CASE("SPM: add_space_prefix = false") {
  TokenizerSpec s = small_spm();
  s.add_space_prefix = false;
  auto t = Tokenizer::from_spec(std::move(s));
  // "the": t h e; th (-4) vs he (-2): he first -> t, he; "the" is no piece.
  CHECK(t->encode("the", false, false) == Ids{kSpmT, kSpmHe});
  CHECK(t->decode(t->encode(" the", false, false)) == " the");
}

TEST_CASE("fuzz: random text round-trips, random bytes are either rejected or round-trip") {
  auto bpe = Tokenizer::from_spec(small_bpe("llama-bpe", {"a a", "b c", "ab c", "aa aa"}));
  auto gpt2 = Tokenizer::from_spec(small_bpe("gpt2", {"a a", "b c"}));
  auto spm = Tokenizer::from_spec(small_spm());
  const std::vector<std::string> pieces = {
      "a", "b", "c", "t", "h", "e", " ", "  ", "\n", "\r\n", "\t", "1", "23", "'s", "'LL", "!",
      ".", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\xA6\x99", "\xC2\x85", "\xE3\x80\x80", "\xC2\xA0",
      "\xCC\x81", "the", "aa"};
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string x;
    const int n = int(rng() % 12);
    for (int k = 0; k < n; ++k) x += pieces[rng() % pieces.size()];
    CAPTURE(x);
    CHECK(bpe->decode(bpe->encode(x, true, true)) == x);
    CHECK(gpt2->decode(gpt2->encode(x, false, false)) == x);
    CHECK(spm->decode(spm->encode(x, true, false)) == x);
  }
  for (int iter = 0; iter < 2000; ++iter) {
    std::string x(rng() % 10, '\0');
    for (char& c : x) c = char(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 3);
    CAPTURE(x);
    for (const Tokenizer* t : {bpe.get(), spm.get()}) {
      if (is_valid_utf8(x)) {
        CHECK(t->decode(t->encode(x, false, true)) == x);
      } else {
        CHECK_THROWS_AS(t->encode(x, false, true), Error);
      }
    }
  }
  // Out-of-range ids are errors, not crashes.
  CHECK_THROWS_AS(bpe->token_bytes(-1), Error);
  CHECK_THROWS_AS(spm->decode(Ids{5, 100000}), Error);
}

// ---- tokenizer metadata from GGUF ----------------------------------------------------------

std::unique_ptr<Tokenizer> from_gguf_bytes(const gguf::Writer& w) {
  static std::vector<uint8_t> bytes;  // the File views these bytes
  bytes = w.to_bytes();
  auto f = gguf::File::parse(bytes.data(), bytes.size(), "mem.gguf");
  return Tokenizer::from_gguf(*f);
}

gguf::Writer spm_writer() {
  const TokenizerSpec s = small_spm();
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::make_string("llama"));
  w.set("tokenizer.ggml.model", gguf::Value::make_string("llama"));
  w.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(s.tokens));
  w.set("tokenizer.ggml.scores", gguf::Value::make_f32_array(s.scores));
  std::vector<int32_t> types;
  for (TokenType t : s.types) types.push_back(int32_t(t));
  w.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(types));
  return w;
}

TEST_CASE("spec_from_gguf reads the tokenizer keys and applies defaults") {
  gguf::Writer w = spm_writer();
  auto t = from_gguf_bytes(w);
  CHECK(t->n_vocab() == 273);
  CHECK(t->spec().bos == 1);  // SentencePiece defaults
  CHECK(t->encode("the", true, false) == Ids{1, kSpmTheWord});

  w.set("tokenizer.ggml.bos_token_id", gguf::Value::make_u32(2));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::make_bool(false));
  w.set("tokenizer.ggml.add_space_prefix", gguf::Value::make_bool(false));
  auto u = from_gguf_bytes(w);
  CHECK(u->spec().bos == 2);
  CHECK_FALSE(u->adds_bos());
  CHECK(u->encode("the", true, false) == Ids{kSpmT, kSpmHe});
}

TEST_CASE("spec_from_gguf rejects bad metadata with the key named") {
  auto expect_error = [](gguf::Writer w, std::string_view what) {
    const std::string msg = error_of([&] { from_gguf_bytes(w); });
    CAPTURE(msg);
    CHECK(msg.find(what) != std::string::npos);
  };
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.scores", gguf::Value::make_f32_array({1, 2, 3}));
    expect_error(w, "tokenizer.ggml.scores has 3 entries but tokenizer.ggml.tokens has 273");
  }
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(std::vector<int32_t>(273, 9)));
    expect_error(w, "tokenizer.ggml.token_type[0] is not a valid token type");
  }
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.eos_token_id", gguf::Value::make_u32(273));
    expect_error(w, "tokenizer.ggml.eos_token_id = 273 is out of range");
  }
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.tokens", gguf::Value::make_i32_array({1, 2}));
    expect_error(w, "tokenizer.ggml.tokens[0] has type");
  }
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.model", gguf::Value::make_u32(1));
    expect_error(w, "tokenizer.ggml.model has type");
  }
  {
    gguf::Writer w = spm_writer();
    w.set("tokenizer.ggml.model", gguf::Value::make_string("rwkv"));
    expect_error(w, "mem.gguf: tokenizer: unsupported tokenizer model 'rwkv'");
  }
  {
    gguf::Writer w;
    w.set("tokenizer.ggml.model", gguf::Value::make_string("gpt2"));
    expect_error(w, "missing tokenizer metadata key tokenizer.ggml.tokens");
  }
}

// ---- chat template -------------------------------------------------------------------------

TEST_CASE("Llama 3 chat template renders exactly (llama.md §5.5)") {
  const std::vector<ChatMessage> with_system = {
      {"system", "  You are terse.\n"}, {"user", "\tHi there \n"}, {"assistant", "Hello."},
      {"user", "Bye"}};
  CHECK(render_llama3_chat(with_system, true, "01 Jan 2025") ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n"
        "You are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // No system message: the system block is still there, empty; default date.
  // Unicode spaces (U+3000, U+00A0) are trimmed too.
  const std::vector<ChatMessage> user_only = {{"user", "\xE3\x80\x80Q\xC2\xA0"}};
  CHECK(render_llama3_chat(user_only, false) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>");
  const std::vector<ChatMessage> tool = {{"ipython", "{}"}};
  CHECK_THROWS_AS(render_llama3_chat(tool, true), Error);
}

}  // namespace
}  // namespace slm
