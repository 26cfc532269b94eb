/*
 * tune/check.c - `slm data check`: what is wrong with a dataset before a run
 * learns it. Exact and near duplicates, the same input with different
 * outputs, outputs outside a label set, outputs that should be JSON and do
 * not parse, rows the contractor could not label or agreed on weakly
 * (`slm label`), overlap with the validation set (inputs, and the document
 * chunks and files of `slm distill --docs` rows), token lengths against the
 * context. Every finding names record lines; a keep-mask says what --fix
 * drops.
 *
 * Grouping is by sorting keys (n log n), so ten million records are fine.
 */
#include "slm/tune.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune/train_internal.h"

const char *slm_data_issue_name(enum slm_data_issue_kind k) {
    switch (k) {
    case SLM_ISSUE_DUPLICATE: return "exact duplicate";
    case SLM_ISSUE_NEAR_DUPLICATE: return "near duplicate";
    case SLM_ISSUE_CONTRADICTION: return "same input, different output";
    case SLM_ISSUE_NOT_A_LABEL: return "output outside the label set";
    case SLM_ISSUE_BAD_JSON: return "output is not valid JSON";
    case SLM_ISSUE_IN_VALID: return "also in the validation set";
    case SLM_ISSUE_EMPTY: return "empty output";
    case SLM_ISSUE_TOO_LONG: return "longer than the context";
    case SLM_ISSUE_NO_LABEL: return "no label from the contractor";
    case SLM_ISSUE_LOW_AGREEMENT: return "low agreement between votes";
    case SLM_ISSUE_CHUNK_LEAK: return "same document chunk as the validation set";
    case SLM_ISSUE_SOURCE_IN_VALID: return "source file also in the validation set";
    default: return "issue";
    }
}

bool slm_data_issue_is_error(enum slm_data_issue_kind k) {
    return k == SLM_ISSUE_CONTRADICTION || k == SLM_ISSUE_NOT_A_LABEL || k == SLM_ISSUE_BAD_JSON ||
           k == SLM_ISSUE_IN_VALID || k == SLM_ISSUE_EMPTY || k == SLM_ISSUE_NO_LABEL ||
           k == SLM_ISSUE_CHUNK_LEAK;
}

/* Lowercase, letters and digits only, single spaces: "Hello,  World!" and
 * "hello world" are near duplicates. */
static char *normalize(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out) {
        return NULL;
    }
    bool space = false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p >= 0x80) {
            if (space && o != out) {
                *o++ = ' ';
            }
            *o++ = (char)tolower(*p);
            space = false;
        } else {
            space = true;
        }
    }
    *o = '\0';
    return out;
}

struct key {
    const char *a, *b; /* compared in order */
    size_t idx;
};

static int key_cmp(const void *x, const void *y) {
    const struct key *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    if (c == 0 && p->b && q->b) {
        c = strcmp(p->b, q->b);
    }
    return c ? c : (p->idx < q->idx ? -1 : p->idx > q->idx);
}

static int add_issue(struct slm_data_check_report *r, enum slm_data_issue_kind k, size_t idx,
                     size_t other) {
    if (r->n_issues == r->cap_issues) {
        size_t nc = r->cap_issues ? r->cap_issues * 2 : 64;
        struct slm_data_issue *p = realloc(r->issues, nc * sizeof(*p));
        if (!p) {
            return SLM_E_NOMEM;
        }
        r->issues = p;
        r->cap_issues = nc;
    }
    r->issues[r->n_issues++] = (struct slm_data_issue){k, idx, other, 0, 0};
    r->count[k]++;
    if (slm_data_issue_is_error(k)) {
        r->n_errors++;
    } else {
        r->n_warnings++;
    }
    return SLM_OK;
}

struct norm {
    char **prompt, **completion, **whole;
    size_t n;
};

static void norm_free(struct norm *nm) {
    for (size_t i = 0; i < nm->n; i++) {
        free(nm->prompt[i]);
        free(nm->completion[i]);
        free(nm->whole[i]);
    }
    free(nm->prompt);
    free(nm->completion);
    free(nm->whole);
}

