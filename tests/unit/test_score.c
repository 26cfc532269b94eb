/*
 * test_score.c - the engine's one-decode candidate scorer, on the test
 * model (test_stories.h: stories260K, else a random-weight one).
 *
 * The reference is independent of sequence sharing: each candidate's
 * log-prob is summed from next-token logits after prompt + its own prefix,
 * one plain single-sequence decode per token.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/engine.h"
#include "slm/score.h"
#include "test_stories.h"

static struct slm_model *g_model;
static bool g_stories; /* g_model is the real stories260K (not a random one) */

static void load_model(void) {
    g_stories = test_model_load(&g_model);
}

static void unload_model(void) {
    slm_model_free(g_model);
    g_model = NULL;
}

TestSuite(score, .init = load_model, .fini = unload_model);

struct toks {
    int32_t t[256];
    size_t n;
};

static void tok(const char *text, bool bos, struct toks *out) {
    int64_t n = slm_tokenize(g_model, slm_str_c(text), bos, false, out->t, SLM_ARRAY_LEN(out->t));
    cr_assert(n >= 0 && (size_t)n <= SLM_ARRAY_LEN(out->t), "tokenize %s", text);
    out->n = (size_t)n;
}

static struct slm_scorer *scorer(uint32_t n_ctx, uint32_t max_cand, bool f32) {
    struct slm_scorer_params p = slm_scorer_params_default();
    p.n_ctx = n_ctx;
    p.max_candidates = max_cand;
    p.n_threads = 1;
    p.kv_f32 = f32;
    struct slm_scorer *s = NULL;
    struct slm_err err;
    cr_assert_eq(slm_scorer_init_params(g_model, NULL, NULL, 0, &p, &s, &err), SLM_OK, "%s",
                 err.msg);
    return s;
}

/* Sum of log p(cand[j] | prompt, cand[<j]) from plain next-token logits. */
static double reference(struct slm_scorer *ref, const struct toks *prompt, const int32_t *cand,
                        size_t n) {
    int32_t seq[600];
    memcpy(seq, prompt->t, prompt->n * sizeof(int32_t));
    double sum = 0;
    for (size_t j = 0; j < n; j++) {
        const float *lg;
        int32_t nv;
        struct slm_err err;
        slm_scorer_reset(ref); /* no reuse: a fresh single-sequence decode */
        cr_assert_eq(slm_scorer_logits(ref, seq, prompt->n + j, &lg, &nv, &err), SLM_OK, "%s",
                     err.msg);
        double mx = lg[0], z = 0;
        for (int32_t v = 1; v < nv; v++) {
            mx = lg[v] > mx ? lg[v] : mx;
        }
        for (int32_t v = 0; v < nv; v++) {
            z += exp(lg[v] - mx);
        }
        sum += lg[cand[j]] - mx - log(z);
        seq[prompt->n + j] = cand[j];
    }
    return sum;
}

static const char *k_prompt = "Once upon a time, there was a little girl named Lily. She";
static const char *k_words[] = {
    " was",          " loved to play", " saw a big dog in the park", " had",
    " went outside", " smiled",        " ran to her mom and said",   " liked the sun",
};

/* Candidates as token arrays, plus an empty one at the end. */
struct cands {
    struct toks t[400];
    const int32_t *p[400];
    size_t len[400];
    size_t n;
};

static void make_cands(struct cands *c, size_t n) {
    c->n = n;
    for (size_t k = 0; k < n; k++) {
        char text[128];
        snprintf(text, sizeof(text), "%s%s", k_words[k % SLM_ARRAY_LEN(k_words)],
                 k >= SLM_ARRAY_LEN(k_words) ? (k % 2 ? " and" : " the") : "");
        tok(text, false, &c->t[k]);
        /* Past the word list: synthetic candidates of 2 to 5 tokens. */
        if (k >= SLM_ARRAY_LEN(k_words)) {
            c->t[k].n = 2 + k % 4;
            for (size_t j = 0; j < c->t[k].n; j++) {
                c->t[k].t[j] = (int32_t)(10 + (k * 7 + j * 13) % 400);
            }
        }
        c->p[k] = c->t[k].t;
        c->len[k] = c->t[k].n;
    }
}

