/*
 * eval/contract_docs.c - documents for `slm distill --docs` (slm/contract.h): a folder of text
 * and Markdown files read with limits, and each file cut into chunks at headings and
 * paragraphs, every chunk carrying its file, index and heading path so that a training row can
 * name where it came from (and `slm data check` can find leakage between chunks).
 */
#include "slm/contract.h"

#include <dirent.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char SLM_CONTRACT_DOCS_TEMPLATE[] =
    "Below is an excerpt of {{ file }}{% if heading != \"\" %} (section: {{ heading }}){% endif "
    "%}.\n"
    "Write {{ k }} question and answer pairs that someone who has not read it might ask, each "
    "answered only from the excerpt.\n"
    "Reply with JSON only: {\"pairs\": [{\"question\": \"...\", \"answer\": \"...\"}]}\n"
    "\n"
    "Excerpt:\n"
    "{{ text }}";

/* ---------------------------------------------------------------- chunking */

struct chunker {
    const char *file;
    size_t max;
    json_t *rows;
    size_t index;           /* next chunk's number in this file */
    struct slm_buf heading; /* "A > B" */
    size_t levels[6];       /* heading.len after each level's title, for truncating */
    int depth;              /* heading levels in `heading` */
    struct slm_buf cur;     /* the chunk being packed */
};

static int emit(struct chunker *c, struct slm_str text) {
    text = slm_str_trim(text);
    if (text.len == 0) {
        return SLM_OK;
    }
    json_t *row = json_pack("{s:s, s:I, s:s, s:s%}", "file", c->file, "chunk", (json_int_t)c->index,
                            "heading", slm_buf_cstr(&c->heading), "text", text.ptr, text.len);
    if (!row || json_array_append_new(c->rows, row) != 0) {
        return SLM_E_NOMEM;
    }
    c->index++;
    return SLM_OK;
}

static int flush(struct chunker *c) {
    int rc = emit(c, slm_buf_str(&c->cur));
    slm_buf_clear(&c->cur);
    return rc;
}

/* Where to cut a piece longer than the limit: the last newline or space before it, else the
 * limit itself moved back off UTF-8 continuation bytes. */
static size_t cut_at(struct slm_str s, size_t max) {
    for (size_t i = max; i > max / 2; i--) {
        if (s.ptr[i] == '\n' || s.ptr[i] == ' ') {
            return i;
        }
    }
    size_t i = max;
    while (i > 1 && ((unsigned char)s.ptr[i] & 0xC0) == 0x80) {
        i--;
    }
    return i;
}

/* Adds one paragraph to the chunk being packed. */
static int add_paragraph(struct chunker *c, struct slm_str para) {
    para = slm_str_trim(para);
    if (para.len == 0) {
        return SLM_OK;
    }
    int rc = SLM_OK;
    if (c->cur.len > 0 && c->cur.len + 2 + para.len > c->max) {
        rc = flush(c);
    }
    while (rc == SLM_OK && para.len > c->max) {
        size_t at = cut_at(para, c->max);
        rc = emit(c, slm_str_sub(para, 0, at));
        para = slm_str_trim(slm_str_sub(para, at, para.len - at));
    }
    if (rc == SLM_OK && para.len > 0) {
        if (c->cur.len > 0 && slm_buf_puts(&c->cur, "\n\n") != SLM_OK) {
            return SLM_E_NOMEM;
        }
        rc = slm_buf_append_str(&c->cur, para) == SLM_OK ? SLM_OK : SLM_E_NOMEM;
    }
    return rc;
}

/* A Markdown ATX heading: 1-6 '#' then a space or tab; sets its level and title. */
static bool heading(struct slm_str line, int *level, struct slm_str *title) {
    size_t n = 0;
    while (n < line.len && n < 7 && line.ptr[n] == '#') {
        n++;
    }
    if (n == 0 || n > 6 || n >= line.len || (line.ptr[n] != ' ' && line.ptr[n] != '\t')) {
        return false;
    }
    *level = (int)n;
    *title = slm_str_trim(slm_str_sub(line, n, line.len - n));
    while (title->len > 0 && title->ptr[title->len - 1] == '#') { /* closing #s */
        title->len--;
    }
    *title = slm_str_trim(*title);
    return true;
}

