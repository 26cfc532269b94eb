/*
 * config.c - router.yaml: schema and validation (slm/router.h, docs/router.md).
 *
 * Every error names file, line and the key path ("routes[0].checks.label_prob")
 * so the user can go straight to it; unknown keys are errors because a typo
 * would otherwise silently disable a check.
 */
#include "slm/router.h"

#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "slm/grammar.h"
#include "slm/json.h"
#include "slm/liquid.h"
#include "slm/options.h"
#include "slm/yaml.h"

#define MAX_LABELS 4096

/* ---------------------------------------------------------------- local targets */

static int add_label(struct slm_router_local *t, struct slm_str s) {
    char **nl = realloc(t->labels, (t->n_labels + 1) * sizeof(*nl));
    if (!nl) {
        return SLM_E_NOMEM;
    }
    t->labels = nl;
    if (!(nl[t->n_labels] = slm_str_dup(s))) {
        return SLM_E_NOMEM;
    }
    t->n_labels++;
    return SLM_OK;
}

static int parse_labels(struct slm_yaml_check *v, const json_t *obj, const char *path,
                        struct slm_router_local *t) {
    const json_t *val = json_object_get(obj, "labels");
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "labels");
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    int rc = SLM_OK;
    if (json_is_array(val)) {
        size_t i;
        json_t *item;
        json_array_foreach(val, i, item) {
            if (!json_is_string(item) || json_string_length(item) == 0) {
                char ip[280];
                snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
                return slm_yaml_verr(v, SLM_E_INVALID, val, NULL, i, ip,
                                     "expected a non-empty string");
            }
            if ((rc = add_label(t, slm_json_str(item))) != SLM_OK) {
                return rc;
            }
        }
    } else if (json_is_string(val)) {
        char *file = slm_yaml_resolve_path(v->dir, json_string_value(val));
        struct slm_buf b = {0};
        struct slm_err ferr;
        rc = file ? slm_file_read(file, (size_t)4 << 20, &b, &ferr) : SLM_E_NOMEM;
        if (rc != SLM_OK) {
            rc = slm_yaml_verr(v, rc, obj, "labels", 0, p, "cannot read %s", file ? file : "");
        }
        free(file);
        struct slm_str rest = slm_buf_str(&b);
        while (rc == SLM_OK && rest.len > 0) {
            size_t nl = slm_str_find_char(rest, '\n', 0);
            struct slm_str line = slm_str_trim(slm_str_sub(rest, 0, nl));
            rest = nl == SIZE_MAX ? SLM_STR("") : slm_str_sub(rest, nl + 1, SIZE_MAX);
            if (line.len > 0 && line.ptr[0] != '#') {
                rc = add_label(t, line);
            }
        }
        slm_buf_free(&b);
        if (rc != SLM_OK) {
            return rc;
        }
    } else {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "labels", 0, p,
                             "expected a list of labels or a file name (one label a line)");
    }
    if (t->n_labels == 0 || t->n_labels > MAX_LABELS) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "labels", 0, p, "expected 1 to %d labels",
                             MAX_LABELS);
    }
    for (size_t i = 0; i < t->n_labels; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->labels[i], t->labels[j]) == 0) {
                return slm_yaml_verr(v, SLM_E_INVALID, obj, "labels", 0, p, "duplicate label '%s'",
                                     t->labels[i]);
            }
        }
    }
    return SLM_OK;
}

