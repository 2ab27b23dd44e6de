/*
 * LapSum soft top-k (docs/ROUTING.md §3): the double-precision core and the public
 * single-token wrappers.
 *
 * Threshold. With x = r/alpha sorted descending (y_0 >= ... >= y_{n-1}) and s = t/alpha,
 * the soft count S(s) = Σ F(y_i − s) decreases in s. On the interval [y_a, y_{a-1}] exactly
 * the first a scores lie above s, and with z = e^s
 *     S = a − ½B z + ½C / z,   B = Σ_{i<a} e^{−y_i},   C = Σ_{i>=a} e^{y_i},
 * so S = k is the quadratic ½B z² − (a − k) z − ½C = 0. Its positive root, in log space
 * (B and C overflow double for alpha = 1e-3 and |r| = 1e4), is
 *     s = ½(ln C − ln B) + asinh((a − k) e^{−L}),   L = ½(ln B + ln C),
 * which also avoids the cancellation of (d + sqrt(d² + BC))/B when d = a − k < 0.
 */
#include "route/lapsum.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/fast_exp.h"
#include "route/route_args.h"

static const double LN2 = 0.69314718055994530942; /* M_LN2 is not in strict C11 */

/* asinh(d·e^{−log_scale}) without forming e^{−log_scale}, which may overflow or vanish. */
static double asinh_scaled(double d, double log_scale) {
    if (d == 0.0) return 0.0;
    double sign = d > 0.0 ? 1.0 : -1.0;
    double log_x = log(fabs(d)) - log_scale;
    /* asinh(x) = ln(2x) + O(x^-2) and x + O(x^3): both exact in double past e^±20. */
    if (log_x > 20.0) return sign * (LN2 + log_x);
    if (log_x < -20.0) return sign * exp(log_x);
    return asinh(sign * exp(log_x));
}

/* Shell sort, descending (Ciura's gaps): no comparison callbacks, fast for router sizes. */
static void sort_descending(double *y, int n) {
    static const int gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
        const int gap = gaps[g];
        for (int i = gap; i < n; i++) {
            double v = y[i];
            int j = i;
            for (; j >= gap && y[j - gap] < v; j -= gap) y[j] = y[j - gap];
            y[j] = v;
        }
    }
}

size_t lapsum_scratch_size(int n) { return 3 * (size_t)n + 1; }

/*
 * The sums B and C are kept scaled by their largest term, which the descending order makes
 * a neighbour: b_a = B_a e^{y_{a-1}} and c_a = C_a e^{−y_a} lie in [1, n], and both follow
 * from the ratios d_i = e^{y_{i+1} − y_i} <= 1 (one vectorised pass of exponentials). The
 * soft count at the breakpoint y_a is then a − ½ b_a d_{a-1} + ½ c_a, with no logarithms.
 */
double lapsum_threshold(const float *r, int n, double k, double alpha, double *scratch) {
    double *y = scratch;          /* (n) r/alpha, descending */
    double *ratio = y + n;        /* (n) d_i = e^{y_{i+1} − y_i}, d_{n-1} = 0 */
    double *c_scaled = ratio + n; /* (n+1) c_a */
    for (int i = 0; i < n; i++) y[i] = (double)r[i] / alpha;
    sort_descending(y, n);
#pragma omp simd
    for (int i = 0; i < n - 1; i++) ratio[i] = pm_exp(y[i + 1] - y[i]);
    ratio[n - 1] = 0.0;
    c_scaled[n] = 0.0;
    for (int a = n - 1; a >= 0; a--) c_scaled[a] = 1.0 + c_scaled[a + 1] * ratio[a];

    /* a = the first breakpoint whose soft count reaches k (n if none) */
    double b_scaled = 0.0; /* b_a; B_0 = 0 */
    int a = 0;
    for (; a < n; a++) {
        double count = a - (a > 0 ? 0.5 * b_scaled * ratio[a - 1] : 0.0) + 0.5 * c_scaled[a];
        if (count >= k) break;
        b_scaled = 1.0 + (a > 0 ? b_scaled * ratio[a - 1] : 0.0);
    }

    double s;
    if (a == 0) {
        s = y[0] + log(c_scaled[0]) - log(2.0 * k); /* nothing above: S = ½C/z */
    } else {
        const double log_b = -y[a - 1] + log(b_scaled);
        if (a == n) {
            s = log(2.0 * (n - k)) - log_b; /* everything above: S = n − ½Bz */
        } else {
            const double log_c = y[a] + log(c_scaled[a]);
            s = 0.5 * (log_c - log_b) + asinh_scaled(a - k, 0.5 * (log_b + log_c));
        }
    }
    /* Exact arithmetic puts s in [y_a, y_{a-1}]; rounding may step just outside. */
    if (a < n && s < y[a]) s = y[a];
    if (a > 0 && s > y[a - 1]) s = y[a - 1];
    return alpha * s;
}

void lapsum_probs(const float *r, int n, double alpha, double t, float *p) {
#pragma omp simd
    for (int i = 0; i < n; i++) {
        double u = ((double)r[i] - t) / alpha, half_tail = 0.5 * pm_exp(-fabs(u));
        p[i] = (float)(u <= 0.0 ? half_tail : 1.0 - half_tail);
    }
}

