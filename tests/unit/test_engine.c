/*
 * test_engine.c - stop filter, option table, chat formatting, and generation
 * on the real stories260K model (skipped when ../shared is absent).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "slm/engine.h"
#include "slm/memory.h"
#include "slm/options.h"
#include "engine/sample.h"
#include <gguf.h>
#include <llama.h>
#include <math.h>
#include "test_stories.h"

/* ---------------------------------------------------------------- stop filter */

static void push_all(struct slm_stop_filter *f, const char *const *pieces, size_t n,
                     struct slm_buf *out) {
    for (size_t i = 0; i < n && !f->stopped; i++) {
        cr_assert_eq(slm_stop_filter_push(f, pieces[i], strlen(pieces[i]), out), SLM_OK);
    }
    cr_assert_eq(slm_stop_filter_flush(f, out), SLM_OK);
}

Test(stop_filter, cuts_at_a_stop_string_split_across_pieces) {
    const char *stop[] = {"END"};
    const char *pieces[] = {"hello E", "N", "D and more"};
    struct slm_stop_filter f;
    struct slm_buf out = {0};
    slm_stop_filter_init(&f, stop, 1);
    push_all(&f, pieces, 3, &out);
    cr_assert(f.stopped);
    cr_assert_str_eq(out.ptr, "hello ");
    slm_stop_filter_free(&f);
    slm_buf_free(&out);
}

Test(stop_filter, releases_a_false_alarm) {
    const char *stop[] = {"END"};
    const char *pieces[] = {"hello E", "ND", "ING"};
    const char *pieces2[] = {"a E", "x"};
    struct slm_stop_filter f;
    struct slm_buf out = {0};
    slm_stop_filter_init(&f, stop, 1);
    push_all(&f, pieces2, 2, &out);
    cr_assert(!f.stopped);
    cr_assert_str_eq(out.ptr, "a Ex");
    slm_stop_filter_free(&f);
    slm_buf_clear(&out);
    slm_stop_filter_init(&f, stop, 1);
    push_all(&f, pieces, 3, &out);
    cr_assert(f.stopped);
    cr_assert_str_eq(out.ptr, "hello ");
    slm_stop_filter_free(&f);
    slm_buf_free(&out);
}

Test(stop_filter, holds_partial_utf8) {
    struct slm_stop_filter f;
    struct slm_buf out = {0};
    slm_stop_filter_init(&f, NULL, 0);
    cr_assert_eq(slm_stop_filter_push(&f, "caf\xc3", 4, &out), SLM_OK);
    cr_assert_str_eq(out.ptr, "caf");
    cr_assert_eq(slm_stop_filter_push(&f, "\xa9!", 2, &out), SLM_OK);
    cr_assert_str_eq(out.ptr, "caf\xc3\xa9!");
    slm_stop_filter_free(&f);
    slm_buf_free(&out);
}

Test(stop_filter, earliest_of_several_stops_wins) {
    const char *stop[] = {"bb", "a"};
    struct slm_stop_filter f;
    struct slm_buf out = {0};
    slm_stop_filter_init(&f, stop, 2);
    cr_assert_eq(slm_stop_filter_push(&f, "xxbbya", 6, &out), SLM_OK);
    cr_assert(f.stopped);
    cr_assert_str_eq(out.ptr, "xx");
    slm_stop_filter_free(&f);
    slm_buf_free(&out);
}

/* ---------------------------------------------------------------- options */

