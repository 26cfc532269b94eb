/*
 * test_ledger.c - the router's ledger and the `slm cost` reports: schema creation
 * and migration, refusal of newer / foreign / corrupt files, adds from several
 * threads, the grouped report on a known ledger with hand-computed numbers,
 * percentiles, the break-even arithmetic, the spend series and its SVG.
 * Needs no model; every test uses its own temporary folder.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/ledger.h"

static char g_dir[256];
static char g_db[PATH_MAX];

static void make_dir(void) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/slm-test-ledger-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    snprintf(g_db, sizeof(g_db), "%s/ledger.db", g_dir);
}

static void remove_dir(void) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ledger, .init = make_dir, .fini = remove_dir);
TestSuite(cost, .init = make_dir, .fini = remove_dir);

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static size_t read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Runs SQL on the file with SQLite directly (not through the ledger). */
static void raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static struct slm_ledger *open_ok(const char *path) {
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    int rc = slm_ledger_open(path, &l, &err);
    cr_assert_eq(rc, SLM_OK, "open %s: %s", path, err.msg);
    return l;
}

static struct slm_ledger_row row(const char *route, const char *where) {
    struct slm_ledger_row r = slm_ledger_row_default();
    r.route = route;
    r.where = where;
    r.target = "stories";
    return r;
}

static void add_ok(struct slm_ledger *l, const struct slm_ledger_row *r) {
    struct slm_err err = {0};
    int rc = slm_ledger_add(l, r, &err);
    cr_assert_eq(rc, SLM_OK, "add: %s", err.msg);
}

/* ---------------------------------------------------------------- schema */

Test(ledger, creates_the_schema_in_wal_mode) {
    struct slm_ledger *l = open_ok(g_db);
    cr_assert_str_eq(slm_ledger_path(l), g_db);
    struct slm_ledger_row r = row("intent", "local");
    add_ok(l, &r);
    /* Checked through SQLite directly while the ledger is open. */
    cr_assert_eq(raw_int(g_db, "SELECT version FROM schema_version"), SLM_LEDGER_SCHEMA_VERSION);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                               "name IN ('requests_time', 'requests_route_time', "
                               "'requests_target_time')"),
                 3);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM requests"), 1);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = "
                               "'wal'"),
                 1);
    int64_t t = raw_int(g_db, "SELECT time_ms FROM requests");
    cr_assert(llabs(t - slm_time_unix_ms()) < 60000, "time 0 means now, got %lld", (long long)t);
    slm_ledger_close(l);
}

Test(ledger, default_path_is_under_slm_home) {
    char home[512];
    snprintf(home, sizeof(home), "%s/home/nested", g_dir);
    setenv("SLM_HOME", home, 1);
    struct slm_ledger *l = open_ok(NULL);
    char want[PATH_MAX];
    snprintf(want, sizeof(want), "%s/ledger.db", home);
    cr_assert_str_eq(slm_ledger_path(l), want);
    slm_ledger_close(l);
    cr_assert(slm_file_exists(want));
}

Test(ledger, creates_a_missing_folder) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%.200s/a/b/meter.db", g_dir);
    struct slm_ledger *l = open_ok(path);
    slm_ledger_close(l);
    cr_assert(slm_file_exists(path));
}

Test(ledger, must_exist_does_not_create) {
    struct slm_ledger_params p = slm_ledger_params_default();
    p.path = g_db;
    p.must_exist = true;
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_ledger_open_ex(&p, &l, &err), SLM_E_NOT_FOUND);
    cr_assert_null(l);
    cr_assert(strstr(err.msg, g_db) != NULL, "%s", err.msg);
    cr_assert_not(slm_file_exists(g_db));
}

Test(ledger, reopens_an_existing_ledger) {
    struct slm_ledger *l = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    int64_t id1 = 0, id2 = 0;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(slm_ledger_add_id(l, &r, &id1, NULL), SLM_OK);
    }
    slm_ledger_close(l);
    l = open_ok(g_db);
    int64_t n = 0;
    cr_assert_eq(slm_ledger_count(l, &n, NULL), SLM_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(slm_ledger_add_id(l, &r, &id2, NULL), SLM_OK);
    cr_assert_eq(id2, id1 + 1, "ids keep increasing across opens");
    slm_ledger_close(l);
    cr_assert_eq(raw_int(g_db, "SELECT version FROM schema_version"), SLM_LEDGER_SCHEMA_VERSION);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM schema_version"), 1);
}

