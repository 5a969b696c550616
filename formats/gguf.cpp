#include "formats/gguf.h"
