/*
 * test_sched.c - the continuous-batching scheduler and the model pool, on
 * the test model (test_stories.h: stories260K, else a random-weight one; the
 * tests marked load_stories need stories260K itself).
 *
 * Outputs are compared with slm_generate on one sequence. Batching changes
 * the order of float sums, so two greedy streams may part where the model is
 * torn between two tokens; a divergence is accepted only where the top two
 * log-probs are within 1e-3 of each other (anything else is cross-talk).
 */
#include <criterion/criterion.h>
#include <ggml.h>
#include <gguf.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/engine.h"
#include "slm/sched.h"
#include "test_stories.h"

#define MAX_OUT 512

static struct slm_model *g_model;
static char g_path[1024];

/* Any model runs most of these; the adapter tests need stories260K (the
 * adapters are made for its shapes) and so does the LRU test (its prompt
 * lengths are counted in stories260K's tokens). */
static void load_model(void) {
    test_model_path(g_path, sizeof(g_path));
    struct slm_err err;
    cr_assert_eq(slm_model_load(g_path, NULL, &g_model, &err), SLM_OK, "%s", err.msg);
}

static void load_stories(void) {
    test_stories_path(g_path, sizeof(g_path));
    struct slm_err err;
    cr_assert_eq(slm_model_load(g_path, NULL, &g_model, &err), SLM_OK, "%s", err.msg);
}

static void unload_model(void) {
    slm_model_free(g_model);
    g_model = NULL;
}

/* One request's output: token ids, the top-2 log-prob gap at each step. */
struct run {
    int32_t ids[MAX_OUT];
    float gap[MAX_OUT];
    float lp[MAX_OUT]; /* log-prob of the chosen token */
    int n;
    struct slm_buf text;
    struct slm_gen_stats st;
    int rc;
};

static void run_free(struct run *r) {
    slm_buf_free(&r->text);
}

static int32_t *tok(const char *text, size_t *n) {
    int32_t *t;
    struct slm_err err;
    cr_assert_eq(slm_tokenize_alloc(g_model, slm_str_c(text), true, &t, n, 0, &err), SLM_OK);
    return t;
}

static float gap_of(const struct slm_top_logprob *top, int n_top) {
    return n_top >= 2 ? top[0].logprob - top[1].logprob : INFINITY;
}

static int ref_cb(const struct slm_token_event *ev, void *user) {
    struct run *r = user;
    cr_assert_eq(slm_buf_append(&r->text, ev->text, ev->len), SLM_OK);
    if (ev->token >= 0 && r->n < MAX_OUT) {
        r->gap[r->n] = gap_of(ev->top, ev->n_top);
        r->lp[r->n] = ev->logprob;
        r->ids[r->n++] = ev->token;
    }
    return 0;
}

static struct slm_gen_params greedy(int32_t max_tokens) {
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 0;
    gp.max_tokens = max_tokens;
    gp.n_top_logprobs = 2;
    gp.logprobs = true;
    return gp;
}

/* The reference: the prompt alone through slm_generate on a fresh context,
 * with F32 attention (as the schedulers it is compared with). */
static void solo(const int32_t *prompt, size_t n, const struct slm_gen_params *gp,
                 struct slm_adapter *adapter, struct run *out) {
    memset(out, 0, sizeof(*out));
    struct slm_ctx_params cp = slm_ctx_params_default();
    cp.kv_f32 = true;
    cp.n_threads = 1; /* a tiny model: more threads only contend on two shared cores */
    struct slm_ctx *ctx;
    struct slm_err err;
    cr_assert_eq(slm_ctx_init(g_model, &cp, &ctx, &err), SLM_OK, "%s", err.msg);
    if (adapter) {
        float scale = 1.0f;
        cr_assert_eq(slm_ctx_set_adapters(ctx, &adapter, &scale, 1, &err), SLM_OK, "%s", err.msg);
    }
    out->rc = slm_generate(ctx, prompt, n, gp, ref_cb, out, &out->st, &err);
    cr_assert_eq(out->rc, SLM_OK, "%s", err.msg);
    slm_ctx_free(ctx);
}

/* Reads until `out` holds `want` tokens or the request is done. */
static bool read_until(struct slm_request *r, struct run *out, int want) {
    struct slm_req_token toks[32];
    bool done = false;
    while (!done && out->n < want) {
        size_t n = 0;
        size_t before = out->text.len;
        size_t cap = (size_t)SLM_MIN(32, want - out->n);
        cr_assert_eq(slm_request_read(r, -1, &out->text, toks, cap, &n, &done), SLM_OK);
        for (size_t i = 0; i < n; i++) {
            cr_assert_leq(before + toks[i].text_end, out->text.len);
            if (out->n < MAX_OUT) {
                out->gap[out->n] = gap_of(toks[i].top, toks[i].n_top);
                out->lp[out->n] = toks[i].logprob;
                out->ids[out->n++] = toks[i].token;
            }
        }
    }
    return done;
}

/* Reads the rest of a request. */
static void drain_more(struct slm_request *r, struct run *out) {
    read_until(r, out, INT32_MAX);
    struct slm_err err;
    out->rc = slm_request_result(r, &out->st, &err);
}

