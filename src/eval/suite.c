/*
 * suite.c - the eval suite file (docs/eval.md): schema and validation. Every
 * error names file, line and key path; unknown keys are errors, as in
 * router.yaml, because a typo must not silently change what is measured.
 * No model, no network; a schema file named by the `json` metric is read.
 */
#include "slm/eval.h"

#include <libgen.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/liquid.h"
#include "slm/yaml.h"

const char *slm_eval_cand_kind_name(enum slm_eval_cand_kind k) {
    switch (k) {
    case SLM_EVAL_CAND_MODEL: return "model";
    case SLM_EVAL_CAND_ADAPTER: return "adapter";
    case SLM_EVAL_CAND_GGUF: return "gguf";
    case SLM_EVAL_CAND_ROUTE: return "route";
    case SLM_EVAL_CAND_UPSTREAM: return "upstream";
    }
    return "?";
}

const char *slm_eval_metric_name(enum slm_eval_metric_kind k) {
    switch (k) {
    case SLM_EVAL_LABEL: return "label";
    case SLM_EVAL_EXACT: return "exact";
    case SLM_EVAL_JSON: return "json";
    case SLM_EVAL_REGEX: return "regex";
    case SLM_EVAL_JUDGE: return "judge";
    }
    return "?";
}

const char *slm_eval_judge_mode_name(enum slm_eval_judge_mode m) {
    switch (m) {
    case SLM_EVAL_JUDGE_SCORE: return "score";
    case SLM_EVAL_JUDGE_PASS: return "pass";
    case SLM_EVAL_JUDGE_PAIRWISE: return "pairwise";
    }
    return "?";
}

static int parse_hash(struct slm_yaml_check *v, const json_t *data, struct slm_eval_suite *s) {
    char *spec = NULL;
    int rc = slm_yaml_get_str(v, data, "data", "valid-hash", false, &spec);
    if (rc != SLM_OK || !spec) {
        return rc;
    }
    char *colon = strchr(spec, ':');
    uint64_t mod = 10;
    if (colon) {
        *colon = '\0';
        if (slm_parse_u64(slm_str_c(colon + 1), &mod) != SLM_OK || mod < 2 || mod > 1000000) {
            mod = 0;
        }
    }
    if (!spec[0] || mod == 0) {
        free(spec);
        return slm_yaml_verr(v, SLM_E_INVALID, data, "valid-hash", 0, "data.valid-hash",
                             "expected FIELD or FIELD:M with M from 2 to 1000000 (text:10)");
    }
    s->data.hash_field = spec;
    s->data.hash_mod = (uint32_t)mod;
    return SLM_OK;
}

static int parse_data(struct slm_yaml_check *v, const json_t *root, struct slm_eval_suite *s) {
    const json_t *data = json_object_get(root, "data");
    if (!data) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, NULL, SIZE_MAX, "data", "required");
    }
    static const char *const keys[] = {"file",       "template", "expected", "input",
                                       "valid-hash", "limit",    NULL};
    int64_t limit = 0;
    int rc = slm_yaml_want_object(v, root, "data", 0, "data", data);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, data, "data", keys);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, data, "data", "file", true, &s->data.file);
    }
    if (rc == SLM_OK && !s->data.file) {
        rc = slm_yaml_verr(v, SLM_E_INVALID, data, NULL, SIZE_MAX, "data.file", "required");
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, data, "data", "template", true, &s->data.template);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, data, "data", "expected", false, &s->data.expected);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, data, "data", "input", false, &s->data.input);
    }
    if (rc == SLM_OK) {
        rc = parse_hash(v, data, s);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_int(v, data, "data", "limit", 1, 100000000, &limit);
    }
    s->data.limit = (size_t)limit;
    return rc;
}

