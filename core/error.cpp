#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace slm::detail {
void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "slmrun internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace slm::detail
