/* The circuit engine (circuit.h): building, then the passes over a batch of tokens. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "route/circuit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/fast_exp.h"
#include "route/subset_dp.h"

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ------------------------------------------------------------- building */

void circuit_builder_init(circuit_builder *b, int num_items) {
    memset(b, 0, sizeof *b);
    b->num_items = num_items;
    b->start_seconds = seconds_now();
    b->true_node = -1;
    b->positive = malloc(sizeof(int) * (size_t)num_items);
    b->negative = malloc(sizeof(int) * (size_t)num_items);
    b->first_child = malloc(sizeof(int));
    if (!b->positive || !b->negative || !b->first_child) {
        b->failed = true;
        return;
    }
    for (int i = 0; i < num_items; i++) b->positive[i] = b->negative[i] = -1;
    b->first_child[0] = 0;
}

/* Doubles *capacity until it holds `need` elements of `size` bytes. */
static bool grow(void **array, int *capacity, int need, size_t size) {
    if (need <= *capacity) return true;
    int next = *capacity ? *capacity : 64;
    while (next < need) next *= 2;
    void *grown = realloc(*array, size * (size_t)next);
    if (!grown) return false;
    *array = grown;
    *capacity = next;
    return true;
}

/* Room for one more node (kind, item and the offsets share node_capacity) and count edges. */
static bool reserve(circuit_builder *b, int count) {
    if (b->num_nodes + 2 > b->node_capacity) {
        int next = b->node_capacity ? 2 * b->node_capacity : 64;
        uint8_t *kind = realloc(b->kind, (size_t)next);
        if (kind) b->kind = kind;
        int *item = kind ? realloc(b->item, sizeof(int) * (size_t)next) : NULL;
        if (item) b->item = item;
        int *offsets = item ? realloc(b->first_child, sizeof(int) * (size_t)next) : NULL;
        if (!offsets) return false;
        b->first_child = offsets;
        b->node_capacity = next;
    }
    return grow((void **)&b->child, &b->edge_capacity, b->num_edges + count, sizeof(int));
}

static int append(circuit_builder *b, int kind, int item, const int *children, int count) {
    if (b->failed) return 0;
    if (!reserve(b, count)) {
        b->failed = true;
        return 0;
    }
    const int node = b->num_nodes++;
    b->kind[node] = (uint8_t)kind;
    b->item[node] = item;
    if (count) memcpy(b->child + b->num_edges, children, sizeof(int) * (size_t)count);
    b->num_edges += count;
    b->first_child[node + 1] = b->num_edges;
    return node;
}

int circuit_literal(circuit_builder *b, int item, bool negated) {
    int *slot = negated ? &b->negative[item] : &b->positive[item];
    if (b->failed) return 0;
    if (*slot < 0) *slot = append(b, negated ? CIRCUIT_NEGATED : CIRCUIT_LITERAL, item, NULL, 0);
    return *slot;
}

int circuit_true(circuit_builder *b) {
    if (b->true_node < 0 && !b->failed) b->true_node = append(b, CIRCUIT_TRUE, -1, NULL, 0);
    return b->true_node;
}

int circuit_node(circuit_builder *b, int kind, const int *children, int count) {
    if (b->failed) return 0;
    int kept[64], used = 0;
    if (kind == CIRCUIT_PRODUCT && count <= 64) {
        for (int i = 0; i < count; i++)
            if (b->kind[children[i]] != CIRCUIT_TRUE) kept[used++] = children[i];
        if (used == 0) return children[0];
        children = kept;
        count = used;
    }
    if (count == 1) return children[0];
    return append(b, kind, -1, children, count);
}

void circuit_add_root(circuit_builder *b, int node) {
    if (b->failed) return;
    if (!grow((void **)&b->root, &b->root_capacity, b->num_roots + 1, sizeof(int))) {
        b->failed = true;
        return;
    }
    b->root[b->num_roots++] = node;
}

static void builder_free(circuit_builder *b) {
    free(b->kind);
    free(b->item);
    free(b->first_child);
    free(b->child);
    free(b->root);
    free(b->positive);
    free(b->negative);
    memset(b, 0, sizeof *b);
}

