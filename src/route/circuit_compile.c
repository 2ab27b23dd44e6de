/* Compilers from constraints on the chosen set of experts to circuits (circuit.h): a size
 * range kmin..kmax (the DP's distribution), and exactly k experts from at most M of G equal,
 * contiguous groups (DeepSeek-V3's group-limited routing, made exact). */
#include "route/circuit_compile.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"

/*
 * "m chosen among items first .. first + j − 1", for j = 0..count and m in [lo(j), hi(j)],
 * the DP's table F[m][j] as nodes: P(j, m) = ¬x·P(j − 1, m) + x·P(j − 1, m − 1), with the
 * skip child first, so that the sampler's walk from the last item is the DP's (subset_dp.c).
 * table is (count + 1, kmax + 1), −1 where a cell cannot lead to an accepted subset.
 * kmin prunes the cells that cannot reach kmin with the items left.
 */
static void cardinality_table(circuit_builder *b, int first, int count, int kmin, int kmax, int *table) {
    const int width = kmax + 1;
    for (int i = 0; i < (count + 1) * width; i++) table[i] = -1;
    table[0] = circuit_true(b);
    for (int j = 1; j <= count; j++) {
        const int lo = kmin - (count - j) > 0 ? kmin - (count - j) : 0, hi = j < kmax ? j : kmax;
        const int item = first + j - 1;
        for (int m = lo; m <= hi; m++) {
            int children[2], used = 0;
            const int skip = table[(j - 1) * width + m];
            const int take = m >= 1 ? table[(j - 1) * width + m - 1] : -1;
            if (skip >= 0) {
                const int pair[2] = {circuit_literal(b, item, true), skip};
                children[used++] = circuit_node(b, CIRCUIT_PRODUCT, pair, 2);
            }
            if (take >= 0) {
                const int pair[2] = {circuit_literal(b, item, false), take};
                children[used++] = circuit_node(b, CIRCUIT_PRODUCT, pair, 2);
            }
            if (used) table[j * width + m] = circuit_node(b, CIRCUIT_SUM, children, used);
        }
    }
}

/* Most table cells a compiler builds (about three nodes each): beyond, the passes would need
 * gigabytes per thread, where the DP needs a table of the same cells once. */
#define CIRCUIT_MAX_CELLS (1 << 20)

static bool too_large(double cells, const char *what) {
    if (cells <= CIRCUIT_MAX_CELLS) return false;
    pm_fail(PM_ERR_ARG, "circuit: %s would need about %.3g nodes (at most %d table cells, about %d nodes, are "
            "compiled); lower k or kmax, or use impl = dp", what, 3.0 * cells, CIRCUIT_MAX_CELLS,
            3 * CIRCUIT_MAX_CELLS);
    return true;
}

int circuit_check_cardinality_size(int num_experts, int kmax) {
    return too_large(((double)num_experts + 1) * ((double)kmax + 1), "the size range") ? PM_ERR_ARG : PM_OK;
}

int circuit_check_groups_size(int num_experts, int k, int groups, int max_groups) {
    const int size = num_experts / groups, group_k = k < size ? k : size;
    const double cells =
        (double)groups * ((size + 1.0) * (group_k + 1.0) + (k + 1.0) * (max_groups + 1.0) * (group_k + 1.0));
    return too_large(cells, "the group limit") ? PM_ERR_ARG : PM_OK;
}

circuit *circuit_compile_cardinality(int num_experts, int kmin, int kmax) {
    if (num_experts < 1 || kmin < 0 || kmin > kmax || kmax > num_experts) {
        pm_fail(PM_ERR_ARG, "circuit: sizes %d..%d of %d experts; need 0 <= kmin <= kmax <= E", kmin, kmax,
                num_experts);
        return NULL;
    }
    if (circuit_check_cardinality_size(num_experts, kmax) < 0) return NULL;
    circuit_builder b;
    circuit_builder_init(&b, num_experts);
    int *table = malloc(sizeof(int) * ((size_t)num_experts + 1) * ((size_t)kmax + 1));
    if (!table) b.failed = true;
    if (!b.failed) {
        cardinality_table(&b, 0, num_experts, kmin, kmax, table);
        for (int m = kmin; m <= kmax; m++) circuit_add_root(&b, table[(size_t)num_experts * (kmax + 1) + m]);
    }
    free(table);
    return circuit_finish(&b);
}