static int set_heading(struct chunker *c, int level, struct slm_str title) {
    int keep = SLM_MIN(level - 1, c->depth);
    c->heading.len = keep > 0 ? c->levels[keep - 1] : 0;
    if (c->heading.ptr) {
        c->heading.ptr[c->heading.len] = '\0';
    }
    int rc = SLM_OK;
    if (c->heading.len > 0) {
        rc |= slm_buf_puts(&c->heading, " > ");
    }
    rc |= slm_buf_append_str(&c->heading, slm_str_sub(title, 0, SLM_MIN(title.len, 200)));
    c->depth = keep + 1;
    c->levels[keep] = c->heading.len;
    return rc == SLM_OK ? SLM_OK : SLM_E_NOMEM;
}

int slm_contract_chunk_text(const char *file, const char *text, size_t len, size_t max_chunk,
                            json_t *rows, struct slm_err *err) {
    if (!slm_utf8_valid(text, len) || memchr(text, '\0', len)) {
        return slm_err_set(err, SLM_E_INVALID, "%s: not UTF-8 text", file);
    }
    struct chunker c = {
        .file = file, .max = max_chunk ? max_chunk : SLM_CONTRACT_CHUNK_BYTES, .rows = rows};
    c.max = SLM_MAX(c.max, (size_t)16);
    slm_buf_init(&c.heading, 4096);
    struct slm_str all = slm_str_n(text, len);
    size_t pos = 0, para_start = 0;
    bool fence = false;
    int rc = SLM_OK;
    while (rc == SLM_OK && pos < all.len) {
        size_t nl = slm_str_find_char(all, '\n', pos);
        size_t end = nl == SIZE_MAX ? all.len : nl;
        struct slm_str line = slm_str_sub(all, pos, end - pos);
        struct slm_str t = slm_str_trim(line);
        int level;
        struct slm_str title;
        if (slm_str_starts_with(t, SLM_STR("```"))) {
            fence = !fence;
        }
        if (!fence && heading(t, &level, &title)) {
            rc = add_paragraph(&c, slm_str_sub(all, para_start, pos - para_start));
            rc = rc ? rc : flush(&c);
            rc = rc ? rc : set_heading(&c, level, title);
            para_start = end + 1;
        } else if (!fence && t.len == 0) {
            rc = add_paragraph(&c, slm_str_sub(all, para_start, pos - para_start));
            para_start = end + 1;
        }
        pos = end + 1;
    }
    if (rc == SLM_OK && para_start < all.len) {
        rc = add_paragraph(&c, slm_str_sub(all, para_start, all.len - para_start));
    }
    if (rc == SLM_OK) {
        rc = flush(&c);
    }
    slm_buf_free(&c.cur);
    slm_buf_free(&c.heading);
    return rc == SLM_OK ? SLM_OK : slm_err_set(err, rc, "out of memory chunking %s", file);
}

/* ---------------------------------------------------------------- the folder */

static const char *const DEFAULT_GLOBS[] = {"*.md", "*.markdown", "*.txt", "*.rst", "*.org"};

struct walk {
    const struct slm_contract_docs_params *p;
    char **paths; /* relative to dir */
    size_t n, cap, max;
};

static bool wanted(const struct slm_contract_docs_params *p, const char *name) {
    const char *const *g = p->globs ? p->globs : DEFAULT_GLOBS;
    size_t n = p->globs ? p->n_globs : SLM_ARRAY_LEN(DEFAULT_GLOBS);
    for (size_t i = 0; i < n; i++) {
        if (fnmatch(g[i], name, 0) == 0) {
            return true;
        }
    }
    return false;
}

