// slm::Error: the one exception type for untrusted input, I/O and user mistakes.
// Libraries throw it with a message that names the file, offset, key or tensor at fault;
// tools/ catch it at the top and print one line "error: ..." with a non-zero exit code.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace slm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <class... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace slm

// Checks a condition on untrusted input; throws slm::Error with the formatted message.
#define SLM_CHECK(cond, ...)                 \
  do {                                       \
    if (!(cond)) ::slm::fail(__VA_ARGS__);   \
  } while (0)

// Internal invariant (a bug if it fires): aborts with file:line.
#define SLM_ASSERT(cond)                                                                    \
  do {                                                                                      \
    if (!(cond)) ::slm::detail::assert_fail(#cond, __FILE__, __LINE__);                     \
  } while (0)

namespace slm::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line);
}
