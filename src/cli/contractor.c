/*
 * cli/contractor.c - flags, rows, output and progress shared by `slm label` and `slm distill`
 * (cli/contractor.h). The output is written to OUT.partial as rows complete, in input order,
 * and renamed to OUT when the run ends (also when the cost cap or Ctrl-C ends it: what is done
 * is kept); after kill -9 a re-run rewrites it, paying nothing twice thanks to the cache.
 */
#include "cli/contractor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "slm/json.h"
#include "slm/options.h"
#include "slm/tune.h"

const char SLM_CLI_CONTRACTOR_HELP[] =
    "Upstream (nothing is sent anywhere unless one is named):\n"
    "  --router FILE         a router.yaml whose upstreams: name the cloud ...\n"
    "  --upstream NAME       ... and the pool of it to use (key from its api_key_env)\n"
    "  --base-url URL        or inline: an OpenAI-compatible base URL (http://host/v1)\n"
    "  --model M             the model name sent to it\n"
    "  --api-key-env VAR     read the API key from environment variable VAR\n"
    "  --price-in X          inline prices per 1M prompt tokens (default 0)\n"
    "  --price-out Y         ... and per 1M completion tokens (default 0)\n"
    "Cost, cache, speed:\n"
    "  --max-cost USD        hard cap: a call whose worst case does not fit is not sent;\n"
    "                        the run stops, keeps what is done and exits 3\n"
    "  --cache FILE          call cache (default $SLM_HOME/cache/calls.db)\n"
    "  --no-cache            neither read nor write the cache\n"
    "  --concurrency N       calls at once (default: the upstream's max_concurrency)\n"
    "  -q, --quiet           no progress bar\n"
    "Request:\n"
    "  --template FILE       Liquid template rendering the user message from a row's\n"
    "                        fields (default: the row's text, input or prompt field)\n"
    "  --system TEXT         system message\n"
    "  --temperature T       sampling flags, named as for slm run (docs/commands.md)\n"
    "  --top-p P\n"
    "  --seed N\n"
    "  --max-tokens N, -n N  answer length cap (also bounds each call's worst-case cost)\n"
    "  --stop S              stop string (repeatable)\n";

void slm_cli_contractor_init(struct slm_cli_contractor *o, const char *cmd) {
    memset(o, 0, sizeof(*o));
    o->cmd = cmd;
    o->fields = json_object();
}

/* A sampling flag, checked against the option table and named as the OpenAI request does. */
static int sampling_flag(struct slm_cli_contractor *o, const char *flag, const char *val) {
    const struct slm_option_desc *d = slm_option_find(flag);
    if (!d || !d->openai) {
        return 0;
    }
    if (d->type == SLM_OPT_STRINGS) {
        json_t *arr = json_object_get(o->fields, d->openai);
        if (!arr) {
            arr = json_array();
            json_object_set_new(o->fields, d->openai, arr);
        }
        json_array_append_new(arr, json_string(val));
        return 1;
    }
    char name[64];
    snprintf(name, sizeof(name), "--%s", d->flag);
    if (d->type == SLM_OPT_INT) {
        long long v;
        if (!slm_cli_int(o->cmd, name, val, (long long)SLM_MAX(d->min, 1), (long long)d->max, &v)) {
            return -1;
        }
        json_object_set_new(o->fields, d->openai, json_integer(v));
        o->max_tokens_set |= strcmp(d->name, "num_predict") == 0;
        return 1;
    }
    double v;
    if (!slm_cli_float(o->cmd, name, val, d->min, d->max, &v)) {
        return -1;
    }
    json_object_set_new(o->fields, d->openai, json_real(v));
    return 1;
}

static const char *const SAMPLING[] = {"--temperature", "--top-p", "--seed", "--max-tokens", "-n",
                                       "--stop",        NULL};

int slm_cli_contractor_flag(struct slm_cli_contractor *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (strcmp(a, "--no-cache") == 0 || strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
        *(a[2] == 'n' ? &o->no_cache : &o->quiet) = true;
        return 1;
    }
    if (*i + 1 >= argc) {
        return 0;
    }
    const char *v = argv[*i + 1];
    const char **slot = NULL;
    static const char *const names[] = {
        "--router", "--upstream", "--base-url", "--model", "--api-key-env", "--cache", "--template",
        "--system", "-o",         "--output",   NULL};
    const char **slots[] = {
        &o->spec.router_path, &o->spec.upstream, &o->spec.base_url, &o->spec.model, &o->api_key_env,
        &o->cache_path,       &o->template_path, &o->system,        &o->out_path,   &o->out_path};
    for (size_t k = 0; names[k] && !slot; k++) {
        slot = strcmp(a, names[k]) == 0 ? slots[k] : NULL;
    }
    int used = 1;
    if (slot) {
        *slot = v;
    } else if (strcmp(a, "--price-in") == 0 || strcmp(a, "--price-out") == 0) {
        double *p = a[8] == 'i' ? &o->spec.price_in : &o->spec.price_out;
        used = slm_cli_float(o->cmd, a, v, 0, 1e9, p) ? 1 : -1;
    } else if (strcmp(a, "--max-cost") == 0) {
        used = slm_cli_float(o->cmd, a, v, 0, 1e12, &o->max_cost) ? 1 : -1;
    } else if (strcmp(a, "--concurrency") == 0) {
        used = slm_cli_int(o->cmd, a, v, 1, 64, &o->concurrency) ? 1 : -1;
    } else {
        used = 0;
        for (size_t k = 0; SAMPLING[k]; k++) {
            if (strcmp(a, SAMPLING[k]) == 0) {
                used = sampling_flag(o, strcmp(a, "-n") == 0 ? "max-tokens" : a + 2, v);
            }
        }
    }
    if (used == 1) {
        (*i)++;
    }
    return used;
}