/* Exactly one of the keys that say what a candidate runs. */
static int cand_kind(struct slm_yaml_check *v, const json_t *obj, const char *path,
                     struct slm_eval_candidate *c) {
    bool model = json_object_get(obj, "model") != NULL;
    bool adapter = json_object_get(obj, "adapter") != NULL;
    bool gguf = json_object_get(obj, "gguf") != NULL;
    bool route = json_object_get(obj, "route") != NULL;
    bool up = json_object_get(obj, "upstream") != NULL || json_object_get(obj, "base-url");
    int n = (model && !up) + gguf + route + up;
    if (n != 1) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, NULL, SIZE_MAX, path,
                             "name exactly one of model (with an optional adapter), gguf, "
                             "route (with router) or upstream / base-url");
    }
    c->kind = gguf      ? SLM_EVAL_CAND_GGUF
              : route   ? SLM_EVAL_CAND_ROUTE
              : up      ? SLM_EVAL_CAND_UPSTREAM
              : adapter ? SLM_EVAL_CAND_ADAPTER
                        : SLM_EVAL_CAND_MODEL;
    if (adapter && c->kind != SLM_EVAL_CAND_ADAPTER) {
        return slm_yaml_key_err(v, obj, path, "adapter", "goes with model only");
    }
    return SLM_OK;
}

static int cand_fields(struct slm_yaml_check *v, const json_t *obj, const char *p,
                       struct slm_eval_candidate *c) {
    char *model = NULL;
    int rc = slm_yaml_get_str(v, obj, p, "name", false, &c->name);
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "model", false, &model);
    }
    if (rc == SLM_OK && model && c->kind != SLM_EVAL_CAND_UPSTREAM &&
        (slm_str_ends_with(slm_str_c(model), slm_str_c(".gguf")) || strchr(model, '/'))) {
        c->model = slm_yaml_resolve_path(v->dir, model); /* a path, like router.yaml's */
        free(model);
        rc = c->model ? SLM_OK : SLM_E_NOMEM;
    } else {
        c->model = model;
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, obj, p, "adapter", true, &c->adapter);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, obj, p, "gguf", true, &c->gguf);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, obj, p, "router", true, &c->router);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "route", false, &c->route);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "upstream", false, &c->upstream);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "base-url", false, &c->base_url);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "api-key-env", false, &c->api_key_env);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_num(v, obj, p, "price-in", 0, 1e6, &c->price_in);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_num(v, obj, p, "price-out", 0, 1e6, &c->price_out);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_num(v, obj, p, "cost-per-1k", 0, 1e9, &c->cost_per_1k);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, obj, p, "system", false, &c->system);
    }
    c->structured = true;
    if (rc == SLM_OK) {
        rc = slm_yaml_get_bool(v, obj, p, "structured", &c->structured);
    }
    return rc;
}

/* What each kind needs besides its own key. */
static int cand_check(struct slm_yaml_check *v, const json_t *obj, const char *p,
                      struct slm_eval_candidate *c) {
    if (c->kind == SLM_EVAL_CAND_ROUTE && !c->router) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "route", 0, p,
                             "a route needs router: FILE (the router.yaml it is in)");
    }
    if (c->kind == SLM_EVAL_CAND_UPSTREAM && c->upstream && !c->router) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "upstream", 0, p,
                             "an upstream by name needs router: FILE (the router.yaml it is in)");
    }
    if (c->kind == SLM_EVAL_CAND_UPSTREAM && c->base_url && !c->model) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "base-url", 0, p,
                             "an inline upstream needs model: NAME");
    }
    if (c->kind != SLM_EVAL_CAND_UPSTREAM && (c->system || json_object_get(obj, "structured"))) {
        return slm_yaml_key_err(v, obj, p, c->system ? "system" : "structured",
                                "goes with an upstream candidate (a local model's prompt is the "
                                "data's template; a route's is its router.yaml's)");
    }
    bool local = c->kind <= SLM_EVAL_CAND_GGUF;
    if (!local && c->cost_per_1k > 0 && c->kind != SLM_EVAL_CAND_ROUTE) {
        return slm_yaml_verr(v, SLM_E_INVALID, obj, "cost-per-1k", 0, p,
                             "an upstream is priced with price-in / price-out");
    }
    if (!c->name) {
        const char *n = c->kind == SLM_EVAL_CAND_GGUF    ? c->gguf
                        : c->kind == SLM_EVAL_CAND_ROUTE ? c->route
                        : c->upstream                    ? c->upstream
                                                         : c->model;
        n = n ? n : c->base_url ? c->base_url : "candidate"; /* found by fuzz_eval_suite */
        const char *slash = strrchr(n, '/');
        size_t len = strlen(slash ? slash + 1 : n) + 16;
        c->name = malloc(len);
        if (!c->name) {
            return SLM_E_NOMEM;
        }
        snprintf(c->name, len, "%s%s", slash ? slash + 1 : n,
                 c->kind == SLM_EVAL_CAND_ADAPTER ? "+adapter" : "");
    }
    return SLM_OK;
}