static int norm_init(struct norm *nm, const struct slm_data_records *recs) {
    nm->n = 0;
    nm->prompt = calloc(recs->n + 1, sizeof(char *));
    nm->completion = calloc(recs->n + 1, sizeof(char *));
    nm->whole = calloc(recs->n + 1, sizeof(char *));
    if (!nm->prompt || !nm->completion || !nm->whole) {
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < recs->n; i++) {
        nm->prompt[i] = normalize(recs->items[i].prompt);
        nm->completion[i] = normalize(recs->items[i].completion);
        /* For text records the whole text is the input. */
        nm->whole[i] = normalize(recs->format == SLM_DATA_TEXT ? recs->items[i].completion
                                                               : recs->items[i].prompt);
        nm->n++;
        if (!nm->prompt[i] || !nm->completion[i] || !nm->whole[i]) {
            return SLM_E_NOMEM;
        }
    }
    return SLM_OK;
}

/* Fills `k` with the input and output of every labelled record, as read
 * (`nm` NULL) or normalized; returns how many. A row without a label is
 * reported once, as such, not as a duplicate or a contradiction of its ""
 * completion. */
static size_t fill_keys(struct key *k, const struct slm_data_records *recs, const struct norm *nm) {
    size_t n = 0;
    for (size_t i = 0; i < recs->n; i++) {
        const struct slm_data_record *rec = &recs->items[i];
        if (!rec->unlabelled) {
            k[n++] = nm ? (struct key){nm->whole[i], nm->completion[i], i}
                        : (struct key){rec->prompt, rec->completion, i};
        }
    }
    return n;
}

/* Exact and near duplicates, and contradictions, by sorting. */
static int check_groups(const struct slm_data_records *recs, const struct norm *nm,
                        struct slm_data_check_report *r) {
    struct key *k = malloc((recs->n + 1) * sizeof(*k));
    if (!k) {
        return SLM_E_NOMEM;
    }
    int rc = SLM_OK;
    /* 1. exact: raw prompt + raw completion */
    size_t n = fill_keys(k, recs, NULL);
    qsort(k, n, sizeof(*k), key_cmp);
    for (size_t i = 1; i < n && rc == SLM_OK; i++) {
        if (strcmp(k[i].a, k[i - 1].a) == 0 && strcmp(k[i].b, k[i - 1].b) == 0) {
            size_t first = k[i - 1].idx;
            while (i < n && strcmp(k[i].a, recs->items[first].prompt) == 0 &&
                   strcmp(k[i].b, recs->items[first].completion) == 0 && rc == SLM_OK) {
                rc = add_issue(r, SLM_ISSUE_DUPLICATE, k[i].idx, first);
                r->drop[k[i].idx] = 1;
                i++;
            }
        }
    }
    /* 2. near: normalized prompt + completion, not already exact duplicates */
    n = fill_keys(k, recs, nm);
    qsort(k, n, sizeof(*k), key_cmp);
    for (size_t i = 1; i < n && rc == SLM_OK; i++) {
        size_t a = k[i - 1].idx, b = k[i].idx;
        if (strcmp(k[i].a, k[i - 1].a) == 0 && strcmp(k[i].b, k[i - 1].b) == 0 && !r->drop[b] &&
            !r->drop[a]) {
            rc = add_issue(r, SLM_ISSUE_NEAR_DUPLICATE, b, a);
        }
    }
    /* 3. contradictions: same normalized input, different normalized
     * outputs. Sorted by input then output, so a group's outputs come in
     * runs. Every record of the group is reported; --fix keeps the records
     * of an output that has a majority of the group (3 say A, 1 says B: A is
     * the likely answer) and drops the whole group when none has. */
    if (recs->format != SLM_DATA_TEXT) {
        n = fill_keys(k, recs, nm);
        qsort(k, n, sizeof(*k), key_cmp);
        for (size_t s = 0; s < n && rc == SLM_OK;) {
            size_t e = s + 1, best = s, best_len = 0;
            while (e < n && strcmp(k[e].a, k[s].a) == 0) {
                e++;
            }
            for (size_t run = s; run < e;) { /* the longest run of one output */
                size_t q = run + 1;
                while (q < e && strcmp(k[q].b, k[run].b) == 0) {
                    q++;
                }
                if (q - run > best_len) {
                    best = run;
                    best_len = q - run;
                }
                run = q;
            }
            bool differ = best_len < e - s;
            bool majority = best_len * 2 > e - s;
            for (size_t j = s; differ && j < e && rc == SLM_OK; j++) {
                rc = add_issue(r, SLM_ISSUE_CONTRADICTION, k[j].idx, k[s].idx);
                if (!majority || j < best || j >= best + best_len) {
                    r->drop[k[j].idx] = 1;
                }
            }
            s = e;
        }
    }
    free(k);
    return rc;
}

