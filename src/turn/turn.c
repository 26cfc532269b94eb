/*
 * turn/turn.c - the model side of a turn: a reference resolved through the
 * store, with the options, TEMPLATE, system prompt and adapters in force.
 * Built once per model (per request in the server, which must see store
 * changes; once per target in the router; once per `slm run`).
 */
#include "slm/turn.h"

#include <stdlib.h>
#include <string.h>

struct slm_turn_params slm_turn_params_default(void) {
    return (struct slm_turn_params){0};
}

void slm_turn_free(struct slm_turn *t) {
    if (!t) {
        return;
    }
    slm_manifest_free(t->manifest);
    free(t->system);
    slm_liquid_free(t->tmpl);
    slm_options_free(&t->options);
    for (size_t i = 0; i < t->n_adapters; i++) {
        free(t->adapter_paths[i]);
    }
    free(t);
}

static int add_adapter(struct slm_turn *t, const char *path, float scale, struct slm_err *err) {
    if (t->n_adapters >= SLM_TURN_MAX_ADAPTERS) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "at most %d adapters", SLM_TURN_MAX_ADAPTERS);
    }
    t->adapter_paths[t->n_adapters] = strdup(path);
    if (!t->adapter_paths[t->n_adapters]) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    t->adapter_scales[t->n_adapters++] = scale;
    return SLM_OK;
}

/* What was stored and checked once fails now: the store is damaged. */
static int corrupt(struct slm_err *err) {
    if (err) {
        err->code = SLM_E_CORRUPT;
    }
    return SLM_E_CORRUPT;
}

static int setup(struct slm_turn *t, const struct slm_turn_params *p, struct slm_err *err) {
    const struct slm_manifest *m = t->manifest;
    int rc = SLM_OK;
    for (size_t i = 0; i < m->n_adapters && rc == SLM_OK; i++) {
        rc = add_adapter(t, m->adapters[i].path, m->adapters[i].scale, err);
    }
    for (size_t i = 0; i < p->n_adapters && rc == SLM_OK; i++) {
        rc = add_adapter(t, p->adapter_paths[i], p->adapter_scales ? p->adapter_scales[i] : 1.0f,
                         err);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (slm_options_apply(&t->options, m->params, true, err) != SLM_OK) {
        slm_err_prefix(err, "the model's parameters");
        return corrupt(err);
    }
    rc = slm_options_apply(&t->options, p->parameters, false, err);
    if (rc != SLM_OK) {
        return rc;
    }
    const char *system = p->system ? p->system : m->system;
    if (system && !(t->system = strdup(system))) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    const char *tpath = p->template_path ? p->template_path : m->template_path;
    if (tpath) {
        struct slm_liquid_params lp = slm_liquid_params_default();
        rc = slm_liquid_parse_file(tpath, &lp, &t->tmpl, err);
        if (rc != SLM_OK && rc != SLM_E_NOMEM && !p->template_path) {
            /* `slm create` checked it: a stored TEMPLATE that fails is damage */
            slm_err_prefix(err, "the model's template");
            rc = corrupt(err);
        }
    }
    return rc;
}

int slm_turn_open(struct slm_store *store, const char *ref, const struct slm_turn_params *p,
                  struct slm_turn **out, struct slm_err *err) {
    *out = NULL;
    struct slm_turn_params def = slm_turn_params_default();
    p = p ? p : &def;
    struct slm_turn *t = calloc(1, sizeof(*t));
    if (!t) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    slm_options_init(&t->options);
    int rc = slm_store_resolve_flags(store, ref, p->resolve_flags, &t->manifest, err);
    if (rc == SLM_OK) {
        rc = setup(t, p, err);
    }
    if (rc != SLM_OK) {
        slm_turn_free(t);
        return rc;
    }
    *out = t;
    return SLM_OK;
}

int slm_turn_options(const struct slm_turn *t, const json_t *request, struct slm_options *out,
                     struct slm_err *err) {
    int rc = slm_options_copy(out, &t->options);
    if (rc != SLM_OK) {
        slm_options_init(out);
        return slm_err_set(err, rc, "out of memory");
    }
    return slm_options_apply(out, request, true, err);
}
