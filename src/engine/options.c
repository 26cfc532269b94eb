/*
 * engine/options.c - the one table that maps Ollama option names, CLI flags,
 * types and ranges onto struct slm_options.
 */
#include "slm/options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct slm_option_desc g_table[] = {
    {"temperature", "temperature", SLM_OPT_FLOAT, 0, 100, "sampling temperature; 0 = greedy"},
    {"top_k", "top-k", SLM_OPT_INT, 0, 1e9, "keep the K most likely tokens; 0 = off"},
    {"top_p", "top-p", SLM_OPT_FLOAT, 0, 1, "nucleus sampling; 1 = off"},
    {"min_p", "min-p", SLM_OPT_FLOAT, 0, 1, "drop tokens below P x the best one; 0 = off"},
    {"seed", "seed", SLM_OPT_INT, -1, 4294967294.0, "random seed; -1 = random"},
    {"repeat_penalty", "repeat-penalty", SLM_OPT_FLOAT, 0, 10, "penalty for repeats; 1 = off"},
    {"repeat_last_n", "repeat-last-n", SLM_OPT_INT, -1, 1e9,
     "tokens the penalties look back; -1 = context, 0 = off"},
    {"presence_penalty", "presence-penalty", SLM_OPT_FLOAT, -2, 2, "OpenAI-style presence penalty"},
    {"frequency_penalty", "frequency-penalty", SLM_OPT_FLOAT, -2, 2,
     "OpenAI-style frequency penalty"},
    {"num_predict", "max-tokens", SLM_OPT_INT, -1, 1e9, "tokens to generate; -1 = until done"},
    {"stop", "stop", SLM_OPT_STRINGS, 0, 0, "stop string (repeatable)"},
    {"num_ctx", "ctx-size", SLM_OPT_INT, 0, 1 << 24, "context size in tokens; 0 = model default"},
    {"num_thread", "threads", SLM_OPT_INT, 0, 1024, "CPU threads; 0 = physical cores"},
    {"num_batch", "batch-size", SLM_OPT_INT, 0, 1 << 20, "prompt batch size; 0 = 512"},
    {NULL, NULL, SLM_OPT_INT, 0, 0, NULL},
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

static int store_number(struct slm_options *o, const struct slm_option_desc *d, double v,
                        struct slm_err *err) {
    if (!isfinite(v) || v < d->min || v > d->max) {
        return slm_err_set(err, SLM_E_INVALID, "%s must be from %g to %g, got %g", d->name, d->min,
                           d->max, v);
    }
    if (d->type == SLM_OPT_INT && v != floor(v)) {
        return slm_err_set(err, SLM_E_INVALID, "%s must be an integer, got %g", d->name, v);
    }
    const char *n = d->name;
    struct slm_sample_params *s = &o->sample;
    if (!strcmp(n, "temperature")) {
        s->temperature = (float)v;
    } else if (!strcmp(n, "top_k")) {
        s->top_k = (int32_t)v;
    } else if (!strcmp(n, "top_p")) {
        s->top_p = (float)v;
    } else if (!strcmp(n, "min_p")) {
        s->min_p = (float)v;
    } else if (!strcmp(n, "seed")) {
        s->seed = v < 0 ? SLM_SEED_RANDOM : (uint32_t)v;
    } else if (!strcmp(n, "repeat_penalty")) {
        s->repeat_penalty = (float)v;
        o->repeat_penalty_set = true;
    } else if (!strcmp(n, "repeat_last_n")) {
        s->repeat_last_n = (int32_t)v;
    } else if (!strcmp(n, "presence_penalty")) {
        s->presence_penalty = (float)v;
    } else if (!strcmp(n, "frequency_penalty")) {
        s->frequency_penalty = (float)v;
    } else if (!strcmp(n, "num_predict")) {
        o->num_predict = (int32_t)v;
    } else if (!strcmp(n, "num_ctx")) {
        o->num_ctx = (int32_t)v;
    } else if (!strcmp(n, "num_thread")) {
        o->num_thread = (int32_t)v;
    } else if (!strcmp(n, "num_batch")) {
        o->num_batch = (int32_t)v;
    }
    return SLM_OK;
}

static int add_stop(struct slm_options *o, const char *s, size_t len, struct slm_err *err) {
    if (len == 0) {
        return slm_err_set(err, SLM_E_INVALID, "stop strings cannot be empty");
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
        return slm_err_set(err, SLM_E_INVALID, "unknown parameter '%s'", name);
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
        return slm_err_set(err, SLM_E_INVALID, "unknown parameter '%s'", name);
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
            return slm_err_set(err, SLM_E_INVALID, "unknown parameter '%s'", key);
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

static void put_num(json_t *obj, const char *key, double v, double def, bool integer) {
    if (v != def) {
        json_object_set_new(obj, key, integer ? json_integer((json_int_t)v) : json_real(v));
    }
}

json_t *slm_options_to_json(const struct slm_options *o) {
    struct slm_options d;
    slm_options_init(&d);
    json_t *obj = json_object();
    if (!obj) {
        return NULL;
    }
    const struct slm_sample_params *s = &o->sample, *ds = &d.sample;
    put_num(obj, "temperature", s->temperature, ds->temperature, false);
    put_num(obj, "top_k", s->top_k, ds->top_k, true);
    put_num(obj, "top_p", s->top_p, ds->top_p, false);
    put_num(obj, "min_p", s->min_p, ds->min_p, false);
    if (s->seed != SLM_SEED_RANDOM) {
        json_object_set_new(obj, "seed", json_integer(s->seed));
    }
    put_num(obj, "repeat_penalty", s->repeat_penalty, ds->repeat_penalty, false);
    put_num(obj, "repeat_last_n", s->repeat_last_n, ds->repeat_last_n, true);
    put_num(obj, "presence_penalty", s->presence_penalty, 0, false);
    put_num(obj, "frequency_penalty", s->frequency_penalty, 0, false);
    put_num(obj, "num_predict", o->num_predict, -1, true);
    put_num(obj, "num_ctx", o->num_ctx, 0, true);
    put_num(obj, "num_thread", o->num_thread, 0, true);
    put_num(obj, "num_batch", o->num_batch, 0, true);
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