static void drain(struct slm_request *r, struct run *out) {
    memset(out, 0, sizeof(*out));
    drain_more(r, out);
}

/* The scheduler's stream must be the reference's, except where the reference
 * itself was torn between its top two tokens. */
static void expect_same(const struct run *ref, const struct run *got, const char *what) {
    cr_assert_eq(got->rc, SLM_OK, "%s", what);
    int n = SLM_MIN(ref->n, got->n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (ref->ids[i] != got->ids[i]) {
            cr_log_info("%s: diverges at step %d, top-2 log-prob gap there %.3g alone, %.3g "
                        "scheduled (log-probs differed by up to %.3g before)",
                        what, i, (double)ref->gap[i], (double)got->gap[i], worst);
            cr_assert_lt(ref->gap[i], 1e-3f,
                         "%s: diverges at step %d where the top-2 gap is %g "
                         "(cross-talk)",
                         what, i, (double)ref->gap[i]);
            return;
        }
        worst = fmax(worst, fabs((double)ref->lp[i] - got->lp[i]));
    }
    if (getenv("SLM_TEST_VERBOSE")) {
        cr_log_info("%s: same %d tokens, log-probs differ by up to %.3g", what, n, worst);
    }
    cr_assert_eq(ref->n, got->n, "%s: %d tokens alone, %d scheduled", what, ref->n, got->n);
    cr_assert_eq(ref->st.finish, got->st.finish, "%s", what);
    cr_assert_str_eq(slm_buf_cstr(&ref->text), slm_buf_cstr(&got->text), "%s", what);
}

/* Schedulers whose output is compared with solo() use F32 attention: with
 * flash attention's F16 the two differ by a few 1e-3 in log-prob (rounding
 * flips amplified over the steps), with F32 by about 1e-6. */
static struct slm_sched *start_p(struct slm_sched_params sp) {
    sp.n_threads = 1;
    struct slm_sched *s;
    struct slm_err err;
    cr_assert_eq(slm_sched_init(g_model, &sp, &s, &err), SLM_OK, "%s", err.msg);
    return s;
}

static struct slm_sched *start_ex(int32_t n_parallel, uint32_t n_ctx, uint32_t max_queue,
                                  bool exact) {
    struct slm_sched_params sp = slm_sched_params_default();
    sp.kv_f32 = exact;
    sp.n_parallel = n_parallel;
    sp.n_ctx = n_ctx;
    sp.max_queue = max_queue;
    return start_p(sp);
}

static struct slm_sched *start(int32_t n_parallel, uint32_t n_ctx, uint32_t max_queue) {
    return start_ex(n_parallel, n_ctx, max_queue, false);
}

static struct slm_request *submit(struct slm_sched *s, const int32_t *p, size_t n,
                                  const struct slm_req_params *rp) {
    struct slm_request *r;
    struct slm_err err;
    cr_assert_eq(slm_sched_submit(s, p, n, rp, &r, &err), SLM_OK, "%s", err.msg);
    return r;
}

static const char *const k_prompts[16] = {
    "Once upon a time",   "The little dog",     "Lily and Ben went", "One day, a bird",
    "Tom had a red ball", "The sun was hot",    "Mom said",          "There was a big tree",
    "A girl named Sue",   "The cat sat",        "In the park,",      "Sam wanted to",
    "The boat was",       "It was a rainy day", "Max found a box",   "The old man",
};

Test(sched, sixteen_requests_at_once_get_their_own_continuations, .init = load_model,
     .fini = unload_model) {
    struct slm_sched *s = start_ex(16, 16 * 256, 0, true);
    /* Even requests greedy, odd ones sampled with their own seed. */
    struct slm_gen_params gps[16];
    int32_t *prompts[16];
    size_t lens[16];
    struct slm_request *reqs[16];
    for (int i = 0; i < 16; i++) {
        prompts[i] = tok(k_prompts[i], &lens[i]);
        gps[i] = greedy(48);
        if (i % 2) {
            gps[i].sample.temperature = 0.9f;
            gps[i].sample.seed = 1000u + (uint32_t)i;
        }
    }
    for (int i = 0; i < 16; i++) {
        struct slm_req_params rp = {.gen = gps[i]};
        reqs[i] = submit(s, prompts[i], lens[i], &rp);
    }
    struct run got[16];
    for (int i = 0; i < 16; i++) {
        drain(reqs[i], &got[i]);
    }
    for (int i = 0; i < 16; i++) {
        struct run ref;
        solo(prompts[i], lens[i], &gps[i], NULL, &ref);
        expect_same(&ref, &got[i], k_prompts[i]);
        cr_assert_eq(got[i].st.n_prompt, (int32_t)lens[i]);
        run_free(&got[i]);
        run_free(&ref);
        slm_request_free(reqs[i]);
        free(prompts[i]);
    }
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    cr_assert_eq(st.requests, 16);
    cr_assert_eq(st.active, 0);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_gt(st.gen_tokens, 0);
    slm_sched_free(s);
}

