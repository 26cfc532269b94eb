/*
 * stats.c - the honesty of `slm eval`: percentile bootstrap intervals from a
 * seeded generator (the same suite and seed give the same intervals), the
 * paired McNemar test, percentiles. Pure; no I/O.
 */
#include "slm/eval.h"

#include <math.h>
#include <stdlib.h>

/* splitmix64: small, seedable, good enough for resampling. */
static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t pick(uint64_t *s, size_t n) {
    return (size_t)(next_u64(s) % n); /* modulo bias is < n / 2^64: nothing at these sizes */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles 2.5 and 97.5 of the resampled statistics (sorted here). */
static void interval(double *stat, uint32_t b, double *lo, double *hi) {
    qsort(stat, b, sizeof(double), cmp_double);
    size_t i_lo = (size_t)floor(0.025 * (b - 1) + 0.5);
    size_t i_hi = (size_t)floor(0.975 * (b - 1) + 0.5);
    *lo = stat[i_lo];
    *hi = stat[i_hi];
}

void slm_eval_bootstrap_mean(const double *x, size_t n, uint32_t b, uint64_t seed, double *lo,
                             double *hi) {
    *lo = *hi = NAN;
    b = b ? b : 1000;
    double *stat = n ? malloc(b * sizeof(double)) : NULL;
    if (!stat) {
        return;
    }
    uint64_t s = seed;
    for (uint32_t k = 0; k < b; k++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            sum += x[pick(&s, n)];
        }
        stat[k] = sum / (double)n;
    }
    interval(stat, b, lo, hi);
    free(stat);
}

void slm_eval_bootstrap_f1(const size_t *tp, const size_t *pred, const size_t *expected, size_t n,
                           uint32_t b, uint64_t seed, double *lo, double *hi) {
    *lo = *hi = NAN;
    b = b ? b : 1000;
    double *stat = n ? malloc(b * sizeof(double)) : NULL;
    if (!stat) {
        return;
    }
    uint64_t s = seed;
    for (uint32_t k = 0; k < b; k++) {
        double t = 0, d = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = pick(&s, n);
            t += (double)tp[j];
            d += (double)(pred[j] + expected[j]);
        }
        stat[k] = d > 0 ? 2 * t / d : 0;
    }
    interval(stat, b, lo, hi);
    free(stat);
}

/* log C(n, k) through lgamma: exact enough for p-values at any n. */
static double log_choose(size_t n, size_t k) {
    return lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1);
}

double slm_eval_mcnemar(size_t b, size_t c) {
    size_t n = b + c;
    if (n == 0) {
        return 1.0;
    }
    if (n <= 25) {
        size_t m = b < c ? b : c;
        double p = 0;
        for (size_t k = 0; k <= m; k++) {
            p += exp(log_choose(n, k) - (double)n * log(2.0));
        }
        p *= 2;
        return p > 1 ? 1 : p;
    }
    double d = fabs((double)b - (double)c) - 1;
    d = d < 0 ? 0 : d;
    double chi2 = d * d / (double)n;
    return erfc(sqrt(chi2 / 2)); /* chi-square with one degree of freedom */
}

double slm_eval_percentile(double *x, size_t n, double pct) {
    if (n == 0) {
        return NAN;
    }
    qsort(x, n, sizeof(double), cmp_double);
    double r = ceil(pct / 100.0 * (double)n);
    size_t i = r < 1 ? 0 : (size_t)r - 1;
    return x[i < n ? i : n - 1];
}
