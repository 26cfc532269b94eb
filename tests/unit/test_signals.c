/*
 * test_signals.c - the router's signals: token confidence, input signals,
 * calibration math (hand-computed cases, no model) and label sets on the
 * test model (test_stories.h: stories260K, else a random-weight one).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/engine.h"
#include "slm/score.h"
#include "slm/signals.h"
#include "test_stories.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-9)

/* ---------------------------------------------------------------- tokens */

Test(token_conf, hand_computed) {
    float lp[4] = {logf(0.5f), logf(0.25f), logf(1.0f), logf(0.125f)};
    struct slm_token_conf c;
    slm_signal_token_conf(lp, 4, 0.0, &c);
    cr_assert_eq(c.n, 4);
    cr_assert(fabs(c.mean_prob - (0.5 + 0.25 + 1 + 0.125) / 4) < 1e-6);
    cr_assert(fabs(c.min_prob - 0.125) < 1e-6);
    cr_assert(fabs(c.q_prob - 0.125) < 1e-6, "q=0 is the minimum");
    cr_assert(fabs(c.geo_prob - pow(0.5 * 0.25 * 1 * 0.125, 0.25)) < 1e-6);
    /* sorted 0.125 0.25 0.5 1: q=0.5 -> h=1.5 -> 0.375; q=1 -> 1; q=0.1 -> h=0.3 -> 0.1625 */
    slm_signal_token_conf(lp, 4, 0.5, &c);
    cr_assert(fabs(c.q_prob - 0.375) < 1e-6, "%f", c.q_prob);
    slm_signal_token_conf(lp, 4, 1.0, &c);
    cr_assert(fabs(c.q_prob - 1.0) < 1e-6);
    slm_signal_token_conf(lp, 4, 0.1, &c);
    cr_assert(fabs(c.q_prob - 0.1625) < 1e-6, "%f", c.q_prob);
    slm_signal_token_conf(lp, 4, -3, &c); /* clamped */
    cr_assert(fabs(c.q_prob - 0.125) < 1e-6);
    slm_signal_token_conf(lp, 0, 0.1, &c);
    cr_assert(isnan(c.mean_prob) && isnan(c.min_prob) && isnan(c.q_prob) && c.n == 0);
    float one = logf(0.8f);
    slm_signal_token_conf(&one, 1, 0.3, &c);
    cr_assert(fabs(c.q_prob - 0.8) < 1e-6 && fabs(c.mean_prob - 0.8) < 1e-6);
}

Test(token_conf, long_answers_use_the_heap) {
    enum { N = 2000 };
    static float lp[N];
    for (size_t i = 0; i < N; i++) {
        lp[i] = logf((float)(i + 1) / N);
    }
    struct slm_token_conf c;
    slm_signal_token_conf(lp, N, 0.25, &c);
    /* sorted p_i = (i+1)/N; h = 0.25 * 1999 = 499.75 -> (500 + 0.75) / N */
    cr_assert(fabs(c.q_prob - 500.75 / N) < 1e-6, "%f", c.q_prob);
    cr_assert(fabs(c.min_prob - 1.0 / N) < 1e-6);
}

/* ---------------------------------------------------------------- input */

static struct slm_input_signals in(const char *s, size_t n) {
    struct slm_input_signals out;
    slm_signal_input(s, n, &out);
    return out;
}

Test(input, plain_text) {
    struct slm_input_signals s = in("ab\ncde\r\nf", 9);
    cr_assert_eq(s.n_bytes, 9);
    cr_assert_eq(s.n_chars, 9);
    cr_assert_eq(s.n_lines, 3);
    cr_assert_eq(s.max_line, 3, "the \\r of \\r\\n is not part of the line");
    cr_assert_eq(s.n_nontext, 0);
    cr_assert(NEAR(s.nontext_share, 0));
    s = in("", 0);
    cr_assert(s.n_chars == 0 && s.n_lines == 0 && s.max_line == 0 && NEAR(s.nontext_share, 0));
    s = in("tab\there\n", 9);
    cr_assert(s.n_lines == 1 && s.max_line == 8 && s.n_nontext == 0);
}