/* A long story prefix (about 200 tokens) for the cache tests. */
static const char k_story[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "sunshine. One day, she saw a big red ball in the park. She ran to the ball and kicked it "
    "very hard. The ball went up into the sky and came down in a tree. Lily was sad because she "
    "could not reach the ball. Her friend Ben came to help. He was tall and strong. He climbed "
    "the tree and got the ball. Lily was very happy. She said thank you to Ben and they played "
    "together all day. When the sun went down, they went home to eat dinner with their moms. "
    "The next day, Lily and Ben went to the park again. They saw a little dog. ";

static uint32_t common(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    uint32_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) {
        i++;
    }
    return i;
}

Test(sched, a_second_request_reuses_the_cached_prefix, .init = load_model, .fini = unload_model) {
    struct slm_sched *s = start_ex(2, 2 * 1024, 0, true);
    struct slm_buf t1 = {0}, t2 = {0};
    cr_assert_eq(slm_buf_printf(&t1, "%sThe dog was", k_story), SLM_OK);
    cr_assert_eq(slm_buf_printf(&t2, "%sThey named it", k_story), SLM_OK);
    size_t n1, n2;
    int32_t *p1 = tok(t1.ptr, &n1), *p2 = tok(t2.ptr, &n2);
    uint32_t shared = common(p1, n1, p2, n2);
    cr_assert_gt(shared, 150, "the prompts share %u tokens", shared);
    struct slm_gen_params gp = greedy(32);
    struct slm_req_params rp = {.gen = gp};
    struct run a, b, ref;
    struct slm_request *r1 = submit(s, p1, n1, &rp);
    drain(r1, &a);
    cr_assert_eq(a.st.n_cached, 0);
    struct slm_request *r2 = submit(s, p2, n2, &rp);
    drain(r2, &b);
    cr_assert_geq(b.st.n_cached, (int32_t)shared, "cached %d of %u shared", b.st.n_cached, shared);
    cr_assert_lt(b.st.n_cached, (int32_t)n2);
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    cr_assert_geq(st.cached_tokens, shared);
    cr_assert_eq(st.prompt_tokens, n1 + n2 - (uint64_t)b.st.n_cached);
    solo(p2, n2, &gp, NULL, &ref);
    expect_same(&ref, &b, "second request");
    /* The same prompt again: all but its last token come from the cache. */
    struct run c;
    struct slm_request *r3 = submit(s, p2, n2, &rp);
    drain(r3, &c);
    cr_assert_eq(c.st.n_cached, (int32_t)n2 - 1);
    expect_same(&ref, &c, "same prompt again");
    run_free(&a);
    run_free(&b);
    run_free(&c);
    run_free(&ref);
    slm_request_free(r1);
    slm_request_free(r2);
    slm_request_free(r3);
    slm_sched_free(s);
    free(p1);
    free(p2);
    slm_buf_free(&t1);
    slm_buf_free(&t2);
}

Test(sched, a_burst_with_a_shared_prefix_evaluates_it_once, .init = load_model,
     .fini = unload_model) {
    struct slm_sched_params sp = slm_sched_params_default();
    sp.n_parallel = 16;
    sp.n_ctx = 16 * 512;
    sp.n_batch = 64; /* the prefix takes several steps; suffixes share them */
    sp.kv_f32 = true;
    struct slm_sched *s = start_p(sp);
    size_t np;
    int32_t *prefix = tok(k_story, &np);
    int32_t *prompts[16];
    size_t lens[16];
    size_t suffix_total = 0;
    for (int i = 0; i < 16; i++) {
        size_t ns;
        int32_t *suffix;
        struct slm_err err;
        cr_assert_eq(
            slm_tokenize_alloc(g_model, slm_str_c(k_prompts[i]), false, &suffix, &ns, 0, &err),
            SLM_OK);
        prompts[i] = malloc((np + ns) * sizeof(int32_t));
        memcpy(prompts[i], prefix, np * sizeof(int32_t));
        memcpy(prompts[i] + np, suffix, ns * sizeof(int32_t));
        lens[i] = np + ns;
        suffix_total += ns;
        free(suffix);
    }
    struct slm_gen_params gp = greedy(16);
    struct slm_req_params rp = {.gen = gp};
    struct slm_request *reqs[16];
    for (int i = 0; i < 16; i++) {
        reqs[i] = submit(s, prompts[i], lens[i], &rp);
    }
    struct run got[16];
    int32_t cached = 0;
    for (int i = 0; i < 16; i++) {
        drain(reqs[i], &got[i]);
        cached += got[i].st.n_cached;
    }
    for (int i = 0; i < 16; i++) {
        struct run ref;
        solo(prompts[i], lens[i], &gp, NULL, &ref);
        expect_same(&ref, &got[i], k_prompts[i]);
        run_free(&got[i]);
        run_free(&ref);
        slm_request_free(reqs[i]);
        free(prompts[i]);
    }
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    cr_log_info("burst: prefix %zu tokens, prompt_tokens %llu, cached_tokens %llu", np,
                (unsigned long long)st.prompt_tokens, (unsigned long long)st.cached_tokens);
    /* The prefix once plus every suffix; the other 15 copies come from the cache. */
    cr_assert_geq(st.cached_tokens, 15 * (np - 1));
    cr_assert_eq(st.cached_tokens, (uint64_t)cached);
    cr_assert_leq(st.prompt_tokens, np + suffix_total + 16);
    free(prefix);
    slm_sched_free(s);
}