static int parse_candidate(struct slm_yaml_check *v, const json_t *list, size_t i,
                           const json_t *obj, struct slm_eval_suite *s) {
    static const char *const keys[] = {"name",        "model",      "adapter",   "gguf",
                                       "router",      "route",      "upstream",  "base-url",
                                       "api-key-env", "price-in",   "price-out", "cost-per-1k",
                                       "system",      "structured", NULL};
    char p[64];
    snprintf(p, sizeof(p), "candidates[%zu]", i);
    struct slm_eval_candidate *c = &s->candidates[s->n_candidates++];
    c->line = slm_yaml_pos_index(v->doc, list, i).line;
    int rc = slm_yaml_want_object(v, list, NULL, i, p, obj);
    if (rc == SLM_OK) {
        rc = slm_yaml_check_keys(v, obj, p, keys);
    }
    if (rc == SLM_OK) {
        rc = cand_kind(v, obj, p, c);
    }
    if (rc == SLM_OK) {
        rc = cand_fields(v, obj, p, c);
    }
    if (rc == SLM_OK) {
        rc = cand_check(v, obj, p, c);
    }
    for (size_t k = 0; rc == SLM_OK && k + 1 < s->n_candidates; k++) {
        if (strcmp(s->candidates[k].name, c->name) == 0) {
            rc = slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p,
                               "two candidates are named '%s' (give one a name:)", c->name);
        }
    }
    return rc;
}

