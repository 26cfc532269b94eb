/*
 * tune/data.c - reading datasets: JSONL ({"prompt","completion"},
 * {"messages":[...]}, {"text"}) and rows (JSONL objects or CSV with a header)
 * that a prompt template turns into prompt and completion. A null completion
 * (a row `slm label` could not label) is an error, or with keep_unlabelled a
 * marked record for `slm data check`.
 *
 * Input is untrusted (tests/fuzz/fuzz_dataset.c): every error names the file,
 * the line and the field; nothing here needs a model. Records own their
 * strings; slm_data_records_free() releases everything.
 */
#include "slm/tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm/liquid.h"

#define DEFAULT_MAX_RECORDS ((size_t)10 * 1000 * 1000)
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define MAX_CSV_FIELDS 4096

const char *slm_data_format_name(enum slm_data_format f) {
    switch (f) {
    case SLM_DATA_PROMPT_COMPLETION: return "prompt-completion";
    case SLM_DATA_MESSAGES: return "messages";
    case SLM_DATA_TEXT: return "text";
    case SLM_DATA_ROWS: return "rows";
    case SLM_DATA_AUTO:
    default: return "auto";
    }
}

struct slm_data_read_params slm_data_read_params_default(void) {
    struct slm_data_read_params p;
    memset(&p, 0, sizeof(p));
    return p;
}

void slm_data_records_free(struct slm_data_records *recs) {
    if (!recs) {
        return;
    }
    for (size_t i = 0; i < recs->n; i++) {
        struct slm_data_record *r = &recs->items[i];
        free(r->prompt);
        free(r->completion);
        free(r->raw);
        json_decref(r->row);
    }
    free(recs->items);
    free(recs->csv_header);
    memset(recs, 0, sizeof(*recs));
}

static struct slm_data_record *push_record(struct slm_data_records *recs, size_t *cap) {
    if (recs->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        struct slm_data_record *p = realloc(recs->items, nc * sizeof(*p));
        if (!p) {
            return NULL;
        }
        recs->items = p;
        *cap = nc;
    }
    struct slm_data_record *r = &recs->items[recs->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static enum slm_data_format detect(const json_t *obj) {
    if (json_object_get(obj, "messages")) {
        return SLM_DATA_MESSAGES;
    }
    if (json_object_get(obj, "prompt") || json_object_get(obj, "completion")) {
        return SLM_DATA_PROMPT_COMPLETION;
    }
    if (json_object_get(obj, "text") && json_object_size(obj) == 1) {
        return SLM_DATA_TEXT;
    }
    return SLM_DATA_ROWS;
}

static int str_field(const json_t *obj, const char *key, char **out, const char *name, size_t line,
                     struct slm_err *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        return slm_err_set(err, SLM_E_INVALID, "%s:%zu: field '%s' is missing", name, line, key);
    }
    if (!json_is_string(v)) {
        return slm_err_set(err, SLM_E_INVALID, "%s:%zu: field '%s' must be a string", name, line,
                           key);
    }
    *out = slm_str_dup(slm_json_str(v));
    return *out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

static bool valid_role(const char *r) {
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0 ||
           strcmp(r, "tool") == 0;
}

static int messages_record(struct slm_data_record *r, const char *name, struct slm_err *err) {
    const json_t *msgs = json_object_get(r->row, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return slm_err_set(err, SLM_E_INVALID, "%s:%zu: field 'messages' must be a non-empty array",
                           name, r->line);
    }
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || !json_is_string(content)) {
            return slm_err_set(err, SLM_E_INVALID,
                               "%s:%zu: messages[%zu] needs string fields 'role' and 'content'",
                               name, r->line, i);
        }
        if (!valid_role(json_string_value(role))) {
            return slm_err_set(err, SLM_E_INVALID,
                               "%s:%zu: messages[%zu].role '%s' is not system, user, assistant "
                               "or tool",
                               name, r->line, i, json_string_value(role));
        }
        if (strcmp(json_string_value(role), "assistant") == 0) {
            last = i;
        }
    }
    if (last == SIZE_MAX) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s:%zu: messages has no assistant turn to learn from", name, r->line);
    }
    r->messages = msgs;
    r->completion =
        slm_str_dup(slm_json_str(json_object_get(json_array_get(msgs, last), "content")));
    json_t *before = json_array();
    for (size_t i = 0; before && i < last; i++) {
        json_array_append(before, json_array_get(msgs, i));
    }
    char *dump = before ? json_dumps(before, JSON_COMPACT) : NULL;
    json_decref(before);
    r->prompt = dump ? strdup(dump) : NULL;
    free(dump);
    return r->prompt && r->completion ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* A completion field holding JSON null: `slm label` writes that when the
 * contractor gave no label, with the reason in "<field>_error". Training on
 * it is refused (naming the reason and the way out); `slm data check` keeps
 * the record, marked, to report it. */