Test(sched, a_waiter_whose_source_is_cancelled_still_answers, .init = load_model,
     .fini = unload_model) {
    struct slm_sched_params sp = slm_sched_params_default();
    sp.n_parallel = 4;
    sp.n_ctx = 4 * 512;
    sp.n_batch = 16; /* the shared prefix takes many steps */
    sp.kv_f32 = true;
    struct slm_sched *s = start_p(sp);
    struct slm_buf t1 = {0}, t2 = {0};
    cr_assert_eq(slm_buf_printf(&t1, "%sThe dog was", k_story), SLM_OK);
    cr_assert_eq(slm_buf_printf(&t2, "%sThey named it", k_story), SLM_OK);
    size_t n1, n2;
    int32_t *p1 = tok(t1.ptr, &n1), *p2 = tok(t2.ptr, &n2);
    struct slm_gen_params gp = greedy(16);
    struct slm_req_params rp = {.gen = gp};
    for (int round = 0; round < 3; round++) {
        /* Wherever the cancel lands (before, during or after the shared
         * prefix), the second request's answer is its own. */
        struct slm_request *a = submit(s, p1, n1, &rp);
        struct slm_request *b = submit(s, p2, n2, &rp);
        if (round > 0) {
            slm_sleep_ms(round * 5);
        }
        slm_request_cancel(a);
        struct run ga, gb, ref;
        drain(a, &ga);
        drain(b, &gb);
        cr_assert(ga.rc == SLM_OK || ga.rc == SLM_E_ABORTED);
        solo(p2, n2, &gp, NULL, &ref);
        expect_same(&ref, &gb, "after the cancel");
        run_free(&ga);
        run_free(&gb);
        run_free(&ref);
        slm_request_free(a);
        slm_request_free(b);
    }
    slm_sched_free(s);
    free(p1);
    free(p2);
    slm_buf_free(&t1);
    slm_buf_free(&t2);
}

/* Runs `p` alone on `s` (greedy, 16 tokens), checks it against a solo run and
 * returns how many of its prompt tokens came from the cache. */
static int32_t run_cached(struct slm_sched *s, const int32_t *p, size_t n) {
    struct slm_gen_params gp = greedy(16);
    struct slm_req_params rp = {.gen = gp};
    struct slm_request *r = submit(s, p, n, &rp);
    struct run got, ref;
    drain(r, &got);
    solo(p, n, &gp, NULL, &ref);
    expect_same(&ref, &got, "cached run");
    int32_t cached = got.st.n_cached;
    run_free(&got);
    run_free(&ref);
    slm_request_free(r);
    return cached;
}

Test(sched, cache_entries_are_replaced_least_recently_used_first, .init = load_stories,
     .fini = unload_model) {
    /* Two sequences, so two cache entries; three prompts that share only BOS. */
    struct slm_sched *s = start_ex(2, 2 * 512, 0, true);
    size_t ns;
    int32_t *story = tok(k_story, &ns);
    cr_assert_gt(ns, 200);
    int32_t a[60], b[60], c[60];
    a[0] = b[0] = c[0] = story[0]; /* BOS */
    memcpy(a + 1, story + 1, 59 * sizeof(int32_t));
    memcpy(b + 1, story + 61, 59 * sizeof(int32_t));
    memcpy(c + 1, story + 121, 59 * sizeof(int32_t));
    cr_assert_eq(run_cached(s, a, 60), 0);
    /* B shares one token with A: not worth A's entry, B takes the empty sequence. */
    cr_assert_lt(run_cached(s, b, 60), 16);
    cr_assert_eq(run_cached(s, a, 60), 59, "A is still cached");
    cr_assert_eq(run_cached(s, b, 60), 59, "B is still cached");
    /* C replaces the least recently used entry: A's. */
    cr_assert_lt(run_cached(s, c, 60), 16);
    cr_assert_eq(run_cached(s, b, 60), 59, "B survives C");
    cr_assert_lt(run_cached(s, a, 60), 16, "A was replaced");
    slm_sched_free(s);
    free(story);
}

/* Reads until the request has produced a token (so it holds a sequence). */
static void wait_first_token(struct slm_request *r) {
    struct run a = {0};
    cr_assert(!read_until(r, &a, 1));
    cr_assert_eq(a.n, 1);
    run_free(&a);
}

/* A request nobody reads fills its channel and then holds its sequence
 * without generating: a deterministic "long request". */
static struct slm_req_params endless(void) {
    struct slm_req_params rp = {.gen = greedy(-1)};
    rp.gen.ignore_eos = true;
    return rp;
}