/* Degrees and scopes, and the four properties of circuit.h. scope is (nodes, words) bits. */
static int check_properties(const circuit *c, uint64_t *scope, int words) {
    for (int n = 0; n < c->num_nodes; n++) {
        uint64_t *mine = scope + (size_t)n * words;
        memset(mine, 0, sizeof(uint64_t) * (size_t)words);
        const int kind = c->kind[n];
        if (kind == CIRCUIT_LITERAL || kind == CIRCUIT_NEGATED) {
            mine[c->item[n] / 64] |= 1ull << (c->item[n] % 64);
            c->degree[n] = kind == CIRCUIT_LITERAL;
            continue;
        }
        c->degree[n] = 0;
        for (int e = c->first_child[n]; e < c->first_child[n + 1]; e++) {
            const int ch = c->child[e];
            const uint64_t *theirs = scope + (size_t)ch * words;
            if (ch >= n) return pm_fail(PM_ERR_STATE, "circuit: node %d has child %d; children come first", n, ch);
            for (int w = 0; w < words; w++) {
                if (kind == CIRCUIT_PRODUCT && (mine[w] & theirs[w]))
                    return pm_fail(PM_ERR_STATE, "circuit: product node %d is not decomposable", n);
                if (kind == CIRCUIT_SUM && e > c->first_child[n] && mine[w] != theirs[w])
                    return pm_fail(PM_ERR_STATE, "circuit: sum node %d is not smooth", n);
                mine[w] |= theirs[w];
            }
            if (kind == CIRCUIT_PRODUCT) c->degree[n] += c->degree[ch];
            else if (e == c->first_child[n]) c->degree[n] = c->degree[ch];
            else if (c->degree[ch] != c->degree[n])
                return pm_fail(PM_ERR_STATE, "circuit: sum node %d mixes subsets of sizes %d and %d", n,
                               c->degree[n], c->degree[ch]);
        }
    }
    /* every root decides every expert (smoothness at the top) */
    for (int r = 0; r < c->num_roots; r++) {
        const uint64_t *top = scope + (size_t)c->root[r] * words;
        for (int i = 0; i < c->num_items; i++)
            if (!(top[i / 64] >> (i % 64) & 1))
                return pm_fail(PM_ERR_STATE, "circuit: root %d does not mention expert %d", r, i);
    }
    return PM_OK;
}

circuit *circuit_finish(circuit_builder *b) {
    if (b->failed || b->num_roots == 0) {
        builder_free(b);
        pm_fail(PM_ERR_NOMEM, "circuit: out of memory while compiling (or no root)");
        return NULL;
    }
    const size_t N = (size_t)b->num_nodes, M = (size_t)b->num_edges, R = (size_t)b->num_roots;
    const size_t E = (size_t)b->num_items;
    /* one allocation: the struct, then the int arrays, then the kinds */
    const size_t ints = 2 * N + (N + 1) + M + R + 2 * E;
    const size_t bytes = sizeof(circuit) + sizeof(int) * ints + N;
    circuit *c = malloc(bytes);
    if (!c) {
        builder_free(b);
        pm_fail(PM_ERR_NOMEM, "circuit: out of memory for %zu nodes", N);
        return NULL;
    }
    c->num_items = b->num_items;
    c->num_nodes = b->num_nodes;
    c->num_edges = b->num_edges;
    c->num_roots = b->num_roots;
    c->bytes = bytes;
    int *at = (int *)(c + 1);
    c->item = at, at += N;
    c->degree = at, at += N;
    c->first_child = at, at += N + 1;
    c->child = at, at += M;
    c->root = at, at += R;
    c->positive = at, at += E;
    c->negative = at, at += E;
    c->kind = (uint8_t *)at;
    memcpy(c->item, b->item, sizeof(int) * N);
    memcpy(c->first_child, b->first_child, sizeof(int) * (N + 1));
    if (M) memcpy(c->child, b->child, sizeof(int) * M);
    memcpy(c->root, b->root, sizeof(int) * R);
    memcpy(c->positive, b->positive, sizeof(int) * E);
    memcpy(c->negative, b->negative, sizeof(int) * E);
    memcpy(c->kind, b->kind, N);
    const double start = b->start_seconds;
    builder_free(b);
    const int words = (c->num_items + 63) / 64;
    uint64_t *scope = malloc(sizeof(uint64_t) * N * (size_t)words);
    int status = scope ? check_properties(c, scope, words)
                       : pm_fail(PM_ERR_NOMEM, "circuit: out of memory checking %zu nodes", N);
    free(scope);
    if (status < 0) {
        free(c);
        return NULL;
    }
    c->max_degree = 0;
    for (int r = 0; r < c->num_roots; r++)
        if (c->degree[c->root[r]] > c->max_degree) c->max_degree = c->degree[c->root[r]];
    c->build_seconds = seconds_now() - start;
    return c;
}