Test(input, utf8_counts_code_points) {
    /* "héllo €" = h é(2) l l o space €(3): 7 chars, 10 bytes */
    struct slm_input_signals s = in("h\xc3\xa9llo \xe2\x82\xac", 10);
    cr_assert_eq(s.n_chars, 7);
    cr_assert_eq(s.n_bytes, 10);
    cr_assert_eq(s.max_line, 7);
    cr_assert_eq(s.n_nontext, 0);
    s = in("\xf0\x9f\x98\x80", 4); /* an emoji: one char */
    cr_assert(s.n_chars == 1 && s.n_nontext == 0);
}

Test(input, nontext) {
    /* NUL, ESC, DEL, C1 U+0085, U+FFFD, a stray continuation byte, a cut sequence:
     * a \0 b \x1b \x7f \xc2\x85 \xef\xbf\xbd \x80 \xe2\x82 */
    const char t[] = "a\0b\x1b\x7f\xc2\x85\xef\xbf\xbd\x80\xe2\x82";
    struct slm_input_signals s = in(t, sizeof(t) - 1);
    /* chars: a NUL b ESC DEL U+0085 U+FFFD \x80 \xe2 \x82 = 10; non-text: all but a, b = 8 */
    cr_assert_eq(s.n_chars, 10, "%zu", s.n_chars);
    cr_assert_eq(s.n_nontext, 8, "%zu", s.n_nontext);
    cr_assert(NEAR(s.nontext_share, 0.8));
    /* Overlong "/" (c0 af), a surrogate (ed a0 80), > U+10FFFF (f4 90 80 80): every byte bad. */
    s = in("\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80", 9);
    cr_assert(s.n_chars == 9 && s.n_nontext == 9);
}

Test(input, longest_line) {
    struct slm_input_signals s = in("x\n\nyyyyy\nzz\n", 12);
    cr_assert(s.n_lines == 4 && s.max_line == 5, "%zu %zu", s.n_lines, s.max_line);
}

/* ---------------------------------------------------------------- calibration */

Test(calib, auroc_hand_computed) {
    double c[4] = {0.9, 0.8, 0.3, 0.1};
    bool ok[4] = {true, true, false, false};
    cr_assert(NEAR(slm_calib_auroc(c, ok, 4), 1.0));
    bool inv[4] = {false, false, true, true};
    cr_assert(NEAR(slm_calib_auroc(c, inv, 4), 0.0));
    /* pos {0.9, 0.3}, neg {0.8, 0.1}: pairs (0.9>0.8) (0.9>0.1) (0.3<0.8) (0.3>0.1) = 3/4 */
    bool mix[4] = {true, false, true, false};
    cr_assert(NEAR(slm_calib_auroc(c, mix, 4), 0.75));
    /* Ties count one half: pos {0.5, 0.7}, neg {0.5, 0.2}: (0.5=0.5)=.5 (0.5>0.2)=1
     * (0.7>0.5)=1 (0.7>0.2)=1 -> 3.5/4 */
    double t[4] = {0.5, 0.7, 0.5, 0.2};
    bool tk[4] = {true, true, false, false};
    cr_assert(NEAR(slm_calib_auroc(t, tk, 4), 0.875));
    double same[3] = {0.4, 0.4, 0.4};
    bool s3[3] = {true, false, true};
    cr_assert(NEAR(slm_calib_auroc(same, s3, 3), 0.5));
    cr_assert(isnan(slm_calib_auroc(c, ok, 0)));
    bool all[2] = {true, true};
    cr_assert(isnan(slm_calib_auroc(c, all, 2)));
}

