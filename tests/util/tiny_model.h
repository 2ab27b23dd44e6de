/* The tiny model configuration most model-level tests share: 2 layers, hidden 32, 4 heads
 * over 2 KV heads, 6 experts of width 24, k 2, vocabulary 50, context 64. */
#ifndef PM_TEST_TINY_MODEL_H
#define PM_TEST_TINY_MODEL_H

#include "probmoe.h"

pm_model_config tiny_model_config(pm_router_kind kind);

#endif