static int parse_adapters(struct slm_yaml_check *v, const json_t *obj, const char *path,
                          struct slm_router_local *t) {
    const json_t *val = json_object_get(obj, "adapters");
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "adapters");
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    if (!json_is_array(val)) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "adapters", 0, p,
                             "expected a list of {path, scale}");
    }
    t->adapters = calloc(json_array_size(val) + 1, sizeof(*t->adapters));
    if (!t->adapters) {
        return SLM_E_NOMEM;
    }
    size_t i;
    json_t *item;
    json_array_foreach(val, i, item) {
        char ip[280];
        snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
        static const char *const keys[] = {"path", "scale", NULL};
        int rc = slm_yaml_want_object(v, val, NULL, i, ip, item);
        if (rc == SLM_OK) {
            rc = slm_yaml_check_keys(v, item, ip, keys);
        }
        struct slm_router_adapter *a = &t->adapters[t->n_adapters++];
        double scale = 1.0;
        if (rc == SLM_OK && !json_object_get(item, "path")) {
            rc = slm_yaml_verr(v, SLM_E_INVALID, val, NULL, i, ip, "'path' is required");
        }
        if (rc == SLM_OK) {
            rc = slm_yaml_get_path(v, item, ip, "path", true, &a->path);
        }
        if (rc == SLM_OK) {
            rc = slm_yaml_get_num(v, item, ip, "scale", -100, 100, &scale);
        }
        a->scale = (float)scale;
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int parse_local(struct slm_yaml_check *v, const json_t *parent, const char *name,
                       const json_t *obj, struct slm_router_local *t) {
    static const char *const keys[] = {"model",   "adapters",   "parameters",       "template",
                                       "labels",  "label_mode", "label_correction", "system",
                                       "timeout", NULL};
    char path[256];
    snprintf(path, sizeof(path), "local.%s", name);
    int rc = slm_yaml_want_object(v, parent, name, 0, path, obj);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, obj, path, keys);
    }
    if (rc != SLM_OK || !(t->name = strdup(name))) {
        return rc != SLM_OK ? rc : SLM_E_NOMEM;
    }
    t->correction = SLM_LABEL_CORR_DEFAULT;
    if ((rc = slm_yaml_get_str(v, obj, path, "model", true, &t->model)) != SLM_OK) {
        return rc;
    }
    /* a relative model path is relative to the yaml; a store name is kept */
    if ((strncmp(t->model, "./", 2) == 0 || strncmp(t->model, "../", 3) == 0 ||
         (slm_str_ends_with(slm_str_c(t->model), SLM_STR(".gguf")) && t->model[0] != '/' &&
          strncmp(t->model, "hf.co/", 6) != 0))) {
        char *abs = slm_yaml_resolve_path(v->dir, t->model);
        if (!abs) {
            return SLM_E_NOMEM;
        }
        free(t->model);
        t->model = abs;
    }
    if ((rc = parse_adapters(v, obj, path, t)) != SLM_OK ||
        (rc = slm_yaml_get_path(v, obj, path, "template", true, &t->template_path)) != SLM_OK ||
        (rc = slm_yaml_get_str(v, obj, path, "system", false, &t->system)) != SLM_OK ||
        (rc = parse_labels(v, obj, path, t)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "timeout", 0, 86400, &t->timeout_s)) != SLM_OK) {
        return rc;
    }
    const json_t *params = json_object_get(obj, "parameters");
    t->parameters = json_object();
    if (!t->parameters) {
        return SLM_E_NOMEM;
    }
    if (params && !json_is_null(params)) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "parameters");
        if ((rc = slm_yaml_want_object(v, obj, "parameters", 0, p, params)) != SLM_OK) {
            return rc;
        }
        const char *k;
        json_t *pv;
        json_object_foreach((json_t *)params, k, pv) {
            struct slm_options o;
            slm_options_init(&o);
            struct slm_err oerr;
            rc = slm_options_set_json(&o, k, pv, &oerr);
            slm_options_free(&o);
            if (rc != SLM_OK) {
                char kp[300];
                slm_yaml_subpath(kp, sizeof(kp), p, k);
                return slm_yaml_verr(v, SLM_E_INVALID, params, k, 0, kp, "%s", oerr.msg);
            }
        }
        json_object_update(t->parameters, (json_t *)params);
    }
    char *mode = NULL, *corr = NULL;
    rc = slm_yaml_get_str(v, obj, path, "label_mode", false, &mode);
    t->score_labels = t->n_labels > 0;
    if (rc == SLM_OK && mode) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "label_mode");
        if (t->n_labels == 0) {
            rc = slm_yaml_verr(v, SLM_E_INVALID, obj, "label_mode", 0, p, "needs 'labels'");
        } else if (strcmp(mode, "score") == 0 || strcmp(mode, "generate") == 0) {
            t->score_labels = mode[0] == 's';
        } else {
            rc = slm_yaml_verr(v, SLM_E_INVALID, obj, "label_mode", 0, p,
                               "expected score or generate");
        }
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, path, "label_correction", false, &corr);
    }
    if (rc == SLM_OK && corr && slm_label_correction_parse(corr, &t->correction) != SLM_OK) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "label_correction");
        rc = slm_yaml_verr(v, SLM_E_INVALID, obj, "label_correction", 0, p,
                           "expected prior, length or none");
    }
    free(mode);
    free(corr);
    return rc;
}

