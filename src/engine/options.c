/*
 * engine/options.c - the one table that maps Ollama option names, CLI flags,
 * OpenAI fields, types and ranges onto struct slm_options; the Modelfile
 * reader, the HTTP parsers, the router's config and the CLI all check here.
 */
#include "slm/options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AUTO SLM_OPTF_ZERO_AUTO
#define CTX SLM_OPTF_CONTEXT

/* name, flag, OpenAI field (and its newer name), type, range, flags, help. */
static const struct slm_option_desc g_table[] = {
    {"temperature", "temperature", "temperature", NULL, SLM_OPT_FLOAT, 0, 100, 0,
     "sampling temperature; 0 = greedy"},
    {"top_k", "top-k", "top_k", NULL, SLM_OPT_INT, 0, 1e9, 0,
     "keep the K most likely tokens; 0 = off"},
    {"top_p", "top-p", "top_p", NULL, SLM_OPT_FLOAT, 0, 1, 0, "nucleus sampling; 1 = off"},
    {"min_p", "min-p", "min_p", NULL, SLM_OPT_FLOAT, 0, 1, 0,
     "drop tokens below P x the best one; 0 = off"},
    {"seed", "seed", "seed", NULL, SLM_OPT_INT, -1, 4294967295.0, 0,
     "random seed; -1 (or 4294967295) = random"},
    {"repeat_penalty", "repeat-penalty", "repeat_penalty", NULL, SLM_OPT_FLOAT, 0, 10, 0,
     "penalty for repeats; 1 = off"},
    {"repeat_last_n", "repeat-last-n", "repeat_last_n", NULL, SLM_OPT_INT, -1, 1e9, 0,
     "tokens the penalties look back; -1 = context, 0 = off"},
    {"presence_penalty", "presence-penalty", "presence_penalty", NULL, SLM_OPT_FLOAT, -2, 2, 0,
     "OpenAI-style presence penalty"},
    {"frequency_penalty", "frequency-penalty", "frequency_penalty", NULL, SLM_OPT_FLOAT, -2, 2, 0,
     "OpenAI-style frequency penalty"},
    {"num_predict", "max-tokens", "max_tokens", "max_completion_tokens", SLM_OPT_INT, -1, 1e9, 0,
     "tokens to generate; -1 = until done"},
    {"stop", "stop", "stop", NULL, SLM_OPT_STRINGS, 0, 0, 0, "stop string (repeatable)"},
    {"num_ctx", "ctx-size", NULL, NULL, SLM_OPT_INT, 0, 1 << 24, AUTO | CTX,
     "context size in tokens; 0 = model default"},
    {"num_thread", "threads", NULL, NULL, SLM_OPT_INT, 0, 1024, AUTO | CTX,
     "CPU threads; 0 = the physical cores other work leaves idle"},
    {"num_batch", "batch-size", NULL, NULL, SLM_OPT_INT, 0, 1 << 20, AUTO | CTX,
     "prompt batch size; 0 = 512"},
    {NULL, NULL, NULL, NULL, SLM_OPT_INT, 0, 0, 0, NULL},
};

/* Ollama parameters slm deliberately does not support. */
static const char *const g_unsupported[] = {
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "num_gpu",
    "num_keep",
    "tfs_z",
    "typical_p",
    "penalize_newline",
    "use_mmap",
    "use_mlock",
    "numa",
    "num_gqa",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "embedding_only",
    "rope_frequency_base",
    "rope_frequency_scale",
    "num_thread_batch",
};

const struct slm_option_desc *slm_option_table(void) {
    return g_table;
}

const struct slm_option_desc *slm_option_find(const char *name) {
    while (*name == '-') {
        name++;
    }
    for (const struct slm_option_desc *d = g_table; d->name; d++) {
        if (strcmp(d->name, name) == 0 || strcmp(d->flag, name) == 0) {
            return d;
        }
    }
    return NULL;
}