Test(sched, cancelling_frees_the_sequence_for_the_next_request, .init = load_model,
     .fini = unload_model) {
    struct slm_sched *s = start(1, 2048, 0);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    struct slm_req_params long_rp = endless();
    struct slm_request *r1 = submit(s, p, n, &long_rp);
    wait_first_token(r1);
    struct slm_req_params rp = {.gen = greedy(8)};
    struct slm_request *r2 = submit(s, p, n, &rp);
    /* r1 holds the only sequence: r2 waits in the queue. */
    struct slm_buf text = {0};
    struct slm_req_token t[8];
    size_t nt;
    bool done;
    cr_assert_eq(slm_request_read(r2, 200, &text, t, 8, &nt, &done), SLM_OK);
    cr_assert_eq(nt, 0);
    cr_assert(!done);
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 1);
    cr_assert_eq(st.active, 1);
    slm_request_cancel(r1);
    struct run b;
    drain(r2, &b);
    cr_assert_eq(b.rc, SLM_OK);
    cr_assert_eq(b.n, 8);
    cr_assert_eq(b.st.finish, SLM_FINISH_LENGTH);
    struct run a;
    drain(r1, &a);
    cr_assert_eq(a.rc, SLM_E_ABORTED);
    cr_assert_eq(a.st.finish, SLM_FINISH_ABORTED);
    cr_assert_lt(a.st.n_gen, 300);
    run_free(&a);
    run_free(&b);
    slm_buf_free(&text);
    slm_request_free(r1);
    slm_request_free(r2);
    /* Freeing a running request cancels it too. */
    struct slm_request *r3 = submit(s, p, n, &long_rp);
    wait_first_token(r3);
    slm_request_free(r3);
    struct slm_request *r4 = submit(s, p, n, &rp);
    drain(r4, &b);
    cr_assert_eq(b.rc, SLM_OK);
    run_free(&b);
    slm_request_free(r4);
    slm_sched_free(s);
    free(p);
}

Test(sched, a_full_queue_and_an_overlong_prompt_are_errors, .init = load_model,
     .fini = unload_model) {
    struct slm_sched *s = start(1, 256, 2);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    struct slm_req_params long_rp = endless();
    struct slm_request *r1 = submit(s, p, n, &long_rp);
    wait_first_token(r1);
    struct slm_req_params rp = {.gen = greedy(4)};
    struct slm_request *r2 = submit(s, p, n, &rp);
    struct slm_request *r3 = submit(s, p, n, &rp);
    struct slm_request *r4 = NULL;
    struct slm_err err;
    cr_assert_eq(slm_sched_submit(s, p, n, &rp, &r4, &err), SLM_E_LIMIT);
    cr_assert(strstr(err.msg, "queue") != NULL, "%s", err.msg);
    /* 256 cells, one sequence: at most 255 prompt tokens (one more to generate). */
    int32_t big[300];
    for (int i = 0; i < 300; i++) {
        big[i] = 300;
    }
    slm_request_free(r1);
    struct slm_sched *s2 = start(2, 256, 0);
    cr_assert_eq(slm_sched_submit(s2, big, 200, &rp, &r4, &err), SLM_E_OVERFLOW);
    cr_assert(strstr(err.msg, "200") != NULL && strstr(err.msg, "128") != NULL, "%s", err.msg);
    cr_assert_eq(slm_sched_submit(s2, big, 128, &rp, &r4, &err), SLM_E_OVERFLOW);
    cr_assert_eq(slm_sched_submit(s2, big, 0, &rp, &r4, &err), SLM_E_INVALID);
    struct slm_req_params rp_noeos = rp;
    rp_noeos.gen.ignore_eos = true;
    r4 = submit(s2, big, 127, &rp_noeos);
    struct run a;
    drain(r4, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.st.finish, SLM_FINISH_CONTEXT);
    cr_assert_eq(a.n, 1);
    run_free(&a);
    slm_request_free(r4);
    /* Queued requests are served once r1 is gone. */
    drain(r2, &a);
    cr_assert_eq(a.rc, SLM_OK);
    run_free(&a);
    drain(r3, &a);
    cr_assert_eq(a.rc, SLM_OK);
    run_free(&a);
    slm_request_free(r2);
    slm_request_free(r3);
    slm_sched_free(s2);
    slm_sched_free(s);
    free(p);
}

/* Issue 14, hole 4: grammar work runs where every sequence waits, so a
 * request has a budget of it. Past the budget the request ends with
 * SLM_E_TIMEOUT and a message that says why; a request beside it, and one
 * with the same grammar under no budget, are served. */