/* ---------------------------------------------------------------- upstreams */

static int pool_setting(struct slm_yaml_check *v, const json_t *obj, const char *path,
                        const char *key, double lo, double hi, double *slot, bool *set) {
    double d = NAN;
    int rc = slm_yaml_get_num(v, obj, path, key, lo, hi, &d);
    if (rc != SLM_OK || isnan(d)) {
        return rc;
    }
    if (*set && *slot != d) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, key);
        return slm_yaml_verr(
            v, SLM_E_INVALID, obj, key, 0, p,
            "differs from an earlier member of the same pool (pool settings must agree)");
    }
    *slot = d;
    *set = true;
    return SLM_OK;
}

struct pool_sets {
    double v[6];
    bool set[6];
};

static int parse_member(struct slm_yaml_check *v, const json_t *list, size_t i, const json_t *obj,
                        struct slm_router_config *cfg, struct pool_sets *sets) {
    static const char *const keys[] = {
        "name",        "base_url",         "api_key_env",      "model",           "price_in",
        "price_out",   "timeout",          "max_concurrency",  "max_attempts",    "backoff_base",
        "backoff_max", "breaker_failures", "breaker_cooldown", "health_interval", NULL};
    char path[64];
    snprintf(path, sizeof(path), "upstreams[%zu]", i);
    int rc = slm_yaml_want_object(v, list, NULL, i, path, obj);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, obj, path, keys);
    }
    char *name = NULL;
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, path, "name", true, &name);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    size_t pi = 0;
    while (pi < cfg->n_pools && strcmp(cfg->pools[pi].name, name) != 0) {
        pi++;
    }
    if (pi == cfg->n_pools) {
        struct slm_router_pool *np = realloc(cfg->pools, (pi + 1) * sizeof(*np));
        if (!np) {
            free(name);
            return SLM_E_NOMEM;
        }
        cfg->pools = np;
        memset(&np[pi], 0, sizeof(np[pi]));
        slm_upstream_params_default(&np[pi].params);
        np[pi].name = name;
        cfg->n_pools++;
        memset(&sets[pi], 0, sizeof(sets[pi]));
    } else {
        free(name);
    }
    struct slm_router_pool *pool = &cfg->pools[pi];
    struct slm_upstream_member *nm = realloc(pool->members, (pool->n_members + 1) * sizeof(*nm));
    char **ne = realloc(pool->api_key_envs, (pool->n_members + 1) * sizeof(*ne));
    if (nm) {
        pool->members = nm;
    }
    if (ne) {
        pool->api_key_envs = ne;
    }
    if (!nm || !ne) {
        return SLM_E_NOMEM;
    }
    struct slm_upstream_member *m = &pool->members[pool->n_members];
    memset(m, 0, sizeof(*m));
    ne[pool->n_members] = NULL;
    pool->n_members++;
    char *url = NULL, *model = NULL;
    double conc = 0;
    if ((rc = slm_yaml_get_str(v, obj, path, "base_url", true, &url)) != SLM_OK) {
        return rc;
    }
    m->base_url = url;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "base_url");
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "base_url", 0, p,
                             "expected an http:// or https:// URL");
    }
    if ((rc = slm_yaml_get_str(v, obj, path, "model", false, &model)) != SLM_OK) {
        return rc;
    }
    m->model = model;
    if ((rc = slm_yaml_get_str(v, obj, path, "api_key_env", false, &ne[pool->n_members - 1])) !=
            SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "price_in", 0, 1e9, &m->price_in_per_m)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "price_out", 0, 1e9, &m->price_out_per_m)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "timeout", 0, 86400, &m->timeout_s)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "max_concurrency", 0, 65536, &conc)) != SLM_OK) {
        return rc;
    }
    m->max_concurrency = (int)conc;
    static const char *const pk[] = {"max_attempts",     "backoff_base",     "backoff_max",
                                     "breaker_failures", "breaker_cooldown", "health_interval"};
    static const double lo[] = {1, 0, 0, 1, 0, -1}, hi[] = {100, 3600, 3600, 1000, 86400, 86400};
    for (size_t k = 0; k < 6; k++) {
        if ((rc = pool_setting(v, obj, path, pk[k], lo[k], hi[k], &sets[pi].v[k],
                               &sets[pi].set[k])) != SLM_OK) {
            return rc;
        }
    }
    struct slm_upstream_params *up = &pool->params;
    up->max_attempts = sets[pi].set[0] ? (int)sets[pi].v[0] : up->max_attempts;
    up->backoff_base_s = sets[pi].set[1] ? sets[pi].v[1] : up->backoff_base_s;
    up->backoff_max_s = sets[pi].set[2] ? sets[pi].v[2] : up->backoff_max_s;
    up->breaker_failures = sets[pi].set[3] ? (int)sets[pi].v[3] : up->breaker_failures;
    up->breaker_cooldown_s = sets[pi].set[4] ? sets[pi].v[4] : up->breaker_cooldown_s;
    up->health_interval_s = sets[pi].set[5] ? sets[pi].v[5] : up->health_interval_s;
    return SLM_OK;
}