void circuit_free(circuit *c) { free(c); }

/* ------------------------------------------------------------ evaluating */

/*
 * Node tables are node-major with a stride of `stride` lanes: value[node·stride + l]. The
 * linear system always uses CIRCUIT_LANES lanes (unused ones repeat lane 0 and are ignored),
 * so that each node is one vector operation; the log system, used for rare extreme tokens,
 * loops over its lanes.
 */
typedef double lane_vector __attribute__((vector_size(CIRCUIT_LANES * sizeof(double)), aligned(sizeof(double))));

static inline double log_add_exp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

size_t circuit_workspace(const circuit *c, int lanes) {
    (void)lanes; /* the linear system always fills CIRCUIT_LANES lanes */
    return (size_t)CIRCUIT_LANES * (4 * (size_t)c->num_nodes + (size_t)c->num_roots);
}

bool circuit_is_linear(const circuit *c, const float *theta) {
    return subset_dp_is_linear(theta, c->num_items, c->max_degree > 0 ? c->max_degree : 1);
}

static inline int child_count(const circuit *c, int n) { return c->first_child[n + 1] - c->first_child[n]; }

/* V for the linear system: w_i = exp(θ_i − shift) at x_i, 1 at ¬x_i and true. */
static void forward_linear(circuit_eval *ev) {
    const circuit *c = ev->c;
    lane_vector *V = (lane_vector *)ev->value;
    const lane_vector one = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int n = 0; n < c->num_nodes; n++) {
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        switch (c->kind[n]) {
        case CIRCUIT_LITERAL:
            for (int l = 0; l < CIRCUIT_LANES; l++)
                V[n][l] = pm_exp((double)ev->theta[l][c->item[n]] - ev->shift[l]);
            break;
        case CIRCUIT_SUM: {
            lane_vector acc = V[ch[0]];
            for (int e = 1; e < count; e++) acc += V[ch[e]];
            V[n] = acc;
            break;
        }
        case CIRCUIT_PRODUCT: {
            lane_vector acc = V[ch[0]];
            for (int e = 1; e < count; e++) acc *= V[ch[e]];
            V[n] = acc;
            break;
        }
        default:
            V[n] = one;
        }
    }
}

/* log V for the log system, lane by lane. */
static void forward_log(circuit_eval *ev) {
    const circuit *c = ev->c;
    const int S = ev->stride;
    double *V = ev->value;
    for (int n = 0; n < c->num_nodes; n++) {
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        for (int l = 0; l < ev->lanes; l++) {
            double v = 0.0;
            if (c->kind[n] == CIRCUIT_LITERAL) {
                v = ev->theta[l][c->item[n]];
            } else if (c->kind[n] == CIRCUIT_SUM) {
                double top = -INFINITY, sum = 0.0;
                for (int e = 0; e < count; e++) top = fmax(top, V[(size_t)ch[e] * S + l]);
                for (int e = 0; e < count; e++) sum += exp(V[(size_t)ch[e] * S + l] - top);
                v = top + log(sum);
            } else if (c->kind[n] == CIRCUIT_PRODUCT) {
                for (int e = 0; e < count; e++) v += V[(size_t)ch[e] * S + l];
            }
            V[(size_t)n * S + l] = v;
        }
    }
}