int slm_option_unknown(const char *name, struct slm_err *err) {
    for (size_t i = 0; i < SLM_ARRAY_LEN(g_unsupported); i++) {
        if (strcmp(name, g_unsupported[i]) == 0) {
            return slm_err_set(err, SLM_E_UNSUPPORTED,
                               "'%s' is an Ollama parameter that slm does not support", name);
        }
    }
    const char *best = NULL;
    size_t best_d = 3;
    for (const struct slm_option_desc *d = g_table; d->name; d++) {
        size_t dist = slm_edit_distance(name, d->name);
        if (dist < best_d) {
            best_d = dist;
            best = d->name;
        }
    }
    if (best) {
        return slm_err_set(err, SLM_E_INVALID, "unknown parameter '%.60s' (did you mean '%s'?)",
                           name, best);
    }
    char names[512];
    size_t off = 0;
    for (const struct slm_option_desc *d = g_table; d->name && off < sizeof(names); d++) {
        int w = snprintf(names + off, sizeof(names) - off, "%s%s", off ? ", " : "", d->name);
        off += w > 0 ? (size_t)w : 0;
    }
    return slm_err_set(err, SLM_E_INVALID, "unknown parameter '%.60s' (one of %s)", name, names);
}

/* The range a value of `d` must lie in; a file may not say 0 for "auto". */
static int check_range(const struct slm_option_desc *d, double v, bool file, struct slm_err *err) {
    double lo = d->min;
    if (file && (d->flags & SLM_OPTF_ZERO_AUTO) && lo == 0) {
        lo = 1;
    }
    if (!isfinite(v) || v < lo || v > d->max) {
        return slm_err_set(err, SLM_E_INVALID, "'%s' must be from %.15g to %.15g, got %.15g",
                           d->name, lo, d->max, v);
    }
    if (d->type == SLM_OPT_INT && v != floor(v)) {
        return slm_err_set(err, SLM_E_INVALID, "'%s' must be an integer, got %g", d->name, v);
    }
    return SLM_OK;
}

static int check_stop(size_t len, struct slm_err *err) {
    if (len == 0) {
        return slm_err_set(err, SLM_E_INVALID, "stop strings cannot be empty");
    }
    if (len > SLM_MAX_STOP_LEN) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "a stop string has at most %d bytes (got %zu)",
                           SLM_MAX_STOP_LEN, len);
    }
    return SLM_OK;
}