static int parse_upstreams(struct slm_yaml_check *v, const json_t *root,
                           struct slm_router_config *cfg) {
    const json_t *list = json_object_get(root, "upstreams");
    if (!list || json_is_null(list)) {
        return SLM_OK;
    }
    if (!json_is_array(list)) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, "upstreams", 0, "upstreams",
                             "expected a list of upstream servers");
    }
    struct pool_sets *sets = calloc(json_array_size(list) + 1, sizeof(*sets));
    if (!sets) {
        return SLM_E_NOMEM;
    }
    size_t i;
    json_t *item;
    int rc = SLM_OK;
    json_array_foreach(list, i, item) {
        if ((rc = parse_member(v, list, i, item, cfg, sets)) != SLM_OK) {
            break;
        }
    }
    free(sets);
    for (size_t p = 0; p < cfg->n_pools; p++) {
        cfg->pools[p].params.name = cfg->pools[p].name;
        cfg->pools[p].params.members = cfg->pools[p].members;
        cfg->pools[p].params.n_members = cfg->pools[p].n_members;
    }
    return rc;
}

/* ---------------------------------------------------------------- checks */

static void checks_default(struct slm_router_checks *c) {
    memset(c, 0, sizeof(*c));
    c->token_mean = c->token_min = c->token_quantile = NAN;
    c->label_prob = c->label_margin = c->input_nontext = NAN;
    c->token_q = 0.1;
    c->local_error = true;
}

/* The numeric thresholds (also what thresholds.yaml may override). */
static int parse_thresholds(struct slm_yaml_check *v, const json_t *obj, const char *path,
                            struct slm_router_checks *c) {
    int rc;
    if ((rc = slm_yaml_get_num(v, obj, path, "token_mean", 0, 1, &c->token_mean)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "token_min", 0, 1, &c->token_min)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "token_quantile", 0, 1, &c->token_quantile)) !=
            SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "token_q", 0, 1, &c->token_q)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "label_prob", 0, 1, &c->label_prob)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "label_margin", 0, 1, &c->label_margin)) != SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "input_tokens", 1, INT64_MAX, &c->input_tokens)) !=
            SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "input_chars", 1, INT64_MAX, &c->input_chars)) !=
            SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "input_nontext", 0, 1, &c->input_nontext)) != SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "input_line", 1, INT64_MAX, &c->input_line)) !=
            SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "output_chars_min", 1, INT64_MAX,
                               &c->output_chars_min)) != SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "output_chars_max", 1, INT64_MAX,
                               &c->output_chars_max)) != SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "output_tokens_min", 1, INT64_MAX,
                               &c->output_tokens_min)) != SLM_OK ||
        (rc = slm_yaml_get_int(v, obj, path, "output_tokens_max", 1, INT64_MAX,
                               &c->output_tokens_max)) != SLM_OK) {
        return rc;
    }
    return SLM_OK;
}

static const char *const threshold_keys[] = {
    "token_mean",       "token_min",        "token_quantile",    "token_q",           "label_prob",
    "label_margin",     "input_tokens",     "input_chars",       "input_nontext",     "input_line",
    "output_chars_min", "output_chars_max", "output_tokens_min", "output_tokens_max", NULL};

static int parse_regex(struct slm_yaml_check *v, const json_t *obj, const char *path, char **out) {
    int rc = slm_yaml_get_str(v, obj, path, "regex", false, out);
    if (rc != SLM_OK || !*out) {
        return rc;
    }
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)*out, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ecode, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR buf[128];
        pcre2_get_error_message(ecode, buf, sizeof(buf));
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "regex");
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "regex", 0, p, "bad regex at offset %zu: %s",
                             (size_t)eoff, (const char *)buf);
    }
    pcre2_code_free(re);
    return SLM_OK;
}

