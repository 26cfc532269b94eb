/*
 * eval/contract_label.c - answers from the contractor and their checks (slm/contract.h): label
 * files, the label/schema/regex check, `slm label`'s row (one retry with the error shown, votes)
 * and `slm distill`'s row (n samples, failures dropped).
 */
#include "eval/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "slm/grammar.h"
#include "slm/json.h"

/* ---------------------------------------------------------------- label files */

void slm_contract_labels_free(struct slm_contract_labels *l) {
    if (!l) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int add_label(struct slm_contract_labels *l, const char *name, const char *where,
                     const char *s, size_t len, struct slm_err *err) {
    if (len == 0 || len > SLM_CONTRACT_MAX_LABEL || memchr(s, '\0', len)) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s: %s: a label must be a non-empty string of at most %d bytes", name,
                           where, SLM_CONTRACT_MAX_LABEL);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strlen(l->items[i]) == len && memcmp(l->items[i], s, len) == 0) {
            return slm_err_set(err, SLM_E_INVALID, "%s: %s: duplicate label '%.*s'", name, where,
                               (int)SLM_MIN(len, 80), s);
        }
    }
    char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!items) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    l->items = items;
    if (!(items[l->n] = slm_str_dup(slm_str_n(s, len)))) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    l->n++;
    return SLM_OK;
}