static int null_completion(struct slm_data_record *r, const char *field, const char *name,
                           const struct slm_data_read_params *p, struct slm_err *err) {
    char key[256];
    snprintf(key, sizeof(key), "%s_error", field);
    const char *why = json_string_value(json_object_get(r->row, key));
    if (!p->keep_unlabelled) {
        return slm_err_set(
            err, SLM_E_INVALID,
            "%s:%zu: field '%s' is null, no label from the contractor%s%s%s%.100s%s; "
            "`slm data check --fix OUT` drops such rows",
            name, r->line, field, why ? " (" : "", why ? key : "", why ? ": " : "", why ? why : "",
            why ? ")" : "");
    }
    r->unlabelled = true;
    r->label_error = why;
    r->completion = strdup("");
    return r->completion ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* The read parameters plus the templates parsed from them, alive during one
 * slm_data_parse call; functions below get `&parse_params.p` and recover the
 * templates (p is the first member). */
struct parse_params {
    struct slm_data_read_params p;
    struct slm_liquid_template *prompt, *completion;
};

static int render_to(const struct slm_liquid_template *t, const json_t *row, char **out,
                     const char *name, size_t line, struct slm_err *err) {
    struct slm_buf b;
    slm_buf_init(&b, (size_t)1 << 20);
    int rc = slm_liquid_render(t, row, &b, err);
    if (rc != SLM_OK) {
        slm_buf_free(&b);
        return slm_err_prefix(err, "%s:%zu", name, line);
    }
    *out = slm_buf_take(&b);
    return *out ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

static int rows_record(struct slm_data_record *r, const char *name,
                       const struct slm_data_read_params *p, struct slm_err *err) {
    const struct parse_params *rt = (const struct parse_params *)p;
    if (p && p->rows_only) {
        return SLM_OK;
    }
    if (!rt || !rt->prompt) {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s:%zu: rows without 'prompt'/'completion', 'messages' or 'text' "
                           "need a prompt template (--template FILE)",
                           name, r->line);
    }
    int rc = render_to(rt->prompt, r->row, &r->prompt, name, r->line, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (rt->completion) {
        return render_to(rt->completion, r->row, &r->completion, name, r->line, err);
    }
    const char *field = p->completion_field ? p->completion_field : "completion";
    const json_t *v = json_object_get(r->row, field);
    if (json_is_string(v)) {
        r->completion = slm_str_dup(slm_json_str(v));
    } else if (json_is_number(v) || json_is_boolean(v)) {
        r->completion = json_dumps(v, JSON_ENCODE_ANY);
    } else if (json_is_object(v) || json_is_array(v)) {
        /* Structured answers (slot extraction) are learned and compared as compact JSON. */
        r->completion = json_dumps(v, JSON_COMPACT);
    } else if (json_is_null(v)) {
        return null_completion(r, field, name, p, err);
    } else {
        return slm_err_set(err, SLM_E_INVALID,
                           "%s:%zu: completion field '%s' is missing or not a string (see "
                           "--completion-field)",
                           name, r->line, field);
    }
    return r->completion ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* Fills prompt/completion of a record whose `row` is set. */
static int interpret(struct slm_data_record *r, enum slm_data_format fmt, const char *name,
                     const struct slm_data_read_params *p, struct slm_err *err) {
    switch (fmt) {
    case SLM_DATA_PROMPT_COMPLETION: {
        int rc = str_field(r->row, "prompt", &r->prompt, name, r->line, err);
        if (rc == SLM_OK && json_is_null(json_object_get(r->row, "completion"))) {
            return null_completion(r, "completion", name, p, err);
        }
        return rc ? rc : str_field(r->row, "completion", &r->completion, name, r->line, err);
    }
    case SLM_DATA_TEXT:
        r->prompt = strdup("");
        if (!r->prompt) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        return str_field(r->row, "text", &r->completion, name, r->line, err);
    case SLM_DATA_MESSAGES: return messages_record(r, name, err);
    case SLM_DATA_ROWS:
    default: return rows_record(r, name, p, err);
    }
}

static int add_row(struct slm_data_records *recs, size_t *cap, json_t *row, size_t line,
                   const char *raw, size_t raw_len, const char *name,
                   const struct slm_data_read_params *p, struct slm_err *err) {
    size_t max = p->max_records ? p->max_records : DEFAULT_MAX_RECORDS;
    if (recs->n >= max) {
        json_decref(row);
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s:%zu: more than %zu records", name, line, max);
    }
    enum slm_data_format fmt = p->format != SLM_DATA_AUTO ? p->format
                               : p->prompt_template       ? SLM_DATA_ROWS
                                                          : detect(row);
    if (recs->format == SLM_DATA_AUTO) {
        recs->format = fmt;
    } else if (fmt != recs->format) {
        json_decref(row);
        return slm_err_set(
            err, SLM_E_INVALID, "%s:%zu: a %s record in a %s file (every line needs the same keys)",
            name, line, slm_data_format_name(fmt), slm_data_format_name(recs->format));
    }
    struct slm_data_record *r = push_record(recs, cap);
    if (!r) {
        json_decref(row);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    r->line = line;
    r->row = row;
    r->raw = slm_str_dup(slm_str_n(raw, raw_len));
    if (!r->raw) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    return interpret(r, fmt, name, p, err);
}

/* ---------------------------------------------------------------- JSONL */

static int parse_jsonl(const char *data, size_t len, const char *name,
                       const struct slm_data_read_params *p, struct slm_data_records *recs,
                       struct slm_err *err) {
    size_t cap = 0, line = 0, pos = 0;
    while (pos < len) {
        line++;
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        struct slm_str s = slm_str_trim(slm_str_n(data + pos, end - pos));
        pos = end + 1;
        if (s.len == 0) {
            continue;
        }
        json_error_t je;
        json_t *row = json_loadb(s.ptr, s.len, JSON_REJECT_DUPLICATES, &je);
        if (!row) {
            return slm_err_set(err, SLM_E_INVALID, "%s:%zu:%d: invalid JSON: %s", name, line,
                               je.column, je.text);
        }
        if (!json_is_object(row)) {
            json_decref(row);
            return slm_err_set(err, SLM_E_INVALID, "%s:%zu: each line must be a JSON object", name,
                               line);
        }
        int rc = add_row(recs, &cap, row, line, s.ptr, s.len, name, p, err);
        if (rc != SLM_OK) {
            return rc;
        }
    }
    return SLM_OK;
}

/* ---------------------------------------------------------------- CSV */

struct csv {
    const char *data;
    size_t len, pos, line;
    struct slm_buf field;
};

/* Reads one field into c->field; *end_of_record when it ended the record.
 * RFC 4180: quoted fields may hold commas, newlines and "" for a quote. */
static int csv_field(struct csv *c, bool *end_of_record, const char *name, struct slm_err *err) {
    slm_buf_clear(&c->field);
    *end_of_record = false;
    bool quoted = c->pos < c->len && c->data[c->pos] == '"';
    size_t start_line = c->line;
    if (quoted) {
        c->pos++;
    }
    while (c->pos < c->len) {
        char ch = c->data[c->pos];
        if (quoted) {
            if (ch == '"') {
                if (c->pos + 1 < c->len && c->data[c->pos + 1] == '"') {
                    if (slm_buf_putc(&c->field, '"') != SLM_OK) {
                        return slm_err_set(err, SLM_E_TOO_LARGE, "%s:%zu: field too large", name,
                                           c->line);
                    }
                    c->pos += 2;
                    continue;
                }
                quoted = false;
                c->pos++;
                continue;
            }
            if (ch == '\n') {
                c->line++;
            }
        } else if (ch == ',') {
            c->pos++;
            return SLM_OK;
        } else if (ch == '\n' || ch == '\r') {
            c->pos += (ch == '\r' && c->pos + 1 < c->len && c->data[c->pos + 1] == '\n') ? 2 : 1;
            c->line++;
            *end_of_record = true;
            return SLM_OK;
        }
        if (slm_buf_putc(&c->field, ch) != SLM_OK) {
            return slm_err_set(err, SLM_E_TOO_LARGE, "%s:%zu: field too large", name, c->line);
        }
        c->pos++;
    }
    if (quoted) {
        return slm_err_set(err, SLM_E_INVALID, "%s:%zu: unterminated quoted field", name,
                           start_line);
    }
    *end_of_record = true;
    return SLM_OK;
}

static int csv_header(struct csv *c, json_t *names, const char *name, struct slm_err *err) {
    bool end = false;
    while (!end) {
        int rc = csv_field(c, &end, name, err);
        if (rc != SLM_OK) {
            return rc;
        }
        if (json_array_size(names) >= MAX_CSV_FIELDS) {
            return slm_err_set(err, SLM_E_TOO_LARGE, "%s:1: more than %d columns", name,
                               MAX_CSV_FIELDS);
        }
        struct slm_str f = slm_str_trim(slm_buf_str(&c->field));
        json_t *s = json_stringn(f.ptr, f.len);
        if (!s || f.len == 0) {
            json_decref(s);
            return slm_err_set(err, SLM_E_INVALID, "%s:1: header column %zu is empty or not UTF-8",
                               name, json_array_size(names) + 1);
        }
        json_array_append_new(names, s);
    }
    return SLM_OK;
}

static int csv_record(struct csv *c, const json_t *names, json_t **out, const char *name,
                      struct slm_err *err) {
    json_t *row = json_object();
    size_t k = 0, line = c->line;
    bool end = false;
    if (!row) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    while (!end) {
        int rc = csv_field(c, &end, name, err);
        if (rc != SLM_OK) {
            json_decref(row);
            return rc;
        }
        if (k >= json_array_size(names)) {
            json_decref(row);
            return slm_err_set(err, SLM_E_INVALID, "%s:%zu: more fields than the %zu columns", name,
                               line, json_array_size(names));
        }
        const char *col = json_string_value(json_array_get(names, k));
        json_t *s = json_stringn(c->field.ptr ? c->field.ptr : "", c->field.len);
        if (!s) {
            json_decref(row);
            return slm_err_set(err, SLM_E_INVALID, "%s:%zu: field '%s' is not valid UTF-8", name,
                               line, col);
        }
        json_object_set_new(row, col, s);
        k++;
    }
    if (k != json_array_size(names)) {
        json_decref(row);
        return slm_err_set(err, SLM_E_INVALID, "%s:%zu: %zu fields, the header has %zu", name, line,
                           k, json_array_size(names));
    }
    *out = row;
    return SLM_OK;
}

static int parse_csv(const char *data, size_t len, const char *name,
                     const struct slm_data_read_params *p, struct slm_data_records *recs,
                     struct slm_err *err) {
    struct csv c = {data, len, 0, 1, {0}};
    slm_buf_init(&c.field, (size_t)16 << 20);
    json_t *names = json_array();
    size_t cap = 0;
    int rc = names ? csv_header(&c, names, name, err) : slm_err_set(err, SLM_E_NOMEM, "no memory");
    recs->csv = true;
    if (rc == SLM_OK) {
        recs->csv_header = slm_str_dup(slm_str_trim(slm_str_n(data, c.pos)));
        rc = recs->csv_header ? SLM_OK : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    while (rc == SLM_OK && c.pos < c.len) {
        size_t start = c.pos, line = c.line;
        if (data[c.pos] == '\n' || data[c.pos] == '\r') { /* blank line */
            c.pos++;
            c.line += data[start] == '\n';
            continue;
        }
        json_t *row = NULL;
        rc = csv_record(&c, names, &row, name, err);
        if (rc == SLM_OK) {
            struct slm_str raw = slm_str_trim(slm_str_n(data + start, c.pos - start));
            rc = add_row(recs, &cap, row, line, raw.ptr, raw.len, name, p, err);
        }
    }
    json_decref(names);
    slm_buf_free(&c.field);
    return rc;
}

int slm_data_parse(const char *data, size_t len, const char *name,
                   const struct slm_data_read_params *params, struct slm_data_records *out,
                   struct slm_err *err) {
    struct parse_params pp = {params ? *params : slm_data_read_params_default(), NULL, NULL};
    memset(out, 0, sizeof(*out));
    int rc = SLM_OK;
    if (pp.p.prompt_template) {
        rc = slm_liquid_parse_file(pp.p.prompt_template, NULL, &pp.prompt, err);
    }
    if (rc == SLM_OK && pp.p.completion_template) {
        rc = slm_liquid_parse_file(pp.p.completion_template, NULL, &pp.completion, err);
    }
    bool csv = slm_str_ends_with(slm_str_c(name), SLM_STR(".csv"));
    if (rc == SLM_OK) {
        rc = csv ? parse_csv(data, len, name, &pp.p, out, err)
                 : parse_jsonl(data, len, name, &pp.p, out, err);
    }
    slm_liquid_free(pp.prompt);
    slm_liquid_free(pp.completion);
    if (rc == SLM_OK && out->n == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: no records", name);
    }
    if (rc != SLM_OK) {
        slm_data_records_free(out);
    }
    return rc;
}

int slm_data_read(const char *path, const struct slm_data_read_params *params,
                  struct slm_data_records *out, struct slm_err *err) {
    size_t max = params && params->max_bytes ? params->max_bytes : DEFAULT_MAX_BYTES;
    struct slm_buf b = {0};
    int rc = slm_file_read(path, max, &b, err);
    if (rc == SLM_OK) {
        rc = slm_data_parse(slm_buf_cstr(&b), b.len, path, params, out, err);
    }
    slm_buf_free(&b);
    return rc;
}

int slm_data_split_hash(struct slm_data_records *recs, const char *field, uint32_t mod,
                        struct slm_data_records *held, struct slm_err *err) {
    memset(held, 0, sizeof(*held));
    if (mod < 2) {
        return slm_err_set(err, SLM_E_INVALID, "split: the modulus must be at least 2");
    }
    held->items = calloc(recs->n ? recs->n : 1, sizeof(*held->items));
    if (!held->items) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    held->format = recs->format;
    held->csv = recs->csv;
    if (recs->csv_header && !(held->csv_header = strdup(recs->csv_header))) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < recs->n; i++) {
        if (!json_is_string(json_object_get(recs->items[i].row, field))) {
            return slm_err_set(err, SLM_E_INVALID, "line %zu: no string field '%s' to split on",
                               recs->items[i].line, field);
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < recs->n; i++) {
        struct slm_data_record *r = &recs->items[i];
        const json_t *v = json_object_get(r->row, field);
        struct slm_sha256 h;
        uint8_t d[32];
        slm_sha256_init(&h);
        slm_sha256_update(&h, json_string_value(v), json_string_length(v));
        slm_sha256_final(&h, d);
        if (d[0] % mod == 0) {
            held->items[held->n++] = *r;
        } else {
            recs->items[kept++] = *r;
        }
    }
    recs->n = kept;
    return SLM_OK;
}
