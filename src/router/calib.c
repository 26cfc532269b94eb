/*
 * router/calib.c - calibration math for the router's thresholds
 * (slm/signals.h): AUROC, ECE, the accuracy/cost curve over every threshold
 * and the cheapest threshold that reaches a target accuracy.
 *
 * Pure functions: no model, no I/O; memory only for sorting.
 */
#include "slm/signals.h"

#include <math.h>
#include <stdlib.h>

struct item {
    double conf;
    size_t i;
};

static int cmp_item(const void *a, const void *b) {
    const struct item *x = a, *y = b;
    if (x->conf != y->conf) {
        return x->conf < y->conf ? -1 : 1;
    }
    return x->i < y->i ? -1 : x->i > y->i; /* stable: equal confidences keep their order */
}

/* Items sorted by confidence (ascending); NULL when out of memory. */
static struct item *sorted(const double *conf, size_t n) {
    struct item *it = malloc((n ? n : 1) * sizeof(*it));
    if (!it) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        it[i] = (struct item){conf[i], i};
    }
    qsort(it, n, sizeof(*it), cmp_item);
    return it;
}

double slm_calib_auroc(const double *conf, const bool *correct, size_t n) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        pos += correct[i];
    }
    if (pos == 0 || pos == n) {
        return NAN;
    }
    struct item *it = sorted(conf, n);
    if (!it) {
        return NAN;
    }
    /* Sum of the correct items' mid-ranks (1-based), ties sharing the mean rank. */
    double rank_sum = 0;
    for (size_t a = 0; a < n;) {
        size_t b = a, npos = 0;
        while (b < n && it[b].conf == it[a].conf) {
            npos += correct[it[b].i];
            b++;
        }
        double mid = ((double)(a + 1) + (double)b) / 2.0;
        rank_sum += mid * (double)npos;
        a = b;
    }
    free(it);
    double neg = (double)(n - pos);
    double u = rank_sum - (double)pos * ((double)pos + 1) / 2.0;
    return u / ((double)pos * neg);
}

double slm_calib_ece(const double *conf, const bool *correct, size_t n, int bins) {
    if (n == 0) {
        return NAN;
    }
    enum { MAX_BINS = 1000 };
    int nb = bins <= 0 ? 10 : bins > MAX_BINS ? MAX_BINS : bins;
    double sum_conf[MAX_BINS] = {0}, sum_ok[MAX_BINS] = {0};
    size_t count[MAX_BINS] = {0};
    for (size_t i = 0; i < n; i++) {
        double c = conf[i] < 0 ? 0 : conf[i] > 1 ? 1 : conf[i];
        int b = (int)(c * nb);
        b = b >= nb ? nb - 1 : b;
        sum_conf[b] += c;
        sum_ok[b] += correct[i];
        count[b]++;
    }
    double ece = 0;
    for (int b = 0; b < nb; b++) {
        if (count[b]) {
            ece += fabs(sum_ok[b] - sum_conf[b]) / (double)n;
        }
    }
    return ece;
}

static double cloud_ok(const bool *cloud_correct, const struct slm_calib_params *p, size_t i) {
    return cloud_correct ? (double)cloud_correct[i] : p->cloud_accuracy;
}

static double cloud_price(const double *cloud_costs, const struct slm_calib_params *p, size_t i) {
    return cloud_costs ? cloud_costs[i] : p->cloud_cost;
}

/* Running sums for one threshold: right answers among kept and escalated items. */
struct tally {
    double kept_ok, esc_ok;
    size_t n_kept, n_esc;
};

/* Binomial variance of `ok` right answers in `n` items, the rate smoothed by
 * one right and one wrong answer. */
static double bvar(double ok, size_t n) {
    double p = (ok + 1.0) / ((double)n + 2.0);
    return (double)n * p * (1.0 - p);
}