void circuit_forward(circuit_eval *ev, const circuit *c, const float *const *theta, int lanes,
                     bool log_domain, double *workspace) {
    ev->c = c;
    ev->lanes = lanes;
    ev->stride = log_domain ? lanes : CIRCUIT_LANES;
    ev->log_domain = log_domain;
    const size_t cells = (size_t)c->num_nodes * ev->stride;
    ev->value = workspace;
    ev->tangent = ev->value + cells;
    ev->adjoint = ev->tangent + cells;
    ev->adjoint_tangent = ev->adjoint + cells;
    ev->root_weight = ev->adjoint_tangent + cells;
    for (int l = 0; l < ev->stride; l++) {
        const float *token = theta[l < lanes ? l : 0];
        ev->theta[l] = token;
        float hi = token[0];
        for (int i = 1; i < c->num_items; i++) hi = token[i] > hi ? token[i] : hi;
        ev->shift[l] = log_domain ? 0.0 : hi;
    }
    if (log_domain) forward_log(ev);
    else forward_linear(ev);
    /* Z = Σ_r exp(degree_r·shift)·V_r, scaled by exp(−c) with c the largest log term */
    const int S = ev->stride;
    const double *V = ev->value;
    for (int l = 0; l < S; l++) {
        double top = -INFINITY;
        for (int r = 0; r < c->num_roots; r++) {
            const double v = V[(size_t)c->root[r] * S + l];
            top = fmax(top, c->degree[c->root[r]] * ev->shift[l] + (log_domain ? v : log(v)));
        }
        double z = 0.0;
        for (int r = 0; r < c->num_roots; r++) {
            const double v = V[(size_t)c->root[r] * S + l];
            double *weight = ev->root_weight + (size_t)r * S + l;
            if (log_domain) {
                *weight = 0.0;
                z += exp(v - top);
            } else {
                *weight = exp(c->degree[c->root[r]] * ev->shift[l] - top);
                z += *weight * v;
            }
        }
        ev->z_scaled[l] = log_domain ? 1.0 : z;
        ev->log_z[l] = top + log(z);
    }
}

/* The upward tangent along u: D V (linear), D log V (log). u is (lanes, E) token-major. */
static void tangent_linear(circuit_eval *ev, const double *u) {
    const circuit *c = ev->c;
    const int E = c->num_items;
    const lane_vector *V = (const lane_vector *)ev->value;
    lane_vector *D = (lane_vector *)ev->tangent;
    const lane_vector zero = {0};
    for (int n = 0; n < c->num_nodes; n++) {
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        switch (c->kind[n]) {
        case CIRCUIT_LITERAL: {
            lane_vector d = zero;
            for (int l = 0; l < ev->lanes; l++) d[l] = u[(size_t)l * E + c->item[n]];
            D[n] = d * V[n];
            break;
        }
        case CIRCUIT_SUM: {
            lane_vector acc = D[ch[0]];
            for (int e = 1; e < count; e++) acc += D[ch[e]];
            D[n] = acc;
            break;
        }
        case CIRCUIT_PRODUCT: {
            /* the product rule over a running prefix: (P·V_c)' = P'·V_c + P·D_c */
            lane_vector prefix = V[ch[0]], tangent = D[ch[0]];
            for (int e = 1; e < count; e++) {
                tangent = tangent * V[ch[e]] + prefix * D[ch[e]];
                prefix *= V[ch[e]];
            }
            D[n] = tangent;
            break;
        }
        default:
            D[n] = zero;
        }
    }
}

static void tangent_log(circuit_eval *ev, const double *u) {
    const circuit *c = ev->c;
    const int S = ev->stride, E = c->num_items;
    const double *V = ev->value;
    double *D = ev->tangent;
    for (int n = 0; n < c->num_nodes; n++) {
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        for (int l = 0; l < ev->lanes; l++) {
            double d = 0.0;
            if (c->kind[n] == CIRCUIT_LITERAL) d = u[(size_t)l * E + c->item[n]];
            else if (c->kind[n] == CIRCUIT_SUM)
                for (int e = 0; e < count; e++)
                    d += exp(V[(size_t)ch[e] * S + l] - V[(size_t)n * S + l]) * D[(size_t)ch[e] * S + l];
            else if (c->kind[n] == CIRCUIT_PRODUCT)
                for (int e = 0; e < count; e++) d += D[(size_t)ch[e] * S + l];
            D[(size_t)n * S + l] = d;
        }
    }
}