static bool looks_like_json(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
        s++;
    }
    return *s == '{' || *s == '[';
}

/* A row of `slm label --votes K` whose "agreement" (the share of answers
 * agreeing with the label kept) is below the threshold. Votes are fractions
 * and thresholds are written as decimals, so the comparison is at two
 * decimals: 2 of 3 (0.666...) passes 0.67. */
static bool low_agreement(const struct slm_data_record *rec, double min) {
    const json_t *a = json_object_get(rec->row, "agreement");
    if (min < 0 || !json_is_number(a)) {
        return false;
    }
    double v = floor(json_number_value(a) * 100.0 + 0.5) / 100.0;
    return v + 1e-9 < min;
}

static int check_outputs(const struct slm_data_records *recs, const struct slm_data_check_params *p,
                         struct slm_data_check_report *r) {
    size_t json_like = 0, labelled = 0;
    for (size_t i = 0; i < recs->n; i++) {
        if (!recs->items[i].unlabelled) {
            json_like += looks_like_json(recs->items[i].completion);
            labelled++;
        }
    }
    bool want_json = p->json == 1 || (p->json == 0 && labelled && json_like * 10 >= labelled * 8);
    r->checked_json = want_json;
    double min_agreement = p->min_agreement == 0 ? 0.67 : p->min_agreement;
    int rc = SLM_OK;
    for (size_t i = 0; i < recs->n && rc == SLM_OK; i++) {
        const char *c = recs->items[i].completion;
        if (recs->items[i].unlabelled) {
            rc = add_issue(r, SLM_ISSUE_NO_LABEL, i, i);
            r->drop[i] = 1;
            continue;
        }
        if (low_agreement(&recs->items[i], min_agreement)) {
            rc = add_issue(r, SLM_ISSUE_LOW_AGREEMENT, i, i);
            if (rc != SLM_OK) {
                break;
            }
        }
        if (recs->format != SLM_DATA_TEXT && slm_str_trim(slm_str_c(c)).len == 0) {
            rc = add_issue(r, SLM_ISSUE_EMPTY, i, i);
            r->drop[i] = 1;
            continue;
        }
        if (want_json) {
            json_error_t je;
            json_t *v = json_loads(c, JSON_DECODE_ANY, &je);
            if (!v) {
                rc = add_issue(r, SLM_ISSUE_BAD_JSON, i, i);
                r->drop[i] = 1;
            }
            json_decref(v);
        }
        if (p->n_labels) {
            struct slm_str t = slm_str_trim(slm_str_c(c));
            bool ok = false;
            for (size_t k = 0; k < p->n_labels && !ok; k++) {
                ok = slm_str_eq_c(t, p->labels[k]);
            }
            if (!ok) {
                rc = add_issue(r, SLM_ISSUE_NOT_A_LABEL, i, i);
                r->drop[i] = 1;
            }
        }
    }
    return rc;
}

static int check_valid_overlap(const struct norm *nm, const struct slm_data_records *valid,
                               struct slm_data_check_report *r) {
    struct norm vn = {0};
    int rc = norm_init(&vn, valid);
    struct key *k = malloc((vn.n + 1) * sizeof(*k));
    if (rc != SLM_OK || !k) {
        norm_free(&vn);
        free(k);
        return SLM_E_NOMEM;
    }
    for (size_t i = 0; i < vn.n; i++) {
        k[i] = (struct key){vn.whole[i], NULL, i};
    }
    qsort(k, vn.n, sizeof(*k), key_cmp);
    for (size_t i = 0; i < nm->n && rc == SLM_OK; i++) {
        struct key q = {nm->whole[i], NULL, 0};
        size_t lo = 0, hi = vn.n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(k[mid].a, q.a) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < vn.n && strcmp(k[lo].a, q.a) == 0) {
            rc = add_issue(r, SLM_ISSUE_IN_VALID, i, k[lo].idx);
            r->drop[i] = 1;
        }
    }
    norm_free(&vn);
    free(k);
    return rc;
}