static int parse_candidates(struct slm_yaml_check *v, const json_t *root,
                            struct slm_eval_suite *s) {
    const json_t *list = json_object_get(root, "candidates");
    if (!json_is_array(list) || json_array_size(list) == 0) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, list ? "candidates" : NULL, SIZE_MAX,
                             "candidates", "expected a list of at least one candidate");
    }
    if (json_array_size(list) > SLM_EVAL_MAX_CANDIDATES) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, "candidates", 0, "candidates",
                             "at most %d candidates", SLM_EVAL_MAX_CANDIDATES);
    }
    size_t i;
    const json_t *obj;
    json_array_foreach(list, i, obj) {
        int rc = parse_candidate(v, list, i, obj, s);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int metric_kind(const char *name, enum slm_eval_metric_kind *out) {
    for (int k = SLM_EVAL_LABEL; k <= SLM_EVAL_JUDGE; k++) {
        if (strcmp(name, slm_eval_metric_name((enum slm_eval_metric_kind)k)) == 0) {
            *out = (enum slm_eval_metric_kind)k;
            return SLM_OK;
        }
    }
    return SLM_E_NOT_FOUND;
}

/* `json`'s schema: a mapping inline, or a file. */
static int metric_schema(struct slm_yaml_check *v, const json_t *obj, const char *p,
                         struct slm_eval_metric *m) {
    const json_t *val = json_object_get(obj, "schema");
    if (!val) {
        return SLM_OK;
    }
    if (json_is_object(val)) {
        m->schema = json_deep_copy(val);
        return m->schema ? SLM_OK : SLM_E_NOMEM;
    }
    char *file = NULL;
    int rc = slm_yaml_get_path(v, obj, p, "schema", true, &file);
    if (rc == SLM_OK && file) {
        struct slm_err e = {0};
        if (slm_json_load_file(file, 1 << 20, &m->schema, &e) != SLM_OK) {
            rc = slm_yaml_key_err(v, obj, p, "schema", "%s", e.msg);
        }
    }
    free(file);
    return rc;
}

/* `judge`: its upstream, mode, rubric and pairs. */
static int parse_judge(struct slm_yaml_check *v, const json_t *obj, const char *p,
                       struct slm_eval_suite *s, struct slm_eval_metric *m) {
    char *mode = NULL;
    int64_t max_tokens = 256;
    int rc = slm_yaml_get_str(v, obj, p, "mode", false, &mode);
    if (rc == SLM_OK && mode) {
        bool found = false;
        for (int k = SLM_EVAL_JUDGE_SCORE; k <= SLM_EVAL_JUDGE_PAIRWISE && !found; k++) {
            if (strcmp(mode, slm_eval_judge_mode_name((enum slm_eval_judge_mode)k)) == 0) {
                m->mode = (enum slm_eval_judge_mode)k;
                found = true;
            }
        }
        if (!found) {
            rc = slm_yaml_key_err(v, obj, p, "mode",
                                  "unknown judge mode '%s' (expected score, pass or pairwise)",
                                  mode);
        }
    }
    free(mode);
    const char *str_keys[] = {"router", "upstream", "base-url", "model", "api-key-env", "against"};
    char **str_dst[] = {&m->router, &m->upstream,    &m->base_url,
                        &m->model,  &m->api_key_env, &m->against};
    for (size_t k = 0; rc == SLM_OK && k < SLM_ARRAY_LEN(str_keys); k++) {
        rc = k == 0 ? slm_yaml_get_path(v, obj, p, str_keys[k], true, str_dst[k])
                    : slm_yaml_get_str(v, obj, p, str_keys[k], false, str_dst[k]);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_num(v, obj, p, "price-in", 0, 1e6, &m->price_in);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_num(v, obj, p, "price-out", 0, 1e6, &m->price_out);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_int(v, obj, p, "max-tokens", 16, 65536, &max_tokens);
    }
    m->judge_max_tokens = (int32_t)max_tokens;
    if (rc == SLM_OK) {
        rc = slm_yaml_get_path(v, obj, p, "rubric", true, &m->rubric);
    }
    if (rc == SLM_OK && m->rubric) {
        struct slm_liquid_template *t = NULL;
        struct slm_err e = {0};
        if (slm_liquid_parse_file(m->rubric, NULL, &t, &e) != SLM_OK) {
            rc = slm_yaml_key_err(v, obj, p, "rubric", "%s", e.msg);
        }
        slm_liquid_free(t);
    }
    if (rc == SLM_OK && !(m->upstream && m->router) && !(m->base_url && m->model)) {
        rc = slm_yaml_verr(v, SLM_E_INVALID, obj, NULL, SIZE_MAX, p,
                           "the judge needs a cloud model: router: FILE + upstream: NAME, or "
                           "base-url: URL + model: NAME");
    }
    if (rc == SLM_OK && m->upstream && m->base_url) {
        rc = slm_yaml_key_err(v, obj, p, "base-url",
                              "name the judge by upstream or by base-url, not both");
    }
    if (rc == SLM_OK && m->mode == SLM_EVAL_JUDGE_PAIRWISE && s->n_candidates < 2) {
        rc = slm_yaml_key_err(v, obj, p, "mode", "pairwise needs at least two candidates");
    }
    if (rc == SLM_OK && m->against) {
        bool found = false;
        for (size_t k = 0; k < s->n_candidates && !found; k++) {
            found = strcmp(s->candidates[k].name, m->against) == 0;
        }
        if (m->mode != SLM_EVAL_JUDGE_PAIRWISE) {
            rc = slm_yaml_key_err(v, obj, p, "against", "goes with mode: pairwise");
        } else if (!found) {
            rc = slm_yaml_key_err(v, obj, p, "against", "no candidate is named '%s'", m->against);
        }
    }
    return rc;
}

static int parse_metric(struct slm_yaml_check *v, const json_t *list, size_t i, const json_t *val,
                        struct slm_eval_suite *s) {
    static const char *const keys[] = {"kind",     "schema",    "pattern",    "ignore-case",
                                       "mode",     "rubric",    "against",    "router",
                                       "upstream", "base-url",  "model",      "api-key-env",
                                       "price-in", "price-out", "max-tokens", NULL};
    static const char *const judge_only[] = {"mode",     "rubric",    "against",    "router",
                                             "upstream", "base-url",  "model",      "api-key-env",
                                             "price-in", "price-out", "max-tokens", NULL};
    char p[64];
    snprintf(p, sizeof(p), "metrics[%zu]", i);
    struct slm_eval_metric *m = &s->metrics[s->n_metrics++];
    const char *name = json_string_value(val);
    int rc = SLM_OK;
    if (json_is_object(val)) {
        rc = slm_yaml_check_keys(v, val, p, keys);
        name = json_string_value(json_object_get(val, "kind"));
        if (rc == SLM_OK && !name) {
            return slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p, "needs kind: NAME");
        }
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (!name || metric_kind(name, &m->kind) != SLM_OK) {
        return slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p,
                             "unknown metric '%s' (expected label, exact, json, regex or judge)",
                             name ? name : "?");
    }
    for (size_t k = 0; k + 1 < s->n_metrics; k++) {
        if (s->metrics[k].kind == m->kind) {
            return slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p, "'%s' is listed twice", name);
        }
    }
    if (json_is_object(val)) {
        rc = metric_schema(v, val, p, m);
        if (rc == SLM_OK) {
            rc = slm_yaml_get_str(v, val, p, "pattern", false, &m->regex);
        }
        if (rc == SLM_OK) {
            rc = slm_yaml_get_bool(v, val, p, "ignore-case", &m->ignore_case);
        }
    }
    m->line = slm_yaml_pos_index(v->doc, list, i).line;
    for (size_t k = 0; rc == SLM_OK && m->kind != SLM_EVAL_JUDGE && judge_only[k]; k++) {
        if (json_object_get(val, judge_only[k])) {
            rc = slm_yaml_key_err(v, val, p, judge_only[k], "goes with kind: judge");
        }
    }
    if (rc == SLM_OK && m->kind == SLM_EVAL_JUDGE) {
        if (!json_is_object(val)) {
            return slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p,
                                 "judge needs its cloud model: {kind: judge, router: FILE, "
                                 "upstream: NAME} or base-url + model");
        }
        rc = parse_judge(v, val, p, s, m);
    }
    if (rc == SLM_OK && m->kind == SLM_EVAL_REGEX) {
        struct slm_err e = {0};
        if (!m->regex) {
            rc = slm_yaml_verr(v, SLM_E_INVALID, list, NULL, i, p, "regex needs pattern: PCRE2");
        } else if (slm_eval_regex(m->regex, m->ignore_case, "", &e) < 0) {
            rc = slm_yaml_verr(v, SLM_E_INVALID, val, "pattern", 0, p, "%s", e.msg);
        }
    }
    return rc;
}

