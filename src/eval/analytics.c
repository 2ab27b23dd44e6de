#include "eval/analytics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Running sums of one layer; results are derived from them in analytics_finish. Sums run in
 * token order, so results do not depend on how the data was batched. */
typedef struct {
    int64_t tokens, pairs;
    int64_t *load;          /* (E) pairs per expert */
    double entropy_sum, cover_sum, topk_sum;
    int64_t groups_sum;     /* groups touched, summed over tokens */
    int groups_max;         /* the most groups one token touched */
    int64_t *active_by_id;  /* (V) combine pairs summed over the occurrences of each id */
    double *fractions;      /* (E) results */
    analytics_layer result;
} layer_sums;

struct analytics {
    int L, E, k, V;
    int groups;             /* G of mean_groups: equal, contiguous groups of E / G experts */
    int *layer_numbers;     /* (L) the decoder layer of each (MoE) layer analysed */
    int64_t *id_count;      /* (V) occurrences of each token id (counted in layer 0) */
    layer_sums *layers;
    double *sorted;         /* (E) scratch: one token's π in decreasing order */
    int *rank_order;        /* (V) scratch: ids by decreasing count */
    analytics_bucket *buckets;
    double *bucket_active;  /* (buckets, L) results */
    int num_buckets;
};

analytics *analytics_create_raw(int num_layers, int num_experts, int k, int vocab_size) {
    if (num_layers < 1 || num_experts < 1 || k < 1 || k > num_experts || vocab_size < 1) {
        pm_fail(PM_ERR_ARG, "analytics: need layers >= 1, experts >= 1, 1 <= k <= experts, "
                "vocab >= 1 (got %d, %d, %d, %d)", num_layers, num_experts, k, vocab_size);
        return NULL;
    }
    analytics *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->L = num_layers, a->E = num_experts, a->k = k, a->V = vocab_size;
    a->groups = 1;
    a->id_count = calloc((size_t)vocab_size, sizeof *a->id_count);
    a->layers = calloc((size_t)num_layers, sizeof *a->layers);
    a->sorted = malloc(sizeof(double) * (size_t)num_experts);
    a->rank_order = malloc(sizeof(int) * (size_t)vocab_size);
    a->layer_numbers = malloc(sizeof(int) * (size_t)num_layers);
    bool ok = a->id_count && a->layers && a->sorted && a->rank_order && a->layer_numbers;
    for (int l = 0; ok && l < num_layers; l++) a->layer_numbers[l] = l;
    for (int l = 0; ok && l < num_layers; l++) {
        layer_sums *s = &a->layers[l];
        s->load = calloc((size_t)num_experts, sizeof *s->load);
        s->fractions = calloc((size_t)num_experts, sizeof *s->fractions);
        s->active_by_id = calloc((size_t)vocab_size, sizeof *s->active_by_id);
        ok = s->load && s->fractions && s->active_by_id;
    }
    if (!ok) {
        analytics_free(a);
        pm_fail(PM_ERR_NOMEM, "analytics: out of memory");
        return NULL;
    }
    return a;
}

analytics *analytics_create(const pm_model *model) {
    const pm_model_config *cfg = pm_model_get_config(model);
    /* the MoE layers only: a dense layer routes nothing */
    analytics *a = analytics_create_raw(pm_model_moe_layers(cfg), cfg->num_experts, cfg->router.k, cfg->vocab_size);
    for (int m = 0; a && m < a->L; m++) a->layer_numbers[m] = pm_model_moe_layer_number(cfg, m);
    /* the router's groups where they divide E (every router carries the field) */
    if (a && cfg->router.groups > 1 && cfg->num_experts % cfg->router.groups == 0) a->groups = cfg->router.groups;
    return a;
}

int analytics_set_groups(analytics *a, int groups) {
    if (groups < 1 || a->E % groups != 0)
        return pm_fail(PM_ERR_ARG, "analytics: groups = %d; need a divisor of the %d experts", groups, a->E);
    a->groups = groups;
    return PM_OK;
}

int analytics_groups(const analytics *a) { return a->groups; }

void analytics_free(analytics *a) {
    if (!a) return;
    for (int l = 0; a->layers && l < a->L; l++) {
        free(a->layers[l].load);
        free(a->layers[l].fractions);
        free(a->layers[l].active_by_id);
    }
    free(a->layers);
    free(a->layer_numbers);
    free(a->id_count);
    free(a->sorted);
    free(a->rank_order);
    free(a->buckets);
    free(a->bucket_active);
    free(a);
}

/* E is small (tens of experts), so insertion sort beats anything cleverer here. */
static void sort_decreasing(double *x, int n) {
    for (int i = 1; i < n; i++) {
        const double v = x[i];
        int j = i - 1;
        while (j >= 0 && x[j] < v) x[j + 1] = x[j], j--;
        x[j + 1] = v;
    }
}