Test(options, names_flags_and_ranges) {
    struct slm_options o;
    struct slm_err err;
    slm_options_init(&o);
    cr_assert_eq(slm_options_set_text(&o, "temperature", "0.25", &err), SLM_OK);
    cr_assert_float_eq(o.sample.temperature, 0.25f, 1e-6);
    cr_assert_eq(slm_options_set_text(&o, "--top-k", "7", &err), SLM_OK);
    cr_assert_eq(o.sample.top_k, 7);
    cr_assert_eq(slm_options_set_text(&o, "max-tokens", "12", &err), SLM_OK);
    cr_assert_eq(o.num_predict, 12);
    cr_assert_eq(slm_options_set_text(&o, "top_p", "1.5", &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "top_p") != NULL);
    cr_assert_eq(slm_options_set_text(&o, "top_k", "2.5", &err), SLM_E_INVALID);
    cr_assert_eq(slm_options_set_text(&o, "nonsense", "1", &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "nonsense") != NULL);
    cr_assert_eq(slm_options_set_text(&o, "stop", "\n\n", &err), SLM_OK);
    cr_assert_eq(slm_options_set_text(&o, "stop", "User:", &err), SLM_OK);
    cr_assert_eq(o.n_stop, 2);
    cr_assert_eq(slm_options_set_text(&o, "seed", "-1", &err), SLM_OK);
    cr_assert_eq(o.sample.seed, SLM_SEED_RANDOM);
    json_t *j = slm_options_to_json(&o);
    cr_assert_eq(json_integer_value(json_object_get(j, "top_k")), 7);
    cr_assert_eq(json_array_size(json_object_get(j, "stop")), 2);
    struct slm_options o2;
    slm_options_init(&o2);
    cr_assert_eq(slm_options_apply(&o2, j, false, &err), SLM_OK);
    cr_assert_eq(o2.sample.top_k, 7);
    cr_assert_eq(o2.n_stop, 2);
    json_object_set_new(j, "bogus", json_integer(1));
    cr_assert_eq(slm_options_apply(&o2, j, false, &err), SLM_E_INVALID);
    cr_assert_eq(slm_options_apply(&o2, j, true, &err), SLM_OK);
    json_decref(j);
    slm_options_free(&o);
    slm_options_free(&o2);
}

Test(options, default_repeat_penalty_is_off_at_temperature_0) {
    struct slm_options o;
    slm_options_init(&o);
    cr_assert_float_eq(slm_options_gen_params(&o).sample.repeat_penalty, 1.1f, 1e-6);
    cr_assert_eq(slm_options_set_text(&o, "temperature", "0", NULL), SLM_OK);
    cr_assert_float_eq(slm_options_gen_params(&o).sample.repeat_penalty, 1.0f, 1e-6);
    cr_assert_eq(slm_options_set_text(&o, "repeat_penalty", "1.3", NULL), SLM_OK);
    cr_assert_float_eq(slm_options_gen_params(&o).sample.repeat_penalty, 1.3f, 1e-6);
    slm_options_free(&o);
}

/* ---------------------------------------------------------------- chat */

Test(chat, chatml_without_a_model) {
    struct slm_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Hi"}};
    struct slm_buf out = {0};
    cr_assert_eq(slm_chat_format(NULL, NULL, msgs, 2, true, &out, NULL), SLM_OK);
    cr_assert_str_eq(out.ptr, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                              "<|im_end|>\n<|im_start|>assistant\n");
    slm_buf_free(&out);
    struct slm_err err;
    cr_assert_eq(slm_chat_format(NULL, "{{ nonsense }}", msgs, 2, true, &out, &err),
                 SLM_E_UNSUPPORTED);
}

/* ---------------------------------------------------------------- generation */

static struct slm_model *g_model;

/* Any model runs these; ignore_eos_and_info checks stories260K's shape. */
static void load_model(void) {
    test_model_load(&g_model);
}

static void load_stories(void) {
    test_stories_load(&g_model);
}

static void unload_model(void) {
    slm_model_free(g_model);
}

struct collect {
    struct slm_buf text;
    int32_t ids[512];
    int n;
};

static int collect_cb(const struct slm_token_event *ev, void *user) {
    struct collect *c = user;
    cr_assert_eq(slm_buf_append(&c->text, ev->text, ev->len), SLM_OK);
    if (ev->token >= 0 && c->n < 512) {
        c->ids[c->n++] = ev->token;
    }
    return 0;
}