/* Distinct (prefix length >= 1, all tokens but the last) prefixes of the
 * candidates: what a trie decodes, once each. */
static size_t distinct_prefixes(const struct cands *c) {
    size_t n = 0;
    for (size_t k = 0; k < c->n; k++) {
        for (size_t j = 1; j < c->len[k]; j++) {
            bool seen = false;
            for (size_t q = 0; q < k && !seen; q++) {
                seen = c->len[q] > j && memcmp(c->p[q], c->p[k], j * sizeof(int32_t)) == 0;
            }
            n += !seen;
        }
    }
    return n;
}

static void check_against_reference(struct slm_scorer *s, const struct toks *prompt,
                                    const struct cands *c, double tol) {
    float logp[400];
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(s, prompt->t, prompt->n, c->p, c->len, c->n, logp, &err), SLM_OK,
                 "%s", err.msg);
    struct slm_scorer *ref = scorer(512, 1, true);
    for (size_t k = 0; k < c->n; k++) {
        double want = reference(ref, prompt, c->p[k], c->len[k]);
        cr_assert(fabs(want - logp[k]) < tol, "candidate %zu: %f vs alone %f", k, logp[k], want);
    }
    slm_scorer_free(ref);
}

Test(score, one_decode_equals_each_alone) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct cands c;
    make_cands(&c, SLM_ARRAY_LEN(k_words));
    c.len[3] = 0; /* an empty candidate scores 0 */
    struct slm_scorer *s = scorer(512, 16, true);
    check_against_reference(s, &prompt, &c, 1e-4);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_chunks, 1, "all candidates in one decode");
    cr_assert_eq(st.n_prompt_decoded, prompt.n);
    cr_assert_eq(st.n_cand_decoded, distinct_prefixes(&c));
    float one[1];
    struct slm_err err;
    const int32_t *e = c.p[3];
    size_t zero = 0;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, &e, &zero, 1, one, &err), SLM_OK);
    cr_assert_eq(one[0], 0.0f);
    slm_scorer_free(s);
}

Test(score, default_f16_cache_is_close) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct cands c;
    make_cands(&c, SLM_ARRAY_LEN(k_words));
    struct slm_scorer *s = scorer(512, 16, false);
    check_against_reference(s, &prompt, &c, 2e-2);
    slm_scorer_free(s);
}