Test(calib, ece_hand_computed) {
    /* 10 bins. Bin 9: 0.95, 0.95 (1 correct) -> |0.5 - 0.95| * 2/4;
     * bin 2: 0.25, 0.25 (both wrong) -> |0 - 0.25| * 2/4. ECE = 0.225 + 0.125 = 0.35 */
    double c[4] = {0.95, 0.95, 0.25, 0.25};
    bool ok[4] = {true, false, false, false};
    cr_assert(NEAR(slm_calib_ece(c, ok, 4, 10), 0.35), "%f", slm_calib_ece(c, ok, 4, 10));
    cr_assert(NEAR(slm_calib_ece(c, ok, 4, 0), 0.35), "0 bins means 10");
    /* Perfectly calibrated: confidence 1 always right, 0 always wrong; 1.0 is in the last bin. */
    double p[2] = {1.0, 0.0};
    bool pk[2] = {true, false};
    cr_assert(NEAR(slm_calib_ece(p, pk, 2, 10), 0.0));
    /* One bin: |mean acc - mean conf| = |0.25 - 0.6| */
    cr_assert(NEAR(slm_calib_ece(c, ok, 4, 1), 0.35));
    /* 2 bins: [0,.5) {0.25,0.25} -> .125; [.5,1] {.95,.95} -> .225 */
    cr_assert(NEAR(slm_calib_ece(c, ok, 4, 2), 0.35));
    double out[2] = {1.5, -0.5}; /* clamped to 1 and 0 */
    cr_assert(NEAR(slm_calib_ece(out, pk, 2, 10), 0.0));
    cr_assert(isnan(slm_calib_ece(c, ok, 0, 10)));
}

/*
 * Five items, conf / local correct:
 *   0.9 T, 0.8 T, 0.6 F, 0.6 T, 0.2 F     local accuracy 3/5
 * cloud accuracy 0.9, local cost 0, cloud cost 1.
 *   t=0.2 escalate none:          acc 3/5 = .6,               cost 0
 *   t=0.6 escalate {0.2}:         acc (3 + .9)/5 = .78,        cost 1
 *   t=0.8 escalate {.2,.6,.6}:    acc (2 + 2.7)/5 = .94,       cost 3
 *   t=0.9 escalate 4:             acc (1 + 3.6)/5 = .92,       cost 4
 *   t=inf escalate all:           acc 4.5/5 = .9,              cost 5
 * oracle: escalate {0.6F, 0.2F}: acc (3 + 1.8)/5 = .96, cost 2
 */
static const double k_conf[5] = {0.9, 0.6, 0.2, 0.8, 0.6};
static const bool k_ok[5] = {true, false, false, true, true};

Test(calib, curve_hand_computed) {
    struct slm_calib_params p = {.cloud_accuracy = 0.9, .local_cost = 0, .cloud_cost = 1};
    struct slm_calib_point pt[8];
    int64_t np = slm_calib_curve(k_conf, k_ok, NULL, NULL, 5, &p, pt, 8);
    cr_assert_eq(np, 5);
    double th[5] = {0.2, 0.6, 0.8, 0.9, INFINITY};
    double acc[5] = {0.6, 0.78, 0.94, 0.92, 0.9};
    double cost[5] = {0, 1, 3, 4, 5};
    size_t esc[5] = {0, 1, 3, 4, 5};
    for (int k = 0; k < 5; k++) {
        cr_assert(pt[k].threshold == th[k], "point %d threshold %f", k, pt[k].threshold);
        cr_assert(NEAR(pt[k].accuracy, acc[k]), "point %d accuracy %f", k, pt[k].accuracy);
        cr_assert(NEAR(pt[k].cost, cost[k]), "point %d cost %f", k, pt[k].cost);
        cr_assert_eq(pt[k].n_escalated, esc[k]);
        cr_assert(NEAR(pt[k].share_escalated, esc[k] / 5.0));
    }
    /* cap limits what is written, not the count */
    cr_assert_eq(slm_calib_curve(k_conf, k_ok, NULL, NULL, 5, &p, NULL, 0), 5);
    cr_assert_eq(slm_calib_curve(k_conf, k_ok, NULL, NULL, 0, &p, NULL, 0), SLM_E_INVALID);
    double nan_conf[1] = {NAN};
    cr_assert_eq(slm_calib_curve(nan_conf, k_ok, NULL, NULL, 1, &p, NULL, 0), SLM_E_INVALID);
}

Test(calib, choose_cheapest_reaching_target) {
    struct slm_calib_params p = {.cloud_accuracy = 0.9, .cloud_cost = 1, .target_accuracy = 0.75};
    struct slm_calib_point ch, orc;
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, &orc), SLM_OK);
    cr_assert(ch.threshold == 0.6 && NEAR(ch.cost, 1) && NEAR(ch.accuracy, 0.78));
    cr_assert(NEAR(orc.accuracy, 0.96) && NEAR(orc.cost, 2) && orc.n_escalated == 2);
    cr_assert(isnan(orc.threshold));
    p.target_accuracy = 0.92; /* 0.94 at cost 3 beats 0.92 at cost 4 */
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_OK);
    cr_assert(ch.threshold == 0.8 && NEAR(ch.cost, 3));
    p.target_accuracy = 0.6; /* reached by escalating nothing */
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_OK);
    cr_assert(ch.threshold == 0.2 && ch.n_escalated == 0 && NEAR(ch.cost, 0));
    p.target_accuracy = 0.95; /* nothing reaches it: the most accurate point */
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_E_NOT_FOUND);
    cr_assert(ch.threshold == 0.8 && NEAR(ch.accuracy, 0.94));
}