/* Where a row of `slm distill --docs` was cut from: its "source" file and,
 * when it has one, its "chunk" number. Rows without a string "source" have
 * no place (false). */
struct place {
    const char *source; /* borrowed from the record's row */
    json_int_t chunk;
    bool has_chunk;
    size_t idx;
};

static int place_cmp(const void *x, const void *y) {
    const struct place *p = x, *q = y;
    int c = strcmp(p->source, q->source);
    if (c == 0 && p->has_chunk != q->has_chunk) {
        c = p->has_chunk ? 1 : -1;
    }
    if (c == 0 && p->chunk != q->chunk) {
        c = p->chunk < q->chunk ? -1 : 1;
    }
    return c ? c : (p->idx < q->idx ? -1 : p->idx > q->idx);
}

/* The places of the records that have one, sorted; `*n` of them. */
static struct place *places(const struct slm_data_records *recs, size_t *n) {
    struct place *v = malloc((recs->n + 1) * sizeof(*v));
    *n = 0;
    for (size_t i = 0; v && i < recs->n; i++) {
        const json_t *row = recs->items[i].row;
        const char *source = json_string_value(json_object_get(row, "source"));
        const json_t *chunk = json_object_get(row, "chunk");
        if (source) {
            v[(*n)++] =
                (struct place){source, json_integer_value(chunk), json_is_integer(chunk), i};
        }
    }
    if (v) {
        qsort(v, *n, sizeof(*v), place_cmp);
    }
    return v;
}