/* Linear downward pass: A = ∂Z/∂V (scaled by the root weights) and, with tangents, its
 * tangent DA. A product sends each child the product of its siblings (and the tangent of it). */
static void backward_linear(circuit_eval *ev, bool tangents) {
    const circuit *c = ev->c;
    const lane_vector *V = (const lane_vector *)ev->value, *D = (const lane_vector *)ev->tangent;
    lane_vector *A = (lane_vector *)ev->adjoint, *DA = (lane_vector *)ev->adjoint_tangent;
    const lane_vector zero = {0}, one = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int n = 0; n < c->num_nodes; n++) A[n] = DA[n] = zero;
    for (int r = 0; r < c->num_roots; r++) A[c->root[r]] += ((const lane_vector *)ev->root_weight)[r];
    for (int n = c->num_nodes - 1; n >= 0; n--) {
        const int kind = c->kind[n];
        if (kind != CIRCUIT_SUM && kind != CIRCUIT_PRODUCT) continue;
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        const lane_vector an = A[n], dan = DA[n];
        if (kind == CIRCUIT_SUM) {
            for (int e = 0; e < count; e++) {
                A[ch[e]] += an;
                if (tangents) DA[ch[e]] += dan;
            }
        } else if (count == 2) {
            const int a = ch[0], b = ch[1];
            A[a] += an * V[b];
            A[b] += an * V[a];
            if (tangents) {
                DA[a] += dan * V[b] + an * D[b];
                DA[b] += dan * V[a] + an * D[a];
            }
        } else {
            for (int e = 0; e < count; e++) {
                lane_vector rest = one, rest_tangent = zero;
                for (int j = 0; j < count; j++) {
                    if (j == e) continue;
                    rest_tangent = rest_tangent * V[ch[j]] + rest * D[ch[j]];
                    rest *= V[ch[j]];
                }
                A[ch[e]] += an * rest;
                if (tangents) DA[ch[e]] += dan * rest + an * rest_tangent;
            }
        }
    }
}

/* Merges a contribution (log a, its tangent r) into a log adjoint and its tangent. */
static inline void merge_log(double *la, double *ra, double a, double r) {
    if (a == -INFINITY) return;
    const double merged = log_add_exp(*la, a);
    *ra = (*la == -INFINITY ? 0.0 : *ra * exp(*la - merged)) + r * exp(a - merged);
    *la = merged;
}

/* Log downward pass: log A and D log A, each contribution merged as a log-add-exp with its
 * tangent as the matching convex combination. */
static void backward_log(circuit_eval *ev, bool tangents) {
    const circuit *c = ev->c;
    const int S = ev->stride;
    const double *V = ev->value, *D = ev->tangent;
    double *A = ev->adjoint, *DA = ev->adjoint_tangent;
    for (size_t i = 0; i < (size_t)c->num_nodes * S; i++) A[i] = -INFINITY, DA[i] = 0.0;
    for (int r = 0; r < c->num_roots; r++)
        for (int l = 0; l < ev->lanes; l++) {
            const size_t at = (size_t)c->root[r] * S + l;
            merge_log(A + at, DA + at, 0.0, 0.0);
        }
    for (int n = c->num_nodes - 1; n >= 0; n--) {
        const int kind = c->kind[n];
        if (kind != CIRCUIT_SUM && kind != CIRCUIT_PRODUCT) continue;
        const int *ch = c->child + c->first_child[n], count = child_count(c, n);
        for (int e = 0; e < count; e++)
            for (int l = 0; l < ev->lanes; l++) {
                double rest = 0.0, rest_tangent = 0.0;
                if (kind == CIRCUIT_PRODUCT)
                    for (int j = 0; j < count; j++)
                        if (j != e) {
                            rest += V[(size_t)ch[j] * S + l];
                            rest_tangent += tangents ? D[(size_t)ch[j] * S + l] : 0.0;
                        }
                merge_log(A + (size_t)ch[e] * S + l, DA + (size_t)ch[e] * S + l, A[(size_t)n * S + l] + rest,
                          DA[(size_t)n * S + l] + rest_tangent);
            }
    }
}