/*
 * The same items with z = 1: accuracy_low = accuracy - sd, sd = sqrt(var kept
 * + var escalated) / 5, each var n p (1 - p) with p = (ok + 1) / (n + 2):
 *   t=0.2: kept 5 (3 ok) p 4/7: var 1.22449; nothing escalated.  low .378687
 *   t=0.6: kept 4 (3 ok) p 4/6, var .888889; esc 1 (.9) p 1.9/3, var .232222.  low .568235
 *   t=0.8: kept 2 (2 ok) p 3/4, var .375; esc 3 (2.7) p 3.7/5, var .5772.  low .744839
 *   t=0.9: kept 1 (1 ok) p 2/3, var .222222; esc 4 (3.6) p 4.6/6, var .715556.  low .726322
 *   t=inf: esc 5 (4.5) p 5.5/7, var .841837.  low .716497
 */
Test(calib, lower_bound_chooses_with_a_margin) {
    struct slm_calib_params p = {.cloud_accuracy = 0.9, .cloud_cost = 1, .z = 1};
    struct slm_calib_point pt[5], ch;
    cr_assert_eq(slm_calib_curve(k_conf, k_ok, NULL, NULL, 5, &p, pt, 5), 5);
    double low[5] = {0.378687, 0.568235, 0.744839, 0.726322, 0.716497};
    for (int k = 0; k < 5; k++) {
        cr_assert(fabs(pt[k].accuracy_low - low[k]) < 1e-6, "point %d low %f", k,
                  pt[k].accuracy_low);
    }
    /* 0.74: the point estimate is reached at t=0.6 (.78), the bound only at t=0.8 */
    p.target_accuracy = 0.74;
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_OK);
    cr_assert(ch.threshold == 0.8 && NEAR(ch.cost, 3));
    p.z = 0;
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_OK);
    cr_assert(ch.threshold == 0.6 && NEAR(ch.cost, 1) && NEAR(ch.accuracy_low, ch.accuracy));
    /* no bound reaches 0.75: the most accurate point (by the estimate) */
    p.z = 1;
    p.target_accuracy = 0.75;
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, NULL, NULL, 5, &p, &ch, NULL), SLM_E_NOT_FOUND);
    cr_assert(ch.threshold == 0.8);
}

Test(calib, measured_cloud_answers_and_costs) {
    /* The cloud got item 2 (conf 0.2) wrong and item 1 (0.6 F) right; item costs vary. */
    bool cloud[5] = {true, true, false, true, true};
    double costs[5] = {1, 2, 3, 4, 5};
    struct slm_calib_params p = {.local_cost = 0.1, .target_accuracy = 0.8};
    struct slm_calib_point pt[5], ch, orc;
    cr_assert_eq(slm_calib_curve(k_conf, k_ok, cloud, costs, 5, &p, pt, 5), 5);
    /* t=0.6: escalate item 2 (cloud wrong): acc 3/5, cost 4*0.1 + 3 = 3.4 */
    cr_assert(NEAR(pt[1].accuracy, 0.6) && NEAR(pt[1].cost, 3.4));
    /* t=0.8: escalate items 2, 1, 4: acc (2 local + cloud 0+1+1)/5 = .8; cost .2 + 3+2+5 */
    cr_assert(NEAR(pt[2].accuracy, 0.8) && NEAR(pt[2].cost, 10.2), "%f %f", pt[2].accuracy,
              pt[2].cost);
    cr_assert_eq(slm_calib_choose(k_conf, k_ok, cloud, costs, 5, &p, &ch, &orc), SLM_OK);
    cr_assert(ch.threshold == 0.8);
    /* oracle escalates items 1 and 2: acc (3 + 1 + 0)/5, cost 0.3 + 2 + 3 */
    cr_assert(NEAR(orc.accuracy, 0.8) && NEAR(orc.cost, 5.3));
}