int slm_cli_contractor_fail(const char *cmd, int status, const struct slm_err *err) {
    int code = slm_cli_fail(cmd, status, err);
    return code == SLM_EXIT_BUDGET ? SLM_EXIT_ERROR : code;
}

static int fail(struct slm_cli_contractor *o, int rc, const struct slm_err *err) {
    return slm_cli_contractor_fail(o->cmd, rc, err);
}

static int read_rows(struct slm_cli_contractor *o, struct slm_err *err) {
    struct slm_data_read_params rp = slm_data_read_params_default();
    rp.format = SLM_DATA_ROWS;
    rp.rows_only = true;
    struct slm_data_records recs;
    int rc = slm_data_read(o->input, &rp, &recs, err);
    if (rc != SLM_OK) {
        return rc;
    }
    o->rows = calloc(recs.n + 1, sizeof(*o->rows));
    if (!o->rows) {
        slm_data_records_free(&recs);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < recs.n; i++) {
        o->rows[i] = recs.items[i].row;
        recs.items[i].row = NULL;
    }
    o->n_rows = recs.n;
    slm_data_records_free(&recs);
    return SLM_OK;
}

int slm_cli_upstream_open(struct slm_contract_upstream_spec *spec, const char *api_key_env,
                          const char *how, struct slm_contract_upstream **out,
                          struct slm_err *err) {
    if (api_key_env) {
        if (!spec->base_url) {
            return slm_err_set(err, SLM_E_INVALID,
                               "%s is for an inline upstream (base URL); a router.yaml upstream "
                               "names its own api_key_env",
                               how);
        }
        const char *key = getenv(api_key_env);
        if (!key || !key[0]) {
            return slm_err_set(err, SLM_E_INVALID,
                               "environment variable %s (%s) is not set; export it with the API "
                               "key",
                               api_key_env, how);
        }
        spec->api_key = key;
    }
    if (spec->router_path && !slm_file_exists(spec->router_path)) {
        return slm_err_set(err, SLM_E_NOT_FOUND, "%s: no such router file", spec->router_path);
    }
    return slm_contract_upstream_open(spec, out, err);
}

int slm_cli_contractor_open(struct slm_cli_contractor *o) {
    struct slm_err err = {0};
    if (!o->fields) {
        return fail(o, SLM_E_NOMEM, NULL);
    }
    if (!o->out_path) {
        slm_cli_error(o->cmd, "name the output file with -o OUT.jsonl (see slm %s --help)", o->cmd);
        return SLM_EXIT_USAGE;
    }
    int rc = slm_cli_upstream_open(&o->spec, o->api_key_env, "--api-key-env", &o->upstream, &err);
    if (rc == SLM_OK && o->template_path) {
        rc = slm_liquid_parse_file(o->template_path, NULL, &o->tmpl, &err);
    }
    if (rc == SLM_OK && !o->rows) { /* a command may bring its own rows (distill --docs) */
        rc = read_rows(o, &err);
    }
    if (rc == SLM_OK && !o->no_cache) {
        rc = slm_contract_cache_open(o->cache_path, &o->cache, &err);
    }
    struct slm_contract_params cp = {
        .upstream = o->upstream, .cache = o->cache, .max_cost = o->max_cost};
    if (rc == SLM_OK) {
        rc = slm_contract_init(&cp, &o->contract, &err);
    }
    if (rc == SLM_OK) {
        snprintf(o->tmp_path, sizeof(o->tmp_path), "%s.partial", o->out_path);
        o->out = fopen(o->tmp_path, "w");
        if (!o->out) {
            rc = slm_err_set(&err, SLM_E_IO, "%s: cannot write (-o)", o->tmp_path);
        }
    }
    if (rc != SLM_OK) {
        return fail(o, rc, &err);
    }
    return SLM_EXIT_OK;
}

struct run_ctx {
    struct slm_cli_contractor *o;
    slm_contract_row_fn row;
    void *user;
    void (*count)(void *user, const json_t *out);
};