static int parse_schema(struct slm_yaml_check *v, const json_t *obj, const char *path,
                        json_t **out) {
    const json_t *val = json_object_get(obj, "json_schema");
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "json_schema");
    json_t *schema = NULL;
    struct slm_err serr;
    if (json_is_string(val)) {
        char *file = slm_yaml_resolve_path(v->dir, json_string_value(val));
        int rc = file ? slm_json_load_file(file, 0, &schema, &serr) : SLM_E_NOMEM;
        free(file);
        if (rc != SLM_OK) {
            return slm_yaml_verr(v, rc, obj, "json_schema", 0, p, "%s", serr.msg);
        }
    } else if (json_is_object(val)) {
        schema = json_deep_copy(val);
    } else {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "json_schema", 0, p,
                             "expected a schema (mapping) or a schema file name");
    }
    /* a schema outside the supported subset is an error now, not at the first request */
    struct slm_buf g = {0};
    int rc = slm_json_schema_to_gbnf(schema, &g, &serr);
    slm_buf_free(&g);
    if (rc != SLM_OK) {
        json_decref(schema);
        return slm_yaml_verr(v, rc, obj, "json_schema", 0, p, "%s", serr.msg);
    }
    *out = schema;
    return SLM_OK;
}

static int parse_liquid_check(struct slm_yaml_check *v, const json_t *obj, const char *path,
                              char **out) {
    int rc = slm_yaml_get_str(v, obj, path, "liquid", false, out);
    if (rc != SLM_OK || !*out) {
        return rc;
    }
    struct slm_buf src = {0};
    struct slm_liquid_template *t = NULL;
    struct slm_err lerr;
    rc = slm_buf_printf(&src, "{%% if %s %%}1{%% endif %%}", *out);
    if (rc == SLM_OK) {
        rc = slm_liquid_parse("check", src.ptr, src.len, NULL, &t, &lerr);
    }
    slm_buf_free(&src);
    slm_liquid_free(t);
    if (rc != SLM_OK) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "liquid");
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "liquid", 0, p, "not a Liquid condition: %s",
                             lerr.msg);
    }
    return SLM_OK;
}

static int parse_checks(struct slm_yaml_check *v, const json_t *route, const char *rpath,
                        const struct slm_router_local *t, struct slm_router_checks *c) {
    static const char *const extra[] = {"json",      "json_schema", "regex",
                                        "in_labels", "liquid",      "local_error"};
    const char *keys[SLM_ARRAY_LEN(extra) + 20];
    size_t nk = 0;
    for (const char *const *k = threshold_keys; *k; k++) {
        keys[nk++] = *k;
    }
    for (size_t i = 0; i < SLM_ARRAY_LEN(extra); i++) {
        keys[nk++] = extra[i];
    }
    keys[nk] = NULL;
    const json_t *obj = json_object_get(route, "checks");
    char path[256];
    slm_yaml_subpath(path, sizeof(path), rpath, "checks");
    if (!obj || json_is_null(obj)) {
        return SLM_OK;
    }
    int rc = slm_yaml_want_object(v, route, "checks", 0, path, obj);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, obj, path, keys);
    }
    if (rc != SLM_OK || (rc = parse_thresholds(v, obj, path, c)) != SLM_OK ||
        (rc = slm_yaml_get_bool(v, obj, path, "json", &c->json)) != SLM_OK ||
        (rc = slm_yaml_get_bool(v, obj, path, "in_labels", &c->in_labels)) != SLM_OK ||
        (rc = slm_yaml_get_bool(v, obj, path, "local_error", &c->local_error)) != SLM_OK ||
        (rc = parse_schema(v, obj, path, &c->json_schema)) != SLM_OK ||
        (rc = parse_regex(v, obj, path, &c->regex)) != SLM_OK ||
        (rc = parse_liquid_check(v, obj, path, &c->liquid)) != SLM_OK) {
        return rc;
    }
    /* checks that cannot apply to this target are mistakes, not no-ops */
    char p[256];
    const char *bad = NULL, *why = NULL;
    if (t->score_labels &&
        (!isnan(c->token_mean) || !isnan(c->token_min) || !isnan(c->token_quantile))) {
        bad = !isnan(c->token_mean) ? "token_mean"
                                    : (!isnan(c->token_min) ? "token_min" : "token_quantile");
        why = "needs a generating target (this target scores labels; use label_prob)";
    } else if (!t->score_labels && (!isnan(c->label_prob) || !isnan(c->label_margin))) {
        bad = !isnan(c->label_prob) ? "label_prob" : "label_margin";
        why = "needs a local target with labels (label_mode: score)";
    } else if (c->in_labels && t->n_labels == 0) {
        bad = "in_labels";
        why = "needs a local target with labels";
    }
    if (bad) {
        slm_yaml_subpath(p, sizeof(p), path, bad);
        return slm_yaml_verr(v, SLM_E_INVALID, obj, bad, 0, p, "%s", why);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- routes */

static int parse_escalate(struct slm_yaml_check *v, const json_t *obj, const char *path,
                          const struct slm_router_config *cfg, struct slm_router_route *r) {
    const json_t *val = json_object_get(obj, "escalate");
    char p[256];
    slm_yaml_subpath(p, sizeof(p), path, "escalate");
    if (!val || json_is_null(val)) {
        return SLM_OK;
    }
    if (!json_is_array(val) && !json_is_string(val)) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "escalate", 0, p,
                             "expected a list of upstream names");
    }
    size_t n = json_is_array(val) ? json_array_size(val) : 1;
    r->escalate = calloc(n + 1, sizeof(*r->escalate));
    if (!r->escalate) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_is_array(val) ? json_array_get(val, i) : val;
        size_t pi = 0;
        const char *name = json_string_value(item);
        while (name && pi < cfg->n_pools && strcmp(cfg->pools[pi].name, name) != 0) {
            pi++;
        }
        if (!name || pi == cfg->n_pools) {
            char ip[280];
            snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
            return json_is_array(val) ? slm_yaml_verr(v, SLM_E_INVALID, val, NULL, i, ip,
                                                      "no upstream named '%s'", name ? name : "?")
                                      : slm_yaml_verr(v, SLM_E_INVALID, obj, "escalate", 0, p,
                                                      "no upstream named '%s'", name ? name : "?");
        }
        r->escalate[r->n_escalate++] = pi;
    }
    return SLM_OK;
}