/* m_i = w_i A(x_i) / Z and 1 − m_i = A(¬x_i) / Z of lane l (smoothness: Z = w_i A(x_i) + A(¬x_i)). */
static void item_marginal(const circuit_eval *ev, int l, int i, double *m, double *not_m) {
    const circuit *c = ev->c;
    const int S = ev->stride, pos = c->positive[i], neg = c->negative[i];
    if (ev->log_domain) {
        *m = pos < 0 ? 0.0 : exp(ev->adjoint[(size_t)pos * S + l] + ev->value[(size_t)pos * S + l] - ev->log_z[l]);
        *not_m = neg < 0 ? 0.0 : exp(ev->adjoint[(size_t)neg * S + l] - ev->log_z[l]);
    } else {
        const double scale = 1.0 / ev->z_scaled[l];
        *m = pos < 0 ? 0.0 : ev->adjoint[(size_t)pos * S + l] * ev->value[(size_t)pos * S + l] * scale;
        *not_m = neg < 0 ? 0.0 : ev->adjoint[(size_t)neg * S + l] * scale;
    }
}

void circuit_marginals(circuit_eval *ev, double *marginals) {
    if (ev->log_domain) backward_log(ev, false);
    else backward_linear(ev, false);
    const int E = ev->c->num_items;
    for (int l = 0; l < ev->lanes; l++)
        for (int i = 0; i < E; i++) {
            double not_m;
            item_marginal(ev, l, i, &marginals[(size_t)l * E + i], &not_m);
        }
}

/*
 * Cov·u = D m along u. With G = A(x_i), N = A(¬x_i): m_i = w_i G / (w_i G + N), so
 * D m_i = m_i (1 − m_i)(u_i + D log G − D log N), which keeps its relative accuracy for
 * near-certain experts (as the DP's formula, subset_dp.c).
 */
void circuit_cov_mv(circuit_eval *ev, const double *u, double *out, double *marginals) {
    const circuit *c = ev->c;
    const int S = ev->stride, E = c->num_items;
    if (ev->log_domain) {
        tangent_log(ev, u);
        backward_log(ev, true);
    } else {
        tangent_linear(ev, u);
        backward_linear(ev, true);
    }
    for (int l = 0; l < ev->lanes; l++)
        for (int i = 0; i < E; i++) {
            double m, not_m;
            item_marginal(ev, l, i, &m, &not_m);
            if (marginals) marginals[(size_t)l * E + i] = m;
            const int pos = c->positive[i], neg = c->negative[i];
            double result = 0.0;
            if (pos >= 0 && neg >= 0) {
                const double ui = u[(size_t)l * E + i];
                const double dg = ev->adjoint_tangent[(size_t)pos * S + l];
                const double dn = ev->adjoint_tangent[(size_t)neg * S + l];
                if (ev->log_domain) {
                    result = m * not_m * (ui + dg - dn);
                } else {
                    const double scale = 1.0 / ev->z_scaled[l], w = ev->value[(size_t)pos * S + l];
                    result = m * not_m * ui + w * dg * scale * not_m - m * dn * scale;
                }
            }
            out[(size_t)l * E + i] = result;
        }
}

/* ------------------------------------------------------------- sampling */

/* The probability of child value v under parent value parent (lane l). */
static inline double share(const circuit_eval *ev, double v, double parent) {
    return ev->log_domain ? exp(v - parent) : v / parent;
}

static void sort_ints(int *a, int count) {
    for (int i = 1; i < count; i++) {
        int v = a[i], j = i - 1;
        while (j >= 0 && a[j] > v) a[j + 1] = a[j], j--;
        a[j + 1] = v;
    }
}