Test(score, prefix_reuse_gives_the_same_numbers) {
    struct toks a, b;
    tok("Once upon a time, there was a little girl named Lily.", true, &a);
    tok("Once upon a time, there was a little girl named Lily. She had a red ball. She", true, &b);
    cr_assert(b.n > a.n + 3 && memcmp(a.t, b.t, a.n * sizeof(int32_t)) == 0);
    struct cands c;
    make_cands(&c, SLM_ARRAY_LEN(k_words));
    struct slm_scorer *s = scorer(512, 16, true), *fresh = scorer(512, 16, true);
    float got[16], want[16];
    struct slm_err err;
    struct slm_scorer_stats st;
    cr_assert_eq(slm_scorer_score(s, a.t, a.n, c.p, c.len, c.n, got, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_scorer_score(s, b.t, b.n, c.p, c.len, c.n, got, &err), SLM_OK, "%s", err.msg);
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_prompt_reused, a.n, "reused %zu of %zu", st.n_prompt_reused, a.n);
    cr_assert_eq(st.n_prompt_decoded, b.n - a.n);
    cr_assert_eq(slm_scorer_score(fresh, b.t, b.n, c.p, c.len, c.n, want, &err), SLM_OK);
    for (size_t k = 0; k < c.n; k++) {
        cr_assert(fabsf(got[k] - want[k]) < 1e-5f, "candidate %zu: %f vs %f", k, got[k], want[k]);
    }
    /* The same prompt again: everything but the last token is reused. */
    cr_assert_eq(slm_scorer_score(s, b.t, b.n, c.p, c.len, c.n, got, &err), SLM_OK);
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_prompt_reused, b.n - 1);
    for (size_t k = 0; k < c.n; k++) {
        cr_assert(fabsf(got[k] - want[k]) < 1e-5f, "candidate %zu: %f vs %f", k, got[k], want[k]);
    }
    /* A shorter prompt that diverges: reuse stops at the divergence. */
    cr_assert_eq(slm_scorer_score(s, a.t, a.n, c.p, c.len, c.n, got, &err), SLM_OK);
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_prompt_reused, a.n - 1);
    cr_assert_eq(slm_scorer_score(fresh, a.t, a.n, c.p, c.len, c.n, want, &err), SLM_OK);
    for (size_t k = 0; k < c.n; k++) {
        cr_assert(fabsf(got[k] - want[k]) < 1e-5f, "candidate %zu: %f vs %f", k, got[k], want[k]);
    }
    slm_scorer_free(s);
    slm_scorer_free(fresh);
}

Test(score, overflow_is_an_error_with_numbers) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct slm_scorer *s = scorer(256, 4, true);
    uint32_t n_ctx = slm_scorer_n_ctx(s);
    int32_t big[300];
    for (size_t i = 0; i < SLM_ARRAY_LEN(big); i++) {
        big[i] = (int32_t)(20 + i);
    }
    const int32_t *cp[1] = {big};
    size_t len[1] = {n_ctx - prompt.n + 2};
    float lp[1];
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, cp, len, 1, lp, &err), SLM_E_OVERFLOW);
    char want[64];
    snprintf(want, sizeof(want), "needs %zu tokens", prompt.n + len[0] - 1);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    snprintf(want, sizeof(want), "holds %u", n_ctx);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    /* The longest that fits, then a prompt alone that is too long. */
    len[0] = n_ctx - prompt.n + 1;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, cp, len, 1, lp, &err), SLM_OK, "%s",
                 err.msg);
    cr_assert_eq(slm_scorer_score(s, big, n_ctx + 1, cp, len, 1, lp, &err), SLM_E_OVERFLOW);
    cr_assert_eq(slm_scorer_score(s, big, 0, cp, len, 1, lp, &err), SLM_E_INVALID);
    int32_t bad = 1 << 20;
    const int32_t *bp[1] = {&bad};
    size_t one = 1;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, bp, &one, 1, lp, &err), SLM_E_INVALID);
    slm_scorer_free(s);
}

Test(score, chunks_by_sequence_count) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct cands c;
    make_cands(&c, 10);
    struct slm_scorer *s = scorer(512, 3, true);
    check_against_reference(s, &prompt, &c, 1e-4);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    size_t multi = 0;
    for (size_t k = 0; k < c.n; k++) {
        multi += c.len[k] > 1;
    }
    cr_assert_eq(st.n_chunks, (multi + 2) / 3, "%zu chunks for %zu candidates", st.n_chunks, multi);
    cr_assert_eq(st.n_prompt_decoded, prompt.n, "the prompt is decoded once");
    slm_scorer_free(s);
}

Test(score, chunks_past_llamas_sequence_limit) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    static struct cands c;
    make_cands(&c, 300);
    struct slm_scorer *s = scorer(2048, 1000, true);
    float *lp = calloc(c.n, sizeof(float)), *alone = calloc(c.n, sizeof(float));
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, c.p, c.len, c.n, lp, &err), SLM_OK, "%s",
                 err.msg);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_chunks, 2, "300 candidates over 255 sequences: %zu chunks", st.n_chunks);
    /* Each candidate alone (one sequence) must agree. */
    for (size_t k = 0; k < c.n; k += 7) {
        cr_assert_eq(
            slm_scorer_score(s, prompt.t, prompt.n, &c.p[k], &c.len[k], 1, &alone[k], &err),
            SLM_OK);
        cr_assert(fabsf(alone[k] - lp[k]) < 1e-4f, "candidate %zu: %f vs %f", k, lp[k], alone[k]);
    }
    free(lp);
    free(alone);
    slm_scorer_free(s);
}