static int parse_route(struct slm_yaml_check *v, const json_t *list, size_t i, const json_t *obj,
                       struct slm_router_config *cfg, struct slm_router_route *r) {
    static const char *const keys[] = {"name",   "local",    "checks", "escalate",
                                       "shadow", "deadline", NULL};
    char path[64];
    snprintf(path, sizeof(path), "routes[%zu]", i);
    checks_default(&r->checks);
    int rc = slm_yaml_want_object(v, list, NULL, i, path, obj);
    char *local = NULL;
    if (rc == SLM_OK && (rc = slm_yaml_check_keys(v, obj, path, keys)) == SLM_OK &&
        (rc = slm_yaml_get_str(v, obj, path, "name", true, &r->name)) == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, path, "local", true, &local);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(cfg->routes[j].name, r->name) == 0) {
            free(local);
            char p[256];
            slm_yaml_subpath(p, sizeof(p), path, "name");
            return slm_yaml_verr(v, SLM_E_INVALID, obj, "name", 0, p, "route '%s' is defined twice",
                                 r->name);
        }
    }
    r->local = 0;
    while (r->local < cfg->n_locals && strcmp(cfg->locals[r->local].name, local) != 0) {
        r->local++;
    }
    if (r->local == cfg->n_locals) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "local");
        rc = slm_yaml_verr(v, SLM_E_INVALID, obj, "local", 0, p, "no local target named '%s'",
                           local);
    }
    free(local);
    if (rc != SLM_OK ||
        (rc = parse_checks(v, obj, path, &cfg->locals[r->local], &r->checks)) != SLM_OK ||
        (rc = parse_escalate(v, obj, path, cfg, r)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "shadow", 0, 1, &r->shadow)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, path, "deadline", 0, 86400, &r->deadline_s)) != SLM_OK) {
        return rc;
    }
    if (r->shadow > 0 && r->n_escalate == 0) {
        char p[256];
        slm_yaml_subpath(p, sizeof(p), path, "shadow");
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "shadow", 0, p,
                             "needs an upstream in 'escalate'");
    }
    return SLM_OK;
}

