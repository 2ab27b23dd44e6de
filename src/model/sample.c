/* Choosing the next token from logits: greedy, or nucleus sampling at a temperature. */
#include <math.h>
#include <stdlib.h>

#include "probmoe.h"

/* Temperature, then the smallest set of tokens whose probability reaches top_p. */
int pm_sample_token(const float *logits, int V, float temperature, float top_p, pm_rng *rng) {
    int best = 0;
    for (int i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
    if (temperature <= 0.0f) return best;
    double *probs = malloc(sizeof(double) * V);
    int *order = malloc(sizeof(int) * V);
    if (!probs || !order) {
        free(probs);
        free(order);
        return best;
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += probs[i] = exp((logits[i] - logits[best]) / temperature);
    for (int i = 0; i < V; i++) order[i] = i;
    /* insertion sort by probability, descending (V is a vocabulary: fine for sampling) */
    for (int i = 1; i < V; i++) {
        int v = order[i], j = i - 1;
        while (j >= 0 && probs[order[j]] < probs[v]) order[j + 1] = order[j], j--;
        order[j + 1] = v;
    }
    int keep = 0;
    double kept = 0.0;
    while (keep < V && (keep == 0 || kept < top_p * sum)) kept += probs[order[keep++]];
    double u = pm_rng_uniform(rng) * kept, acc = 0.0;
    int chosen = keep > 0 ? order[keep - 1] : best;
    for (int i = 0; i < keep; i++) {
        acc += probs[order[i]];
        if (u < acc) {
            chosen = order[i];
            break;
        }
    }
    free(probs);
    free(order);
    return chosen;
}