/* One token's π: adds H(π)/log E, the 99% cover and the top-k mass to the layer's sums.
 * Mass is measured against Σπ (1 up to rounding), so float rounding cannot push the cover
 * of an exactly-99% prefix one expert further; a relative slack of 1e-6 absorbs the rest. */
static void add_token_probs(analytics *a, layer_sums *s, const float *pi) {
    const int E = a->E;
    double total = 0.0, entropy = 0.0;
    for (int e = 0; e < E; e++) {
        const double p = pi[e];
        a->sorted[e] = p;
        total += p;
        if (p > 0.0) entropy -= p * log(p);
    }
    sort_decreasing(a->sorted, E);
    double mass = 0.0, topk = 0.0;
    int cover = E;
    const double goal = ANALYTICS_COVER_MASS * total * (1.0 - 1e-6);
    for (int e = 0; e < E; e++) {
        mass += a->sorted[e];
        if (e + 1 == a->k) topk = mass;
        if (mass >= goal && cover == E) cover = e + 1;
    }
    s->entropy_sum += E > 1 ? entropy / log((double)E) : 0.0;
    s->cover_sum += cover;
    s->topk_sum += total > 0.0 ? topk / total : 0.0;
}

int analytics_add_routing(analytics *a, int layer, const float *probs, const int *offsets,
                          const int *experts, const int32_t *tokens, int T) {
    if (layer < 0 || layer >= a->L || T < 0)
        return pm_fail(PM_ERR_ARG, "analytics: layer %d of %d, %d tokens", layer, a->L, T);
    if (offsets[0] != 0) return pm_fail(PM_ERR_ARG, "analytics: offsets[0] = %d, not 0", offsets[0]);
    /* Check everything before adding anything, so a bad batch leaves the sums untouched. */
    for (int t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= a->V)
            return pm_fail(PM_ERR_ARG, "analytics: token %d is id %d, outside the vocabulary of %d",
                           t, (int)tokens[t], a->V);
        if (offsets[t + 1] < offsets[t])
            return pm_fail(PM_ERR_ARG, "analytics: offsets decrease at token %d", t);
        for (int p = offsets[t]; p < offsets[t + 1]; p++)
            if (experts[p] < 0 || experts[p] >= a->E)
                return pm_fail(PM_ERR_ARG, "analytics: expert %d of token %d is outside 0..%d",
                               experts[p], t, a->E - 1);
    }
    layer_sums *s = &a->layers[layer];
    for (int t = 0; t < T; t++) {
        const int active = offsets[t + 1] - offsets[t];
        /* distinct groups of the token's experts (a token has at most E pairs) */
        const int width = a->E / a->groups;
        int touched = 0;
        for (int p = offsets[t]; p < offsets[t + 1]; p++) {
            s->load[experts[p]]++;
            bool first = true;
            for (int q = offsets[t]; q < p && first; q++) first = experts[q] / width != experts[p] / width;
            touched += first;
        }
        s->groups_sum += touched;
        if (touched > s->groups_max) s->groups_max = touched;
        s->pairs += active;
        s->active_by_id[tokens[t]] += active;
        if (layer == 0) a->id_count[tokens[t]]++;
        add_token_probs(a, s, probs + (size_t)t * (size_t)a->E);
    }
    s->tokens += T;
    return PM_OK;
}

int analytics_add_batch(analytics *a, const pm_model *model, const int32_t *tokens, int B, int S) {
    const pm_model_config *cfg = pm_model_get_config(model);
    if (pm_model_moe_layers(cfg) != a->L || cfg->num_experts != a->E)
        return pm_fail(PM_ERR_ARG, "analytics: the model has %d MoE layers of %d experts, not %d of %d",
                       pm_model_moe_layers(cfg), cfg->num_experts, a->L, a->E);
    const int T = B * S;
    for (int l = 0; l < a->L; l++) {
        const pm_routing *routing = pm_model_routing(model, l);
        if (!routing || routing->num_tokens != T || !pm_routing_probs(routing))
            return pm_fail(PM_ERR_STATE, "analytics: layer %d did not route the %d tokens of this "
                           "batch (run pm_model_forward first)", a->layer_numbers[l], T);
        if (routing->training)
            return pm_fail(PM_ERR_STATE, "analytics: layer %d was routed in training mode; "
                           "evaluate in inference mode", a->layer_numbers[l]);
        int status = analytics_add_routing(a, l, pm_routing_probs(routing), routing->offsets,
                                           routing->experts, tokens, T);
        if (status) return status;
    }
    return PM_OK;
}

typedef struct {
    int64_t count;
    int id;
} id_count;

/* Descending count, then ascending id, so ties rank the same on every run. */
static int by_count(const void *x, const void *y) {
    const id_count *i = x, *j = y;
    if (i->count != j->count) return i->count > j->count ? -1 : 1;
    return (i->id > j->id) - (i->id < j->id);
}