/* The first of `v[0..n)` not before `q` (idx ignored: q.idx = 0). */
static size_t place_lower(const struct place *v, size_t n, struct place q) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (place_cmp(&v[mid], &q) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Rows cut from the same document chunk as a validation row leak its answer
 * into training even when the questions differ (an error, dropped by --fix);
 * a source file in both sets at all is a warning, one per file, for users
 * who split by file. */
static int check_chunk_leaks(const struct slm_data_records *recs,
                             const struct slm_data_records *valid,
                             struct slm_data_check_report *r) {
    size_t nt = 0, nv = 0;
    struct place *t = places(recs, &nt), *v = places(valid, &nv);
    int rc = t && v ? SLM_OK : SLM_E_NOMEM;
    for (size_t i = 0; i < nt && rc == SLM_OK;) {
        size_t e = i, first = t[i].idx;
        while (e < nt && strcmp(t[e].source, t[i].source) == 0) {
            first = t[e].idx < first ? t[e].idx : first;
            e++;
        }
        for (size_t j = i; j < e && rc == SLM_OK; j++) {
            struct place q = {t[j].source, t[j].chunk, true, 0};
            size_t at = t[j].has_chunk ? place_lower(v, nv, q) : nv;
            if (at < nv && v[at].has_chunk && v[at].chunk == q.chunk &&
                strcmp(v[at].source, q.source) == 0) {
                rc = add_issue(r, SLM_ISSUE_CHUNK_LEAK, t[j].idx, v[at].idx);
                r->drop[t[j].idx] = 1;
            }
        }
        size_t at = place_lower(v, nv, (struct place){t[i].source, 0, false, 0}), ve = at;
        size_t vfirst = at < nv ? v[at].idx : 0;
        while (ve < nv && strcmp(v[ve].source, t[i].source) == 0) {
            vfirst = v[ve].idx < vfirst ? v[ve].idx : vfirst;
            ve++;
        }
        if (rc == SLM_OK && ve > at) {
            rc = add_issue(r, SLM_ISSUE_SOURCE_IN_VALID, first, vfirst);
            if (rc == SLM_OK) {
                r->issues[r->n_issues - 1].n_here = e - i;
                r->issues[r->n_issues - 1].n_there = ve - at;
            }
        }
        i = e;
    }
    free(t);
    free(v);
    return rc;
}

static int check_lengths(const struct slm_data_records *recs, const struct slm_data_check_params *p,
                         struct slm_data_check_report *r, struct slm_err *err) {
    struct slm_dataset *ds = NULL;
    struct slm_dataset_params dp = slm_dataset_params_default();
    dp.eos = p->eos;
    dp.chat_template = p->chat_template;
    int rc = slm_dataset_init(recs, p->vocab, &dp, &ds, err);
    if (rc != SLM_OK) {
        return rc;
    }
    r->have_lengths = true;
    for (size_t i = 0; i < ds->n && rc == SLM_OK; i++) {
        size_t len = ds->len[i];
        int b = 0;
        while (b < SLM_DATA_HIST_BUCKETS - 1 && ((size_t)1 << (b + 4)) < len) {
            b++;
        }
        r->hist[b]++;
        r->max_len = len > r->max_len ? len : r->max_len;
        r->sum_len += len;
        if (p->n_ctx && len > p->n_ctx) {
            rc = add_issue(r, SLM_ISSUE_TOO_LONG, i, i);
        }
    }
    slm_dataset_free(ds);
    return rc;
}

static int strcmp_p(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int slm_data_check(const struct slm_data_records *recs, const struct slm_data_check_params *params,
                   struct slm_data_check_report *r, struct slm_err *err) {
    struct slm_data_check_params p = params ? *params : (struct slm_data_check_params){0};
    memset(r, 0, sizeof(*r));
    r->n = recs->n;
    r->drop = calloc(recs->n + 1, 1);
    struct norm nm = {0};
    int rc = r->drop ? norm_init(&nm, recs) : SLM_E_NOMEM;
    if (rc == SLM_OK) {
        rc = check_groups(recs, &nm, r);
    }
    if (rc == SLM_OK) {
        rc = check_outputs(recs, &p, r);
    }
    if (rc == SLM_OK && p.valid) {
        rc = check_valid_overlap(&nm, p.valid, r);
    }
    if (rc == SLM_OK && p.valid) {
        rc = check_chunk_leaks(recs, p.valid, r);
    }
    /* Distinct inputs and outputs (of the labelled records), for the summary. */
    if (rc == SLM_OK) {
        for (int pass = 0; pass < 2; pass++) {
            char **v = pass ? nm.completion : nm.whole;
            char **sorted = malloc((recs->n + 1) * sizeof(char *));
            if (!sorted) {
                rc = SLM_E_NOMEM;
                break;
            }
            size_t m = 0;
            for (size_t i = 0; i < recs->n; i++) {
                if (!pass || !recs->items[i].unlabelled) {
                    sorted[m++] = v[i];
                }
            }
            qsort(sorted, m, sizeof(char *), strcmp_p);
            size_t d = m ? 1 : 0;
            for (size_t i = 1; i < m; i++) {
                d += strcmp(sorted[i], sorted[i - 1]) != 0;
            }
            *(pass ? &r->distinct_outputs : &r->distinct_inputs) = d;
            free(sorted);
        }
    }
    norm_free(&nm);
    if (rc == SLM_E_NOMEM) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    if (rc == SLM_OK && p.vocab) {
        rc = check_lengths(recs, &p, r, err);
    }
    for (size_t i = 0; i < recs->n; i++) {
        r->n_dropped += r->drop[i];
    }
    return rc;
}

void slm_data_check_report_free(struct slm_data_check_report *r) {
    free(r->issues);
    free(r->drop);
    memset(r, 0, sizeof(*r));
}

int slm_data_write_kept(const char *path, const struct slm_data_records *recs, const uint8_t *drop,
                        struct slm_err *err) {
    struct slm_buf b = {0};
    int rc = SLM_OK;
    if (recs->csv && recs->csv_header) {
        rc = slm_buf_printf(&b, "%s\n", recs->csv_header);
    }
    for (size_t i = 0; i < recs->n && rc == SLM_OK; i++) {
        if (!drop || !drop[i]) {
            rc = slm_buf_printf(&b, "%s\n", recs->items[i].raw);
        }
    }
    if (rc == SLM_OK) {
        rc = slm_file_write_atomic(path, b.ptr ? b.ptr : "", b.len, err);
    } else {
        rc = slm_err_set(err, rc, "%s: output too large", path);
    }
    slm_buf_free(&b);
    return rc;
}