static int parse_meter(struct slm_yaml_check *v, const json_t *root,
                       struct slm_router_config *cfg) {
    static const char *const keys[] = {"ledger", "hardware_price", "power_watts", "kwh_price",
                                       NULL};
    const json_t *obj = json_object_get(root, "meter");
    cfg->meter.cost = slm_cost_params_default();
    if (!obj || json_is_null(obj)) {
        return SLM_OK;
    }
    int rc = slm_yaml_want_object(v, root, "meter", 0, "meter", obj);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, obj, "meter", keys);
    }
    const json_t *l = json_object_get(obj, "ledger");
    if (rc == SLM_OK &&
        (json_is_false(l) || (json_is_string(l) && strcmp(json_string_value(l), "off") == 0))) {
        cfg->meter.off = true;
    } else if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, obj, "meter", "ledger", false, &cfg->meter.ledger);
    }
    if (rc != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, "meter", "hardware_price", 0, 1e12,
                               &cfg->meter.cost.hardware_price)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, "meter", "power_watts", 0, 1e6,
                               &cfg->meter.cost.power_watts)) != SLM_OK ||
        (rc = slm_yaml_get_num(v, obj, "meter", "kwh_price", 0, 1e6, &cfg->meter.cost.kwh_price)) !=
            SLM_OK) {
        return rc;
    }
    return SLM_OK;
}

/* thresholds.yaml: {routes: {NAME: {label_prob: 0.62, ...}}}, written by calibrate. */
static int apply_include(struct slm_yaml_check *outer, const json_t *root,
                         struct slm_router_config *cfg) {
    int rc = slm_yaml_get_path(outer, root, "", "include", true, &cfg->include_path);
    if (rc != SLM_OK || !cfg->include_path) {
        return rc;
    }
    struct slm_yaml_doc *doc = NULL;
    if ((rc = slm_yaml_load_file(cfg->include_path, NULL, &doc, outer->err)) != SLM_OK) {
        return rc;
    }
    struct slm_yaml_check v = {doc, outer->dir, outer->err};
    json_t *inc = slm_yaml_root(doc);
    static const char *const keys[] = {"routes", NULL};
    rc = slm_yaml_want_object(&v, inc, NULL, 0, "(top)", inc);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(&v, inc, "", keys);
    }
    const json_t *routes = json_object_get(inc, "routes");
    if (rc == SLM_OK && routes) {
        rc = slm_yaml_want_object(&v, inc, "routes", 0, "routes", routes);
    }
    const char *name;
    json_t *th;
    if (rc == SLM_OK && routes) {
        json_object_foreach((json_t *)routes, name, th) {
            char path[256];
            slm_yaml_subpath(path, sizeof(path), "routes", name);
            struct slm_router_route *r = NULL;
            for (size_t i = 0; i < cfg->n_routes && !r; i++) {
                r = strcmp(cfg->routes[i].name, name) == 0 ? &cfg->routes[i] : NULL;
            }
            if (!r) {
                rc = slm_yaml_verr(&v, SLM_E_INVALID, routes, name, 0, path, "no route named '%s'",
                                   name);
            } else if ((rc = slm_yaml_want_object(&v, routes, name, 0, path, th)) == SLM_OK &&
                       (rc = slm_yaml_check_keys(&v, th, path, threshold_keys)) == SLM_OK) {
                rc = parse_thresholds(&v, th, path, &r->checks);
            }
            if (rc != SLM_OK) {
                break;
            }
        }
    }
    slm_yaml_free(doc);
    return rc;
}

static int parse_root(struct slm_yaml_check *v, json_t *root, struct slm_router_config *cfg) {
    static const char *const keys[] = {"local", "upstreams", "routes", "meter", "include", NULL};
    if (!json_is_object(root)) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, NULL, SIZE_MAX, "(top)",
                             "expected a mapping with local, upstreams, routes");
    }
    int rc = slm_yaml_check_keys(v, root, "", keys);
    const json_t *locals = json_object_get(root, "local");
    if (rc == SLM_OK && !json_is_object(locals)) {
        rc = slm_yaml_verr(v, SLM_E_INVALID, root, locals ? "local" : NULL, SIZE_MAX, "local",
                           locals ? "expected a mapping of target names" : "required");
    }
    if (rc != SLM_OK) {
        return rc;
    }
    cfg->locals = calloc(json_object_size(locals) + 1, sizeof(*cfg->locals));
    if (!cfg->locals) {
        return SLM_E_NOMEM;
    }
    const char *name;
    json_t *val;
    json_object_foreach((json_t *)locals, name, val) {
        if ((rc = parse_local(v, locals, name, val, &cfg->locals[cfg->n_locals++])) != SLM_OK) {
            return rc;
        }
    }
    if ((rc = parse_upstreams(v, root, cfg)) != SLM_OK) {
        return rc;
    }
    const json_t *routes = json_object_get(root, "routes");
    if (!json_is_array(routes) || json_array_size(routes) == 0) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, routes ? "routes" : NULL, SIZE_MAX, "routes",
                             routes ? "expected a non-empty list of routes" : "required");
    }
    cfg->routes = calloc(json_array_size(routes), sizeof(*cfg->routes));
    if (!cfg->routes) {
        return SLM_E_NOMEM;
    }
    size_t i;
    json_array_foreach(routes, i, val) {
        cfg->n_routes++;
        if ((rc = parse_route(v, routes, i, val, cfg, &cfg->routes[i])) != SLM_OK) {
            return rc;
        }
    }
    if ((rc = parse_meter(v, root, cfg)) != SLM_OK) {
        return rc;
    }
    return apply_include(v, root, cfg);
}