Test(sched, a_grammar_has_a_time_budget, .init = load_model, .fini = unload_model) {
    struct slm_sched *s = start(2, 512, 0);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    static const char any_letters[] = "root ::= [a-zA-Z ]+";
    struct slm_req_params tight = {.gen = greedy(32)};
    tight.gen.ignore_eos = true;
    tight.gen.sample.grammar = any_letters;
    tight.gen.sample_budget = 1e-9; /* spent by the first token */
    struct slm_req_params open = tight;
    open.gen.sample_budget = 0;
    struct slm_req_params plain = {.gen = greedy(8)};
    struct slm_request *r1 = submit(s, p, n, &tight);
    struct slm_request *r2 = submit(s, p, n, &plain);
    struct slm_request *r3 = submit(s, p, n, &open);
    struct run a;
    drain(r1, &a);
    cr_assert_eq(a.rc, SLM_E_TIMEOUT);
    struct slm_err err = {0};
    struct slm_gen_stats st;
    cr_assert_eq(slm_request_result(r1, &st, &err), SLM_E_TIMEOUT);
    cr_assert(strstr(err.msg, "grammar") != NULL, "%s", err.msg);
    run_free(&a);
    drain(r2, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.n, 8);
    run_free(&a);
    drain(r3, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.n, 32);
    run_free(&a);
    /* A grammar that is complete while end-of-generation is masked
     * (ignore_eos) allows no token: the answer ends there (llama.cpp threw,
     * and took the process down, when asked to accept a refused token). */
    struct slm_req_params done = open;
    done.gen.sample.grammar = "root ::= \"yes\"";
    struct slm_request *r4 = submit(s, p, n, &done);
    drain(r4, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.st.finish, SLM_FINISH_STOP);
    cr_assert_str_eq(slm_buf_cstr(&a.text), "yes");
    run_free(&a);
    slm_request_free(r1);
    slm_request_free(r2);
    slm_request_free(r3);
    slm_request_free(r4);
    slm_sched_free(s);
    free(p);
}

Test(sched, freeing_the_scheduler_ends_what_is_running, .init = load_model, .fini = unload_model) {
    struct slm_sched *s = start(1, 1024, 0);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    struct slm_req_params long_rp = endless();
    struct slm_request *r1 = submit(s, p, n, &long_rp);
    struct slm_request *r2 = submit(s, p, n, &long_rp);
    wait_first_token(r1);
    slm_sched_free(s);
    struct run a;
    drain(r1, &a);
    cr_assert_eq(a.rc, SLM_E_ABORTED);
    run_free(&a);
    drain(r2, &a);
    cr_assert_eq(a.rc, SLM_E_ABORTED);
    run_free(&a);
    slm_request_free(r1);
    slm_request_free(r2);
    free(p);
}

Test(sched, stop_strings_and_small_reads, .init = load_model, .fini = unload_model) {
    struct slm_sched *s = start_ex(2, 2048, 0, true);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    struct slm_gen_params gp = greedy(64);
    struct run ref;
    solo(p, n, &gp, NULL, &ref);
    cr_assert_gt(ref.text.len, 20);
    /* A stop string from the middle of the reference output. */
    char stop[8];
    memcpy(stop, ref.text.ptr + 12, 5);
    stop[5] = '\0';
    const char *stops[] = {stop};
    gp.stop = stops;
    gp.n_stop = 1;
    struct slm_req_params rp = {.gen = gp};
    struct slm_request *r = submit(s, p, n, &rp);
    /* Read one token record at a time: text and records stay in step. */
    struct slm_buf text = {0};
    bool done = false;
    while (!done) {
        struct slm_req_token t;
        size_t nt;
        size_t before = text.len;
        cr_assert_eq(slm_request_read(r, -1, &text, &t, 1, &nt, &done), SLM_OK);
        if (nt == 1) {
            cr_assert_eq(before + t.text_end, text.len);
        }
    }
    struct slm_gen_stats st;
    cr_assert_eq(slm_request_result(r, &st, NULL), SLM_OK);
    cr_assert_eq(st.finish, SLM_FINISH_STOP);
    const char *at = strstr(ref.text.ptr, stop);
    cr_assert_not_null(at);
    cr_assert_eq(text.len, (size_t)(at - ref.text.ptr));
    cr_assert(memcmp(text.ptr, ref.text.ptr, text.len) == 0);
    slm_buf_free(&text);
    run_free(&ref);
    slm_request_free(r);
    slm_sched_free(s);
    free(p);
}

/* ---------------------------------------------------------------- adapters */

/* Writes a LoRA adapter for stories260K (n_embd 64, 5 layers) on attn_q and
 * attn_output with rank 4 and small random values. */
static void write_lora(const char *path, uint32_t seed) {
    const int n_embd = 64, rank = 4, n_layer = 5;
    const char *targets[] = {"attn_q", "attn_output"};
    size_t n_t = (size_t)n_layer * 2 * 2;
    struct ggml_init_params ip = {n_t * (ggml_tensor_overhead() + 2 * n_embd * rank * 4 + 64), NULL,
                                  false};
    struct ggml_context *ctx = ggml_init(ip);
    cr_assert_not_null(ctx);
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "adapter.type", "lora");
    gguf_set_val_f32(g, "adapter.lora.alpha", (float)rank);
    uint32_t x = seed;
    for (int l = 0; l < n_layer; l++) {
        for (int k = 0; k < 2; k++) {
            char name[96];
            struct ggml_tensor *a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_embd, rank);
            struct ggml_tensor *b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, rank, n_embd);
            float *fa = a->data, *fb = b->data;
            for (int i = 0; i < n_embd * rank; i++) {
                x = x * 1664525u + 1013904223u;
                fa[i] = ((float)(x >> 8) / (float)(1u << 24) - 0.5f) * 0.6f;
                x = x * 1664525u + 1013904223u;
                fb[i] = ((float)(x >> 8) / (float)(1u << 24) - 0.5f) * 0.6f;
            }
            snprintf(name, sizeof(name), "blk.%d.%s.weight.lora_a", l, targets[k]);
            ggml_set_name(a, name);
            snprintf(name, sizeof(name), "blk.%d.%s.weight.lora_b", l, targets[k]);
            ggml_set_name(b, name);
            gguf_add_tensor(g, a);
            gguf_add_tensor(g, b);
        }
    }
    cr_assert(gguf_write_to_file(g, path, false));
    gguf_free(g);
    ggml_free(ctx);
}