static int parse_metrics(struct slm_yaml_check *v, const json_t *root, struct slm_eval_suite *s) {
    const json_t *list = json_object_get(root, "metrics");
    if (!json_is_array(list) || json_array_size(list) == 0) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, list ? "metrics" : NULL, SIZE_MAX, "metrics",
                             "expected a list of metrics (label, exact, json, regex, judge)");
    }
    if (json_array_size(list) > SLM_EVAL_MAX_METRICS) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, "metrics", 0, "metrics", "too many metrics");
    }
    size_t i;
    const json_t *val;
    json_array_foreach(list, i, val) {
        int rc = parse_metric(v, list, i, val, s);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

static int parse_root(struct slm_yaml_check *v, const json_t *root, struct slm_eval_suite *s) {
    static const char *const keys[] = {"name",       "data",      "candidates", "metrics",
                                       "max-tokens", "bootstrap", "seed",       NULL};
    if (!json_is_object(root)) {
        return slm_yaml_verr(v, SLM_E_INVALID, root, NULL, 0, "(top)",
                             "expected a mapping with data, candidates and metrics");
    }
    int64_t max_tokens = 128, boot = 1000, seed = 42;
    int rc = slm_yaml_check_keys(v, root, "", keys);
    if (rc == SLM_OK) {
        rc = slm_yaml_get_str(v, root, "", "name", false, &s->name);
    }
    if (rc == SLM_OK) {
        rc = parse_data(v, root, s);
    }
    if (rc == SLM_OK) {
        rc = parse_candidates(v, root, s);
    }
    if (rc == SLM_OK) {
        rc = parse_metrics(v, root, s);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_int(v, root, "", "max-tokens", 1, 65536, &max_tokens);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_int(v, root, "", "bootstrap", 100, 1000000, &boot);
    }
    if (rc == SLM_OK) {
        rc = slm_yaml_get_int(v, root, "", "seed", 0, INT64_MAX, &seed);
    }
    s->max_tokens = (int32_t)max_tokens;
    s->bootstrap = (uint32_t)boot;
    s->seed = (uint64_t)seed;
    return rc;
}

/* The file's base name without its extension. */
static char *default_name(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return slm_str_dup(slm_str_n(base, dot && dot != base ? (size_t)(dot - base) : strlen(base)));
}

int slm_eval_suite_parse(const char *name, const char *text, size_t len, const char *dir,
                         struct slm_eval_suite **out, struct slm_err *err) {
    *out = NULL;
    name = name ? name : "suite.yaml";
    struct slm_yaml_doc *doc = NULL;
    int rc = slm_yaml_parse(name, text, len, NULL, &doc, err);
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_eval_suite *s = calloc(1, sizeof(*s));
    char *tmp = strdup(name);
    if (s && tmp) {
        s->path = strdup(name);
        s->dir = strdup(dir ? dir : dirname(tmp));
    }
    free(tmp);
    if (!s || !s->path || !s->dir) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    } else {
        struct slm_yaml_check v = {doc, s->dir, err};
        rc = parse_root(&v, slm_yaml_root(doc), s);
    }
    if (rc == SLM_OK && !s->name && !(s->name = default_name(name))) {
        rc = SLM_E_NOMEM;
    }
    if (rc == SLM_E_NOMEM) {
        slm_err_set(err, rc, "%s: out of memory", name);
    }
    slm_yaml_free(doc);
    if (rc != SLM_OK) {
        slm_eval_suite_free(s);
        return rc;
    }
    *out = s;
    return SLM_OK;
}

