/*
 * A compiled circuit for distributions over expert subsets: p(S) ∝ ∏_{i∈S} exp(θ_i) over the
 * subsets S a circuit accepts (the SIMPLE / SDD line of work, arXiv 2210.01941). Nodes are
 * literals (x_i: expert i chosen; ¬x_i: not chosen), the constant true, sums and products,
 * stored in topological order (children before parents) in flat arrays, with the children
 * of all nodes in one CSR array.
 *
 * The compilers (circuit_compile.c) build circuits that are
 *  - decomposable: a product's children mention disjoint experts;
 *  - deterministic: a sum's children accept disjoint sets of subsets;
 *  - smooth: every child of a sum mentions the same experts (every accepted subset decides
 *    every expert of the node by one literal);
 *  - sized: every subset a node accepts has the same number of chosen experts, its degree.
 * Then one upward pass gives Z, a downward pass the marginals, their forward-mode tangent
 * Cov·u, and a top-down walk an exact sample. circuit_finish checks the four properties.
 *
 * A circuit may have several roots (one per subset size for a size range); Z sums them.
 * Two number systems, as the dynamic program (subset_dp.h): linear, with the weights
 * exp(θ_i − max θ) and root r scaled by exp(degree_r·max θ − c); and log, every sum a
 * log-add-exp, for logits whose products of up to max_degree weights could underflow.
 */
#ifndef PM_ROUTE_CIRCUIT_H
#define PM_ROUTE_CIRCUIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probmoe.h"

enum { CIRCUIT_TRUE, CIRCUIT_LITERAL, CIRCUIT_NEGATED, CIRCUIT_SUM, CIRCUIT_PRODUCT };

/* Most tokens one batched pass evaluates at once (one per lane of the node arrays). */
enum { CIRCUIT_LANES = 8 };

typedef struct {
    int num_items;      /* E */
    int num_nodes, num_edges, num_roots;
    int max_degree;     /* the largest root degree (kmax) */
    uint8_t *kind;      /* (nodes) */
    int *item;          /* (nodes) the expert of a literal, else −1 */
    int *degree;        /* (nodes) chosen experts in every subset the node accepts */
    int *first_child;   /* (nodes + 1) CSR offsets into child */
    int *child;         /* (edges) */
    int *root;          /* (roots) */
    int *positive, *negative; /* (E) the literal node of x_i / ¬x_i, −1 if none */
    size_t bytes;       /* this circuit's one allocation */
    double build_seconds;
} circuit;

/* ------------------------------------------------------------- building */

/* A circuit under construction; nodes are appended children first. */
typedef struct {
    int num_items, num_nodes, num_edges, num_roots;
    int true_node;      /* the one constant node, −1 until made */
    int node_capacity, edge_capacity, root_capacity;
    uint8_t *kind;
    int *item, *first_child, *child, *root, *positive, *negative;
    bool failed;        /* out of memory: circuit_finish returns NULL */
    double start_seconds;
} circuit_builder;

void circuit_builder_init(circuit_builder *b, int num_items);
/* The node of x_i (negated: ¬x_i), made on first use. */
int circuit_literal(circuit_builder *b, int item, bool negated);
int circuit_true(circuit_builder *b);
/* A sum or product of count children (count >= 1; a single child is returned as it is, and
 * true children of a product are dropped). */
int circuit_node(circuit_builder *b, int kind, const int *children, int count);
void circuit_add_root(circuit_builder *b, int node);
/* Checks the properties above and packs the circuit into one allocation; frees the builder.
 * NULL with pm_last_error() set on failure. */
circuit *circuit_finish(circuit_builder *b);
void circuit_free(circuit *c);

/* ------------------------------------------------------------ evaluating */

/* The node tables of one pass over `lanes` tokens (node-major: value[node·stride + l]). */
typedef struct {
    const circuit *c;
    int lanes;
    int stride;                       /* lanes the tables hold per node (CIRCUIT_LANES when linear) */
    bool log_domain;
    double shift[CIRCUIT_LANES];      /* linear: max θ of the token */
    double log_z[CIRCUIT_LANES];
    double z_scaled[CIRCUIT_LANES];   /* linear: Σ_r root_weight·value = Z·exp(−c) */
    double *root_weight;              /* (roots, stride) linear: exp(degree·shift − c); log: 0 */
    double *value;                    /* (nodes, stride) linear value or its log */
    double *tangent, *adjoint, *adjoint_tangent; /* (nodes, stride) for the backward sweeps */
    const float *theta[CIRCUIT_LANES];
} circuit_eval;

/* Doubles of workspace a pass over up to CIRCUIT_LANES tokens needs (the same for any lanes). */
size_t circuit_workspace(const circuit *c, int lanes);
/* Whether the linear system is exact for these logits (as subset_dp_is_linear). */
bool circuit_is_linear(const circuit *c, const float *theta);
/* The upward pass for lanes tokens (theta[l] holds E logits); all in the linear system
 * (each must pass circuit_is_linear) unless log_domain. */
void circuit_forward(circuit_eval *ev, const circuit *c, const float *const *theta, int lanes,
                     bool log_domain, double *workspace);
/* Marginals P(i ∈ S) of every lane, (lanes, E) token-major. */
void circuit_marginals(circuit_eval *ev, double *marginals);
/* out = Cov(z)·u per lane (u, out: (lanes, E) token-major), and the marginals if not NULL. */
void circuit_cov_mv(circuit_eval *ev, const double *u, double *out, double *marginals);
/* One exact sample of lane l: writes |S| indices increasing and returns |S|. Uniforms are
 * drawn as the DP's sampler draws them (one for the root when there are several, then one
 * per chosen expert, reusing the rest of a uniform across the sums it passes), so on the
 * cardinality circuits its samples are the DP's up to rounding. stack: num_nodes ints. */
int circuit_sample(const circuit_eval *ev, int lane, pm_rng *rng, int *idx, int *stack);
/* The most probable accepted subset (max-product pass; ties to the first child): writes its
 * indices increasing and returns its size. workspace: circuit_map_workspace doubles. */
size_t circuit_map_workspace(const circuit *c);
int circuit_map(const circuit *c, const float *theta, int *idx, double *workspace);

#endif
