#include "kernels/quant/types.h"