/* ---------------------------------------------------------------- labels */

static struct slm_model *g_model;
static bool g_stories; /* g_model is stories260K, not a random-weight model */

static void load_model(void) {
    g_stories = test_model_load(&g_model);
}

static void unload_model(void) {
    slm_model_free(g_model);
    g_model = NULL;
}

TestSuite(labels, .init = load_model, .fini = unload_model);

static const char *k_labels[] = {"dog", "cat", "big red ball", "little girl"};

static struct slm_scorer *scorer(void) {
    struct slm_scorer_params sp = slm_scorer_params_default();
    sp.n_ctx = 512;
    sp.n_threads = 1;
    sp.kv_f32 = true;
    struct slm_scorer *s;
    struct slm_err err;
    cr_assert_eq(slm_scorer_init_params(g_model, NULL, NULL, 0, &sp, &s, &err), SLM_OK);
    return s;
}

static struct slm_label_set *set(enum slm_label_correction c, bool eos) {
    struct slm_label_set_params p = slm_label_set_params_default();
    p.correction = c;
    p.add_eos = eos;
    p.continuation = true; /* these tests compare with the text scored whole */
    struct slm_label_set *ls;
    struct slm_err err;
    cr_assert_eq(slm_label_set_init(g_model, k_labels, 4, &p, &ls, &err), SLM_OK, "%s", err.msg);
    return ls;
}

/* log p(text | prompt) scored directly: prompt+text tokenized whole, prompt's
 * tokens a prefix of it (checked), the rest scored as one candidate. */
static double direct(struct slm_scorer *sc, const char *prompt, const char *label, bool eos) {
    int32_t pt[256], all[256];
    char buf[512];
    snprintf(buf, sizeof(buf), "%s%s", prompt, label);
    int64_t np = slm_tokenize(g_model, slm_str_c(prompt), true, true, pt, 256);
    int64_t na = slm_tokenize(g_model, slm_str_c(buf), true, true, all, 255);
    cr_assert(np > 0 && na > np && memcmp(pt, all, (size_t)np * sizeof(int32_t)) == 0,
              "'%s' + '%s' tokenizes across the boundary", prompt, label);
    if (eos) {
        all[na++] = slm_model_eos(g_model);
    }
    const int32_t *c = all + np;
    size_t n = (size_t)(na - np);
    float lp;
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(sc, pt, (size_t)np, &c, &n, 1, &lp, &err), SLM_OK);
    return lp;
}

Test(labels, probabilities_are_exact_and_normalised) {
    if (!g_stories) { /* its label splits are stories260K's tokenization */
        cr_skip_test("needs stories260K's tokenizer; the model is random");
    }
    struct slm_scorer *sc = scorer();
    const char *prompt = "Once upon a time there was a";
    struct slm_label_set *ls = set(SLM_LABEL_CORR_NONE, true);
    struct slm_label_result r;
    struct slm_err err;
    cr_assert_eq(slm_label_set_score(ls, sc, slm_str_c(prompt), SLM_STR_NULL, &r, &err), SLM_OK,
                 "%s", err.msg);
    double z = 0, sum = 0;
    for (size_t k = 0; k < 4; k++) {
        double want = direct(sc, prompt, k_labels[k], true);
        cr_assert(fabs(r.logp[k] - want) < 1e-4, "label %zu: %f vs %f", k, r.logp[k], want);
        z += exp(r.logp[k]);
    }
    for (size_t k = 0; k < 4; k++) {
        cr_assert(fabs(r.probs[k] - exp(r.logp[k]) / z) < 1e-9);
        sum += r.probs[k];
        cr_assert(r.probs[k] <= r.prob);
    }
    cr_assert(fabs(sum - 1) < 1e-9);
    cr_assert(r.probs[r.best] == r.prob);
    double second = 0;
    for (size_t k = 0; k < 4; k++) {
        second = k != r.best && r.probs[k] > second ? r.probs[k] : second;
    }
    cr_assert(fabs(r.margin - (r.prob - second)) < 1e-12);
    cr_assert(r.prior == NULL);
    slm_label_set_free(ls);
    slm_scorer_free(sc);
}