Test(sched, two_adapter_sets_run_at_once, .init = load_stories, .fini = unload_model) {
    char path[] = "/tmp/slm-lora-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_lora(path, 7);
    struct slm_adapter *ad;
    struct slm_err err;
    cr_assert_eq(slm_adapter_load(g_model, path, &ad, &err), SLM_OK, "%s", err.msg);
    struct slm_sched *s = start_ex(2, 4096, 0, true);
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    /* Both run past the channel's size without a reader, so both hold a
     * sequence at the same time, each in its own context. */
    struct slm_gen_params gp = greedy(300);
    gp.ignore_eos = true;
    float scale = 1.0f;
    struct slm_req_params base = {.gen = gp};
    struct slm_req_params tuned = {.gen = gp, .adapters = &ad, .scales = &scale, .n_adapters = 1};
    struct slm_request *rb = submit(s, p, n, &base);
    struct slm_request *rt = submit(s, p, n, &tuned);
    struct run gb = {0}, gt = {0}, refb, reft;
    cr_assert(!read_until(rb, &gb, 1));
    cr_assert(!read_until(rt, &gt, 1));
    struct slm_sched_stats st;
    slm_sched_get_stats(s, &st);
    cr_assert_eq(st.active, 2);
    drain_more(rb, &gb);
    drain_more(rt, &gt);
    solo(p, n, &gp, NULL, &refb);
    solo(p, n, &gp, ad, &reft);
    cr_assert_eq(gb.st.n_gen, 300);
    cr_assert_eq(gt.st.n_gen, 300);
    cr_assert(memcmp(refb.ids, reft.ids, 64 * sizeof(int32_t)) != 0,
              "the adapter does not change the output");
    expect_same(&refb, &gb, "base");
    expect_same(&reft, &gt, "adapter");
    run_free(&gb);
    run_free(&gt);
    run_free(&refb);
    run_free(&reft);
    slm_request_free(rb);
    slm_request_free(rt);
    slm_sched_free(s);
    slm_adapter_free(ad);
    unlink(path);
    free(p);
}

/* ---------------------------------------------------------------- embeddings */

static void embed(struct slm_sched *s, const char *text, float *out, int32_t *n_embd) {
    size_t n;
    int32_t *p = tok(text, &n);
    struct slm_req_params rp = {.gen = slm_gen_params_default(), .embed = true};
    struct slm_request *r = submit(s, p, n, &rp);
    struct run a;
    drain(r, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.n, 0);
    const float *v = slm_request_embedding(r, n_embd);
    cr_assert_not_null(v);
    memcpy(out, v, (size_t)*n_embd * sizeof(float));
    run_free(&a);
    slm_request_free(r);
    free(p);
}

Test(sched, embeddings_are_normalized_and_deterministic, .init = load_model, .fini = unload_model) {
    struct slm_sched_params sp = slm_sched_params_default();
    sp.n_parallel = 2;
    sp.n_ctx = 2048;
    sp.n_batch = 64; /* the story spans several batches */
    sp.n_threads = 1;
    struct slm_sched *s;
    cr_assert_eq(slm_sched_init(g_model, &sp, &s, NULL), SLM_OK);
    float a[64], b[64], c[64];
    int32_t na, nb, nc;
    embed(s, k_story, a, &na);
    embed(s, k_story, b, &nb);
    embed(s, "The cat sat on the mat.", c, &nc);
    cr_assert_eq(na, 64);
    cr_assert_eq(nb, 64);
    double norm = 0, diff = 0, dot = 0;
    for (int i = 0; i < 64; i++) {
        norm += (double)a[i] * a[i];
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        dot += (double)a[i] * c[i];
    }
    cr_assert_float_eq(norm, 1.0, 1e-4);
    cr_assert_lt(diff, 1e-6);
    cr_assert_lt(dot, 0.9999, "different texts, same embedding");
    /* Generation still works beside an embedding context. */
    size_t n;
    int32_t *p = tok("Once upon a time", &n);
    struct slm_req_params rp = {.gen = greedy(8)};
    struct slm_request *r = submit(s, p, n, &rp);
    struct run g;
    drain(r, &g);
    cr_assert_eq(g.rc, SLM_OK);
    cr_assert_eq(g.n, 8);
    run_free(&g);
    slm_request_free(r);
    free(p);
    slm_sched_free(s);
}

/* ---------------------------------------------------------------- pool */

