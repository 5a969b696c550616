// Text utilities around the tokenizers: strict UTF-8 scanning and validation, the streaming
// detokenizer buffer (Utf8Stream), and the Llama 3 Instruct chat template (llama.md §5.5),
// rendered to text or tokenized piece by piece.
#include <string>

#include "core/error.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_internal.h"

namespace slm {
namespace tok {

Utf8Scan utf8_scan(const unsigned char* p, size_t n) {
  if (n == 0) return {Utf8Scan::Truncated, 0};
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return {Utf8Scan::Ok, 1};
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;        // overlong
    else if (b0 == 0xED) hi = 0x9F;   // UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;        // overlong
    else if (b0 == 0xF4) hi = 0x8F;   // above U+10FFFF
  } else {
    return {Utf8Scan::Invalid, 1};    // continuation byte, C0/C1 or F5..FF
  }
  for (size_t k = 1; k < need; ++k) {
    if (k >= n) return {Utf8Scan::Truncated, n};
    const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (p[k] < lo_k || p[k] > hi_k) return {Utf8Scan::Invalid, k};
  }
  return {Utf8Scan::Ok, need};
}

uint32_t utf8_decode(const unsigned char* p, size_t len) {
  switch (len) {
    case 1: return p[0];
    case 2: return (uint32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3: return (uint32_t(p[0] & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return (uint32_t(p[0] & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) |
             (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

}  // namespace tok

bool is_valid_utf8(std::string_view s, size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path: most prompt text is ASCII.
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const tok::Utf8Scan r = tok::utf8_scan(p + i, s.size() - i);
    if (r.kind != tok::Utf8Scan::Ok) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += r.len;
  }
  return true;
}

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  const auto* p = reinterpret_cast<const unsigned char*>(pending_.data());
  const size_t n = pending_.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    const tok::Utf8Scan r = tok::utf8_scan(p + i, n - i);
    if (r.kind == tok::Utf8Scan::Truncated) break;  // wait for the bytes that complete it
    if (r.kind == tok::Utf8Scan::Ok) out.append(pending_, i, r.len);
    else out.append(kReplacement);
    i += r.len;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  // Whatever is left is the prefix of a sequence that never completed: one maximal subpart.
  std::string out = pending_.empty() ? std::string() : std::string(kReplacement);
  pending_.clear();
  return out;
}

namespace {

// Python's str.isspace() set, which Jinja's `trim` filter (str.strip) removes.
bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Strips leading/trailing whitespace code points. Invalid UTF-8 is left in place (it is rejected
// later, when the rendered prompt is encoded).
std::string_view trim(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t b = 0, e = s.size();
  while (b < e) {
    const tok::Utf8Scan r = tok::utf8_scan(p + b, e - b);
    if (r.kind != tok::Utf8Scan::Ok || !is_py_space(tok::utf8_decode(p + b, r.len))) break;
    b += r.len;
  }
  while (e > b) {
    size_t start = e - 1;
    while (start > b && e - start < 4 && (p[start] & 0xC0) == 0x80) --start;
    const tok::Utf8Scan r = tok::utf8_scan(p + start, e - start);
    if (r.kind != tok::Utf8Scan::Ok || r.len != e - start ||
        !is_py_space(tok::utf8_decode(p + start, r.len)))
      break;
    e = start;
  }
  return s.substr(b, e - b);
}

}  // namespace

namespace {

constexpr std::string_view kSystemPreamble =
    "\n\nCutting Knowledge Date: December 2023\nToday Date: ";

void check_role(const ChatMessage& m, size_t i) {
  // Tool roles ("ipython", "tool") have their own rendering in the official template.
  SLM_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant",
            "chat template: message {} has unsupported role '{}' (expected system, user or "
            "assistant; tool calls are not supported)",
            i, m.role);
}

// The system message if the chat starts with one, and the index of the first other message.
std::pair<std::string_view, size_t> split_system(std::span<const ChatMessage> messages) {
  if (!messages.empty() && messages[0].role == "system") return {trim(messages[0].content), 1};
  return {std::string_view(), 0};
}

}  // namespace

std::string render_llama3_chat(std::span<const ChatMessage> messages, bool add_generation_prompt,
                               std::string_view date_string) {
  const auto [system, first] = split_system(messages);
  std::string out = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>";
  out += kSystemPreamble;
  out += date_string;
  out += "\n\n";
  out += system;
  out += "<|eot_id|>";
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    check_role(m, i);
    out += "<|start_header_id|>";
    out += m.role;
    out += "<|end_header_id|>\n\n";
    out += trim(m.content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::vector<int32_t> encode_llama3_chat(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                        bool add_generation_prompt, std::string_view date_string) {
  auto special = [&](std::string_view text) {
    const std::optional<int32_t> id = tok.find_token(text);
    SLM_CHECK(id.has_value(), "chat template: the vocabulary has no {} token", text);
    return *id;
  };
  const int32_t bot = special("<|begin_of_text|>"), start = special("<|start_header_id|>"),
                end = special("<|end_header_id|>"), eot = special("<|eot_id|>");
  std::vector<int32_t> out;
  // Each piece is exactly one raw-text fragment of the rendered prompt, so the pre-tokenizer sees
  // the same text boundaries as when the rendered string is encoded.
  auto text = [&](std::string_view s) {
    const std::vector<int32_t> ids = tok.encode(s, false, false);
    out.insert(out.end(), ids.begin(), ids.end());
  };
  auto header = [&](std::string_view role) {
    out.push_back(start);
    text(role);
    out.push_back(end);
  };
  const auto [system, first] = split_system(messages);
  out.push_back(bot);
  header("system");
  std::string body(kSystemPreamble);
  body += date_string;
  body += "\n\n";
  body += system;
  text(body);
  out.push_back(eot);
  for (size_t i = first; i < messages.size(); ++i) {
    check_role(messages[i], i);
    header(messages[i].role);
    body = "\n\n";
    body += trim(messages[i].content);
    text(body);
    out.push_back(eot);
  }
  if (add_generation_prompt) {
    header("assistant");
    text("\n\n");
  }
  return out;
}

}  // namespace slm
