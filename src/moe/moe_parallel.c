/*
 * The MoE layer with its experts spread over an expert group (moe.h). Received rows come
 * source by source, each source's in its own sorted order (expert by expert, weighted rows
 * first); the owner lays them out expert by expert, the weighted rows of all sources first,
 * then the others, sources in rank order within each part. With one replica the sources are
 * the global batch's consecutive row blocks, so an expert sees its rows in the single
 * process's order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/memory.h"
#include "moe/moe_internal.h"

int64_t moe_owner_capacity(int group, int max_tokens, int pairs_per_token, int num_experts) {
    const int slice = (num_experts + group - 1) / group;
    const int per_token = pairs_per_token < slice ? pairs_per_token : slice;
    return (int64_t)group * max_tokens * per_token;
}

/* Keep these two in step with moe_owner_init and moe_owner_scratch_init below. */
uint64_t moe_owner_bytes(int hidden, int intermediate, int num_experts, int group, uint64_t capacity) {
    const uint64_t G = (uint64_t)group, slice = ((uint64_t)num_experts + G - 1) / G;
    /* counts in and out, rows per rank ×4, offsets and selected; per row its place, x, gate,
     * up and act */
    const uint64_t fixed = sizeof(int) * (4 * G * slice + 4 * G + 2 * slice + 2);
    const uint64_t per_row = sizeof(int) + sizeof(float) * ((uint64_t)hidden + 3 * (uint64_t)intermediate);
    return sat_add(fixed, sat_mul(capacity + 1, per_row));
}

uint64_t moe_owner_scratch_bytes(int hidden, int intermediate, uint64_t capacity, uint64_t local_pairs) {
    const uint64_t rows = (capacity > local_pairs ? capacity : local_pairs) + 1;
    const uint64_t transit = sat_mul(rows, 2 * sizeof(float) * (uint64_t)hidden);
    const uint64_t out = sat_mul(capacity + 1, sizeof(float) * (uint64_t)hidden);
    return sat_add(sat_add(transit, out), moe_scratch_bytes(hidden, intermediate, capacity + 1));
}

int moe_owner_init(moe_owner *owner, int hidden, int intermediate, int num_experts, int group, int expert_rank,
                   int capacity) {
    memset(owner, 0, sizeof *owner);
    batch_comm_rows(num_experts, expert_rank, group, &owner->first, &owner->count);
    owner->group = group;
    owner->slice = (num_experts + group - 1) / group;
    owner->capacity = capacity;
    const size_t G = (size_t)group, C = (size_t)(capacity ? capacity : 1);
    owner->counts_out = malloc(sizeof(int) * G * 2 * (size_t)owner->slice);
    owner->counts_in = malloc(sizeof(int) * G * 2 * (size_t)owner->slice);
    owner->rows_out = malloc(sizeof(int) * 4 * G);
    owner->offsets = malloc(sizeof(int) * ((size_t)owner->count + 1));
    owner->selected = malloc(sizeof(int) * ((size_t)owner->count + 1));
    owner->owned_row = malloc(sizeof(int) * C);
    owner->x = malloc(sizeof(float) * C * (size_t)hidden);
    owner->gate_up = malloc(sizeof(float) * C * 2 * (size_t)intermediate);
    owner->act = malloc(sizeof(float) * C * (size_t)intermediate);
    if (!owner->counts_out || !owner->counts_in || !owner->rows_out || !owner->offsets || !owner->selected ||
        !owner->owned_row || !owner->x || !owner->gate_up || !owner->act) {
        moe_owner_free(owner);
        return pm_fail(PM_ERR_NOMEM, "expert parallelism: out of memory for %d received expert rows", capacity);
    }
    owner->rows_in = owner->rows_out + G;
    owner->weighted_out = owner->rows_out + 2 * G;
    owner->weighted_in = owner->rows_out + 3 * G;
    return PM_OK;
}

void moe_owner_free(moe_owner *owner) {
    free(owner->counts_out);
    free(owner->counts_in);
    free(owner->rows_out);
    free(owner->offsets);
    free(owner->selected);
    free(owner->owned_row);
    free(owner->x);
    free(owner->gate_up);
    free(owner->act);
    memset(owner, 0, sizeof *owner);
}

int moe_owner_scratch_init(moe_owner_scratch *scratch, int hidden, int intermediate, int capacity, int local_pairs) {
    memset(scratch, 0, sizeof *scratch);
    const size_t rows = (size_t)(capacity > local_pairs ? capacity : local_pairs) + 1;
    scratch->send = malloc(sizeof(float) * rows * (size_t)hidden);
    scratch->recv = malloc(sizeof(float) * rows * (size_t)hidden);
    scratch->out = malloc(sizeof(float) * ((size_t)capacity + 1) * (size_t)hidden);
    int status = scratch->send && scratch->recv && scratch->out ? PM_OK : PM_ERR_NOMEM;
    if (status == 0) status = moe_scratch_init(&scratch->owned, hidden, intermediate, capacity + 1);
    if (status < 0) {
        moe_owner_scratch_free(scratch);
        return pm_fail(PM_ERR_NOMEM, "expert parallelism: out of memory for %d expert rows in transit", capacity);
    }
    return PM_OK;
}