int slm_eval_suite_load(const char *path, struct slm_eval_suite **out, struct slm_err *err) {
    struct slm_buf b = {0};
    *out = NULL;
    int rc = slm_file_read(path, (size_t)4 << 20, &b, err);
    if (rc == SLM_OK) {
        rc = slm_eval_suite_parse(path, slm_buf_cstr(&b), b.len, NULL, out, err);
    }
    slm_buf_free(&b);
    return rc;
}

void slm_eval_suite_free(struct slm_eval_suite *s) {
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->n_candidates; i++) {
        struct slm_eval_candidate *c = &s->candidates[i];
        free(c->name);
        free(c->model);
        free(c->adapter);
        free(c->gguf);
        free(c->router);
        free(c->route);
        free(c->upstream);
        free(c->base_url);
        free(c->api_key_env);
        free(c->system);
    }
    for (size_t i = 0; i < s->n_metrics; i++) {
        struct slm_eval_metric *m = &s->metrics[i];
        json_decref(m->schema);
        free(m->regex);
        free(m->rubric);
        free(m->against);
        free(m->router);
        free(m->upstream);
        free(m->base_url);
        free(m->model);
        free(m->api_key_env);
    }
    free(s->data.file);
    free(s->data.template);
    free(s->data.expected);
    free(s->data.input);
    free(s->data.hash_field);
    free(s->path);
    free(s->dir);
    free(s->name);
    free(s);
}

const struct slm_eval_metric *slm_eval_suite_metric(const struct slm_eval_suite *s,
                                                    enum slm_eval_metric_kind kind) {
    for (size_t i = 0; i < s->n_metrics; i++) {
        if (s->metrics[i].kind == kind) {
            return &s->metrics[i];
        }
    }
    return NULL;
}
