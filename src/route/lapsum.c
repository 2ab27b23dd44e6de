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
#include "route/route_args.h"

static const double LN2 = 0.69314718055994530942; /* M_LN2 is not in strict C11 */

/* log(e^a + e^b), exact for -inf arguments. */
static double log_add_exp(double a, double b) {
    double hi = a > b ? a : b, lo = a > b ? b : a;
    if (hi == -INFINITY) return -INFINITY;
    return hi + log1p(exp(lo - hi));
}

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

static int compare_descending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

size_t lapsum_scratch_size(int n) { return 2 * (size_t)n + 1; }

double lapsum_threshold(const float *r, int n, double k, double alpha, double *scratch) {
    double *y = scratch;              /* (n) r/alpha, descending */
    double *log_c = scratch + n;      /* (n+1) log_c[a] = ln Σ_{i>=a} e^{y_i} */
    for (int i = 0; i < n; i++) y[i] = (double)r[i] / alpha;
    qsort(y, (size_t)n, sizeof *y, compare_descending);
    log_c[n] = -INFINITY;
    for (int i = n - 1; i >= 0; i--) log_c[i] = log_add_exp(log_c[i + 1], y[i]);

    /* a = the first breakpoint whose soft count reaches k (n if none). S(y_a) uses the
     * a-above form; both exponentials are sums of e^{−|y_i − y_a|}, so they stay <= n. */
    double log_b = -INFINITY; /* ln Σ_{i<a} e^{−y_i} */
    int a = 0;
    for (; a < n; a++) {
        double count = a - 0.5 * exp(y[a] + log_b) + 0.5 * exp(log_c[a] - y[a]);
        if (count >= k) break;
        log_b = log_add_exp(log_b, -y[a]);
    }

    double s;
    if (a == 0) {
        s = log_c[0] - log(2.0 * k); /* nothing above: S = ½C/z */
    } else if (a == n) {
        s = log(2.0 * (n - k)) - log_b; /* everything above: S = n − ½Bz */
    } else {
        double half_log_bc = 0.5 * (log_b + log_c[a]);
        s = 0.5 * (log_c[a] - log_b) + asinh_scaled(a - k, half_log_bc);
    }
    /* Exact arithmetic puts s in [y_a, y_{a-1}]; rounding may step just outside. */
    if (a < n && s < y[a]) s = y[a];
    if (a > 0 && s > y[a - 1]) s = y[a - 1];
    return alpha * s;
}

void lapsum_probs(const float *r, int n, double alpha, double t, float *p) {
    for (int i = 0; i < n; i++) {
        double u = ((double)r[i] - t) / alpha;
        p[i] = (float)(u <= 0.0 ? 0.5 * exp(u) : 1.0 - 0.5 * exp(-u));
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
    for (int i = 0; i < n; i++) {
        double delta = (double)r[i] - t;
        double w = exp(-fabs(delta) / alpha - u_max);
        sum_w += w;
        sum_wv += w * dp[i];
        sum_wd += w * delta;
    }
    double mean_v = sum_wv / sum_w, mean_delta = sum_wd / sum_w; /* sum_w >= 1 */

    double log_alpha = log(alpha), grad_alpha = 0.0;
    for (int j = 0; j < n; j++) {
        double delta = (double)r[j] - t, u = -fabs(delta) / alpha;
        dr[j] = (float)(0.5 * exp(u - log_alpha) * (dp[j] - mean_v));
        grad_alpha += 0.5 * exp(u - 2.0 * log_alpha) * dp[j] * (delta - mean_delta);
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

int pm_lapsum_backward(const float *r, int n, float k, float alpha, float t, const float *dp,
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