static int push_path(struct walk *w, const char *rel, struct slm_err *err) {
    if (w->n >= w->max) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: more than %zu matching files", w->p->dir,
                           w->max);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        char **np = realloc(w->paths, cap * sizeof(*np));
        if (!np) {
            return slm_err_set(err, SLM_E_NOMEM, "out of memory");
        }
        w->paths = np;
        w->cap = cap;
    }
    if (!(w->paths[w->n] = slm_str_dup(slm_str_c(rel)))) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    w->n++;
    return SLM_OK;
}

static int walk_dir(struct walk *w, const char *rel, int depth, struct slm_err *err) {
    char path[PATH_MAX];
    slm_path_join(path, sizeof(path), w->p->dir, rel);
    DIR *d = opendir(path);
    if (!d) {
        return depth == 0
                   ? slm_err_set(err, SLM_E_NOT_FOUND, "%s: no such folder (--docs)", w->p->dir)
                   : SLM_OK;
    }
    int rc = SLM_OK;
    const struct dirent *e;
    while (rc == SLM_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue; /* ., .., and hidden files and folders (.git, .obsidian) */
        }
        char sub[PATH_MAX], full[PATH_MAX];
        if (rel[0]) {
            slm_path_join(sub, sizeof(sub), rel, e->d_name);
        } else {
            snprintf(sub, sizeof(sub), "%s", e->d_name);
        }
        slm_path_join(full, sizeof(full), w->p->dir, sub);
        struct stat st;
        if (lstat(full, &st) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode) && depth < 32) {
            rc = walk_dir(w, sub, depth + 1, err);
        } else if (S_ISREG(st.st_mode) && wanted(w->p, e->d_name)) {
            rc = push_path(w, sub, err);
        }
    }
    closedir(d);
    return rc;
}

static int by_path(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int chunk_file(const struct slm_contract_docs_params *p, const char *rel, json_t *rows,
                      size_t *skipped, struct slm_err *err) {
    char full[PATH_MAX];
    slm_path_join(full, sizeof(full), p->dir, rel);
    size_t max = p->max_file_bytes ? p->max_file_bytes : ((size_t)1 << 20);
    struct slm_buf text = {0};
    int rc = slm_file_read(full, max, &text, err);
    if (rc == SLM_OK && (!slm_utf8_valid(slm_buf_cstr(&text), text.len) ||
                         memchr(slm_buf_cstr(&text), '\0', text.len))) {
        rc = SLM_E_TOO_LARGE; /* not text: skipped like a file over the limit */
    }
    if (rc == SLM_E_TOO_LARGE) {
        (*skipped)++;
        slm_buf_free(&text);
        return SLM_OK;
    }
    if (rc == SLM_OK) {
        rc = slm_contract_chunk_text(rel, slm_buf_cstr(&text), text.len, p->max_chunk_bytes, rows,
                                     err);
    }
    slm_buf_free(&text);
    return rc;
}

int slm_contract_docs_read(const struct slm_contract_docs_params *p, json_t **rows, size_t *skipped,
                           struct slm_err *err) {
    *rows = NULL;
    *skipped = 0;
    struct walk w = {.p = p, .max = p->max_files ? p->max_files : 10000};
    int rc = walk_dir(&w, "", 0, err);
    json_t *out = rc == SLM_OK ? json_array() : NULL;
    if (rc == SLM_OK && !out) {
        rc = slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && w.n == 0) {
        rc = slm_err_set(err, SLM_E_INVALID, "%s: no matching files (--docs-glob)", p->dir);
    }
    if (rc == SLM_OK) {
        qsort(w.paths, w.n, sizeof(*w.paths), by_path);
    }
    for (size_t i = 0; rc == SLM_OK && i < w.n; i++) {
        rc = chunk_file(p, w.paths[i], out, skipped, err);
    }
    for (size_t i = 0; i < w.n; i++) {
        free(w.paths[i]);
    }
    free(w.paths);
    if (rc != SLM_OK) {
        json_decref(out);
        return rc;
    }
    *rows = out;
    return SLM_OK;
}