const char *circuit_groups_invalid(int num_experts, int k, int groups, int max_groups) {
    static _Thread_local char why[256];
    if (groups < 1 || max_groups < 1)
        snprintf(why, sizeof why, "groups = %d, max_groups = %d; both must be at least 1", groups, max_groups);
    else if (num_experts % groups != 0)
        snprintf(why, sizeof why, "groups = %d does not divide num_experts = %d; the groups are equal and "
                 "contiguous, so choose a divisor of %d", groups, num_experts, num_experts);
    else if (max_groups > groups)
        snprintf(why, sizeof why, "max_groups = %d > groups = %d; a token can touch at most the %d groups there are",
                 max_groups, groups, groups);
    else if (k < 1 || k > max_groups * (num_experts / groups))
        snprintf(why, sizeof why, "k = %d, but max_groups = %d groups of %d experts hold at most %d; need "
                 "1 <= k <= %d (raise max_groups or lower k)", k, max_groups, num_experts / groups,
                 max_groups * (num_experts / groups), max_groups * (num_experts / groups));
    else
        return NULL;
    return why;
}

/*
 * H(g, r, a): r experts still to choose from groups g..G−1, touching at most a more groups:
 *   H(g, r, a) = Σ_c W(g, c) · H(g + 1, r − c, a − [c > 0]),   H(G, 0, a) = true,
 * with W(g, c) "exactly c of group g" (a cardinality table over the group's items). The
 * children of a sum differ in c, so the circuit is deterministic; a ≥ G − g leaves the limit
 * slack, so those cells are shared.
 */
circuit *circuit_compile_groups(int num_experts, int k, int groups, int max_groups) {
    const char *why = circuit_groups_invalid(num_experts, k, groups, max_groups);
    if (why) {
        pm_fail(PM_ERR_ARG, "circuit: %s", why);
        return NULL;
    }
    const int size = num_experts / groups, group_k = k < size ? k : size;
    const int width = max_groups + 1;
    if (circuit_check_groups_size(num_experts, k, groups, max_groups) < 0) return NULL;
    circuit_builder b;
    circuit_builder_init(&b, num_experts);
    int *within = malloc(sizeof(int) * ((size_t)size + 1) * ((size_t)group_k + 1));
    /* H for the group in hand and the one after it: (k + 1, max_groups + 1) each */
    int *here = malloc(sizeof(int) * ((size_t)k + 1) * width), *after = malloc(sizeof(int) * ((size_t)k + 1) * width);
    int *children = malloc(sizeof(int) * ((size_t)group_k + 1));
    if (!within || !here || !after || !children) b.failed = true;
    if (!b.failed) {
        const int done = circuit_true(&b);
        for (int r = 0; r <= k; r++)
            for (int a = 0; a < width; a++) after[r * width + a] = r == 0 ? done : -1;
        for (int g = groups - 1; g >= 0 && !b.failed; g--) {
            cardinality_table(&b, g * size, size, 0, group_k, within);
            const int slack = groups - g; /* groups left, this one included */
            for (int r = 0; r <= k; r++)
                for (int a = 0; a < width; a++) {
                    here[r * width + a] = -1;
                    if (a > slack) { /* the same as a = slack: the limit cannot bind */
                        here[r * width + a] = here[r * width + slack];
                        continue;
                    }
                    int used = 0;
                    for (int c = 0; c <= group_k && c <= r; c++) {
                        const int left = a - (c > 0);
                        const int rest = left >= 0 ? after[(r - c) * width + left] : -1;
                        const int part = within[(size_t)size * (group_k + 1) + c];
                        if (rest < 0 || part < 0) continue;
                        const int pair[2] = {part, rest};
                        children[used++] = circuit_node(&b, CIRCUIT_PRODUCT, pair, 2);
                    }
                    if (used) here[r * width + a] = circuit_node(&b, CIRCUIT_SUM, children, used);
                }
            int *swap = after;
            after = here;
            here = swap;
        }
        const int root = after[k * width + max_groups];
        if (root >= 0) circuit_add_root(&b, root);
    }
    free(within);
    free(here);
    free(after);
    free(children);
    return circuit_finish(&b);
}