void moe_owner_scratch_free(moe_owner_scratch *scratch) {
    free(scratch->send);
    free(scratch->recv);
    free(scratch->out);
    moe_scratch_free(&scratch->owned);
    memset(scratch, 0, sizeof *scratch);
}

/* ------------------------------------------------------------ the layout */

/* The counts for every group rank from this rank's sorted pairs, exchanged; then the owned
 * layout and where each received row goes in it. */
static void exchange_layout(const moe_state *state, moe_owner *owner, const batch_comm *comm) {
    const int G = owner->group, S = owner->slice, E = state->num_experts;
    for (int j = 0; j < G; j++) {
        int first, count;
        batch_comm_rows(E, j, G, &first, &count);
        int *counts = owner->counts_out + (size_t)j * 2 * S;
        memset(counts, 0, sizeof(int) * 2 * (size_t)S);
        for (int i = 0; i < count; i++) {
            const int e = first + i, rows = state->expert_offsets[e + 1] - state->expert_offsets[e];
            counts[2 * i] = state->expert_selected[e];
            counts[2 * i + 1] = rows - state->expert_selected[e];
        }
        owner->rows_out[j] = state->expert_offsets[first + count] - state->expert_offsets[first];
        owner->weighted_out[j] = 0;
        for (int i = 0; i < count; i++) owner->weighted_out[j] += counts[2 * i];
    }
    comm->exchange_ints(comm, owner->counts_out, owner->counts_in, 2 * S);
    int64_t received = 0;
    for (int s = 0; s < G; s++) {
        const int *counts = owner->counts_in + (size_t)s * 2 * S;
        owner->rows_in[s] = owner->weighted_in[s] = 0;
        for (int i = 0; i < owner->count; i++) {
            owner->rows_in[s] += counts[2 * i] + counts[2 * i + 1];
            owner->weighted_in[s] += counts[2 * i];
        }
        received += owner->rows_in[s];
    }
    if (received > owner->capacity) { /* moe_owner_capacity bounds what any routing can send */
        fprintf(stderr, "expert parallelism: %lld rows are coming for %d rows of room; this is a bug in probmoe, "
                "please report it\n", (long long)received, owner->capacity);
        abort();
    }
    /* owned layout: expert by expert, weighted rows of all sources, then the others */
    owner->offsets[0] = 0;
    for (int i = 0; i < owner->count; i++) {
        int weighted = 0, other = 0;
        for (int s = 0; s < G; s++) {
            weighted += owner->counts_in[(size_t)s * 2 * S + 2 * i];
            other += owner->counts_in[(size_t)s * 2 * S + 2 * i + 1];
        }
        owner->selected[i] = weighted;
        owner->offsets[i + 1] = owner->offsets[i] + weighted + other;
    }
    /* next free weighted and other row of each expert, as the sources are walked in order */
    int *next_weighted = owner->counts_out, *next_other = owner->counts_out + owner->count;
    for (int i = 0; i < owner->count; i++) {
        next_weighted[i] = owner->offsets[i];
        next_other[i] = owner->offsets[i] + owner->selected[i];
    }
    int row = 0;
    for (int s = 0; s < G; s++)
        for (int i = 0; i < owner->count; i++) {
            const int *counts = owner->counts_in + (size_t)s * 2 * S + 2 * i;
            for (int r = 0; r < counts[0]; r++) owner->owned_row[row++] = next_weighted[i]++;
            for (int r = 0; r < counts[1]; r++) owner->owned_row[row++] = next_other[i]++;
        }
}

/* The received rows in order that carry a weight: for each, its index among all received rows. */
static void for_weighted_rows(const moe_owner *owner, void (*each)(void *user, int weighted, int received),
                              void *user) {
    const int S = owner->slice;
    int weighted = 0, received = 0;
    for (int s = 0; s < owner->group; s++)
        for (int i = 0; i < owner->count; i++) {
            const int *counts = owner->counts_in + (size_t)s * 2 * S + 2 * i;
            for (int r = 0; r < counts[0]; r++) each(user, weighted++, received++);
            received += counts[1];
        }
}

/* ------------------------------------------------------------ copies */

static void copy_row(float *to, size_t to_row, const float *from, size_t from_row, int H) {
    memcpy(to + to_row * (size_t)H, from + from_row * (size_t)H, sizeof(float) * (size_t)H);
}

/* The local rows of each owner's experts that carry a weight, packed (into) or unpacked (from)
 * a buffer in owner order. */
