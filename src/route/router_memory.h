/* The bytes a router and its routing buffers allocate, for the model's memory estimate
 * (pm_model_memory_estimate). Kept beside the allocations in router.c; a test compares the
 * model's estimate with what it allocates. */
#ifndef PM_ROUTE_ROUTER_MEMORY_H
#define PM_ROUTE_ROUTER_MEMORY_H

#include <stdint.h>

#include "probmoe.h"

/* pm_router_create's allocations, with the scratch its forward pass grows to for
 * omp_get_max_threads() threads. cfg must pass pm_router_config_check. */
uint64_t router_memory_bytes(const pm_router_config *cfg);
/* pm_routing_create(router, max_tokens)'s allocations (saturating at UINT64_MAX). */
uint64_t routing_memory_bytes(const pm_router_config *cfg, uint64_t max_tokens);

#endif