int slm_option_parse_file_value(const struct slm_option_desc *d, const char *text, json_t **out,
                                struct slm_err *err) {
    *out = NULL;
    struct slm_str v = slm_str_c(text);
    if (d->type == SLM_OPT_STRINGS) {
        int rc = check_stop(v.len, err);
        if (rc != SLM_OK) {
            return rc;
        }
        *out = json_stringn(v.ptr, v.len);
        return *out ? SLM_OK : slm_err_set(err, SLM_E_INVALID, "'stop' must be UTF-8 text");
    }
    double x;
    if (d->type == SLM_OPT_INT) {
        int64_t i;
        if (slm_parse_i64(v, &i) != SLM_OK) {
            return slm_err_set(err, SLM_E_INVALID, "'%s' expects an integer, got '%.60s'", d->name,
                               text);
        }
        x = (double)i;
    } else if (slm_parse_f64(v, &x) != SLM_OK) {
        return slm_err_set(err, SLM_E_INVALID, "'%s' expects a number, got '%.60s'", d->name, text);
    }
    int rc = check_range(d, x, true, err);
    if (rc != SLM_OK) {
        return rc;
    }
    *out = d->type == SLM_OPT_INT ? json_integer((json_int_t)x) : json_real(x);
    return *out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

void slm_options_init(struct slm_options *o) {
    memset(o, 0, sizeof(*o));
    o->sample = slm_sample_params_default();
    o->num_predict = -1;
}

void slm_options_free(struct slm_options *o) {
    for (size_t i = 0; i < o->n_stop; i++) {
        free(o->stop[i]);
    }
    o->n_stop = 0;
}

int slm_options_copy(struct slm_options *dst, const struct slm_options *src) {
    *dst = *src;
    dst->n_stop = 0;
    for (size_t i = 0; i < src->n_stop; i++) {
        dst->stop[i] = strdup(src->stop[i]);
        if (!dst->stop[i]) {
            slm_options_free(dst);
            return SLM_E_NOMEM;
        }
        dst->n_stop++;
    }
    return SLM_OK;
}

/* Where an option lives in struct slm_options: exactly one pointer is set
 * (none for stop). The one mapping from names to fields. */
struct slot {
    float *f;
    int32_t *i;
    uint32_t *seed;
};

static struct slot slot_of(struct slm_options *o, const struct slm_option_desc *d) {
    struct slm_sample_params *s = &o->sample;
    const char *n = d->name;
    struct slot sl = {0};
    if (!strcmp(n, "temperature")) {
        sl.f = &s->temperature;
    } else if (!strcmp(n, "top_k")) {
        sl.i = &s->top_k;
    } else if (!strcmp(n, "top_p")) {
        sl.f = &s->top_p;
    } else if (!strcmp(n, "min_p")) {
        sl.f = &s->min_p;
    } else if (!strcmp(n, "seed")) {
        sl.seed = &s->seed;
    } else if (!strcmp(n, "repeat_penalty")) {
        sl.f = &s->repeat_penalty;
    } else if (!strcmp(n, "repeat_last_n")) {
        sl.i = &s->repeat_last_n;
    } else if (!strcmp(n, "presence_penalty")) {
        sl.f = &s->presence_penalty;
    } else if (!strcmp(n, "frequency_penalty")) {
        sl.f = &s->frequency_penalty;
    } else if (!strcmp(n, "num_predict")) {
        sl.i = &o->num_predict;
    } else if (!strcmp(n, "num_ctx")) {
        sl.i = &o->num_ctx;
    } else if (!strcmp(n, "num_thread")) {
        sl.i = &o->num_thread;
    } else if (!strcmp(n, "num_batch")) {
        sl.i = &o->num_batch;
    }
    return sl;
}

double slm_option_get(const struct slm_options *o, const struct slm_option_desc *d) {
    struct slot sl = slot_of((struct slm_options *)o, d);
    if (sl.f) {
        return *sl.f;
    }
    if (sl.i) {
        return *sl.i;
    }
    if (sl.seed) {
        return *sl.seed == SLM_SEED_RANDOM ? -1 : (double)*sl.seed;
    }
    return 0;
}

static int store_number(struct slm_options *o, const struct slm_option_desc *d, double v,
                        struct slm_err *err) {
    int rc = check_range(d, v, false, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slot sl = slot_of(o, d);
    if (sl.f) {
        *sl.f = (float)v;
    } else if (sl.i) {
        *sl.i = (int32_t)v;
    } else if (sl.seed) {
        *sl.seed = v < 0 || v >= SLM_SEED_RANDOM ? SLM_SEED_RANDOM : (uint32_t)v;
    }
    o->repeat_penalty_set |= sl.f == &o->sample.repeat_penalty;
    return SLM_OK;
}

static int add_stop(struct slm_options *o, const char *s, size_t len, struct slm_err *err) {
    int rc = check_stop(len, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (o->n_stop >= SLM_MAX_STOP) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "at most %d stop strings", SLM_MAX_STOP);
    }
    char *c = slm_str_dup(slm_str_n(s, len));
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    o->stop[o->n_stop++] = c;
    return SLM_OK;
}

int slm_options_set_text(struct slm_options *o, const char *name, const char *text,
                         struct slm_err *err) {
    const struct slm_option_desc *d = slm_option_find(name);
    if (!d) {
        return slm_option_unknown(name, err);
    }
    if (d->type == SLM_OPT_STRINGS) {
        return add_stop(o, text, strlen(text), err);
    }
    double v;
    if (slm_parse_f64(slm_str_trim(slm_str_c(text)), &v) != SLM_OK) {
        return slm_err_set(err, SLM_E_INVALID, "%s expects a number, got '%s'", d->name, text);
    }
    return store_number(o, d, v, err);
}

int slm_options_set_json(struct slm_options *o, const char *name, const json_t *value,
                         struct slm_err *err) {
    const struct slm_option_desc *d = slm_option_find(name);
    if (!d) {
        return slm_option_unknown(name, err);
    }
    if (d->type != SLM_OPT_STRINGS) {
        if (!json_is_number(value)) {
            return slm_err_set(err, SLM_E_INVALID, "%s must be a number", d->name);
        }
        return store_number(o, d, json_number_value(value), err);
    }
    for (size_t i = 0; i < o->n_stop; i++) {
        free(o->stop[i]);
    }
    o->n_stop = 0;
    if (json_is_string(value)) {
        return add_stop(o, json_string_value(value), json_string_length(value), err);
    }
    if (!json_is_array(value)) {
        return slm_err_set(err, SLM_E_INVALID, "stop must be a string or a list of strings");
    }
    size_t i;
    const json_t *s;
    json_array_foreach(value, i, s) {
        if (!json_is_string(s)) {
            return slm_err_set(err, SLM_E_INVALID, "stop[%zu] must be a string", i);
        }
        int rc = add_stop(o, json_string_value(s), json_string_length(s), err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

int slm_options_apply(struct slm_options *o, const json_t *obj, bool ignore_unknown,
                      struct slm_err *err) {
    if (!obj || json_is_null(obj)) {
        return SLM_OK;
    }
    if (!json_is_object(obj)) {
        return slm_err_set(err, SLM_E_INVALID, "options must be an object");
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!slm_option_find(key)) {
            if (ignore_unknown) {
                continue;
            }
            int rc = slm_option_unknown(key, err);
            return rc == SLM_E_UNSUPPORTED ? SLM_E_INVALID : rc;
        }
        if (json_is_null(v)) {
            continue;
        }
        int rc = slm_options_set_json(o, key, v, err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

int slm_options_from_openai(const json_t *body, json_t *ollama, const char **bad_field,
                            struct slm_err *err) {
    *bad_field = NULL;
    for (const struct slm_option_desc *d = g_table; d->name; d++) {
        const char *field = d->openai_new;
        const json_t *v = field ? json_object_get(body, field) : NULL;
        if (!v || json_is_null(v)) {
            field = d->openai;
            v = field ? json_object_get(body, field) : NULL;
        }
        if (!v || json_is_null(v)) {
            continue;
        }
        struct slm_options scratch;
        slm_options_init(&scratch);
        int rc = slm_options_set_json(&scratch, d->name, v, err);
        slm_options_free(&scratch);
        if (rc != SLM_OK) {
            *bad_field = field;
            return rc;
        }
        if (json_object_set(ollama, d->name, (json_t *)v) != 0) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    return SLM_OK;
}

json_t *slm_options_to_json(const struct slm_options *o) {
    struct slm_options d;
    slm_options_init(&d);
    json_t *obj = json_object();
    if (!obj) {
        return NULL;
    }
    for (const struct slm_option_desc *t = g_table; t->name; t++) {
        if (t->type == SLM_OPT_STRINGS) {
            continue;
        }
        double v = slm_option_get(o, t);
        if (v == slm_option_get(&d, t)) {
            continue;
        }
        json_object_set_new(obj, t->name,
                            t->type == SLM_OPT_INT ? json_integer((json_int_t)v) : json_real(v));
    }
    if (o->n_stop) {
        json_t *arr = json_array();
        for (size_t i = 0; i < o->n_stop; i++) {
            json_array_append_new(arr, json_string(o->stop[i]));
        }
        json_object_set_new(obj, "stop", arr);
    }
    return obj;
}

struct slm_gen_params slm_options_gen_params(const struct slm_options *o) {
    struct slm_gen_params g = slm_gen_params_default();
    g.sample = o->sample;
    if (g.sample.temperature <= 0.0f && !o->repeat_penalty_set) {
        g.sample.repeat_penalty = 1.0f;
    }
    g.max_tokens = o->num_predict;
    g.stop = (const char *const *)o->stop;
    g.n_stop = o->n_stop;
    return g;
}