Test(ledger, migrates_an_empty_sqlite_database) {
    /* A SQLite file with no tables yet (schema version 0) is a new ledger. */
    raw_exec(g_db, "PRAGMA user_version = 0; VACUUM");
    cr_assert_gt(slm_file_size(g_db), 0);
    struct slm_ledger *l = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    add_ok(l, &r);
    slm_ledger_close(l);
    cr_assert_eq(raw_int(g_db, "SELECT version FROM schema_version"), SLM_LEDGER_SCHEMA_VERSION);
}

Test(ledger, refuses_a_newer_schema) {
    struct slm_ledger *l = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    add_ok(l, &r);
    slm_ledger_close(l);
    raw_exec(g_db, "UPDATE schema_version SET version = 99");
    struct slm_err err = {0};
    l = NULL;
    cr_assert_eq(slm_ledger_open(g_db, &l, &err), SLM_E_UNSUPPORTED);
    cr_assert_null(l);
    cr_assert_eq(err.code, SLM_E_UNSUPPORTED);
    cr_assert(strstr(err.msg, "schema version 99 is newer") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, g_db) != NULL, "%s", err.msg);
    /* Refused without touching it: the version and the row are still there. */
    cr_assert_eq(raw_int(g_db, "SELECT version FROM schema_version"), 99);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM requests"), 1);
}

Test(ledger, refuses_a_file_that_is_not_sqlite) {
    static const char text[] = "route,where\nintent,local\nthis is a CSV, not a ledger\n";
    write_file(g_db, text, sizeof(text) - 1);
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_ledger_open(g_db, &l, &err), SLM_E_CORRUPT);
    cr_assert_null(l);
    cr_assert(strstr(err.msg, "not a SQLite database") != NULL, "%s", err.msg);
    char back[256];
    size_t n = read_file(g_db, back, sizeof(back));
    cr_assert_eq(n, sizeof(text) - 1);
    cr_assert_eq(memcmp(back, text, n), 0, "the file was modified");
    /* Shorter than a SQLite header. */
    write_file(g_db, "SQLite", 6);
    cr_assert_eq(slm_ledger_open(g_db, &l, &err), SLM_E_CORRUPT);
}

Test(ledger, refuses_a_damaged_sqlite_file) {
    struct slm_ledger *l = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    add_ok(l, &r);
    slm_ledger_close(l);
    /* Keep the 16-byte magic, trash the rest of the header and the first pages. */
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (char)(0xA5 ^ (i * 7));
    }
    FILE *f = fopen(g_db, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 16, SEEK_SET), 0);
    cr_assert_eq(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
    fclose(f);
    struct slm_err err = {0};
    l = NULL;
    int rc = slm_ledger_open(g_db, &l, &err);
    cr_assert_eq(rc, SLM_E_CORRUPT, "got %s: %s", slm_strerror(rc), err.msg);
    cr_assert_null(l);
    cr_assert(strstr(err.msg, "not a usable slm ledger") != NULL, "%s", err.msg);
}

Test(ledger, refuses_a_foreign_sqlite_database) {
    raw_exec(g_db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT);"
                   "INSERT INTO photos (path) VALUES ('cat.jpg')");
    int64_t size = slm_file_size(g_db);
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    cr_assert_eq(slm_ledger_open(g_db, &l, &err), SLM_E_CORRUPT);
    cr_assert(strstr(err.msg, "not an slm ledger") != NULL, "%s", err.msg);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM sqlite_master WHERE name = 'requests'"), 0);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM photos"), 1);
    cr_assert_eq(slm_file_size(g_db), size);
    /* Not switched to WAL either: that would rewrite its header. */
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = "
                               "'delete'"),
                 1);
}

Test(ledger, rejects_bad_rows) {
    struct slm_ledger *l = open_ok(g_db);
    struct slm_err err = {0};
    struct slm_ledger_row r = row(NULL, "local");
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "route") != NULL, "%s", err.msg);
    r = row("intent", "cloud");
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    cr_assert(strstr(err.msg, "'cloud'") != NULL, "%s", err.msg);
    r = row("intent", NULL);
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    r = row("intent", "local");
    r.cost = -0.5;
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    r.cost = NAN;
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    r.cost = 0;
    r.latency_ms = INFINITY;
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    r.latency_ms = 1;
    r.tokens_in = -1;
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    r.tokens_in = 0;
    r.shadow = 2;
    cr_assert_eq(slm_ledger_add(l, &r, &err), SLM_E_INVALID);
    int64_t n = -1;
    cr_assert_eq(slm_ledger_count(l, &n, NULL), SLM_OK);
    cr_assert_eq(n, 0, "nothing invalid was written");
    slm_ledger_close(l);
}