int slm_router_config_parse(const char *name, const char *text, size_t len, const char *dir,
                            struct slm_router_config **out, struct slm_err *err) {
    *out = NULL;
    struct slm_yaml_doc *doc = NULL;
    int rc = slm_yaml_parse(name, text, len, NULL, &doc, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_router_config *cfg = calloc(1, sizeof(*cfg));
    char *tmp = strdup(name ? name : "router.yaml");
    if (!cfg || !tmp) {
        free(cfg);
        free(tmp);
        slm_yaml_free(doc);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    cfg->path = strdup(tmp);
    cfg->dir = strdup(dir ? dir : dirname(tmp));
    free(tmp);
    struct slm_yaml_check v = {doc, cfg->dir, err};
    if (!cfg->path || !cfg->dir) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    } else {
        rc = parse_root(&v, slm_yaml_root(doc), cfg);
    }
    if (rc == SLM_E_NOMEM) {
        slm_err_set(err, rc, "%s: out of memory", slm_yaml_name(doc));
    }
    slm_yaml_free(doc);
    if (rc != SLM_OK) {
        slm_router_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return SLM_OK;
}

int slm_router_config_load(const char *path, struct slm_router_config **out, struct slm_err *err) {
    struct slm_buf b = {0};
    *out = NULL;
    int rc = slm_file_read(path, (size_t)4 << 20, &b, err);
    if (rc == SLM_OK) {
        rc = slm_router_config_parse(path, slm_buf_cstr(&b), b.len, NULL, out, err);
    }
    slm_buf_free(&b);
    return rc;
}

const struct slm_router_route *slm_router_config_route(const struct slm_router_config *cfg,
                                                       const char *name) {
    for (size_t i = 0; name && i < cfg->n_routes; i++) {
        if (strcmp(cfg->routes[i].name, name) == 0) {
            return &cfg->routes[i];
        }
    }
    return NULL;
}

static void local_free(struct slm_router_local *t) {
    free(t->name);
    free(t->model);
    for (size_t i = 0; i < t->n_adapters; i++) {
        free(t->adapters[i].path);
    }
    free(t->adapters);
    json_decref(t->parameters);
    free(t->template_path);
    free(t->system);
    for (size_t i = 0; i < t->n_labels; i++) {
        free(t->labels[i]);
    }
    free(t->labels);
}

void slm_router_config_free(struct slm_router_config *cfg) {
    if (!cfg) {
        return;
    }
    for (size_t i = 0; i < cfg->n_locals; i++) {
        local_free(&cfg->locals[i]);
    }
    free(cfg->locals);
    for (size_t i = 0; i < cfg->n_pools; i++) {
        struct slm_router_pool *p = &cfg->pools[i];
        for (size_t j = 0; j < p->n_members; j++) {
            free((char *)p->members[j].base_url);
            free((char *)p->members[j].model);
            free((char *)p->members[j].api_key);
            free(p->api_key_envs[j]);
        }
        free(p->members);
        free(p->api_key_envs);
        free(p->name);
    }
    free(cfg->pools);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct slm_router_route *r = &cfg->routes[i];
        free(r->name);
        free(r->escalate);
        json_decref(r->checks.json_schema);
        free(r->checks.regex);
        free(r->checks.liquid);
    }
    free(cfg->routes);
    free(cfg->meter.ledger);
    free(cfg->include_path);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}
