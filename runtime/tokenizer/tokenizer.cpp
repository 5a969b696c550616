#include "runtime/tokenizer/tokenizer.h"