static void gen(struct slm_ctx *ctx, const char *prompt, struct slm_gen_params *gp,
                struct collect *c, struct slm_gen_stats *st) {
    int32_t *toks;
    size_t n;
    struct slm_err err;
    cr_assert_eq(slm_tokenize_alloc(g_model, slm_str_c(prompt), true, &toks, &n, 0, &err), SLM_OK);
    memset(c, 0, sizeof(*c));
    cr_assert_eq(slm_generate(ctx, toks, n, gp, collect_cb, c, st, &err), SLM_OK, "%s", err.msg);
    free(toks);
}

Test(generate, greedy_is_deterministic_and_prefix_reuse_changes_nothing, .init = load_model,
     .fini = unload_model) {
    struct slm_ctx *ctx;
    struct slm_err err;
    cr_assert_eq(slm_ctx_init(g_model, NULL, &ctx, &err), SLM_OK, "%s", err.msg);
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 0;
    gp.max_tokens = 40;
    gp.logprobs = true;
    struct collect a, b, c;
    struct slm_gen_stats sa, sb, sc;
    gen(ctx, "Once upon a time", &gp, &a, &sa);
    cr_assert_eq(sa.n_gen, 40);
    cr_assert_eq(sa.finish, SLM_FINISH_LENGTH);
    cr_assert_eq(sa.n_cached, 0);
    cr_assert(sa.logprob_min <= 0 && sa.logprob_sum < 0);
    /* The same prompt again reuses all but the last prompt token. */
    gen(ctx, "Once upon a time", &gp, &b, &sb);
    cr_assert_gt(sb.n_cached, 0);
    cr_assert_str_eq(a.text.ptr, b.text.ptr);
    cr_assert_arr_eq(a.ids, b.ids, sizeof(int32_t) * 40);
    /* A fresh context gives the same tokens. */
    slm_ctx_reset(ctx);
    gen(ctx, "Once upon a time", &gp, &c, &sc);
    cr_assert_eq(sc.n_cached, 0);
    cr_assert_arr_eq(a.ids, c.ids, sizeof(int32_t) * 40);
    slm_buf_free(&a.text);
    slm_buf_free(&b.text);
    slm_buf_free(&c.text);
    slm_ctx_free(ctx);
}

Test(generate, seeded_sampling_repeats, .init = load_model, .fini = unload_model) {
    struct slm_ctx *ctx;
    cr_assert_eq(slm_ctx_init(g_model, NULL, &ctx, NULL), SLM_OK);
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 1.0f;
    gp.sample.seed = 42;
    gp.max_tokens = 30;
    struct collect a, b;
    struct slm_gen_stats s;
    gen(ctx, "The dog", &gp, &a, &s);
    gen(ctx, "The dog", &gp, &b, &s);
    cr_assert_str_eq(a.text.ptr, b.text.ptr);
    slm_buf_free(&a.text);
    slm_buf_free(&b.text);
    slm_ctx_free(ctx);
}

Test(generate, overflow_is_an_error_with_numbers, .init = load_model, .fini = unload_model) {
    struct slm_ctx_params cp = slm_ctx_params_default();
    cp.n_ctx = 256;
    struct slm_ctx *ctx;
    cr_assert_eq(slm_ctx_init(g_model, &cp, &ctx, NULL), SLM_OK);
    int32_t toks[600];
    for (int i = 0; i < 600; i++) {
        toks[i] = 300;
    }
    struct slm_err err;
    cr_assert_eq(slm_generate(ctx, toks, 600, NULL, NULL, NULL, NULL, &err), SLM_E_OVERFLOW);
    cr_assert(strstr(err.msg, "600") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "256") != NULL, "%s", err.msg);
    slm_ctx_free(ctx);
}

static int stop_after_3(const struct slm_token_event *ev, void *user) {
    (void)ev;
    return ++*(int *)user >= 3;
}