static void finish_layer(analytics *a, layer_sums *s) {
    const int E = a->E;
    analytics_layer *r = &s->result;
    memset(r, 0, sizeof *r);
    r->tokens = s->tokens, r->pairs = s->pairs, r->load = s->fractions;
    int64_t largest = 0;
    for (int e = 0; e < E; e++) {
        s->fractions[e] = s->pairs ? (double)s->load[e] / (double)s->pairs : 0.0;
        if (s->load[e] > largest) largest = s->load[e];
        r->dead_experts += s->load[e] == 0;
        if (s->fractions[e] > 0.0) r->load_entropy -= s->fractions[e] * log(s->fractions[e]);
    }
    /* One expert is balanced by definition (as routing_stats has it). */
    r->load_entropy = E > 1 ? r->load_entropy / log((double)E) : 1.0;
    if (s->pairs) r->max_over_mean = (double)largest / ((double)s->pairs / E);
    if (s->tokens) {
        r->routing_entropy = s->entropy_sum / (double)s->tokens;
        r->cover99 = s->cover_sum / (double)s->tokens;
        r->topk_mass = s->topk_sum / (double)s->tokens;
        r->mean_active = (double)s->pairs / (double)s->tokens;
        r->mean_groups = (double)s->groups_sum / (double)s->tokens;
    }
    r->max_groups = s->groups_max;
}

/* Ranks the ids seen (count > 0) and fills the power-of-two rank buckets. */
static int finish_buckets(analytics *a) {
    int seen = 0;
    id_count *ranked = malloc(sizeof *ranked * (size_t)a->V);
    if (!ranked) return pm_fail(PM_ERR_NOMEM, "analytics: out of memory");
    for (int v = 0; v < a->V; v++)
        if (a->id_count[v] > 0) ranked[seen++] = (id_count){a->id_count[v], v};
    qsort(ranked, (size_t)seen, sizeof *ranked, by_count);
    for (int r = 0; r < seen; r++) a->rank_order[r] = ranked[r].id;
    free(ranked);

    int count = 0;
    while (count < 31 && (1 << count) <= seen) count++; /* ranks 2^b .. 2^(b+1)-1 */
    free(a->buckets);
    free(a->bucket_active);
    a->num_buckets = 0;
    a->buckets = calloc((size_t)count + 1, sizeof *a->buckets);
    a->bucket_active = calloc(((size_t)count + 1) * (size_t)a->L, sizeof(double));
    if (!a->buckets || !a->bucket_active) return pm_fail(PM_ERR_NOMEM, "analytics: out of memory");
    a->num_buckets = count;
    for (int b = 0; b < count; b++) {
        analytics_bucket *bucket = &a->buckets[b];
        bucket->rank_lo = 1 << b;
        bucket->rank_hi = (int)(((int64_t)2 << b) - 1 < seen ? ((int64_t)2 << b) - 1 : seen);
        bucket->min_count = INT64_MAX;
        for (int rank = bucket->rank_lo; rank <= bucket->rank_hi; rank++) {
            const int id = a->rank_order[rank - 1];
            const int64_t n = a->id_count[id];
            bucket->token_ids++;
            bucket->occurrences += n;
            if (n < bucket->min_count) bucket->min_count = n;
            if (n > bucket->max_count) bucket->max_count = n;
        }
        /* Weighted by occurrences: the bucket's mean over its tokens, not over its ids. */
        double *per_layer = a->bucket_active + (size_t)b * (size_t)a->L, all = 0.0;
        for (int l = 0; l < a->L; l++) {
            int64_t active = 0;
            for (int rank = bucket->rank_lo; rank <= bucket->rank_hi; rank++)
                active += a->layers[l].active_by_id[a->rank_order[rank - 1]];
            per_layer[l] = (double)active / (double)bucket->occurrences;
            all += per_layer[l];
        }
        bucket->mean_active = per_layer;
        bucket->mean_active_all = all / a->L;
    }
    return PM_OK;
}

int analytics_finish(analytics *a) {
    for (int l = 0; l < a->L; l++) finish_layer(a, &a->layers[l]);
    return finish_buckets(a);
}

int analytics_num_layers(const analytics *a) { return a->L; }
int analytics_layer_number(const analytics *a, int layer) { return a->layer_numbers[layer]; }
const int *analytics_layer_numbers(const analytics *a) { return a->layer_numbers; }
int analytics_num_experts(const analytics *a) { return a->E; }
int analytics_k(const analytics *a) { return a->k; }

const analytics_layer *analytics_get_layer(const analytics *a, int layer) {
    return layer >= 0 && layer < a->L ? &a->layers[layer].result : NULL;
}

const analytics_bucket *analytics_get_buckets(const analytics *a, int *count) {
    *count = a->num_buckets;
    return a->buckets;
}
