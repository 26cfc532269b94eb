/*
 * store/modelfile.c - the Modelfile parser (docs/modelfile.md): FROM,
 * ADAPTER, PARAMETER, SYSTEM, TEMPLATE, MESSAGE, LICENSE, read as Ollama
 * reads them: case-insensitive directives, '#' comments, "quoted" and
 * """multi-line""" strings. Parameters are checked against the one option
 * table (slm/options.h), so `slm create` fails before it imports anything
 * that a request would later refuse. Every error names the file, the line and the directive.
 *
 * Input is untrusted text (fuzzed by tests/fuzz/fuzz_modelfile.c); the
 * parser is a line-oriented scanner with a size cap and allocates only the
 * values it keeps.
 */
#include "slm/store.h"

#include <stdlib.h>
#include <string.h>

#include "slm/options.h"

#define MODELFILE_MAX ((size_t)4 << 20)
#define MAX_ADAPTERS 16

void slm_modelfile_free(struct slm_modelfile *mf) {
    if (!mf) {
        return;
    }
    free(mf->from);
    for (size_t i = 0; i < mf->n_adapters; i++) {
        free(mf->adapters[i]);
    }
    free(mf->system);
    free(mf->template_text);
    free(mf->license);
    json_decref(mf->params);
    json_decref(mf->messages);
    free(mf);
}

/* ---------------------------------------------------------------- parameters */

/* Names, types and ranges come from the one option table (slm/options.h), so
 * a Modelfile accepts exactly what a request to the model will. */
const char *const *slm_modelfile_param_names(void) {
    static const char *names[32];
    if (!names[0]) {
        size_t n = 0;
        for (const struct slm_option_desc *d = slm_option_table(); d->name && n + 1 < 32; d++) {
            names[n++] = d->name;
        }
        names[n] = NULL;
    }
    return names;
}