Test(generate, callback_can_abort_and_top_logprobs_are_sorted, .init = load_model,
     .fini = unload_model) {
    struct slm_ctx *ctx;
    cr_assert_eq(slm_ctx_init(g_model, NULL, &ctx, NULL), SLM_OK);
    int32_t *toks;
    size_t n;
    cr_assert_eq(slm_tokenize_alloc(g_model, SLM_STR("Lily"), true, &toks, &n, 0, NULL), SLM_OK);
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 0;
    gp.n_top_logprobs = 5;
    int count = 0;
    struct slm_gen_stats st;
    cr_assert_eq(slm_generate(ctx, toks, n, &gp, stop_after_3, &count, &st, NULL), SLM_OK);
    cr_assert_eq(st.finish, SLM_FINISH_ABORTED);
    cr_assert_eq(count, 3);
    free(toks);
    slm_ctx_free(ctx);
}

/* The greedy-only chain takes a shortcut (argmax over the logits); it must
 * pick exactly what the candidate-array path picks (a chain of two greedy
 * samplers, which does not take the shortcut): the first of equal maxima,
 * end-of-generation ids skipped under ignore_eos, all -inf handled. */
Test(sample, greedy_shortcut_picks_what_the_greedy_sampler_picks) {
    enum { N = 1000 };
    static float logits[N];
    static llama_token_data cand[N];
    const int32_t eog[2] = {3, 7};
    struct llama_sampler *fast = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(fast, llama_sampler_init_greedy());
    struct llama_sampler *slow = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(slow, llama_sampler_init_greedy());
    llama_sampler_chain_add(slow, llama_sampler_init_greedy());
    srand(7);
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < N; i++) {
            /* few distinct values: many ties */
            logits[i] = round % 50 == 49 ? -INFINITY : (float)(rand() % 8);
        }
        if (round % 3 == 0) {
            logits[eog[round % 2]] = 100.0f;
        }
        for (int ig = 0; ig < 2; ig++) {
            int32_t a = slm__sample_token(fast, logits, N, cand, eog, 2, ig == 1);
            int32_t b = slm__sample_token(slow, logits, N, cand, eog, 2, ig == 1);
            cr_assert_eq(a, b, "round %d ignore_eos %d: %d vs %d", round, ig, a, b);
            if (ig == 1 && round % 50 != 49) {
                cr_assert(a != eog[0] && a != eog[1]);
            }
        }
    }
    llama_sampler_free(fast);
    llama_sampler_free(slow);
}

Test(generate, ignore_eos_and_info, .init = load_stories, .fini = unload_model) {
    struct slm_model_info info;
    slm_model_get_info(g_model, &info);
    cr_assert_str_eq(info.arch, "llama");
    cr_assert_eq(info.n_layer, 5);
    cr_assert_eq(info.n_vocab, 512);
    cr_assert(!info.has_chat_template);
    cr_assert_null(slm_model_chat_template(g_model));
    struct slm_ctx *ctx;
    cr_assert_eq(slm_ctx_init(g_model, NULL, &ctx, NULL), SLM_OK);
    struct slm_gen_params gp = slm_gen_params_default();
    gp.sample.temperature = 0;
    gp.max_tokens = 300;
    gp.ignore_eos = true;
    struct collect c;
    struct slm_gen_stats st;
    gen(ctx, "The end.", &gp, &c, &st);
    cr_assert_eq(st.n_gen, 300);
    for (int i = 0; i < c.n; i++) {
        cr_assert(!slm_token_is_eog(g_model, c.ids[i]));
    }
    slm_buf_free(&c.text);
    slm_ctx_free(ctx);
}