/*
 * With u_i = −|r_i − t|/alpha, g_i = ½e^{u_i} = F'(·) and q = softmax(u):
 *     dr_j = (g_j/alpha)(v_j − Σ q v),  dk = Σ q v,  dalpha = −(1/alpha²) Σ g_i v_i (δ_i − Σ q δ)
 * where δ = r − t (r − Σ q r in the docs: the t cancels, and δ keeps the differences small
 * when |r| >> |r − t|). q comes from the max-shifted exponentials, so it is right even when
 * every g_i underflows; g/alpha and g/alpha² are single exponentials e^{u − ln alpha},
 * e^{u − 2 ln alpha}, so a tiny alpha never forms 0·inf.
 */
void lapsum_vjp(const float *r, int n, double alpha, double t, const float *dp, float *dr,
                double *dk, double *dalpha) {
    double u_max = -INFINITY;
    for (int i = 0; i < n; i++) {
        double u = -fabs((double)r[i] - t) / alpha;
        if (u > u_max) u_max = u;
    }
    double sum_w = 0.0, sum_wv = 0.0, sum_wd = 0.0;
#pragma omp simd reduction(+ : sum_w, sum_wv, sum_wd)
    for (int i = 0; i < n; i++) {
        double delta = (double)r[i] - t;
        double w = pm_exp(-fabs(delta) / alpha - u_max);
        sum_w += w;
        sum_wv += w * dp[i];
        sum_wd += w * delta;
    }
    double mean_v = sum_wv / sum_w, mean_delta = sum_wd / sum_w; /* sum_w >= 1 */

    double log_alpha = log(alpha), grad_alpha = 0.0;
#pragma omp simd reduction(+ : grad_alpha)
    for (int j = 0; j < n; j++) {
        double delta = (double)r[j] - t, u = -fabs(delta) / alpha;
        dr[j] = (float)(0.5 * pm_exp(u - log_alpha) * (dp[j] - mean_v));
        grad_alpha += 0.5 * pm_exp(u - 2.0 * log_alpha) * dp[j] * (delta - mean_delta);
    }
    *dk = mean_v;
    *dalpha = -grad_alpha;
}

/* ------------------------------------------------------------ public API */

/* The double threshold for validated arguments; NaN (error set) if scratch is unavailable. */
static double threshold_on_heap(const float *r, int n, float k, float alpha,
                                const char *function) {
    double *scratch = malloc(sizeof(double) * lapsum_scratch_size(n));
    if (!scratch) {
        pm_fail(PM_ERR_NOMEM, "%s: out of memory for n = %d", function, n);
        return NAN;
    }
    double t = lapsum_threshold(r, n, k, alpha, scratch);
    free(scratch);
    return t;
}

float pm_lapsum_forward(const float *r, int n, float k, float alpha, float *p) {
    const char *function = "pm_lapsum_forward";
    if (check_lapsum_args(r, n, k, alpha, function) < 0) return NAN;
    if (!p) {
        pm_fail(PM_ERR_ARG, "%s: p is NULL; pass an array of %d floats", function, n);
        return NAN;
    }
    double t = threshold_on_heap(r, n, k, alpha, function);
    if (isnan(t)) return NAN;
    if (!isfinite((float)t)) {
        /* Only reachable for alpha near FLT_MAX: t ≈ alpha·ln(n/k) leaves float range. */
        pm_fail(PM_ERR_NONFINITE, "%s: threshold t = %g overflows float; use a smaller alpha",
                function, t);
        return NAN;
    }
    lapsum_probs(r, n, alpha, t, p);
    return (float)t;
}

pm_status pm_lapsum_backward(const float *r, int n, float k, float alpha, float t, const float *dp,
                       float *dr, float *dk, float *dalpha) {
    const char *function = "pm_lapsum_backward";
    int status = check_lapsum_args(r, n, k, alpha, function);
    if (status < 0) return status;
    if (!isfinite(t))
        return pm_fail(PM_ERR_NONFINITE,
                       "%s: t = %g is not finite; pass the threshold pm_lapsum_forward returned",
                       function, (double)t);
    status = check_finite(dp, n, function, "dp");
    if (status < 0) return status;
    if (!dr || !dk || !dalpha)
        return pm_fail(PM_ERR_ARG, "%s: %s is NULL; pass somewhere to write the gradient",
                       function, !dr ? "dr" : !dk ? "dk" : "dalpha");

    /* The forward computed p with the double threshold and returned it rounded to float.
     * For alpha small next to |t| that rounding is a sizeable fraction of alpha, so redo the
     * solve and use the double value whenever it is the one the caller's t came from. */
    double t_exact = threshold_on_heap(r, n, k, alpha, function);
    if (isnan(t_exact)) return PM_ERR_NOMEM;
    double t_used = (float)t_exact == t ? t_exact : (double)t;

    double grad_k, grad_alpha;
    lapsum_vjp(r, n, alpha, t_used, dp, dr, &grad_k, &grad_alpha);
    *dk = (float)grad_k;
    *dalpha = (float)grad_alpha;
    return PM_OK;
}