Test(score, chunks_by_free_cells) {
    /* A prompt that leaves room for only a few candidate tokens at once. */
    struct toks prompt, one;
    tok(k_prompt, true, &prompt);
    tok(k_prompt, false, &one);
    struct slm_scorer *s = scorer(256, 16, true);
    size_t n_ctx = slm_scorer_n_ctx(s);
    while (prompt.n + one.n + 12 <= n_ctx) {
        memcpy(prompt.t + prompt.n, one.t, one.n * sizeof(int32_t));
        prompt.n += one.n;
    }
    while (prompt.n + 12 < n_ctx) {
        prompt.t[prompt.n++] = one.t[0];
    }
    struct cands c;
    make_cands(&c, SLM_ARRAY_LEN(k_words));
    check_against_reference(s, &prompt, &c, 1e-4);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    cr_assert(st.n_chunks > 1, "%zu chunks", st.n_chunks);
    slm_scorer_free(s);
}

/* Labels that share prefixes, one that is a prefix of another, a duplicate,
 * a one-token label and one longer than the rest: each equals its
 * one-at-a-time reference, the shared prefixes are decoded once, and the
 * most likely label is the reference's. */
Test(score, trie_of_shared_prefixes_equals_each_alone) {
    struct toks prompt, stem;
    tok(k_prompt, true, &prompt);
    tok(" saw a big", false, &stem);
    cr_assert(stem.n >= 2);
    const char *tails[] = {" dog", " cat", " dog in the park and ran away", "", " tree"};
    struct cands c = {0};
    for (size_t k = 0; k < SLM_ARRAY_LEN(tails); k++) {
        char text[128];
        snprintf(text, sizeof(text), " saw a big%s", tails[k]);
        tok(text, false, &c.t[c.n++]);
    }
    c.t[c.n] = c.t[0]; /* a duplicate */
    c.n++;
    c.t[c.n].t[0] = stem.t[0]; /* one token: scored from the prompt's logits */
    c.t[c.n++].n = 1;
    tok(" had", false, &c.t[c.n++]); /* no shared prefix */
    for (size_t k = 0; k < c.n; k++) {
        c.p[k] = c.t[k].t;
        c.len[k] = c.t[k].n;
    }
    struct slm_scorer *s = scorer(512, 16, true), *ref = scorer(512, 1, true);
    check_against_reference(s, &prompt, &c, 1e-4);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    size_t all = 0;
    for (size_t k = 0; k < c.n; k++) {
        all += c.len[k] - 1;
    }
    cr_assert_eq(st.n_cand_decoded, distinct_prefixes(&c));
    cr_assert(st.n_cand_decoded < all, "%zu shared rows vs %zu", st.n_cand_decoded, all);
    cr_assert_eq(st.n_chunks, 1);
    float got[16], alone[16];
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, c.p, c.len, c.n, got, &err), SLM_OK);
    size_t best = 0, best_alone = 0;
    for (size_t k = 0; k < c.n; k++) {
        cr_assert_eq(
            slm_scorer_score(ref, prompt.t, prompt.n, &c.p[k], &c.len[k], 1, &alone[k], &err),
            SLM_OK, "%s", err.msg);
        best = got[k] > got[best] ? k : best;
        best_alone = alone[k] > alone[best_alone] ? k : best_alone;
    }
    cr_assert_eq(best, best_alone, "picked %zu, alone %zu", best, best_alone);
    cr_assert_eq(got[0], got[5], "a duplicate scores the same");
    slm_scorer_free(s);
    slm_scorer_free(ref);
}