static int labels_from(const json_t *v, const char *name, struct slm_contract_labels *out,
                       struct slm_err *err) {
    size_t n = json_is_array(v) ? json_array_size(v) : json_object_size(v);
    if (n == 0) {
        return slm_err_set(err, SLM_E_INVALID, "%s: no labels", name);
    }
    if (n > SLM_CONTRACT_MAX_LABELS) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: more than %d labels", name,
                           SLM_CONTRACT_MAX_LABELS);
    }
    char where[64];
    int rc = SLM_OK;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) {
            snprintf(where, sizeof(where), "[%zu]", i);
            if (!json_is_string(item)) {
                return slm_err_set(err, SLM_E_INVALID, "%s: %s: expected a string label", name,
                                   where);
            }
            struct slm_str s = slm_json_str(item);
            if ((rc = add_label(out, name, where, s.ptr, s.len, err)) != SLM_OK) {
                return rc;
            }
        }
        return SLM_OK;
    }
    const char *key;
    size_t klen;
    const json_t *val;
    json_object_keylen_foreach((json_t *)v, key, klen, val) {
        (void)val;
        snprintf(where, sizeof(where), "key %zu", out->n + 1);
        if ((rc = add_label(out, name, where, key, klen, err)) != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

int slm_contract_labels_parse(const char *name, const char *text, size_t len,
                              struct slm_contract_labels *out, struct slm_err *err) {
    memset(out, 0, sizeof(*out));
    json_t *v = NULL;
    int rc = slm_json_parse(text, len, name, &v, err);
    if (rc == SLM_OK && !json_is_array(v) && !json_is_object(v)) {
        rc = slm_err_set(err, SLM_E_INVALID,
                         "%s: expected a JSON array of labels or an object whose keys are labels",
                         name);
    }
    if (rc == SLM_OK) {
        rc = labels_from(v, name, out, err);
    }
    json_decref(v);
    if (rc != SLM_OK) {
        slm_contract_labels_free(out);
    }
    return rc;
}

/* ---------------------------------------------------------------- checks */

/* The answer without surrounding whitespace, quotes and a final period. */
static struct slm_str bare(const char *text) {
    struct slm_str s = slm_str_trim(slm_str_c(text));
    if (s.len >= 2 && (s.ptr[0] == '"' || s.ptr[0] == '\'') && s.ptr[s.len - 1] == s.ptr[0]) {
        s = slm_str_trim(slm_str_sub(s, 1, s.len - 2));
    }
    if (s.len > 0 && s.ptr[s.len - 1] == '.') {
        s.len--;
    }
    return s;
}

static int check_label(const struct slm_contract_labels *l, const char *text, json_t **value,
                       struct slm_err *err) {
    struct slm_str s = bare(text);
    const char *hit = NULL;
    size_t folded = 0;
    for (size_t i = 0; i < l->n && !hit; i++) {
        size_t n = strlen(l->items[i]);
        if (n == s.len && memcmp(l->items[i], s.ptr, n) == 0) {
            hit = l->items[i];
        } else if (n == s.len && strncasecmp(l->items[i], s.ptr, n) == 0) {
            folded = folded ? SIZE_MAX : i + 1; /* SIZE_MAX: two labels differ only in case */
        }
    }
    if (!hit && folded && folded != SIZE_MAX) {
        hit = l->items[folded - 1];
    }
    if (!hit) {
        return slm_err_set(err, SLM_E_INVALID,
                           "'%.*s' is not one of the allowed labels; answer with exactly one "
                           "label from the list and nothing else",
                           (int)SLM_MIN(s.len, 120), s.ptr);
    }
    if (value && !(*value = json_string(hit))) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return SLM_OK;
}

/* A regex check is JSON Schema's `pattern` on a string: the grammar module's PCRE2 matcher. */
static int check_regex(const char *regex, const char *text, struct slm_err *err) {
    json_t *schema = json_pack("{s:s, s:s}", "type", "string", "pattern", regex);
    json_t *str = json_string(text);
    int rc = schema && str ? slm_json_schema_validate(schema, str, err) : SLM_E_NOMEM;
    json_decref(schema);
    json_decref(str);
    if (rc == SLM_E_NOMEM) {
        return slm_err_set(err, rc, "out of memory");
    }
    if (rc != SLM_OK) {
        return slm_err_set(err, SLM_E_INVALID, "the answer does not match the pattern %.120s",
                           regex);
    }
    return SLM_OK;
}

int slm_contract_check_answer(const struct slm_contract_check *k, const char *text,
                              const char *finish, json_t **value, struct slm_err *err) {
    if (value) {
        *value = NULL;
    }
    bool cut = finish && strcmp(finish, "length") == 0;
    int rc = SLM_OK;
    json_t *v = NULL;
    if (k->labels) {
        rc = check_label(k->labels, text, value ? &v : NULL, err);
    } else if (k->schema) {
        rc = slm_json_output_check(k->schema, text, strlen(text), cut, &v, err);
        if (rc != SLM_OK) {
            slm_err_prefix(err, "the answer is not valid JSON for the schema");
        }
    } else if (cut) {
        rc = slm_err_set(err, SLM_E_INCOMPLETE, "the answer was cut at max_tokens");
    }
    if (rc == SLM_OK && k->regex) {
        rc = check_regex(k->regex, text, err);
    }
    if (rc == SLM_OK && value && !v && !(v = json_string(text))) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc != SLM_OK) {
        json_decref(v);
        return rc;
    }
    if (value) {
        *value = v;
    } else {
        json_decref(v);
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- asking */

/* Errors that end a run, as opposed to one answer that failed: a refused key would fail
 * every row the same way. */
bool slm__contract_fatal(int rc, const struct slm_contract_reply *rep) {
    return rc == SLM_E_LIMIT || rc == SLM_E_ABORTED || rc == SLM_E_IO || rc == SLM_E_NOMEM ||
           rc == SLM_E_INVALID || (rep->failure && strcmp(rep->failure, "unauthorized") == 0);
}

/* The retry: the conversation so far, the answer and what was wrong with it. */
static int retry_request(const json_t *req, const char *answer, const char *problem, json_t **out) {
    json_t *r = json_deep_copy(req);
    json_t *msgs = json_object_get(r, "messages");
    char note[512];
    snprintf(note, sizeof(note), "Your answer was not accepted: %s. Answer again.", problem);
    if (!r ||
        json_array_append_new(
            msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", answer)) != 0 ||
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", note)) !=
            0) {
        json_decref(r);
        return SLM_E_NOMEM;
    }
    *out = r;
    return SLM_OK;
}

int slm__contract_ask(struct slm_contract *c, const json_t *req, slm__contract_check_fn check,
                      const void *check_user, json_t **value, char *why, size_t why_cap,
                      struct slm_err *err) {
    *value = NULL;
    json_t *cur = json_incref((json_t *)req);
    int rc = SLM_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct slm_contract_reply rep;
        struct slm_err e = {0};
        rc = slm_contract_chat(c, cur, &rep, &e);
        if (rc != SLM_OK) {
            slm_contract_reply_free(&rep);
            if (slm__contract_fatal(rc, &rep)) {
                *err = e;
                break;
            }
            snprintf(why, why_cap, "upstream: %s", e.msg);
            rc = SLM_OK;
            break;
        }
        rc = check(check_user, rep.text, rep.finish, value, &e);
        if (rc == SLM_OK || rc == SLM_E_NOMEM) {
            slm_contract_reply_free(&rep);
            break;
        }
        snprintf(why, why_cap, "%s", e.msg);
        rc = SLM_OK;
        json_t *next = NULL;
        if (attempt == 0 && retry_request(cur, rep.text, e.msg, &next) != SLM_OK) {
            rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        slm_contract_reply_free(&rep);
        json_decref(cur);
        cur = next;
        if (!cur) {
            break;
        }
    }
    json_decref(cur);
    return rc;
}

static int check_fn(const void *user, const char *text, const char *finish, json_t **value,
                    struct slm_err *err) {
    return slm_contract_check_answer(user, text, finish, value, err);
}

/* One answer checked against `k` (slm__contract_ask()). */
static int ask_checked(struct slm_contract *c, const json_t *req,
                       const struct slm_contract_check *k, json_t **value, char *why,
                       size_t why_cap, struct slm_err *err) {
    return slm__contract_ask(c, req, check_fn, k, value, why, why_cap, err);
}

/* ---------------------------------------------------------------- slm label */

static int set_field(json_t *row, const char *field, const char *suffix, json_t *v) {
    char key[256];
    snprintf(key, sizeof(key), "%s%s", field, suffix);
    return json_object_set_new(row, key, v) == 0 ? SLM_OK : SLM_E_NOMEM;
}

struct tally {
    json_t *values; /* canonical JSON -> count */
    json_t *first;  /* canonical JSON -> the value */
};

/* Votes: K answers at temperature > 0, the majority kept (more than half). */
static int vote(struct slm_contract *c, const struct slm_contract_label_params *p, json_t *req,
                json_t *row, const char *field, struct slm_err *err) {
    int k = p->votes;
    json_t *counts = json_object(), *values = json_object();
    int rc = counts && values ? SLM_OK : SLM_E_NOMEM;
    char why[512] = "";
    json_object_set_new(req, "temperature",
                        json_real(p->vote_temperature > 0 ? p->vote_temperature : 0.7));
    for (int i = 0; rc == SLM_OK && i < k; i++) {
        json_object_set_new(req, "seed", json_integer(i + 1)); /* each vote its own cache key */
        json_t *v = NULL;
        rc = ask_checked(c, req, &p->check, &v, why, sizeof(why), err);
        char *key = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        if (key) {
            json_int_t n = json_integer_value(json_object_get(counts, key));
            json_object_set_new(counts, key, json_integer(n + 1));
            if (!json_object_get(values, key)) {
                json_object_set(values, key, v);
            }
        }
        free(key);
        json_decref(v);
    }
    const char *best = NULL;
    json_int_t best_n = 0;
    const char *key;
    json_t *n;
    json_object_foreach(counts, key, n) {
        if (json_integer_value(n) > best_n) {
            best = key;
            best_n = json_integer_value(n);
        }
    }
    if (rc == SLM_OK) {
        rc |= set_field(row, "agreement", "", json_real((double)best_n / (double)k));
        if (best && best_n * 2 > k) {
            rc |= set_field(row, field, "", json_incref(json_object_get(values, best)));
        } else {
            rc |= set_field(row, field, "", json_null());
            char msg[640];
            snprintf(msg, sizeof(msg), "no majority: %lld of %d answers agree%s%s",
                     (long long)best_n, k, why[0] ? "; last problem: " : "", why);
            rc |= set_field(row, field, "_error", json_string(msg));
        }
        rc = rc ? slm_err_set(err, SLM_E_NOMEM, "out of memory") : SLM_OK;
    }
    json_decref(counts);
    json_decref(values);
    return rc;
}

int slm_contract_label_row(struct slm_contract *c, const struct slm_contract_label_params *p,
                           const json_t *row, json_t **out, struct slm_err *err) {
    *out = NULL;
    const char *field = p->field && p->field[0] ? p->field : "label";
    json_t *req = NULL;
    int rc = slm_contract_request(&p->ask, row, &req, NULL, err);
    json_t *res = rc == SLM_OK ? json_deep_copy(row) : NULL;
    if (rc == SLM_OK && !res) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && p->votes > 1) {
        rc = vote(c, p, req, res, field, err);
    } else if (rc == SLM_OK) {
        json_t *v = NULL;
        char why[512] = "";
        rc = ask_checked(c, req, &p->check, &v, why, sizeof(why), err);
        if (rc == SLM_OK) {
            int st = set_field(res, field, "", v ? v : json_null());
            if (!v) {
                st |= set_field(res, field, "_error", json_string(why));
            }
            rc = st ? slm_err_set(err, SLM_E_NOMEM, "out of memory") : SLM_OK;
        } else {
            json_decref(v);
        }
    }
    json_decref(req);
    if (rc != SLM_OK) {
        json_decref(res);
        return rc;
    }
    *out = res;
    return SLM_OK;
}

/* ---------------------------------------------------------------- slm distill */

static json_t *distill_item(const struct slm_contract_distill_params *p, const char *prompt,
                            const char *answer) {
    if (!p->messages) {
        return json_pack("{s:s, s:s}", "prompt", prompt, "completion", answer);
    }
    json_t *msgs = json_array();
    if (p->ask.system) {
        json_array_append_new(msgs,
                              json_pack("{s:s, s:s}", "role", "system", "content", p->ask.system));
    }
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", answer));
    return json_pack("{s:o}", "messages", msgs);
}

/* The shape --docs asks for: {"pairs": [{"question", "answer"}]}. */
static json_t *pairs_schema(void) {
    return json_pack("{s:s, s:{s:{s:s, s:{s:s, s:{s:{s:s}, s:{s:s}}, s:[s, s]}}}, s:[s]}", "type",
                     "object", "properties", "pairs", "type", "array", "items", "type", "object",
                     "properties", "question", "type", "string", "answer", "type", "string",
                     "required", "question", "answer", "required", "pairs");
}

json_t *slm_contract_pairs_schema(void) {
    return pairs_schema();
}

/* One --docs answer: its pairs, each checked, as training rows that name their chunk. */
static int add_pairs(const struct slm_contract_distill_params *p, const json_t *chunk,
                     const char *text, json_t *items) {
    json_t *schema = pairs_schema(), *v = NULL;
    int rc = schema ? SLM_OK : SLM_E_NOMEM;
    if (rc == SLM_OK &&
        slm_json_output_check(schema, text, strlen(text), false, &v, NULL) != SLM_OK) {
        json_decref(schema);
        return SLM_OK; /* not the JSON asked for: dropped */
    }
    const json_t *pairs = json_object_get(v, "pairs");
    for (size_t i = 0; rc == SLM_OK && i < json_array_size(pairs) && i < (size_t)p->pairs; i++) {
        const json_t *pr = json_array_get(pairs, i);
        const char *q = json_string_value(json_object_get(pr, "question"));
        const char *a = json_string_value(json_object_get(pr, "answer"));
        if (!q || !a || slm_contract_check_answer(&p->check, a, "stop", NULL, NULL) != SLM_OK) {
            continue;
        }
        json_t *item = distill_item(p, q, a);
        if (!item || json_object_set(item, "source", json_object_get(chunk, "file")) ||
            json_object_set(item, "chunk", json_object_get(chunk, "chunk")) ||
            json_object_set(item, "heading", json_object_get(chunk, "heading")) ||
            json_array_append_new(items, item) != 0) {
            json_decref(item);
            rc = SLM_E_NOMEM;
        }
    }
    json_decref(v);
    json_decref(schema);
    return rc;
}

int slm_contract_distill_row(struct slm_contract *c, const struct slm_contract_distill_params *p,
                             const json_t *row, json_t **out, struct slm_err *err) {
    *out = NULL;
    json_t *with_k = NULL;
    if (p->pairs > 0) {
        /* The template sees how many pairs to write. */
        with_k = json_deep_copy(row);
        if (!with_k || json_object_set_new(with_k, "k", json_integer(p->pairs)) != 0) {
            json_decref(with_k);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        row = with_k;
    }
    json_t *req = NULL;
    char *prompt = NULL;
    int rc = slm_contract_request(&p->ask, row, &req, &prompt, err);
    json_t *items = rc == SLM_OK ? json_array() : NULL;
    if (rc == SLM_OK && !items) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int n = p->n > 0 ? p->n : 1;
    for (int i = 0; rc == SLM_OK && i < n; i++) {
        if (n > 1) {
            json_object_set_new(req, "seed", json_integer(i + 1)); /* distinct samples, keys */
        }
        struct slm_contract_reply rep;
        struct slm_err e = {0};
        rc = slm_contract_chat(c, req, &rep, &e);
        if (rc != SLM_OK) {
            slm_contract_reply_free(&rep);
            if (slm__contract_fatal(rc, &rep)) {
                *err = e;
                break;
            }
            rc = SLM_OK; /* the call failed after its retries: dropped */
            continue;
        }
        if (p->pairs > 0) {
            if (add_pairs(p, row, rep.text, items) != SLM_OK) {
                rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
            }
        } else if (slm_contract_check_answer(&p->check, rep.text, rep.finish, NULL, &e) == SLM_OK) {
            json_t *item = distill_item(p, prompt, rep.text);
            if (!item || json_array_append_new(items, item) != 0) {
                rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
            }
        }
        slm_contract_reply_free(&rep);
    }
    free(prompt);
    json_decref(req);
    json_decref(with_k);
    if (rc != SLM_OK) {
        json_decref(items);
        return rc;
    }
    *out = items;
    return SLM_OK;
}