Test(ledger, stores_every_field_and_cuts_long_strings) {
    struct slm_ledger *l = open_ok(g_db);
    char reason[3000];
    memset(reason, 'x', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    /* A 2-byte code point straddling the 1024-byte cut is dropped whole. */
    reason[1023] = (char)0xC3;
    reason[1024] = (char)0xA9;
    struct slm_ledger_row r = {.time_ms = 1793491200123,
                               .request_id = "req-1",
                               .route = "intent",
                               .where = "escalated",
                               .target = "cloud/gpt-4o-mini",
                               .adapter = "banking",
                               .tokens_in = 123,
                               .tokens_out = 7,
                               .latency_ms = 812.5,
                               .reason = reason,
                               .cost = 0.0125,
                               .cloud_cost = 0.0125,
                               .shadow = -1,
                               .shadow_cost = 0};
    add_ok(l, &r);
    slm_ledger_close(l);
    cr_assert_eq(raw_int(g_db, "SELECT count(*) FROM requests WHERE time_ms = 1793491200123 AND "
                               "request_id = 'req-1' AND route = 'intent' AND where_ran = "
                               "'escalated' AND target = 'cloud/gpt-4o-mini' AND adapter = "
                               "'banking' AND tokens_in = 123 AND tokens_out = 7 AND latency_ms "
                               "= 812.5 AND cost = 0.0125 AND cloud_cost = 0.0125 AND shadow = "
                               "-1 AND shadow_cost = 0"),
                 1);
    cr_assert_eq(raw_int(g_db, "SELECT length(CAST(reason AS BLOB)) FROM requests"), 1023);
}

/* A shadowed request's row is written at once and its shadow verdict lands on it later; a
 * verdict that never comes leaves the row as "not shadowed". */
Test(ledger, shadow_result_updates_the_row_written_first) {
    struct slm_ledger *l = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    r.cloud_cost = 0.5;
    int64_t a = 0, b = 0;
    struct slm_err err = {0};
    cr_assert_eq(slm_ledger_add_id(l, &r, &a, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_ledger_add_id(l, &r, &b, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_ledger_set_shadow(l, a, 1, 0.25, &err), SLM_OK, "%s", err.msg);
    /* a failed shadow call: no verdict, but what it was charged counts */
    cr_assert_eq(slm_ledger_set_shadow(l, b, -1, 0.125, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(slm_ledger_set_shadow(l, b + 100, 0, 0, &err), SLM_E_NOT_FOUND);
    cr_assert_eq(slm_ledger_set_shadow(l, a, 2, 0, &err), SLM_E_INVALID);
    cr_assert_eq(slm_ledger_set_shadow(l, a, 0, NAN, &err), SLM_E_INVALID);
    struct slm_cost_query q = {.by = SLM_COST_BY_ROUTE};
    struct slm_cost_report rep;
    cr_assert_eq(slm_cost_report(l, &q, NULL, &rep, &err), SLM_OK, "%s", err.msg);
    cr_assert_eq(rep.total.requests, 2);
    cr_assert_eq(rep.total.shadowed, 1);
    cr_assert_eq(rep.total.shadow_agreed, 1);
    cr_assert_float_eq(rep.total.shadow_cost, 0.375, 1e-12);
    cr_assert_float_eq(rep.total.spend, 0.375, 1e-12);
    slm_cost_report_free(&rep);
    slm_ledger_close(l);
    cr_assert_eq(raw_int(g_db, "SELECT shadow FROM requests WHERE id = (SELECT max(id) FROM "
                               "requests)"),
                 -1);
}

/* ---------------------------------------------------------------- threads */

#define N_THREADS 4
#define N_PER_THREAD 150

struct adder {
    struct slm_ledger *l;
    int64_t ids[N_PER_THREAD];
    int failures;
};

static void *add_many(void *arg) {
    struct adder *a = arg;
    for (int i = 0; i < N_PER_THREAD; i++) {
        struct slm_ledger_row r = row("intent", i % 3 ? "local" : "escalated");
        r.latency_ms = i;
        r.cloud_cost = 0.001;
        if (slm_ledger_add_id(a->l, &r, &a->ids[i], NULL) != SLM_OK) {
            a->failures++;
        }
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

Test(ledger, adds_from_several_threads) {
    struct slm_ledger *l = open_ok(g_db);
    static struct adder adders[N_THREADS];
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        adders[t] = (struct adder){.l = l};
        cr_assert_eq(pthread_create(&th[t], NULL, add_many, &adders[t]), 0);
    }
    static int64_t all[N_THREADS * N_PER_THREAD];
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(adders[t].failures, 0);
        memcpy(all + t * N_PER_THREAD, adders[t].ids, sizeof(adders[t].ids));
        for (int i = 1; i < N_PER_THREAD; i++) {
            cr_assert_gt(adders[t].ids[i], adders[t].ids[i - 1], "ids increase per thread");
        }
    }
    /* Every id distinct and the set is exactly 1..N: no add lost or doubled. */
    qsort(all, SLM_ARRAY_LEN(all), sizeof(all[0]), cmp_i64);
    for (size_t i = 0; i < SLM_ARRAY_LEN(all); i++) {
        cr_assert_eq(all[i], (int64_t)i + 1);
    }
    int64_t n = 0;
    cr_assert_eq(slm_ledger_count(l, &n, NULL), SLM_OK);
    cr_assert_eq(n, N_THREADS * N_PER_THREAD);
    slm_ledger_close(l);
}

Test(ledger, two_connections_share_one_file) {
    struct slm_ledger *a = open_ok(g_db), *b = open_ok(g_db);
    struct slm_ledger_row r = row("intent", "local");
    for (int i = 0; i < 20; i++) {
        add_ok(i % 2 ? a : b, &r);
    }
    int64_t n = 0;
    cr_assert_eq(slm_ledger_count(a, &n, NULL), SLM_OK);
    cr_assert_eq(n, 20);
    slm_ledger_close(a);
    slm_ledger_close(b);
}

/* ---------------------------------------------------------------- reports */

/* 2026-11-01T00:00:00Z */
#define D1 1793491200000LL
#define HOUR 3600000LL
#define DAY (24 * HOUR)

/* The known ledger (docs/cost.md works the same numbers by hand):
 *   #  time         route      where           target     lat   cost   cloud  shadow
 *   1  D1+1h        intent     local           stories    100   0      0.010  -
 *   2  D1+1h+50ms   intent     escalated       cloud/gpt  200   0.020  0.020  -
 *   3  D1+2h        intent     local           stories    300   0      0.030  agreed, 0.030
 *   4  D3+30min     summarize  local_fallback  stories    400   0.001  0.040  -
 *   5  D3+45min     summarize  error           stories    1000  0      0      -
 *   6  D3+1h        summarize  local           stories    500   0      0.050  disagreed, 0.050
 * tokens: row i has 10*i in and i out. */
static void fill_known(struct slm_ledger *l) {
    static const struct {
        int64_t t;
        const char *route, *where, *target;
        double lat, cost, cloud;
        int shadow;
        double shadow_cost;
    } rows[] = {
        {D1 + HOUR, "intent", "local", "stories", 100, 0, 0.010, -1, 0},
        {D1 + HOUR + 50, "intent", "escalated", "cloud/gpt", 200, 0.020, 0.020, -1, 0},
        {D1 + 2 * HOUR, "intent", "local", "stories", 300, 0, 0.030, 1, 0.030},
        {D1 + 2 * DAY + HOUR / 2, "summarize", "local_fallback", "stories", 400, 0.001, 0.040, -1,
         0},
        {D1 + 2 * DAY + 3 * HOUR / 4, "summarize", "error", "stories", 1000, 0, 0, -1, 0},
        {D1 + 2 * DAY + HOUR, "summarize", "local", "stories", 500, 0, 0.050, 0, 0.050},
    };
    for (size_t i = 0; i < SLM_ARRAY_LEN(rows); i++) {
        struct slm_ledger_row r = slm_ledger_row_default();
        r.time_ms = rows[i].t;
        r.route = rows[i].route;
        r.where = rows[i].where;
        r.target = rows[i].target;
        r.latency_ms = rows[i].lat;
        r.cost = rows[i].cost;
        r.cloud_cost = rows[i].cloud;
        r.shadow = rows[i].shadow;
        r.shadow_cost = rows[i].shadow_cost;
        r.tokens_in = 10 * ((int64_t)i + 1);
        r.tokens_out = (int64_t)i + 1;
        add_ok(l, &r);
    }
}

#define EPS 1e-9
static void near_at(double got, double want, const char *what, int line) {
    cr_assert(fabs(got - want) < EPS * (1 + fabs(want)), "line %d: %s = %.12g, want %.12g", line,
              what, got, want);
}
#define near(a, b) near_at((double)(a), (double)(b), #a, __LINE__)

static void report_ok(struct slm_ledger *l, enum slm_cost_group by, int64_t since, int64_t until,
                      const struct slm_cost_params *p, struct slm_cost_report *r) {
    struct slm_cost_query q = {.by = by, .since_ms = since, .until_ms = until};
    struct slm_err err = {0};
    int rc = slm_cost_report(l, &q, p, r, &err);
    cr_assert_eq(rc, SLM_OK, "report: %s", err.msg);
}

static void check_stats(const struct slm_cost_stats *s, const char *key, int64_t requests,
                        int64_t local, double spend, double cloud, double p50, double p95) {
    cr_assert_str_eq(s->key, key);
    cr_assert_eq(s->requests, requests, "%s requests", key);
    cr_assert_eq(s->local, local, "%s local", key);
    near(s->share_local, (double)local / (double)requests);
    near(s->spend, spend);
    near(s->cloud_cost, cloud);
    near(s->avoided, cloud - spend);
    near(s->p50_ms, p50);
    near(s->p95_ms, p95);
}

Test(cost, report_totals_on_the_known_ledger) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_report r;
    report_ok(l, SLM_COST_BY_DAY, 0, 0, NULL, &r);
    const struct slm_cost_stats *t = &r.total;
    check_stats(t, "total", 6, 3, 0.101, 0.150, 300, 1000);
    cr_assert_eq(t->escalated, 1);
    cr_assert_eq(t->fallback, 1);
    cr_assert_eq(t->errors, 1);
    near(t->cost, 0.021);
    near(t->shadow_cost, 0.080);
    near(t->avoided, 0.049);
    cr_assert_eq(t->tokens_in, 210);
    cr_assert_eq(t->tokens_out, 21);
    cr_assert_eq(t->shadowed, 2);
    cr_assert_eq(t->shadow_agreed, 1);
    cr_assert_eq(r.first_ms, D1 + HOUR);
    cr_assert_eq(r.last_ms, D1 + 2 * DAY + HOUR);
    near(r.period_days, 2.0);
    /* Rows 1 and 2 overlap: [t-100, t] and [t-150, t+50] make 200 ms, not 300. */
    near(r.busy_hours, 2400.0 / 3600000.0);
    cr_assert_not(r.breakeven.computed, "no hardware price given");
    near(r.breakeven.avoided_per_day, 0.0245);
    slm_cost_report_free(&r);
    slm_ledger_close(l);
}

Test(cost, report_by_day_route_and_target) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_report r;
    report_ok(l, SLM_COST_BY_DAY, 0, 0, NULL, &r);
    cr_assert_eq(r.n_groups, 2);
    check_stats(&r.groups[0], "2026-11-01", 3, 2, 0.050, 0.060, 200, 300);
    check_stats(&r.groups[1], "2026-11-03", 3, 1, 0.051, 0.090, 500, 1000);
    slm_cost_report_free(&r);

    report_ok(l, SLM_COST_BY_ROUTE, 0, 0, NULL, &r);
    cr_assert_eq(r.n_groups, 2);
    check_stats(&r.groups[0], "intent", 3, 2, 0.050, 0.060, 200, 300);
    check_stats(&r.groups[1], "summarize", 3, 1, 0.051, 0.090, 500, 1000);
    cr_assert_eq(r.groups[1].fallback, 1);
    cr_assert_eq(r.groups[1].errors, 1);
    slm_cost_report_free(&r);

    report_ok(l, SLM_COST_BY_TARGET, 0, 0, NULL, &r);
    cr_assert_eq(r.n_groups, 2);
    check_stats(&r.groups[0], "cloud/gpt", 1, 0, 0.020, 0.020, 200, 200);
    check_stats(&r.groups[1], "stories", 5, 3, 0.081, 0.130, 400, 1000);
    slm_cost_report_free(&r);
    slm_ledger_close(l);
}

Test(cost, since_and_until_select_rows) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_report r;
    report_ok(l, SLM_COST_BY_DAY, D1 + 2 * DAY, 0, NULL, &r);
    cr_assert_eq(r.n_groups, 1);
    check_stats(&r.total, "total", 3, 1, 0.051, 0.090, 500, 1000);
    /* Half an hour of data counts as one day. */
    near(r.period_days, 1.0);
    slm_cost_report_free(&r);
    report_ok(l, SLM_COST_BY_DAY, 0, D1 + DAY, NULL, &r);
    check_stats(&r.total, "total", 3, 2, 0.050, 0.060, 200, 300);
    slm_cost_report_free(&r);
    report_ok(l, SLM_COST_BY_ROUTE, D1 + 10 * DAY, 0, NULL, &r);
    cr_assert_eq(r.n_groups, 0);
    cr_assert_eq(r.total.requests, 0);
    near(r.period_days, 0);
    cr_assert_not(r.breakeven.computed);
    slm_cost_report_free(&r);
    slm_ledger_close(l);
}

Test(cost, breakeven_on_the_known_ledger) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_params p = {.hardware_price = 1000, .power_watts = 100, .kwh_price = 0.5};
    struct slm_cost_report r;
    report_ok(l, SLM_COST_BY_DAY, 0, 0, &p, &r);
    const struct slm_cost_breakeven *b = &r.breakeven;
    cr_assert(b->computed);
    cr_assert_not(b->never);
    /* avoided 0.049 over 2 days; busy 2400 ms = 0.000666.. h over 2 days at 0.1 kW x 0.5 */
    near(b->avoided_per_day, 0.0245);
    near(b->energy_per_day, 1.6666666666666667e-05);
    near(b->monthly_savings, 0.7452726666666667);
    near(b->months, 1341.7907897691136);
    slm_cost_report_free(&r);
    slm_ledger_close(l);
}

Test(cost, breakeven_arithmetic) {
    struct slm_cost_params p = {.hardware_price = 1200, .power_watts = 50, .kwh_price = 0.30};
    struct slm_cost_breakeven b;
    /* 300 avoided over 30 days, 120 h busy: 10/day - 4 h/day x 0.05 kW x 0.30 = 9.94/day */
    slm_cost_breakeven_compute(&p, 300, 30, 120, &b);
    cr_assert(b.computed);
    near(b.avoided_per_day, 10);
    near(b.energy_per_day, 0.06);
    near(b.monthly_savings, 302.5736);
    near(b.months, 3.965977203563034);
    /* Energy eats the savings: never. */
    p.power_watts = 200000;
    slm_cost_breakeven_compute(&p, 300, 30, 120, &b);
    cr_assert(b.computed);
    cr_assert(b.never);
    cr_assert_lt(b.monthly_savings, 0);
    /* Nothing avoided, no energy: never either (0 savings). */
    p.power_watts = 0;
    slm_cost_breakeven_compute(&p, 0, 30, 0, &b);
    cr_assert(b.never);
    /* No hardware price: per-day numbers, no months. */
    p.hardware_price = 0;
    slm_cost_breakeven_compute(&p, 300, 30, 0, &b);
    cr_assert_not(b.computed);
    near(b.monthly_savings, 304.4);
    /* No period: nothing. */
    p.hardware_price = 1;
    slm_cost_breakeven_compute(&p, 300, 0, 0, &b);
    cr_assert_not(b.computed);
    near(b.avoided_per_day, 0);
}

Test(cost, percentiles_are_nearest_rank) {
    static const double v20[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    near(slm_cost_percentile(v20, 20, 0.50), 10);
    near(slm_cost_percentile(v20, 20, 0.95), 19);
    near(slm_cost_percentile(v20, 20, 1.0), 20);
    near(slm_cost_percentile(v20, 20, 0.0), 1);
    near(slm_cost_percentile(v20, 20, 0.01), 1);
    near(slm_cost_percentile(v20, 20, 0.051), 2);
    static const double one[] = {42};
    near(slm_cost_percentile(one, 1, 0.5), 42);
    near(slm_cost_percentile(one, 1, 0.95), 42);
    near(slm_cost_percentile(v20, 0, 0.5), 0);
    static const double v7[] = {10, 20, 30, 40, 50, 60, 70};
    near(slm_cost_percentile(v7, 7, 0.5), 40);  /* ceil(3.5) = 4th */
    near(slm_cost_percentile(v7, 7, 0.95), 70); /* ceil(6.65) = 7th */
    near(slm_cost_percentile(v7, 7, 2), 70);    /* clamped */
}

Test(cost, report_json_has_the_numbers) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_params p = {.hardware_price = 1000, .power_watts = 100, .kwh_price = 0.5};
    struct slm_cost_report r;
    report_ok(l, SLM_COST_BY_TARGET, 0, 0, &p, &r);
    json_t *j = slm_cost_report_json(&r);
    cr_assert_not_null(j);
    cr_assert_str_eq(json_string_value(json_object_get(j, "by")), "target");
    cr_assert_str_eq(json_string_value(json_object_get(j, "first_day")), "2026-11-01");
    cr_assert_str_eq(json_string_value(json_object_get(j, "last_day")), "2026-11-03");
    json_t *groups = json_object_get(j, "groups");
    cr_assert_eq(json_array_size(groups), 2);
    json_t *g = json_array_get(groups, 1);
    cr_assert_str_eq(json_string_value(json_object_get(g, "key")), "stories");
    cr_assert_eq(json_integer_value(json_object_get(g, "requests")), 5);
    near(json_real_value(json_object_get(g, "share_local")), 0.6);
    json_t *t = json_object_get(j, "total");
    near(json_real_value(json_object_get(t, "avoided")), 0.049);
    near(json_real_value(json_object_get(t, "p95_ms")), 1000);
    json_t *b = json_object_get(j, "breakeven");
    near(json_real_value(json_object_get(b, "months")), 1341.7907897691136);
    cr_assert(json_is_false(json_object_get(b, "never")));
    json_decref(j);
    slm_cost_report_free(&r);
    /* never -> months is null */
    p.power_watts = 1e7;
    report_ok(l, SLM_COST_BY_DAY, 0, 0, &p, &r);
    j = slm_cost_report_json(&r);
    cr_assert(json_is_null(json_object_get(json_object_get(j, "breakeven"), "months")));
    json_decref(j);
    slm_cost_report_free(&r);
    slm_ledger_close(l);
}

/* ---------------------------------------------------------------- series, svg */

Test(cost, series_is_cumulative_and_bucketed) {
    struct slm_ledger *l = open_ok(g_db);
    fill_known(l);
    struct slm_cost_query q = {0};
    struct slm_cost_point *pts = NULL;
    size_t n = 0;
    cr_assert_eq(slm_cost_series(l, &q, 100, &pts, &n, NULL), SLM_OK);
    /* 6 rows make at most 6 slices of 8 h: day 1's rows all fall in the first, day 3's
     * in the last. */
    cr_assert_eq(n, 2);
    near(pts[0].spend, 0.050);
    near(pts[0].cloud, 0.060);
    cr_assert_eq(pts[0].time_ms, D1 + 2 * HOUR);
    near(pts[n - 1].spend, 0.101);
    near(pts[n - 1].cloud, 0.150);
    cr_assert_eq(pts[n - 1].time_ms, D1 + 2 * DAY + HOUR);
    for (size_t i = 1; i < n; i++) {
        cr_assert_geq(pts[i].time_ms, pts[i - 1].time_ms);
        cr_assert_geq(pts[i].cloud, pts[i - 1].cloud);
    }
    free(pts);
    /* Two buckets: the first ends with day 1's rows, the last with everything. */
    cr_assert_eq(slm_cost_series(l, &q, 2, &pts, &n, NULL), SLM_OK);
    cr_assert_eq(n, 2);
    near(pts[0].spend, 0.050);
    near(pts[0].cloud, 0.060);
    near(pts[1].spend, 0.101);
    free(pts);
    /* Day 1 alone: 3 rows over 1 h make 3 slices of 20 min; rows 1 and 2 share one. */
    q.until_ms = D1 + DAY;
    cr_assert_eq(slm_cost_series(l, &q, 100, &pts, &n, NULL), SLM_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(pts[0].time_ms, D1 + HOUR + 50);
    near(pts[0].spend, 0.020);
    near(pts[0].cloud, 0.030);
    near(pts[1].spend, 0.050);
    free(pts);
    q.until_ms = 0;
    q.since_ms = D1 + 30 * DAY;
    cr_assert_eq(slm_cost_series(l, &q, 10, &pts, &n, NULL), SLM_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(pts);
    cr_assert_eq(slm_cost_series(l, &q, 1, &pts, &n, NULL), SLM_E_INVALID);
    slm_ledger_close(l);
}

Test(cost, svg_is_a_standalone_chart) {
    struct slm_cost_point pts[] = {{D1, 0.5, 1.0}, {D1 + DAY, 1.0, 3.0}, {D1 + 2 * DAY, 1.25, 7.5}};
    struct slm_buf svg = {0};
    cr_assert_eq(slm_cost_svg(pts, 3, "spend <&> \"all-cloud\"", &svg, NULL), SLM_OK);
    const char *s = slm_buf_cstr(&svg);
    cr_assert(strncmp(s, "<?xml", 5) == 0);
    cr_assert(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
    cr_assert(strstr(s, "spend &lt;&amp;&gt; &quot;all-cloud&quot;") != NULL, "title escaped");
    cr_assert(strstr(s, "<polyline") != NULL);
    cr_assert(strstr(s, "all-cloud: 7.5000") != NULL, "%s", s);
    cr_assert(strstr(s, "avoided: 6.2500") != NULL);
    cr_assert(strstr(s, "2026-11-01") != NULL, "x axis labels are dates");
    cr_assert(strstr(s, "</svg>\n") != NULL);
    /* ymax 7.5 rounds up to 10: the top gridline is labelled 10. */
    cr_assert(strstr(s, ">10</text>") != NULL);
    slm_buf_free(&svg);
    cr_assert_eq(slm_cost_svg(NULL, 0, NULL, &svg, NULL), SLM_OK);
    cr_assert(strstr(slm_buf_cstr(&svg), "no requests") != NULL);
    slm_buf_free(&svg);
}

/* ---------------------------------------------------------------- days */

Test(cost, days_parse_and_format) {
    int64_t ms = 0;
    cr_assert_eq(slm_cost_parse_day("2026-11-01", &ms), SLM_OK);
    cr_assert_eq(ms, D1);
    cr_assert_eq(slm_cost_parse_day("1970-01-01", &ms), SLM_OK);
    cr_assert_eq(ms, 0);
    cr_assert_eq(slm_cost_parse_day("2024-02-29", &ms), SLM_OK);
    char out[16];
    slm_cost_format_day(ms + DAY - 1, out, sizeof(out));
    cr_assert_str_eq(out, "2024-02-29");
    slm_cost_format_day(ms + DAY, out, sizeof(out));
    cr_assert_str_eq(out, "2024-03-01");
    static const char *const bad[] = {"2026-02-29",  "2026-13-01", "2026-00-10", "2026-04-31",
                                      "2026-1-01",   "2026/11/01", "26-11-01",   "",
                                      "2026-11-01x", "1969-12-31", "abcd-ef-gh"};
    for (size_t i = 0; i < SLM_ARRAY_LEN(bad); i++) {
        cr_assert_eq(slm_cost_parse_day(bad[i], &ms), SLM_E_INVALID, "'%s' accepted", bad[i]);
    }
    enum slm_cost_group g;
    cr_assert_eq(slm_cost_group_parse("target", &g), SLM_OK);
    cr_assert_eq(g, SLM_COST_BY_TARGET);
    cr_assert_eq(slm_cost_group_parse("week", &g), SLM_E_INVALID);
}

/* Rows no router writes, put there with sqlite3 by hand: extreme times, text where a
 * number belongs, sums that overflow. The reports must read them without undefined
 * behaviour (the ASan+UBSan build runs this) and JSON must stay valid. */
Test(cost, hand_edited_rows_are_read_safely) {
    struct slm_ledger *l = open_ok(g_db);
    slm_ledger_close(l);
    raw_exec(g_db, "INSERT INTO requests (time_ms, route, where_ran, target, tokens_in, tokens_out,"
                   " latency_ms, cost, cloud_cost, shadow, shadow_cost) VALUES"
                   " (9223372036854775807, 'r', 'local', 't', 9223372036854775807, 1, 'slow',"
                   "  1e308, 1e308, -1, 0),"
                   " (-9223372036854775807 - 1, 'r', 'escalated', 't', 9223372036854775807, 1,"
                   "  -5, 1e308, 1e308, 1, 1e308)");
    l = open_ok(g_db);
    struct slm_cost_params p = {.hardware_price = 1, .power_watts = 1, .kwh_price = 1};
    for (int by = SLM_COST_BY_DAY; by <= SLM_COST_BY_TARGET; by++) {
        struct slm_cost_report r;
        report_ok(l, (enum slm_cost_group)by, 0, 0, &p, &r);
        cr_assert_eq(r.total.requests, 2);
        cr_assert_eq(r.total.tokens_in, INT64_MAX, "sums saturate");
        cr_assert_eq(r.first_ms, INT64_MIN);
        cr_assert_eq(r.last_ms, INT64_MAX);
        json_t *j = slm_cost_report_json(&r);
        cr_assert_not_null(j);
        cr_assert(json_is_null(json_object_get(json_object_get(j, "total"), "cost")));
        json_decref(j);
        slm_cost_report_free(&r);
    }
    struct slm_cost_query q = {0};
    struct slm_cost_point *pts = NULL;
    size_t n = 0;
    cr_assert_eq(slm_cost_series(l, &q, 10, &pts, &n, NULL), SLM_OK);
    cr_assert_eq(n, 2);
    struct slm_buf svg = {0};
    cr_assert_eq(slm_cost_svg(pts, n, "x", &svg, NULL), SLM_OK);
    slm_buf_free(&svg);
    free(pts);
    char day[32];
    slm_cost_format_day(INT64_MIN, day, sizeof(day));
    slm_cost_format_day(-1, day, sizeof(day));
    cr_assert_str_eq(day, "1969-12-31");
    slm_ledger_close(l);
}
