/* Circuits for the routers' constraints on the chosen set of experts (circuit.h). */
#ifndef PM_ROUTE_CIRCUIT_COMPILE_H
#define PM_ROUTE_CIRCUIT_COMPILE_H

#include "route/circuit.h"

/* Subsets of kmin..kmax of E experts: one root per size, the DP's distribution. */
circuit *circuit_compile_cardinality(int num_experts, int kmin, int kmax);
/* Exactly k of E experts, from at most max_groups of `groups` equal, contiguous groups. */
circuit *circuit_compile_groups(int num_experts, int k, int groups, int max_groups);
/* PM_OK, or an error naming the size when the circuit would be too large to evaluate (the
 * arguments must be valid otherwise). */
int circuit_check_cardinality_size(int num_experts, int kmax);
int circuit_check_groups_size(int num_experts, int k, int groups, int max_groups);
/* Why (E, k, groups, max_groups) has no group-limited circuit (a sentence naming the values
 * and what is allowed, in this thread's buffer), or NULL when it has one. */
const char *circuit_groups_invalid(int num_experts, int k, int groups, int max_groups);

#endif
