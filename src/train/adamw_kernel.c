#include "train/adamw_kernel.h"

#include "core/bf16.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

adamw_coefficients adamw_coefficients_of(const adamw_config *cfg, long step, float lr, float grad_scale, bool decay) {
    const double correction1 = 1.0 - pow(cfg->beta1, (double)step), correction2 = 1.0 - pow(cfg->beta2, (double)step);
    adamw_coefficients c;
    c.grad_scale = grad_scale;
    c.beta1 = cfg->beta1;
    c.one_minus_beta1 = 1.0f - cfg->beta1;
    c.beta2 = cfg->beta2;
    c.one_minus_beta2 = 1.0f - cfg->beta2;
    c.inv_sqrt_correction2 = (float)(1.0 / sqrt(correction2));
    c.eps = cfg->eps;
    c.step_size = (float)(lr / correction1);
    c.decay_factor = decay ? (float)(1.0 - (double)lr * cfg->weight_decay) : 1.0f;
    return c;
}

void adamw_update_portable(const adamw_coefficients *c, float *weights, float *grads, float *m, float *v,
                           uint16_t *bf16, bool zero_grads, size_t count) {
    const adamw_coefficients k = *c; /* a local copy: the stores below cannot alias it */
    for (size_t i = 0; i < count; i++) {
        weights[i] = adamw_element(&k, grads[i], &m[i], &v[i], weights[i]);
        if (bf16) bf16[i] = bf16_from_float(weights[i]);
        if (zero_grads) grads[i] = 0.0f;
    }
}

#ifdef __AVX512F__
/* adamw_element on 16 lanes, statement for statement. The last, partial vector is masked, so
 * every element takes the same instructions. */
static void update_avx512(const adamw_coefficients *c, float *weights, float *grads, float *m, float *v,
                          uint16_t *bf16, bool zero_grads, size_t count) {
    const __m512 grad_scale = _mm512_set1_ps(c->grad_scale), beta1 = _mm512_set1_ps(c->beta1),
                 one_minus_beta1 = _mm512_set1_ps(c->one_minus_beta1), beta2 = _mm512_set1_ps(c->beta2),
                 one_minus_beta2 = _mm512_set1_ps(c->one_minus_beta2),
                 inv_sqrt_correction2 = _mm512_set1_ps(c->inv_sqrt_correction2), eps = _mm512_set1_ps(c->eps),
                 step_size = _mm512_set1_ps(c->step_size), decay_factor = _mm512_set1_ps(c->decay_factor);
    for (size_t i = 0; i < count; i += 16) {
        const __mmask16 lanes = count - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - i)) - 1u);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, grads + i), grad_scale);
        const __m512 m_new = _mm512_add_ps(_mm512_mul_ps(beta1, _mm512_maskz_loadu_ps(lanes, m + i)),
                                           _mm512_mul_ps(one_minus_beta1, g));
        const __m512 v_new = _mm512_add_ps(_mm512_mul_ps(beta2, _mm512_maskz_loadu_ps(lanes, v + i)),
                                           _mm512_mul_ps(one_minus_beta2, _mm512_mul_ps(g, g)));
        const __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(v_new), inv_sqrt_correction2), eps);
        const __m512 step = _mm512_div_ps(_mm512_mul_ps(step_size, m_new), denominator);
        const __m512 w = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, weights + i), decay_factor), step);
        _mm512_mask_storeu_ps(m + i, lanes, m_new);
        _mm512_mask_storeu_ps(v + i, lanes, v_new);
        _mm512_mask_storeu_ps(weights + i, lanes, w);
        if (bf16) _mm512_mask_cvtepi32_storeu_epi16(bf16 + i, lanes, bf16_from_float_lanes(w));
        if (zero_grads) _mm512_mask_storeu_ps(grads + i, lanes, _mm512_setzero_ps());
    }
}
#endif

void adamw_update(const adamw_coefficients *c, float *weights, float *grads, float *m, float *v, uint16_t *bf16,
                  bool zero_grads, size_t count) {
#ifdef __AVX512F__
    update_avx512(c, weights, grads, m, v, bf16, zero_grads, count);
#else
    adamw_update_portable(c, weights, grads, m, v, bf16, zero_grads, count);
#endif
}
