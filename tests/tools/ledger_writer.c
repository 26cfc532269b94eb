/*
 * tests/tools/ledger_writer.c - drives the ledger from outside for the end-to-end
 * tests (tests/e2e/test_cost.sh).
 *
 *   ledger_writer write DB [--rows N] [--threads T]
 *       appends rows through slm_ledger_add_id() (N = 0: until killed), printing each
 *       committed row id on its own line and flushing, so a test that kill -9s it
 *       knows which rows the ledger promised to keep.
 *   ledger_writer fill DB --start YYYY-MM-DD --days D --per-day K [--seed S]
 *       a deterministic ledger for `slm cost`; prints the expected totals as JSON,
 *       summed here row by row, independently of the ledger's SQL.
 *   ledger_writer check DB IDS_FILE
 *       with SQLite directly: PRAGMA integrity_check, and every id in IDS_FILE (one a
 *       line) present. Prints "integrity=... ids=N missing=M rows=R"; exit 0 when ok.
 */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm/json.h"
#include "slm/ledger.h"

static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;

static int usage(void) {
    fprintf(stderr, "usage: ledger_writer write DB [--rows N] [--threads T]\n"
                    "       ledger_writer fill DB --start YYYY-MM-DD --days D --per-day K "
                    "[--seed S]\n"
                    "       ledger_writer check DB IDS_FILE\n");
    return 2;
}

static int64_t num_arg(const char *s) {
    int64_t v = 0;
    if (slm_parse_i64(slm_str_c(s), &v) != SLM_OK || v < 0) {
        fprintf(stderr, "ledger_writer: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

/* ---------------------------------------------------------------- write */

struct writer {
    struct slm_ledger *l;
    int64_t rows; /* 0 = forever */
    int index;
    int failed;
};

static void *write_loop(void *arg) {
    struct writer *w = arg;
    char rid[64];
    for (int64_t i = 0; w->rows == 0 || i < w->rows; i++) {
        snprintf(rid, sizeof(rid), "w%d-%lld", w->index, (long long)i);
        struct slm_ledger_row r = slm_ledger_row_default();
        r.request_id = rid;
        r.route = i % 2 ? "intent" : "summarize";
        r.where = i % 5 == 0 ? "escalated" : "local";
        r.target = i % 5 == 0 ? "cloud/gpt" : "stories";
        r.tokens_in = 10 + i % 90;
        r.tokens_out = 1 + i % 9;
        r.latency_ms = (double)(1 + i % 50);
        r.cost = i % 5 == 0 ? 0.001 : 0;
        r.cloud_cost = 0.001;
        int64_t id = 0;
        struct slm_err err = {0};
        if (slm_ledger_add_id(w->l, &r, &id, &err) != SLM_OK) {
            fprintf(stderr, "ledger_writer: %s\n", err.msg);
            w->failed = 1;
            return NULL;
        }
        /* Printed only after the add returned: every id on stdout is committed. */
        pthread_mutex_lock(&g_out);
        printf("%lld\n", (long long)id);
        fflush(stdout);
        pthread_mutex_unlock(&g_out);
    }
    return NULL;
}

static int cmd_write(int argc, char **argv) {
    int64_t rows = 0, threads = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rows") == 0) {
            rows = num_arg(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = num_arg(argv[i + 1]);
        } else {
            return usage();
        }
    }
    if (threads < 1 || threads > 16) {
        return usage();
    }
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    if (slm_ledger_open(argv[2], &l, &err) != SLM_OK) {
        fprintf(stderr, "ledger_writer: %s\n", err.msg);
        return 1;
    }
    struct writer w[16];
    pthread_t th[16];
    for (int t = 0; t < threads; t++) {
        w[t] = (struct writer){.l = l, .rows = rows, .index = t};
        pthread_create(&th[t], NULL, write_loop, &w[t]);
    }
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        failed |= w[t].failed;
    }
    slm_ledger_close(l);
    return failed;
}

/* ---------------------------------------------------------------- fill */

static uint64_t g_rng = 88172645463325252ULL;

static double rnd(void) { /* xorshift64: uniform in [0, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

struct totals {
    int64_t requests, local, escalated, fallback, errors;
    double spend, cloud;
};

static json_t *totals_json(const struct totals *t) {
    return json_pack("{sI sI sI sI sI sf sf sf}", "requests", (json_int_t)t->requests, "local",
                     (json_int_t)t->local, "escalated", (json_int_t)t->escalated, "local_fallback",
                     (json_int_t)t->fallback, "errors", (json_int_t)t->errors, "spend", t->spend,
                     "cloud_cost", t->cloud, "avoided", t->cloud - t->spend);
}

static void count(struct totals *t, const struct slm_ledger_row *r) {
    t->requests++;
    t->local += strcmp(r->where, "local") == 0;
    t->escalated += strcmp(r->where, "escalated") == 0;
    t->fallback += strcmp(r->where, "local_fallback") == 0;
    t->errors += strcmp(r->where, "error") == 0;
    t->spend += r->cost + r->shadow_cost;
    t->cloud += r->cloud_cost;
}

/* One pseudo-random row of day `d`, request `i` of `k`. */
static struct slm_ledger_row make_row(int64_t start, int64_t d, int64_t i, int64_t k) {
    struct slm_ledger_row r = slm_ledger_row_default();
    r.time_ms = start + d * 86400000 + (i + 1) * (86400000 / (k + 1));
    r.route = rnd() < 0.6 ? "intent" : "summarize";
    double u = rnd();
    r.where = u < 0.7 ? "local" : u < 0.9 ? "escalated" : u < 0.97 ? "local_fallback" : "error";
    bool cloud = strcmp(r.where, "escalated") == 0;
    r.target = cloud ? "cloud/gpt" : "stories";
    r.tokens_in = 20 + (int64_t)(rnd() * 200);
    r.tokens_out = 1 + (int64_t)(rnd() * 20);
    /* Priced like an upstream at 150 / 600 per 1M tokens. */
    r.cloud_cost = (double)r.tokens_in * 150e-6 + (double)r.tokens_out * 600e-6;
    r.cost = cloud ? r.cloud_cost : 0;
    r.latency_ms = cloud ? 300 + rnd() * 1700 : 5 + rnd() * 495;
    r.reason = cloud ? "label_prob<0.62" : NULL;
    if (strcmp(r.where, "local") == 0 && rnd() < 0.2) {
        r.shadow = rnd() < 0.8 ? 1 : 0;
        r.shadow_cost = r.cloud_cost;
    }
    return r;
}

static int cmd_fill(int argc, char **argv) {
    const char *start_s = NULL;
    int64_t days = 0, per_day = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--start") == 0) {
            start_s = argv[i + 1];
        } else if (strcmp(argv[i], "--days") == 0) {
            days = num_arg(argv[i + 1]);
        } else if (strcmp(argv[i], "--per-day") == 0) {
            per_day = num_arg(argv[i + 1]);
        } else if (strcmp(argv[i], "--seed") == 0) {
            g_rng ^= (uint64_t)num_arg(argv[i + 1]) * 0x9E3779B97F4A7C15ULL;
        } else {
            return usage();
        }
    }
    int64_t start = 0;
    if (!start_s || slm_cost_parse_day(start_s, &start) != SLM_OK || days < 1 || per_day < 1) {
        return usage();
    }
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    if (slm_ledger_open(argv[2], &l, &err) != SLM_OK) {
        fprintf(stderr, "ledger_writer: %s\n", err.msg);
        return 1;
    }
    struct totals total = {0};
    json_t *by_day = json_object();
    int rc = SLM_OK;
    for (int64_t d = 0; rc == SLM_OK && d < days; d++) {
        struct totals day = {0};
        for (int64_t i = 0; rc == SLM_OK && i < per_day; i++) {
            struct slm_ledger_row r = make_row(start, d, i, per_day);
            rc = slm_ledger_add(l, &r, &err);
            count(&day, &r);
            count(&total, &r);
        }
        char key[16];
        slm_cost_format_day(start + d * 86400000, key, sizeof(key));
        json_object_set_new(by_day, key, totals_json(&day));
    }
    slm_ledger_close(l);
    if (rc != SLM_OK) {
        fprintf(stderr, "ledger_writer: %s\n", err.msg);
        json_decref(by_day);
        return 1;
    }
    json_t *out = json_pack("{so so}", "total", totals_json(&total), "days", by_day);
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    printf("%s\n", text);
    free(text);
    json_decref(out);
    return 0;
}