int slm_modelfile_check_param(const char *name, const char *value, json_t *params,
                              struct slm_err *err) {
    const struct slm_option_desc *d = slm_option_find(name);
    if (!d || strcmp(d->name, name) != 0) {
        return slm_option_unknown(name, err);
    }
    json_t *j = NULL;
    int rc = slm_option_parse_file_value(d, value, &j, err);
    if (rc != SLM_OK) {
        return rc;
    }
    if (d->type != SLM_OPT_STRINGS) {
        return json_object_set_new(params, d->name, j) == 0
                   ? SLM_OK
                   : slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    json_t *arr = json_object_get(params, "stop");
    if (!arr) {
        arr = json_array();
        if (!arr || json_object_set_new(params, "stop", arr) != 0) {
            json_decref(j);
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
    }
    if (json_array_size(arr) >= SLM_MAX_STOP) {
        json_decref(j);
        return slm_err_set(err, SLM_E_LIMIT, "at most %d 'stop' strings", SLM_MAX_STOP);
    }
    return json_array_append_new(arr, j) == 0 ? SLM_OK
                                              : slm_err_set(err, SLM_E_NOMEM, "out of memory");
}

/* ---------------------------------------------------------------- scanner */

struct scan {
    const char *p, *end;
    int line; /* line of p (1-based) */
    const char *file;
    struct slm_err *err;
};

static bool at_end(const struct scan *s) {
    return s->p >= s->end;
}

static void skip_blanks(struct scan *s) {
    while (!at_end(s) && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r')) {
        s->p++;
    }
}

static int fail(struct scan *s, int line, const char *dir, const char *fmt, ...) SLM_PRINTF(4, 5);

static int fail(struct scan *s, int line, const char *dir, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dir) {
        return slm_err_set(s->err, SLM_E_INVALID, "%s:%d: %s: %s", s->file, line, dir, msg);
    }
    return slm_err_set(s->err, SLM_E_INVALID, "%s:%d: %s", s->file, line, msg);
}

/* Reads one word (up to blank or end of line). */
static struct slm_str word(struct scan *s) {
    const char *b = s->p;
    while (!at_end(s) && *s->p != ' ' && *s->p != '\t' && *s->p != '\n' && *s->p != '\r') {
        s->p++;
    }
    return slm_str_n(b, (size_t)(s->p - b));
}

/* Reads a value: """...""" (raw, may span lines), "..." (\" and \\ escapes,
 * may span lines) or the rest of the line (trimmed). Leaves s->p at the end
 * of the value's last line. */
static int value(struct scan *s, const char *dir, struct slm_buf *out) {
    skip_blanks(s);
    int start_line = s->line;
    slm_buf_clear(out);
    if (s->end - s->p >= 3 && memcmp(s->p, "\"\"\"", 3) == 0) {
        s->p += 3;
        for (;;) {
            if (at_end(s)) {
                return fail(s, start_line, dir, "unterminated \"\"\" string");
            }
            if (s->end - s->p >= 3 && memcmp(s->p, "\"\"\"", 3) == 0) {
                s->p += 3;
                break;
            }
            if (*s->p == '\n') {
                s->line++;
            }
            if (slm_buf_putc(out, *s->p++) != SLM_OK) {
                return fail(s, start_line, dir, "value too long");
            }
        }
    } else if (!at_end(s) && *s->p == '"') {
        s->p++;
        for (;;) {
            if (at_end(s)) {
                return fail(s, start_line, dir, "unterminated \" string");
            }
            char c = *s->p++;
            if (c == '"') {
                break;
            }
            if (c == '\\' && !at_end(s) && (*s->p == '"' || *s->p == '\\')) {
                c = *s->p++;
            }
            if (c == '\n') {
                s->line++;
            }
            if (slm_buf_putc(out, c) != SLM_OK) {
                return fail(s, start_line, dir, "value too long");
            }
        }
    } else {
        const char *b = s->p;
        while (!at_end(s) && *s->p != '\n') {
            s->p++;
        }
        struct slm_str v = slm_str_trim(slm_str_n(b, (size_t)(s->p - b)));
        return slm_buf_append_str(out, v) == SLM_OK ? SLM_OK
                                                    : fail(s, start_line, dir, "value too long");
    }
    /* After a closing quote only blanks or a comment may follow. */
    skip_blanks(s);
    if (!at_end(s) && *s->p != '\n' && *s->p != '#') {
        return fail(s, s->line, dir, "unexpected text after the closing quote");
    }
    while (!at_end(s) && *s->p != '\n') {
        s->p++;
    }
    return SLM_OK;
}

static char *dup_buf(const struct slm_buf *b) {
    return slm_str_dup(slm_buf_str(b));
}

static int check_text(struct scan *s, int line, const char *dir, const struct slm_buf *v,
                      bool allow_empty) {
    if (!allow_empty && v->len == 0) {
        return fail(s, line, dir, "needs a value");
    }
    if (!slm_utf8_valid(slm_buf_cstr(v), v->len) || memchr(slm_buf_cstr(v), '\0', v->len)) {
        return fail(s, line, dir, "the value is not valid UTF-8 text");
    }
    return SLM_OK;
}

static int do_parameter(struct scan *s, struct slm_modelfile *mf, int line, struct slm_buf *v) {
    skip_blanks(s);
    struct slm_str name = word(s);
    if (name.len == 0) {
        return fail(s, line, "PARAMETER", "needs a name and a value");
    }
    char pname[64];
    snprintf(pname, sizeof(pname), "%.*s", (int)SLM_MIN(name.len, 63), name.ptr);
    for (char *c = pname; *c; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a'); /* Ollama's names are lower case */
        }
    }
    int rc = value(s, "PARAMETER", v);
    if (rc == SLM_OK) {
        rc = check_text(s, line, "PARAMETER", v, false);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    struct slm_err perr = {0};
    rc = slm_modelfile_check_param(pname, slm_buf_cstr(v), mf->params, &perr);
    if (rc != SLM_OK) {
        return slm_err_set(s->err, rc, "%s:%d: PARAMETER: %s", s->file, line, perr.msg);
    }
    return SLM_OK;
}

static int do_message(struct scan *s, struct slm_modelfile *mf, int line, struct slm_buf *v) {
    skip_blanks(s);
    struct slm_str role = word(s);
    static const char *const roles[] = {"system", "user", "assistant"};
    const char *r = NULL;
    for (size_t i = 0; i < SLM_ARRAY_LEN(roles); i++) {
        if (slm_str_eq_nocase(role, slm_str_c(roles[i]))) {
            r = roles[i];
        }
    }
    if (!r) {
        return fail(s, line, "MESSAGE", "role must be system, user or assistant, got '%.*s'",
                    (int)SLM_MIN(role.len, 40), role.ptr);
    }
    int rc = value(s, "MESSAGE", v);
    if (rc == SLM_OK) {
        rc = check_text(s, line, "MESSAGE", v, true);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    if (json_array_size(mf->messages) >= 1000) {
        return fail(s, line, "MESSAGE", "at most 1000 messages");
    }
    json_t *m = json_pack("{ss so}", "role", r, "content", json_stringn(slm_buf_cstr(v), v->len));
    if (!m || json_array_append_new(mf->messages, m) != 0) {
        return slm_err_set(s->err, SLM_E_NOMEM, "out of memory");
    }
    return SLM_OK;
}

/* SYSTEM, TEMPLATE, LICENSE, FROM, ADAPTER: one text value each. */
static int do_text(struct scan *s, struct slm_modelfile *mf, const char *dir, int line,
                   struct slm_buf *v) {
    int rc = value(s, dir, v);
    bool is_system = strcmp(dir, "SYSTEM") == 0;
    if (rc == SLM_OK) {
        rc = check_text(s, line, dir, v, is_system);
    }
    if (rc != SLM_OK) {
        return rc;
    }
    char *text = dup_buf(v);
    if (!text) {
        return slm_err_set(s->err, SLM_E_NOMEM, "out of memory");
    }
    if (strcmp(dir, "FROM") == 0) {
        if (mf->from) {
            free(text);
            return fail(s, line, dir, "given twice (first on line %d)", mf->from_line);
        }
        mf->from = text;
        mf->from_line = line;
    } else if (strcmp(dir, "ADAPTER") == 0) {
        if (mf->n_adapters >= MAX_ADAPTERS) {
            free(text);
            return fail(s, line, dir, "at most %d adapters", MAX_ADAPTERS);
        }
        mf->adapter_lines[mf->n_adapters] = line;
        mf->adapters[mf->n_adapters++] = text;
    } else if (is_system) {
        free(mf->system); /* as in Ollama, the last one counts */
        mf->system = text;
    } else if (strcmp(dir, "TEMPLATE") == 0) {
        free(mf->template_text);
        mf->template_text = text;
        mf->template_line = line;
    } else {
        /* Several LICENSE directives: all of them, in order. */
        if (mf->license) {
            struct slm_buf joined = {0};
            int jrc = slm_buf_printf(&joined, "%s\n\n%s", mf->license, text);
            free(text);
            text = jrc == SLM_OK ? slm_buf_take(&joined) : NULL;
            slm_buf_free(&joined);
            if (!text) {
                return slm_err_set(s->err, SLM_E_NOMEM, "out of memory");
            }
        }
        free(mf->license);
        mf->license = text;
    }
    return SLM_OK;
}

static int directive(struct scan *s, struct slm_modelfile *mf, struct slm_str name, int line,
                     struct slm_buf *v) {
    static const char *const texts[] = {"FROM", "ADAPTER", "SYSTEM", "TEMPLATE", "LICENSE"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(texts); i++) {
        if (slm_str_eq_nocase(name, slm_str_c(texts[i]))) {
            return do_text(s, mf, texts[i], line, v);
        }
    }
    if (slm_str_eq_nocase(name, SLM_STR("PARAMETER"))) {
        return do_parameter(s, mf, line, v);
    }
    if (slm_str_eq_nocase(name, SLM_STR("MESSAGE"))) {
        return do_message(s, mf, line, v);
    }
    char shown[48];
    size_t n = SLM_MIN(name.len, sizeof(shown) - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name.ptr[i];
        shown[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    shown[n] = '\0';
    return fail(s, line, NULL,
                "unknown directive '%s' (use FROM, ADAPTER, PARAMETER, SYSTEM, TEMPLATE, "
                "MESSAGE or LICENSE)",
                shown);
}

int slm_modelfile_parse(const char *text, size_t len, const char *filename,
                        struct slm_modelfile **out, struct slm_err *err) {
    *out = NULL;
    const char *file = filename ? filename : "Modelfile";
    if (len > MODELFILE_MAX) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: larger than %zu bytes", file, MODELFILE_MAX);
    }
    struct slm_modelfile *mf = calloc(1, sizeof(*mf));
    if (!mf || !(mf->params = json_object()) || !(mf->messages = json_array())) {
        slm_modelfile_free(mf);
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    struct scan s = {text, text + len, 1, file, err};
    struct slm_buf v;
    slm_buf_init(&v, MODELFILE_MAX);
    int rc = SLM_OK;
    /* A UTF-8 byte order mark is not part of the first directive. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        s.p += 3;
    }
    while (rc == SLM_OK && !at_end(&s)) {
        skip_blanks(&s);
        if (at_end(&s)) {
            break;
        }
        if (*s.p == '\n') {
            s.p++;
            s.line++;
            continue;
        }
        if (*s.p == '#') {
            while (!at_end(&s) && *s.p != '\n') {
                s.p++;
            }
            continue;
        }
        int line = s.line;
        struct slm_str name = word(&s);
        rc = directive(&s, mf, name, line, &v);
    }
    slm_buf_free(&v);
    if (rc == SLM_OK && !mf->from) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: no FROM line (every Modelfile needs one)", file);
    }
    if (rc != SLM_OK) {
        slm_modelfile_free(mf);
        return rc;
    }
    *out = mf;
    return SLM_OK;
}

/* ---------------------------------------------------------------- templates */

static bool go_keyword(struct slm_str s) {
    static const char *const kw[] = {"if",   "range",    "end",    "else",
                                     "with", "template", "define", "block"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(kw); i++) {
        size_t n = strlen(kw[i]);
        if (s.len >= n && memcmp(s.ptr, kw[i], n) == 0 &&
            (s.len == n || s.ptr[n] == ' ' || s.ptr[n] == '}' || s.ptr[n] == '-' ||
             s.ptr[n] == '\t' || s.ptr[n] == '\n' || s.ptr[n] == '(')) {
            return true;
        }
    }
    return false;
}

bool slm_template_looks_like_go(const char *text, size_t len) {
    struct slm_str t = slm_str_n(text, len);
    size_t at = 0;
    for (;;) {
        size_t open = slm_str_find(t, SLM_STR("{{"), at);
        if (open == SIZE_MAX) {
            return false;
        }
        struct slm_str in = slm_str_sub(t, open + 2, t.len - open - 2);
        size_t close = slm_str_find(in, SLM_STR("}}"), 0);
        struct slm_str body = slm_str_sub(in, 0, close == SIZE_MAX ? in.len : close);
        if (body.len > 0 && body.ptr[0] == '-') {
            body = slm_str_sub(body, 1, body.len - 1);
        }
        body = slm_str_trim(body);
        /* Go: {{ .Prompt }}, {{ $x := ... }}, {{ if .System }}, {{ end }}.
         * Liquid output tags hold a variable or a literal, never these. */
        if (body.len > 0 && (body.ptr[0] == '.' || body.ptr[0] == '$' || go_keyword(body))) {
            return true;
        }
        at = open + 2;
    }
}