int circuit_sample(const circuit_eval *ev, int lane, pm_rng *rng, int *idx, int *stack) {
    const circuit *c = ev->c;
    const int L = ev->stride, l = lane;
    int chosen_root = c->num_roots - 1;
    if (c->num_roots > 1) {
        /* invert the distribution of the roots (the sizes); rounding falls to the last */
        const double u = pm_rng_uniform(rng);
        double acc = 0.0;
        for (int r = 0; r < c->num_roots; r++) {
            const double v = ev->value[(size_t)c->root[r] * L + l];
            acc += ev->log_domain ? exp(v - ev->log_z[l]) : ev->root_weight[(size_t)r * L + l] * v / ev->z_scaled[l];
            if (u < acc) {
                chosen_root = r;
                break;
            }
        }
    }
    int depth = 0, count = 0;
    stack[depth++] = c->root[chosen_root];
    double u = 0.0;
    bool spent = true;
    while (depth > 0) {
        const int n = stack[--depth];
        const int *ch = c->child + c->first_child[n], children = c->first_child[n + 1] - c->first_child[n];
        switch (c->kind[n]) {
        case CIRCUIT_LITERAL:
            idx[count++] = c->item[n];
            spent = true; /* a chosen expert: the next choice draws afresh, as the DP does */
            break;
        case CIRCUIT_SUM: {
            if (spent) u = pm_rng_uniform(rng), spent = false;
            const double parent = ev->value[(size_t)n * L + l];
            double acc = 0.0, p = 0.0;
            int pick = -1;
            for (int e = 0; e < children; e++) {
                p = share(ev, ev->value[(size_t)ch[e] * L + l], parent);
                if (u < acc + p) {
                    pick = e;
                    break;
                }
                acc += p;
            }
            if (pick < 0) { /* rounding: the last child that can be taken */
                pick = children - 1;
                p = share(ev, ev->value[(size_t)ch[pick] * L + l], parent);
                acc -= p;
            }
            /* the rest of u, uniform again given the pick, serves the next sum */
            u = p > 0.0 ? (u - acc) / p : 0.0;
            u = u < 0.0 ? 0.0 : u >= 1.0 ? 0x1.fffffffffffffp-1 : u;
            stack[depth++] = ch[pick];
            break;
        }
        case CIRCUIT_PRODUCT:
            for (int e = children - 1; e >= 0; e--) stack[depth++] = ch[e]; /* visited in order */
            break;
        default:
            break;
        }
    }
    sort_ints(idx, count);
    return count;
}

/* ------------------------------------------------------------------ MAP */

size_t circuit_map_workspace(const circuit *c) { return (size_t)c->num_nodes + (size_t)c->num_nodes / 2 + 1; }

int circuit_map(const circuit *c, const float *theta, int *idx, double *workspace) {
    double *best = workspace;
    for (int n = 0; n < c->num_nodes; n++) {
        const int *ch = c->child + c->first_child[n], count = c->first_child[n + 1] - c->first_child[n];
        switch (c->kind[n]) {
        case CIRCUIT_LITERAL:
            best[n] = theta[c->item[n]];
            break;
        case CIRCUIT_SUM:
            best[n] = -INFINITY;
            for (int e = 0; e < count; e++) best[n] = fmax(best[n], best[ch[e]]);
            break;
        case CIRCUIT_PRODUCT:
            best[n] = 0.0;
            for (int e = 0; e < count; e++) best[n] += best[ch[e]];
            break;
        default:
            best[n] = 0.0;
        }
    }
    int top = c->root[0];
    for (int r = 1; r < c->num_roots; r++)
        if (best[c->root[r]] > best[top]) top = c->root[r];
    /* the walk down: the stack reuses the space after the values (a product pushes its
     * children, a sum one; the depth stays below the nodes) */
    int *stack = (int *)(best + c->num_nodes), depth = 0, count = 0;
    stack[depth++] = top;
    while (depth > 0) {
        const int n = stack[--depth];
        const int *ch = c->child + c->first_child[n], children = c->first_child[n + 1] - c->first_child[n];
        if (c->kind[n] == CIRCUIT_LITERAL) {
            idx[count++] = c->item[n];
        } else if (c->kind[n] == CIRCUIT_SUM) {
            int pick = 0;
            for (int e = 1; e < children; e++)
                if (best[ch[e]] > best[ch[pick]]) pick = e;
            stack[depth++] = ch[pick];
        } else if (c->kind[n] == CIRCUIT_PRODUCT) {
            for (int e = 0; e < children; e++) stack[depth++] = ch[e];
        }
    }
    sort_ints(idx, count);
    return count;
}