/* Scoring a prompt after many unrelated prompts and label sets gives what a
 * fresh scorer gives, with the same work: nothing a call leaves behind
 * (freed cells, a moved search head) reaches the next. */
Test(score, history_does_not_change_results) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct cands c;
    make_cands(&c, 40);
    struct slm_scorer *s = scorer(1024, 64, true), *fresh = scorer(1024, 64, true);
    float want[40], got[40];
    struct slm_err err;
    struct slm_scorer_stats st0, st;
    cr_assert_eq(slm_scorer_score(fresh, prompt.t, prompt.n, c.p, c.len, c.n, want, &err), SLM_OK,
                 "%s", err.msg);
    slm_scorer_last_stats(fresh, &st0);
    for (size_t i = 0; i < 60; i++) {
        struct toks other = {.n = 1 + (i * 7) % 90};
        other.t[0] = prompt.t[0];
        for (size_t j = 1; j < other.n; j++) {
            other.t[j] = (int32_t)(5 + (i * 31 + j * 17) % 450);
        }
        size_t n = 1 + (i * 13) % c.n;
        float lp[40];
        cr_assert_eq(slm_scorer_score(s, other.t, other.n, c.p, c.len, n, lp, &err), SLM_OK,
                     "prompt %zu: %s", i, err.msg);
    }
    cr_assert_eq(slm_scorer_score(s, prompt.t, prompt.n, c.p, c.len, c.n, got, &err), SLM_OK);
    slm_scorer_last_stats(s, &st);
    cr_assert_eq(st.n_cand_decoded, st0.n_cand_decoded);
    cr_assert_eq(st.n_chunks, st0.n_chunks);
    for (size_t k = 0; k < c.n; k++) {
        /* float noise: the prompt's first token was cached, so it is decoded in
         * a batch of another size */
        cr_assert(fabsf(got[k] - want[k]) <= 1e-6f * fmaxf(1.0f, fabsf(want[k])),
                  "candidate %zu: %f vs fresh %f", k, got[k], want[k]);
    }
    slm_scorer_free(s);
    slm_scorer_free(fresh);
}

/* slm_scorer_best against scoring every candidate: the same best candidate,
 * the same numbers where it says exact, true upper bounds elsewhere, and the
 * stopping rule it promises. */
static void check_best(struct slm_scorer *s, struct slm_scorer *full, const struct toks *prompt,
                       const struct cands *c, double max_rest) {
    float want[400], got[400];
    bool exact[400];
    size_t best = SIZE_MAX;
    struct slm_err err;
    cr_assert_eq(slm_scorer_score(full, prompt->t, prompt->n, c->p, c->len, c->n, want, &err),
                 SLM_OK, "%s", err.msg);
    struct slm_scorer_search how = slm_scorer_search_default();
    how.max_rest = max_rest;
    cr_assert_eq(
        slm_scorer_best(s, prompt->t, prompt->n, c->p, c->len, c->n, &how, &best, got, exact, &err),
        SLM_OK, "%s", err.msg);
    size_t argmax = 0;
    for (size_t k = 1; k < c->n; k++) {
        argmax = want[k] > want[argmax] ? k : argmax;
    }
    cr_assert_eq(best, argmax, "max_rest %g: best %zu (%f), scoring all: %zu (%f)", max_rest, best,
                 (double)want[best], argmax, (double)want[argmax]);
    cr_assert(exact[best]);
    double top = want[best], scored = 0, rest = 0;
    size_t n_exact = 0;
    for (size_t k = 0; k < c->n; k++) {
        if (exact[k]) {
            cr_assert(fabsf(got[k] - want[k]) <= 1e-4f, "candidate %zu: %f vs %f", k,
                      (double)got[k], (double)want[k]);
            scored += exp(want[k] - top);
            n_exact++;
        } else {
            cr_assert(got[k] >= want[k] - 1e-4f, "candidate %zu: bound %f below %f", k,
                      (double)got[k], (double)want[k]);
            cr_assert(got[k] < got[best], "candidate %zu: bound %f not below the best %f", k,
                      (double)got[k], (double)got[best]);
            rest += exp(want[k] - top);
        }
    }
    if (max_rest == 0) {
        cr_assert_eq(n_exact, c->n, "max_rest 0 scores every candidate");
    } else if (max_rest < HUGE_VAL) {
        cr_assert(rest <= max_rest * scored * (1 + 1e-6), "unscored mass %g > %g x %g", rest,
                  max_rest, scored);
    }
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    cr_assert(st.n_cand_decoded <= distinct_prefixes(c), "%zu rows, the trie has %zu",
              st.n_cand_decoded, distinct_prefixes(c));
}

