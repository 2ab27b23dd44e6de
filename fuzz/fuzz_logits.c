/* Router logits text (`probmoe route`), parsed from a buffer that is not NUL-terminated (a
 * copy of exactly the input's bytes, so ASan sees any read past the end); the parsed rows are
 * then routed by probmoe as the command would. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "route/logits_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    float *values = NULL;
    int rows = 0, experts = 0;
    if (logits_text_parse(text, size, "logits.txt", &values, &rows, &experts) == PM_OK) {
        if (rows < 1 || experts < 1 || experts > LOGITS_TEXT_MAX_EXPERTS) fuzz_fail("impossible shape accepted", NULL);
        for (size_t i = 0; i < (size_t)rows * (size_t)experts; i++)
            if (!isfinite(values[i])) fuzz_fail("a non-finite logit was accepted", NULL);
        if (experts >= 2 && rows <= 64) {
            pm_router_config cfg = pm_router_config_default(PM_ROUTER_PROBMOE, experts, experts / 2);
            pm_router *router = pm_router_create(&cfg);
            pm_routing *routing = router ? pm_routing_create(router, rows) : NULL;
            pm_rng rng;
            pm_rng_init(&rng, 1, 0);
            if (routing && pm_router_forward(router, routing, values, rows, true, &rng) < 0)
                fuzz_fail("finite logits were not routed", pm_last_error());
            pm_routing_free(routing);
            pm_router_free(router);
        }
    }
    free(values);
    free(text);
    return 0;
}