static void set_point(struct slm_calib_point *pt, double threshold, const struct tally *t, double z,
                      double cost) {
    double n = (double)(t->n_kept + t->n_esc);
    pt->threshold = threshold;
    pt->n_escalated = t->n_esc;
    pt->share_escalated = (double)t->n_esc / n;
    pt->accuracy = (t->kept_ok + t->esc_ok) / n;
    double sd = sqrt(bvar(t->kept_ok, t->n_kept) + bvar(t->esc_ok, t->n_esc)) / n;
    pt->accuracy_low = pt->accuracy - z * sd;
    pt->cost = cost;
}

int64_t slm_calib_curve(const double *conf, const bool *correct, const bool *cloud_correct,
                        const double *cloud_costs, size_t n, const struct slm_calib_params *p,
                        struct slm_calib_point *out, size_t cap) {
    if (n == 0) {
        return SLM_E_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (conf[i] != conf[i]) {
            return SLM_E_INVALID;
        }
    }
    struct item *it = sorted(conf, n);
    if (!it) {
        return SLM_E_NOMEM;
    }
    /* Start with nothing escalated; each distinct value moves its group of
     * items (those below the next threshold) to the cloud. */
    struct tally tl = {.n_kept = n};
    double cost = (double)n * p->local_cost;
    for (size_t i = 0; i < n; i++) {
        tl.kept_ok += correct[i];
    }
    size_t np = 0;
    for (size_t a = 0; a <= n;) {
        double t = a < n ? it[a].conf : INFINITY;
        if (np < cap) {
            set_point(&out[np], t, &tl, p->z, cost);
        }
        np++;
        size_t b = a;
        while (b < n && it[b].conf == t) {
            size_t i = it[b].i;
            tl.kept_ok -= (double)correct[i];
            tl.esc_ok += cloud_ok(cloud_correct, p, i);
            tl.n_kept--;
            tl.n_esc++;
            cost += cloud_price(cloud_costs, p, i) - p->local_cost;
            b++;
        }
        a = a < n ? b : n + 1;
    }
    free(it);
    return (int64_t)np;
}

int slm_calib_choose(const double *conf, const bool *correct, const bool *cloud_correct,
                     const double *cloud_costs, size_t n, const struct slm_calib_params *p,
                     struct slm_calib_point *chosen, struct slm_calib_point *oracle) {
    int64_t np = slm_calib_curve(conf, correct, cloud_correct, cloud_costs, n, p, NULL, 0);
    if (np < 0) {
        return (int)np;
    }
    struct slm_calib_point *pts = malloc((size_t)np * sizeof(*pts));
    if (!pts) {
        return SLM_E_NOMEM;
    }
    slm_calib_curve(conf, correct, cloud_correct, cloud_costs, n, p, pts, (size_t)np);
    /* Accuracies are sums of the same terms in another order: allow rounding. */
    const double eps = 1e-12;
    int64_t best = -1, most = 0;
    for (int64_t k = 0; k < np; k++) {
        if (pts[k].accuracy_low + eps >= p->target_accuracy &&
            (best < 0 || pts[k].cost < pts[best].cost - eps)) {
            best = k;
        }
        if (pts[k].accuracy > pts[most].accuracy + eps ||
            (fabs(pts[k].accuracy - pts[most].accuracy) <= eps && pts[k].cost < pts[most].cost)) {
            most = k;
        }
    }
    *chosen = pts[best >= 0 ? best : most];
    free(pts);
    if (oracle) {
        struct tally tl = {0};
        double cost = 0;
        for (size_t i = 0; i < n; i++) {
            if (correct[i]) {
                tl.kept_ok += 1;
                tl.n_kept++;
                cost += p->local_cost;
            } else {
                tl.esc_ok += cloud_ok(cloud_correct, p, i);
                tl.n_esc++;
                cost += cloud_price(cloud_costs, p, i);
            }
        }
        set_point(oracle, NAN, &tl, p->z, cost);
    }
    return best >= 0 ? SLM_OK : SLM_E_NOT_FOUND;
}