/* ---------------------------------------------------------------- check */

static int cmd_check(const char *db_path, const char *ids_path) {
    sqlite3 *db = NULL;
    sqlite3_stmt *ic = NULL, *has = NULL, *cnt = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "ledger_writer: cannot open %s\n", db_path);
        return 1;
    }
    char integrity[64] = "?";
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &ic, NULL) == SQLITE_OK &&
        sqlite3_step(ic) == SQLITE_ROW) {
        snprintf(integrity, sizeof(integrity), "%s", (const char *)sqlite3_column_text(ic, 0));
    }
    sqlite3_finalize(ic);
    int64_t rows = -1, ids = 0, missing = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM requests", -1, &cnt, NULL) == SQLITE_OK &&
        sqlite3_step(cnt) == SQLITE_ROW) {
        rows = sqlite3_column_int64(cnt, 0);
    }
    sqlite3_finalize(cnt);
    FILE *f = fopen(ids_path, "r");
    if (!f || sqlite3_prepare_v2(db, "SELECT 1 FROM requests WHERE id = ?", -1, &has, NULL)) {
        fprintf(stderr, "ledger_writer: cannot read %s or query %s\n", ids_path, db_path);
        return 1;
    }
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        int64_t id = 0;
        struct slm_str s = slm_str_trim(slm_str_c(line));
        if (s.len == 0 || slm_parse_i64(s, &id) != SLM_OK) {
            continue;
        }
        ids++;
        sqlite3_bind_int64(has, 1, id);
        if (sqlite3_step(has) != SQLITE_ROW) {
            missing++;
            fprintf(stderr, "ledger_writer: id %lld was reported committed but is missing\n",
                    (long long)id);
        }
        sqlite3_reset(has);
    }
    fclose(f);
    sqlite3_finalize(has);
    sqlite3_close(db);
    printf("integrity=%s ids=%lld missing=%lld rows=%lld\n", integrity, (long long)ids,
           (long long)missing, (long long)rows);
    return strcmp(integrity, "ok") == 0 && missing == 0 && ids <= rows ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        return usage();
    }
    if (strcmp(argv[1], "write") == 0) {
        return cmd_write(argc, argv);
    }
    if (strcmp(argv[1], "fill") == 0) {
        return cmd_fill(argc, argv);
    }
    if (strcmp(argv[1], "check") == 0 && argc == 4) {
        return cmd_check(argv[2], argv[3]);
    }
    return usage();
}