Test(model, load_errors_say_what_is_wrong) {
    struct slm_model *m;
    struct slm_err err;
    cr_assert_eq(slm_model_load("/nonexistent.gguf", NULL, &m, &err), SLM_E_NOT_FOUND);
    char path[] = "/tmp/slm-notgguf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "hello world, not a model", 24), 24);
    close(fd);
    cr_assert_eq(slm_model_load(path, NULL, &m, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "not a GGUF") != NULL, "%s", err.msg);
    struct slm_model_info info;
    cr_assert_eq(slm_gguf_read_info(path, &info, NULL, &err), SLM_E_INVALID);
    /* A truncated GGUF header. */
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "GGUF\x03\x00\x00\x00\xff\xff", 10), 10);
    close(fd);
    int rc = slm_model_load(path, NULL, &m, &err);
    cr_assert(rc == SLM_E_CORRUPT || rc == SLM_E_INVALID, "%d %s", rc, err.msg);
    unlink(path);
}

/* Found by tests/fuzz/fuzz_gguf.c (corpus/gguf/ctx_i32): a header's negative
 * or oversized counts read as 0 (unknown), never as a negative size. */
Test(model, gguf_info_counts_are_never_negative) {
    char path[] = "/tmp/slm-gguf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_i32(g, "llama.context_length", -1);
    gguf_set_val_u64(g, "llama.block_count", (uint64_t)1 << 33);
    gguf_set_val_u32(g, "llama.embedding_length", 64);
    cr_assert(gguf_write_to_file(g, path, false));
    gguf_free(g);
    struct slm_model_info info;
    struct slm_err err;
    cr_assert_eq(slm_gguf_read_info(path, &info, NULL, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(info.n_ctx_train, 0);
    cr_assert_eq(info.n_layer, 0);
    cr_assert_eq(info.n_embd, 64);
    unlink(path);
}

/* ---------------------------------------------------------------- memory estimate */

/* SmolLM2-135M's shape (llama.cpp's load log for it at ctx 512: KV buffer 11.25 MiB). */
static struct slm_model_info smollm_shape(void) {
    return (struct slm_model_info){.size_bytes = 143025766,
                                   .n_ctx_train = 8192,
                                   .n_embd = 576,
                                   .n_layer = 30,
                                   .n_head = 9,
                                   .n_head_kv = 3,
                                   .n_vocab = 49152,
                                   .n_ff = 1536};
}

Test(memory, kv_cache_matches_llama_cpp_and_contexts_pad_as_it_does) {
    struct slm_model_info info = smollm_shape();
    struct slm_mem_params p = slm_mem_params_default();
    struct slm_mem_estimate e;
    p.n_ctx = 512;
    slm_mem_estimate_info(&info, &p, 0, &e);
    cr_assert_eq(e.kv, (uint64_t)11796480); /* 11.25 MiB */
    cr_assert_eq(e.kv_per_cell, 30u * 3 * (64 + 64) * 2);
    cr_assert_eq(e.weights, info.size_bytes);
    cr_assert_eq(e.total, e.baseline + e.weights + e.kv + e.compute + e.output + e.vocab);
    /* 300 cells become 512 (padded to 256); 4 streams of 1000 cells: 1024 / 4 = 256 each. */
    p.n_ctx = 300;
    slm_mem_estimate_info(&info, &p, 0, &e);
    cr_assert_eq(e.n_ctx, 512);
    p.n_ctx = 1000;
    p.n_parallel = 4;
    slm_mem_estimate_info(&info, &p, 0, &e);
    cr_assert_eq(e.n_ctx_seq, 256);
    cr_assert_eq(e.n_ctx, 1024);
    cr_assert_eq(e.output, 4u * 49152 * 16);
    /* The default context: the training context capped at 4096, per sequence. */
    p = slm_mem_params_default();
    slm_mem_estimate_info(&info, &p, 1000, &e);
    cr_assert_eq(e.n_ctx, 4096);
    cr_assert_eq(e.adapters, 1000);
    /* F32 doubles the cache and adds the KQ scores flash attention would not make. */
    struct slm_mem_estimate f;
    p.kv_f32 = true;
    slm_mem_estimate_info(&info, &p, 1000, &f);
    cr_assert_eq(f.kv, 2 * e.kv);
    cr_assert_gt(f.compute, e.compute);
}

Test(memory, hostile_headers_saturate_instead_of_wrapping) {
    struct slm_model_info info = smollm_shape();
    info.n_layer = INT32_MAX;
    info.n_head_kv = INT32_MAX;
    info.n_head = 1;
    info.n_embd = INT32_MAX;
    struct slm_mem_params p = slm_mem_params_default();
    p.n_ctx = UINT32_MAX;
    struct slm_mem_estimate e;
    slm_mem_estimate_info(&info, &p, UINT64_MAX, &e);
    cr_assert_eq(e.total, UINT64_MAX);
    struct slm_err err;
    cr_assert_eq(slm_mem_check("big", &e, (uint64_t)1 << 40, &err), SLM_E_NOMEM);
    cr_assert_eq(slm_mem_max_ctx(&e, (uint64_t)1 << 40), 0);
}

Test(memory, the_refusal_names_the_numbers_and_a_context_that_fits) {
    struct slm_model_info info = smollm_shape();
    struct slm_mem_params p = slm_mem_params_default();
    p.n_ctx = 8192;
    struct slm_mem_estimate e;
    slm_mem_estimate_info(&info, &p, 0, &e);
    uint64_t avail = e.total - e.kv / 2;
    struct slm_err err;
    cr_assert_eq(slm_mem_check("smollm", &e, e.total, &err), SLM_OK);
    cr_assert_eq(slm_mem_check("smollm", &e, avail, &err), SLM_E_NOMEM);
    uint32_t m = slm_mem_max_ctx(&e, avail);
    cr_assert(m >= 2048 && m < 8192 && m % 256 == 0, "max ctx %u", m);
    char want[64];
    snprintf(want, sizeof(want), "try --ctx-size %u or a smaller quantization", m);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    cr_assert(strstr(err.msg, "smollm needs about "), "%s", err.msg);
    cr_assert(strstr(err.msg, "KV cache 180 for ctx 8192"), "%s", err.msg);
    cr_assert(strstr(err.msg, "or --force"), "%s", err.msg);
    /* The suggested context fits; 256 more cells do not. */
    struct slm_mem_estimate at;
    p.n_ctx = m;
    slm_mem_estimate_info(&info, &p, 0, &at);
    cr_assert_leq(at.total, avail);
    p.n_ctx = m + 256;
    slm_mem_estimate_info(&info, &p, 0, &at);
    cr_assert_gt(at.total, avail);
    /* Too little for any context: no --ctx-size advice. */
    cr_assert_eq(slm_mem_check("smollm", &e, e.weights, &err), SLM_E_NOMEM);
    cr_assert_null(strstr(err.msg, "--ctx-size"), "%s", err.msg);
}

/* The header read for the estimate agrees with the loaded model. */
Test(memory, estimate_from_the_file_matches_the_loaded_model) {
    char path[4096];
    test_model_find("any", path, sizeof(path));
    struct slm_model *m;
    struct slm_err err;
    cr_assert_eq(slm_model_load(path, NULL, &m, &err), SLM_OK, "%s", err.msg);
    struct slm_model_info loaded, read;
    slm_model_get_info(m, &loaded);
    slm_model_free(m);
    struct slm_mem_estimate e;
    cr_assert_eq(slm_mem_estimate(path, NULL, &e, &read, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(e.weights, loaded.size_bytes);
    cr_assert_eq(read.n_layer, loaded.n_layer);
    cr_assert_gt(read.n_ff, 0);
    const char *missing[] = {"/nonexistent/adapter.gguf"};
    struct slm_mem_params p = slm_mem_params_default();
    p.adapter_paths = missing;
    p.n_adapters = 1;
    cr_assert_eq(slm_mem_estimate(path, &p, &e, NULL, &err), SLM_E_NOT_FOUND);
    cr_assert(strstr(err.msg, "adapter.gguf"), "%s", err.msg);
}