static char *copy_model(const char *dir, const char *name) {
    static char out[2][1100];
    static int k;
    char *dst = out[k++ % 2];
    snprintf(dst, sizeof(out[0]), "%s/%s", dir, name);
    struct slm_buf data = {0};
    cr_assert_eq(slm_file_read(g_path, 0, &data, NULL), SLM_OK);
    cr_assert_eq(slm_file_write_atomic(dst, data.ptr, data.len, NULL), SLM_OK);
    slm_buf_free(&data);
    return dst;
}

static void pool_generate(struct slm_sched *s, struct slm_model *m) {
    size_t n;
    int32_t *p;
    cr_assert_eq(slm_tokenize_alloc(m, SLM_STR("Once"), true, &p, &n, 0, NULL), SLM_OK);
    struct slm_req_params rp = {.gen = greedy(4)};
    struct slm_request *r = submit(s, p, n, &rp);
    struct run a;
    drain(r, &a);
    cr_assert_eq(a.rc, SLM_OK);
    cr_assert_eq(a.n, 4);
    run_free(&a);
    slm_request_free(r);
    free(p);
}

static struct slm_pool *pool_start(uint64_t budget) {
    struct slm_pool_params pp = slm_pool_params_default();
    pp.memory_budget = budget;
    pp.sched.n_parallel = 2;
    pp.sched.n_ctx = 1024;
    pp.sched.n_threads = 1;
    struct slm_pool *pool;
    cr_assert_eq(slm_pool_init(&pp, &pool, NULL), SLM_OK);
    return pool;
}

Test(pool, keep_alive_and_budget, .init = load_stories, .fini = unload_model) {
    char dir[] = "/tmp/slm-pool-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char pa[1100], pb[1100];
    snprintf(pa, sizeof(pa), "%s", copy_model(dir, "a.gguf"));
    snprintf(pb, sizeof(pb), "%s", copy_model(dir, "b.gguf"));
    struct slm_err err;
    struct slm_sched *sa, *sb;
    struct slm_model *ma, *mb;
    struct slm_pool_entry list[4];

    /* keep_alive 0: unloaded as soon as released. */
    struct slm_pool *pool = pool_start(0);
    cr_assert_eq(slm_pool_acquire(pool, pa, 0, &sa, &ma, &err), SLM_OK, "%s", err.msg);
    pool_generate(sa, ma);
    cr_assert_eq(slm_pool_list(pool, list, 4), 1);
    cr_assert_str_eq(list[0].path, pa);
    cr_assert_eq(list[0].in_use, 1);
    uint64_t size = list[0].size_bytes;
    cr_assert_gt(size, 0);
    slm_pool_release(pool, sa);
    cr_assert_eq(slm_pool_list(pool, list, 4), 0);

    /* A short keep-alive: the pool unloads it by itself. */
    cr_assert_eq(slm_pool_acquire(pool, pa, 100, &sa, &ma, &err), SLM_OK, "%s", err.msg);
    slm_pool_release(pool, sa);
    cr_assert_eq(slm_pool_list(pool, list, 4), 1);
    cr_assert_gt(list[0].expires_at_ms, 0);
    for (int i = 0; i < 500 && slm_pool_list(pool, list, 4) > 0; i++) {
        slm_sleep_ms(10);
    }
    cr_assert_eq(slm_pool_list(pool, list, 4), 0);
    slm_pool_free(pool);

    /* A budget that fits one model: the idle one makes room for the next. */
    pool = pool_start(size + size / 2);
    cr_assert_eq(slm_pool_acquire(pool, pa, -1, &sa, &ma, &err), SLM_OK, "%s", err.msg);
    /* While a is in use, b does not fit. */
    cr_assert_eq(slm_pool_acquire(pool, pb, -1, &sb, &mb, &err), SLM_E_LIMIT);
    /* Adapters are cached per model. */
    char lora[1200];
    snprintf(lora, sizeof(lora), "%s/lora.gguf", dir);
    write_lora(lora, 3);
    struct slm_adapter *a1, *a2;
    cr_assert_eq(slm_pool_adapter(pool, ma, lora, &a1, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_pool_adapter(pool, ma, lora, &a2, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(a1, a2);
    slm_pool_release(pool, sa);
    cr_assert_eq(slm_pool_list(pool, list, 4), 1);
    cr_assert_eq(list[0].expires_at_ms, -1);
    cr_assert_eq(list[0].in_use, 0);
    /* Acquiring it again finds it loaded. */
    struct slm_sched *sa2;
    cr_assert_eq(slm_pool_acquire(pool, pa, -2, &sa2, &ma, &err), SLM_OK);
    cr_assert_eq(sa2, sa);
    slm_pool_release(pool, sa2);
    cr_assert_eq(slm_pool_acquire(pool, pb, -1, &sb, &mb, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_pool_list(pool, list, 4), 1);
    cr_assert_str_eq(list[0].path, pb);
    pool_generate(sb, mb);
    slm_pool_release(pool, sb);
    slm_pool_gc(pool);
    cr_assert_eq(slm_pool_list(pool, list, 4), 1); /* keep-alive forever */
    slm_pool_free(pool);
    unlink(pa);
    unlink(pb);
    unlink(lora);
    rmdir(dir);
}