static int emit(void *user, size_t index, const json_t *out, struct slm_err *err) {
    struct run_ctx *r = user;
    (void)index;
    size_t i;
    const json_t *item;
    json_array_foreach(out, i, item) {
        char *line = json_dumps(item, JSON_COMPACT);
        bool ok = line && fputs(line, r->o->out) >= 0 && fputc('\n', r->o->out) != EOF;
        free(line);
        if (!ok) {
            return slm_err_set(err, SLM_E_IO, "%s: write failed", r->o->tmp_path);
        }
    }
    if (r->count) {
        r->count(r->user, out);
    }
    return SLM_OK;
}

static int row_fn(void *user, struct slm_contract *c, size_t index, json_t **out,
                  struct slm_err *err) {
    struct run_ctx *r = user;
    return r->row(r->user, c, index, out, err);
}

static void progress(void *user, size_t done, size_t total, const struct slm_contract_stats *s) {
    struct run_ctx *r = user;
    char label[64];
    snprintf(label, sizeof(label), "%s $%.4f", r->o->cmd, s->spent);
    slm_cli_progress_update(&r->o->bar, label, done, total);
}

void slm_cli_contractor_calls(struct slm_cli_contractor *o, char *buf, size_t cap) {
    struct slm_contract_stats s;
    slm_contract_get_stats(o->contract, &s);
    snprintf(buf, cap, "calls %llu, from cache %llu, failed %llu, cost $%.6f",
             (unsigned long long)s.calls, (unsigned long long)s.cached,
             (unsigned long long)s.failed, s.spent);
}

/* Flushes and renames the partial output into place. */
static int finish_output(struct slm_cli_contractor *o, struct slm_err *err) {
    int bad = fflush(o->out) != 0 || fsync(fileno(o->out)) != 0;
    bad |= fclose(o->out) != 0;
    o->out = NULL;
    if (bad || rename(o->tmp_path, o->out_path) != 0) {
        return slm_err_set(err, SLM_E_IO, "%s: cannot write the output", o->out_path);
    }
    return SLM_OK;
}

int slm_cli_contractor_run(struct slm_cli_contractor *o, slm_contract_row_fn row, void *user,
                           void (*count)(void *user, const json_t *out), size_t *done) {
    struct run_ctx ctx = {o, row, user, count};
    slm_cli_trap_signals();
    slm_cli_progress_init(&o->bar, !o->quiet && slm_cli_stderr_tty(), SLM_CLI_PROGRESS_ITEMS);
    o->t0 = slm_time_mono();
    struct slm_contract_run_params rp = {
        .n_rows = o->n_rows,
        .concurrency = (int)o->concurrency,
        .row = row_fn,
        .emit = emit,
        .progress = progress,
        .user = &ctx,
        .stop = &slm_cli_interrupted,
    };
    struct slm_contract_run_result res;
    struct slm_err err = {0};
    int rc = slm_contract_run(o->contract, &rp, &res, &err);
    slm_cli_progress_finish(&o->bar);
    *done = res.done;
    struct slm_err werr = {0};
    int wrc = finish_output(o, &werr);
    if (wrc != SLM_OK) {
        return fail(o, wrc, &werr);
    }
    struct slm_contract_stats s;
    slm_contract_get_stats(o->contract, &s);
    if (res.budget_hit) {
        slm_cli_error(o->cmd,
                      "stopped at the cost cap: %zu of %zu rows done, spent $%.6f of $%.6f (%s); "
                      "wrote %s. Raise --max-cost and run again: answered calls are cached",
                      res.done, o->n_rows, s.spent, s.cap, err.msg, o->out_path);
        return SLM_EXIT_BUDGET;
    }
    if (res.interrupted) {
        slm_cli_error(o->cmd, "interrupted: %zu of %zu rows done, spent $%.6f; wrote %s", res.done,
                      o->n_rows, s.spent, o->out_path);
        return SLM_EXIT_INTERRUPTED;
    }
    if (rc != SLM_OK) {
        slm_cli_error(o->cmd, "%s (%zu of %zu rows done, spent $%.6f; wrote %s)", err.msg, res.done,
                      o->n_rows, s.spent, o->out_path);
        int code = slm_cli_exit_code(rc);
        return code == SLM_EXIT_BUDGET ? SLM_EXIT_ERROR : code;
    }
    return SLM_EXIT_OK;
}

void slm_cli_contractor_free(struct slm_cli_contractor *o) {
    if (o->out) {
        fclose(o->out);
    }
    slm_contract_free(o->contract);
    slm_contract_cache_close(o->cache);
    slm_contract_upstream_free(o->upstream);
    slm_liquid_free(o->tmpl);
    for (size_t i = 0; i < o->n_rows; i++) {
        json_decref(o->rows[i]);
    }
    free(o->rows);
    json_decref(o->fields);
}