Test(labels, prior_subtraction_and_length_normalisation) {
    struct slm_scorer *sc = scorer();
    const char *prompt = "Tom saw a pet. The pet was a";
    const char *empty = "The pet was a";
    struct slm_label_set *none = set(SLM_LABEL_CORR_NONE, false);
    struct slm_label_set *pr = set(SLM_LABEL_CORR_PRIOR, false);
    struct slm_label_set *len = set(SLM_LABEL_CORR_LENGTH, false);
    struct slm_label_result a, b, c, e;
    struct slm_err err;
    cr_assert_eq(slm_label_set_score(none, sc, slm_str_c(prompt), SLM_STR_NULL, &a, &err), SLM_OK);
    cr_assert_eq(slm_label_set_score(pr, sc, slm_str_c(prompt), SLM_STR_NULL, &b, &err),
                 SLM_E_INVALID, "prior needs the empty prompt");
    cr_assert_eq(slm_label_set_score(pr, sc, slm_str_c(prompt), slm_str_c(empty), &b, &err), SLM_OK,
                 "%s", err.msg);
    cr_assert_eq(slm_label_set_score(len, sc, slm_str_c(prompt), SLM_STR_NULL, &c, &err), SLM_OK);
    /* The prior is the labels' log-likelihood after the empty prompt. */
    struct slm_label_set *none2 = set(SLM_LABEL_CORR_NONE, false); /* a's arrays stay */
    cr_assert_eq(slm_label_set_score(none2, sc, slm_str_c(empty), SLM_STR_NULL, &e, &err), SLM_OK);
    double zb = 0, zc = 0;
    for (size_t k = 0; k < 4; k++) {
        cr_assert(fabs(b.prior[k] - e.logp[k]) < 1e-5, "prior %zu", k);
        cr_assert(fabs(b.logp[k] - a.logp[k]) < 1e-5, "%zu: %f vs %f (%zu vs %zu tokens)", k,
                  b.logp[k], a.logp[k], b.n_tokens[k], a.n_tokens[k]);
        zb += exp(b.logp[k] - b.prior[k]);
        zc += exp(c.logp[k] / (double)c.n_tokens[k]);
        cr_assert(c.n_tokens[k] >= 1);
    }
    for (size_t k = 0; k < 4; k++) {
        cr_assert(fabs(b.probs[k] - exp(b.logp[k] - b.prior[k]) / zb) < 1e-9);
        cr_assert(fabs(c.probs[k] - exp(c.logp[k] / (double)c.n_tokens[k]) / zc) < 1e-9);
    }
    /* The two-token label gets no bonus for brevity under length normalisation:
     * "big red ball" has more tokens than "dog" */
    cr_assert(c.n_tokens[2] > c.n_tokens[0]);
    /* Cached prior: the same empty prompt scores nothing extra. */
    struct slm_label_result b2;
    cr_assert_eq(slm_label_set_score(pr, sc, slm_str_c(prompt), slm_str_c(empty), &b2, &err),
                 SLM_OK);
    cr_assert_eq(slm_label_set_score(pr, sc, slm_str_c(prompt), slm_str_c(empty), &b2, &err),
                 SLM_OK);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(sc, &st);
    cr_assert_eq(st.n_prompt_decoded, 1, "the prior was cached: the scorer saw the prompt twice");
    for (size_t k = 0; k < 4; k++) {
        cr_assert(fabs(b2.probs[k] - b.probs[k]) < 1e-6);
    }
    slm_label_set_free(none);
    slm_label_set_free(none2);
    slm_label_set_free(pr);
    slm_label_set_free(len);
    slm_scorer_free(sc);
}