static void pack_weighted(const moe_state *state, const moe_owner *owner, float *packed, float *rows, bool into) {
    const int G = owner->group, E = state->num_experts, H = state->hidden;
    size_t at = 0;
    for (int j = 0; j < G; j++) {
        int first, count;
        batch_comm_rows(E, j, G, &first, &count);
        for (int e = first; e < first + count; e++)
            for (int r = 0; r < state->expert_selected[e]; r++, at++) {
                const size_t row = (size_t)(state->expert_offsets[e] + r);
                if (into) copy_row(packed, at, rows, row, H);
                else copy_row(rows, row, packed, at, H);
            }
    }
}

typedef struct {
    const moe_owner *owner;
    float *packed, *owned;
    int H;
    bool into_owned;
} weighted_copy;

static void copy_weighted(void *user, int weighted, int received) {
    weighted_copy *w = user;
    const size_t row = (size_t)w->owner->owned_row[received];
    if (w->into_owned) copy_row(w->owned, row, w->packed, (size_t)weighted, w->H);
    else copy_row(w->packed, (size_t)weighted, w->owned, row, w->H);
}

/* ------------------------------------------------------------ the passes */

void moe_owner_traffic(moe_owner *owner, int num_experts, const int *offsets, const int *experts, int T) {
    const int G = owner->group, self = batch_comm_row_owner(owner->first, num_experts, G);
    int64_t pairs = 0, ranks = 0;
    /* experts increase within a token (pm_routing), and their owners with them: a token's
     * distinct ranks are where the owner changes */
    for (int t = 0; t < T; t++)
        for (int p = offsets[t], previous = -1; p < offsets[t + 1]; p++) {
            const int rank = batch_comm_row_owner(experts[p], num_experts, G);
            if (rank != self) pairs++, ranks += rank != previous;
            previous = rank;
        }
    owner->pair_rows += 2 * pairs; /* out, and back */
    owner->rank_rows += 2 * ranks;
}

void moe_forward_parallel(moe_state *state, moe_owner *owner, moe_owner_scratch *staging, float *y, const float *x,
                          const pm_routing *routing, const moe_expert *experts, const batch_comm *comm) {
    const int H = state->hidden, I = state->intermediate;
    moe_prepare(state, routing);
    moe_owner_traffic(owner, state->num_experts, routing->c_offsets, routing->c_experts, routing->num_tokens);
    moe_gather_rows(state, x);
    exchange_layout(state, owner, comm);
    comm->exchange_rows(comm, state->x, owner->rows_out, staging->recv, owner->rows_in, H);
    const int received = owner->offsets[owner->count];
#pragma omp parallel for schedule(static)
    for (int r = 0; r < received; r++) copy_row(owner->x, (size_t)owner->owned_row[r], staging->recv, (size_t)r, H);
    const moe_rows rows = {owner->x, owner->gate_up, owner->act, staging->out, state->bf16};
    moe_experts_forward(&rows, owner->offsets, owner->count, experts + owner->first, H, I);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < received; r++) copy_row(staging->send, (size_t)r, staging->out, (size_t)owner->owned_row[r], H);
    comm->exchange_rows(comm, staging->send, owner->rows_in, state->out, owner->rows_out, H);
    moe_combine(state, y, routing);
}

void moe_backward_parallel(moe_state *state, moe_scratch *scratch, moe_owner *owner, moe_owner_scratch *staging,
                           float *dx, float *c, const float *dy, const pm_routing *routing, const moe_expert *experts,
                           const batch_comm *comm) {
    const int H = state->hidden, I = state->intermediate;
    moe_output_grads(state, scratch, c, dy, routing);
    moe_owner_traffic(owner, state->num_experts, routing->offsets, routing->experts, routing->num_tokens);
    /* the weighted rows' output gradients to their owners */
    pack_weighted(state, owner, staging->send, scratch->d_out, true);
    comm->exchange_rows(comm, staging->send, owner->weighted_out, staging->recv, owner->weighted_in, H);
    weighted_copy in = {owner, staging->recv, staging->owned.d_out, H, true};
    for_weighted_rows(owner, copy_weighted, &in);
    const moe_rows rows = {owner->x, owner->gate_up, owner->act, staging->out, state->bf16};
    moe_experts_backward(&rows, &staging->owned, owner->offsets, owner->selected, owner->count,
                         experts + owner->first, H, I);
    /* and their input gradients back */
    weighted_copy out = {owner, staging->send, staging->owned.d_x, H, false};
    for_weighted_rows(owner, copy_weighted, &out);
    comm->exchange_rows(comm, staging->send, owner->weighted_in, staging->recv, owner->weighted_out, H);
    pack_weighted(state, owner, staging->recv, scratch->d_x, false);
    moe_input_grads(state, scratch, dx, routing);
}
