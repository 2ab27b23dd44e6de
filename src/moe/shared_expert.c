/* The shared expert (shared_expert.h). Its gate's logit is an fp32 product at any precision, as
 * the router's: a scale near a step of sigmoid's is not worth bf16's rounding. */
#include <math.h>

#include "moe/shared_expert.h"

void shared_expert_forward(matmul_bf16 *ctx, const shared_expert_acts *acts, float *y, const float *x,
                           const shared_expert_weights *w, int T, int H, int S) {
    linear_forward(ctx, acts->gate_up, x, w->gate_up, w->gate_up16, T, H, 2 * S);
    swiglu_forward(acts->act, acts->gate_up, T, S);
    linear_forward(ctx, acts->out, acts->act, w->down, w->down16, T, S, H);
    if (w->gate) matmul_forward(acts->scale, x, w->gate, T, H, 1);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float scale = w->gate ? (float)(1.0 / (1.0 + exp(-(double)acts->scale[t]))) : 1.0f;
        if (w->gate) acts->scale[t] = scale;
        const float *out = acts->out + (size_t)t * H;
        float *row = y + (size_t)t * H;
        for (int h = 0; h < H; h++) row[h] += scale * out[h];
    }
}

/* y = σ(s) · out: d_out = σ dy, and ds = σ(1 − σ) <dy, out> for the gate's logit s. */
static void gate_backward(const shared_expert_acts *acts, const shared_expert_scratch *scratch, float *dx,
                          const float *dy, const float *x, const shared_expert_weights *w, int T, int H) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float scale = acts->scale[t], *out = acts->out + (size_t)t * H, *grad = dy + (size_t)t * H;
        float *d_out = scratch->d_out + (size_t)t * H;
        double dot = 0.0;
        for (int h = 0; h < H; h++) {
            d_out[h] = scale * grad[h];
            dot += (double)grad[h] * out[h];
        }
        scratch->d_scale[t] = (float)(dot * scale * (1.0 - scale));
    }
    matmul_backward(dx, w->d_gate, scratch->d_scale, x, w->gate, T, H, 1);
}

void shared_expert_backward(matmul_bf16 *ctx, const shared_expert_acts *acts, const shared_expert_scratch *scratch,
                            float *dx, const float *dy, const float *x, const shared_expert_weights *w, int T, int H,
                            int S) {
    const float *d_out = dy; /* a plain MLP's: y = out */
    if (w->gate) {
        gate_backward(acts, scratch, dx, dy, x, w, T, H);
        d_out = scratch->d_out;
    }
    linear_backward_into(ctx, scratch->d_act, w->d_down, d_out, acts->act, w->down, w->down16, T, S, H);
    swiglu_backward(scratch->d_gate_up, scratch->d_act, acts->gate_up, T, S);
    linear_backward(ctx, dx, w->d_gate_up, scratch->d_gate_up, x, w->gate_up, w->gate_up16, T, H, 2 * S);
}