Test(labels, by_default_labels_follow_the_prompt_as_slm_tune_writes_them) {
    /* slm tune tokenizes the rendered prompt (with BOS) and the completion
     * alone (no BOS), then appends EOS: the default label set scores exactly
     * that sequence, whatever the text would tokenize to as a whole. */
    struct slm_scorer *sc = scorer();
    struct slm_label_set_params p = slm_label_set_params_default();
    p.correction = SLM_LABEL_CORR_NONE;
    struct slm_label_set *ls;
    struct slm_err err;
    cr_assert_eq(slm_label_set_init(g_model, k_labels, 4, &p, &ls, &err), SLM_OK, "%s", err.msg);
    const char *prompt = "Customer: my dog ran away\nIntent:";
    struct slm_label_result r;
    cr_assert_eq(slm_label_set_score(ls, sc, slm_str_c(prompt), SLM_STR_NULL, &r, &err), SLM_OK,
                 "%s", err.msg);
    int32_t pt[256];
    int64_t np = slm_tokenize(g_model, slm_str_c(prompt), true, true, pt, 256);
    cr_assert_gt(np, 0);
    for (size_t k = 0; k < 4; k++) {
        int32_t lt[64];
        int64_t nl = slm_tokenize(g_model, slm_str_c(k_labels[k]), false, false, lt, 63);
        cr_assert_gt(nl, 0);
        lt[nl++] = slm_model_eos(g_model);
        const int32_t *c = lt;
        size_t n = (size_t)nl;
        float lp;
        cr_assert_eq(slm_scorer_score(sc, pt, (size_t)np, &c, &n, 1, &lp, &err), SLM_OK);
        cr_assert(fabs(r.logp[k] - lp) < 1e-4, "label %zu: %f vs %f", k, r.logp[k], (double)lp);
    }
    slm_label_set_free(ls);
    slm_scorer_free(sc);
}

Test(labels, boundary_space_is_backed_off) {
    /* A prompt ending in a space: SentencePiece writes "a dog" as "a" "▁dog", so
     * the trailing "▁" of "a " is not a prefix of "a dog"; the label set drops it
     * and scores "▁dog", which is the same text. */
    struct slm_scorer *sc = scorer();
    struct slm_label_set *ls = set(SLM_LABEL_CORR_NONE, false);
    struct slm_label_result r1, r2;
    struct slm_err err;
    cr_assert_eq(slm_label_set_score(ls, sc, SLM_STR("There was a "), SLM_STR_NULL, &r1, &err),
                 SLM_OK);
    double first[4];
    for (size_t k = 0; k < 4; k++) {
        first[k] = r1.logp[k];
    }
    cr_assert_eq(slm_label_set_score(ls, sc, SLM_STR("There was a"), SLM_STR_NULL, &r2, &err),
                 SLM_OK);
    for (size_t k = 0; k < 4; k++) {
        char lab[64];
        snprintf(lab, sizeof(lab), " %s", k_labels[k]);
        double d = direct(sc, "There was a", lab, false);
        /* the same text after the same prompt text, whichever side the space is on */
        cr_assert(fabs(first[k] - d) < 1e-4, "label %zu: %f vs %f", k, first[k], d);
        /* without the space the label glues onto "a": another, less likely text */
        cr_assert(r2.logp[k] < d, "label %zu", k);
    }
    slm_label_set_free(ls);
    slm_scorer_free(sc);
}

Test(labels, bad_sets_and_names) {
    struct slm_label_set *ls;
    struct slm_err err;
    const char *dup[] = {"a", "b", "a"};
    cr_assert_eq(slm_label_set_init(g_model, dup, 3, NULL, &ls, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "twice"));
    const char *emp[] = {"a", ""};
    cr_assert_eq(slm_label_set_init(g_model, emp, 2, NULL, &ls, &err), SLM_E_INVALID);
    cr_assert_eq(slm_label_set_init(g_model, dup, 0, NULL, &ls, &err), SLM_E_INVALID);
    cr_assert_eq(slm_label_set_init(g_model, k_labels, 4, NULL, &ls, &err), SLM_OK);
    cr_assert_eq(slm_label_set_size(ls), 4);
    cr_assert_eq(slm_label_set_find(ls, SLM_STR("cat")), 1);
    cr_assert_eq(slm_label_set_find(ls, SLM_STR("ca")), SIZE_MAX);
    cr_assert_str_eq(slm_label_set_label(ls, 2), "big red ball");
    slm_label_set_free(ls);
    enum slm_label_correction c;
    cr_assert_eq(slm_label_correction_parse("length", &c), SLM_OK);
    cr_assert_eq(c, SLM_LABEL_CORR_LENGTH);
    cr_assert_eq(slm_label_correction_parse("bogus", &c), SLM_E_INVALID);
    cr_assert_str_eq(slm_label_correction_name(SLM_LABEL_CORR_PRIOR), "prior");
}