Test(score, best_first_agrees_with_scoring_every_candidate) {
    static const char *prompts[] = {
        "Once upon a time, there was a little girl named Lily. She",
        "The dog",
        "Tom and Sue went to the park. They saw",
    };
    static const double rests[] = {HUGE_VAL, 1e-2, 1e-3, 0};
    struct slm_scorer *s = scorer(2048, 255, true), *full = scorer(2048, 255, true);
    for (size_t i = 0; i < SLM_ARRAY_LEN(prompts); i++) {
        struct toks prompt;
        tok(prompts[i], true, &prompt);
        for (size_t n = 8; n <= 40; n += 32) {
            struct cands c;
            make_cands(&c, n);
            for (size_t r = 0; r < SLM_ARRAY_LEN(rests); r++) {
                check_best(s, full, &prompt, &c, rests[r]);
            }
        }
    }
    slm_scorer_free(s);
    slm_scorer_free(full);
}

/* Where the model is sure, the search decodes a fraction of the trie. */
Test(score, best_first_stops_early_where_the_model_is_sure) {
    if (!g_stories) {
        cr_skip_test("needs the real stories260K: a random-weight model is sure of nothing");
    }
    struct toks prompt;
    tok("Once upon a time, there was a little girl named Lily. She loved to play outside. "
        "One day, she",
        true, &prompt);
    struct cands c;
    make_cands(&c, 40);
    struct slm_scorer *s = scorer(2048, 255, true), *full = scorer(2048, 255, true);
    check_best(s, full, &prompt, &c, HUGE_VAL);
    struct slm_scorer_stats st;
    slm_scorer_last_stats(s, &st);
    cr_assert(st.n_cand_decoded * 2 < distinct_prefixes(&c), "%zu rows of %zu", st.n_cand_decoded,
              distinct_prefixes(&c));
    slm_scorer_free(s);
    slm_scorer_free(full);
}

/* More candidates than sequences: every candidate is scored, in chunks. */
Test(score, best_first_past_the_sequences_scores_all) {
    struct toks prompt;
    tok(k_prompt, true, &prompt);
    struct cands c;
    make_cands(&c, 40);
    struct slm_scorer *s = scorer(1024, 8, true), *full = scorer(1024, 64, true);
    float got[40];
    bool exact[40];
    size_t best;
    struct slm_err err;
    cr_assert_eq(
        slm_scorer_best(s, prompt.t, prompt.n, c.p, c.len, c.n, NULL, &best, got, exact, &err),
        SLM_OK, "%s", err.msg);
    for (size_t k = 0; k < c.n; k++) {
        cr_assert(exact[k], "candidate %zu", k);
    }
    check_best(s, full, &prompt, &c, HUGE_VAL);
    cr_assert_eq(
        slm_scorer_best(s, prompt.t, prompt.n, c.p, c.len, 0, NULL, &best, got, exact, &err),
        SLM_E_INVALID);
    slm_scorer_free(s);
    slm_scorer_free(full);
}
