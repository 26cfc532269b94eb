/*
 * router/ledger.c - the ledger file: open (refusing what is not a ledger or is
 * newer than us), schema migrations, appending rows, and recording a shadow
 * call's result on the row written before it.
 *
 * One SQLite connection per struct slm_ledger, guarded by one mutex: SQLite would
 * serialise the writes anyway, and a single connection keeps the cached INSERT
 * statement and last_insert_rowid() coherent. Each add runs in autocommit mode,
 * so the row is committed when sqlite3_step() returns SQLITE_DONE.
 */
#include "slm/ledger.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/ledger_internal.h"

/* Longest string stored per field; longer ones are cut at a UTF-8 boundary, so a
 * runaway reason or id never bloats the ledger or fails the add. */
#define LEDGER_MAX_FIELD 1024

struct slm_ledger {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *insert;
    sqlite3_stmt *set_shadow;
    char path[PATH_MAX];
};

/* Migration i takes the schema from version i to i + 1, inside one transaction.
 * Append new steps here (never edit a shipped one) and bump
 * SLM_LEDGER_SCHEMA_VERSION. */
static const char *const MIGRATIONS[SLM_LEDGER_SCHEMA_VERSION] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "INSERT INTO schema_version (version) VALUES (0);"
    "CREATE TABLE requests ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time_ms INTEGER NOT NULL,"
    "  request_id TEXT,"
    "  route TEXT NOT NULL,"
    "  where_ran TEXT NOT NULL"
    "    CHECK (where_ran IN ('local', 'escalated', 'local_fallback', 'error')),"
    "  target TEXT NOT NULL,"
    "  adapter TEXT,"
    "  tokens_in INTEGER NOT NULL,"
    "  tokens_out INTEGER NOT NULL,"
    "  latency_ms REAL NOT NULL,"
    "  reason TEXT,"
    "  cost REAL NOT NULL,"
    "  cloud_cost REAL NOT NULL,"
    "  shadow INTEGER NOT NULL CHECK (shadow IN (-1, 0, 1)),"
    "  shadow_cost REAL NOT NULL"
    ");"
    "CREATE INDEX requests_time ON requests (time_ms);"
    "CREATE INDEX requests_route_time ON requests (route, time_ms);"
    "CREATE INDEX requests_target_time ON requests (target, time_ms);",
};

static const char SET_SHADOW_SQL[] =
    "UPDATE requests SET shadow = ?, shadow_cost = shadow_cost + ? WHERE id = ?";

static const char INSERT_SQL[] =
    "INSERT INTO requests (time_ms, request_id, route, where_ran, target, adapter, tokens_in,"
    " tokens_out, latency_ms, reason, cost, cloud_cost, shadow, shadow_cost)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

struct slm_ledger_row slm_ledger_row_default(void) {
    return (struct slm_ledger_row){.shadow = -1};
}

struct slm_ledger_params slm_ledger_params_default(void) {
    return (struct slm_ledger_params){0};
}

const char *slm_ledger_path(const struct slm_ledger *l) {
    return l->path;
}

sqlite3 *slm__ledger_lock(struct slm_ledger *l) {
    pthread_mutex_lock(&l->mu);
    return l->db;
}

void slm__ledger_unlock(struct slm_ledger *l) {
    pthread_mutex_unlock(&l->mu);
}

static int status_of(int rc) {
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return SLM_E_CORRUPT;
    case SQLITE_NOMEM: return SLM_E_NOMEM;
    case SQLITE_TOOBIG: return SLM_E_TOO_LARGE;
    default: return SLM_E_IO;
    }
}

static int db_err(const char *path, sqlite3 *db, int rc, const char *what, struct slm_err *err) {
    int code = status_of(rc);
    if (code == SLM_E_CORRUPT) {
        return slm_err_set(err, code, "%s: not a usable slm ledger (%s: %s)", path, what,
                           db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
    return slm_err_set(err, code, "%s: %s: %s", path, what,
                       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int slm__ledger_db_err(struct slm_ledger *l, int rc, const char *what, struct slm_err *err) {
    return db_err(l->path, l->db, rc, what, err);
}

/* $SLM_HOME/ledger.db, creating $SLM_HOME. */
static int default_path(char *out, size_t cap, struct slm_err *err) {
    char dir[PATH_MAX];
    int rc = slm_home_dir(NULL, dir, sizeof(dir) - 16, err);
    if (rc != SLM_OK) {
        return rc;
    }
    rc = slm_mkdir_p(dir, err);
    if (rc != SLM_OK) {
        return slm_err_prefix(err, "cannot create the ledger's folder");
    }
    if (slm_path_join(out, cap, dir, "ledger.db") >= cap) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "ledger path too long");
    }
    return SLM_OK;
}

/* Refuses a file that is not SQLite before SQLite touches it: SQLite opens such
 * files lazily and some pragmas would write to them. An empty file is a new ledger. */
static int check_header(const char *path, struct slm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return SLM_OK; /* missing: created below; unreadable: sqlite reports it */
    }
    static const char magic[16] = "SQLite format 3";
    char head[16];
    size_t got = fread(head, 1, sizeof(head), f);
    fclose(f);
    if (got == 0) {
        return SLM_OK;
    }
    if (got < sizeof(head) || memcmp(head, magic, sizeof(head)) != 0) {
        return slm_err_set(err, SLM_E_CORRUPT,
                           "%s: not an slm ledger (the file is not a SQLite database); "
                           "move it away or pass another --ledger path",
                           path);
    }
    return SLM_OK;
}

/* Reads the schema version inside the open transaction: 0 for an empty database,
 * SLM_E_CORRUPT for a SQLite database that has tables but is not a ledger. */
static int read_version(struct slm_ledger *l, int64_t *version, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(l->db,
                                "SELECT (SELECT count(*) FROM sqlite_master WHERE name NOT LIKE "
                                "'sqlite_%'), (SELECT count(*) FROM sqlite_master WHERE "
                                "type = 'table' AND name = 'schema_version')",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "reading the schema", err);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return slm__ledger_db_err(l, rc, "reading the schema", err);
    }
    int64_t objects = sqlite3_column_int64(st, 0), has_version = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (!has_version) {
        if (objects > 0) {
            return slm_err_set(err, SLM_E_CORRUPT,
                               "%s: not an slm ledger (a SQLite database without the "
                               "schema_version table); move it away or pass another path",
                               l->path);
        }
        *version = 0;
        return SLM_OK;
    }
    rc = sqlite3_prepare_v2(l->db, "SELECT max(version) FROM schema_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW || sqlite3_column_type(st, 0) != SQLITE_INTEGER) {
        sqlite3_finalize(st);
        return slm_err_set(err, SLM_E_CORRUPT, "%s: not a usable slm ledger (no schema version)",
                           l->path);
    }
    *version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return SLM_OK;
}

static int migrate(struct slm_ledger *l, struct slm_err *err) {
    /* IMMEDIATE: two processes opening a new ledger at once must not both create it. */
    int rc = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "locking the ledger", err);
    }
    int64_t version = 0;
    int st = read_version(l, &version, err);
    if (st == SLM_OK && version > SLM_LEDGER_SCHEMA_VERSION) {
        st = slm_err_set(err, SLM_E_UNSUPPORTED,
                         "%s: ledger schema version %lld is newer than this slm understands "
                         "(%d); use a newer slm, or another --ledger path",
                         l->path, (long long)version, SLM_LEDGER_SCHEMA_VERSION);
    } else if (st == SLM_OK && version < 0) {
        st = slm_err_set(err, SLM_E_CORRUPT, "%s: not a usable slm ledger (schema version %lld)",
                         l->path, (long long)version);
    }
    for (int64_t v = version; st == SLM_OK && v < SLM_LEDGER_SCHEMA_VERSION; v++) {
        char set[96];
        snprintf(set, sizeof(set), "UPDATE schema_version SET version = %lld", (long long)v + 1);
        rc = sqlite3_exec(l->db, MIGRATIONS[v], NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(l->db, set, NULL, NULL, NULL);
        }
        if (rc != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof(what), "migrating schema %lld -> %lld", (long long)v,
                     (long long)v + 1);
            st = slm__ledger_db_err(l, rc, what, err);
        }
    }
    if (st != SLM_OK) {
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    rc = sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
        return slm__ledger_db_err(l, rc, "committing the schema", err);
    }
    return SLM_OK;
}

static int configure(struct slm_ledger *l, const struct slm_ledger_params *p, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(l->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return slm__ledger_db_err(l, rc, "switching to WAL", err);
    }
    const unsigned char *mode = sqlite3_column_text(st, 0);
    bool wal = mode && strcmp((const char *)mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        return slm_err_set(err, SLM_E_IO, "%s: the file system does not support WAL journals",
                           l->path);
    }
    /* NORMAL in WAL mode: a commit is in the OS when the call returns (kill -9 safe);
     * FULL adds an fsync per commit for power loss. */
    rc = sqlite3_exec(l->db,
                      p->durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "setting synchronous", err);
    }
    rc = sqlite3_prepare_v3(l->db, INSERT_SQL, -1, SQLITE_PREPARE_PERSISTENT, &l->insert, NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "preparing the insert", err);
    }
    rc = sqlite3_prepare_v3(l->db, SET_SHADOW_SQL, -1, SQLITE_PREPARE_PERSISTENT, &l->set_shadow,
                            NULL);
    if (rc != SQLITE_OK) {
        return slm__ledger_db_err(l, rc, "preparing the shadow update", err);
    }
    return SLM_OK;
}

int slm_ledger_open(const char *path, struct slm_ledger **out, struct slm_err *err) {
    struct slm_ledger_params p = slm_ledger_params_default();
    p.path = path;
    return slm_ledger_open_ex(&p, out, err);
}

int slm_ledger_open_ex(const struct slm_ledger_params *params, struct slm_ledger **out,
                       struct slm_err *err) {
    *out = NULL;
    struct slm_ledger_params p = params ? *params : slm_ledger_params_default();
    struct slm_ledger *l = calloc(1, sizeof(*l));
    if (!l) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int st = SLM_OK;
    if (p.path && p.path[0]) {
        if ((size_t)snprintf(l->path, sizeof(l->path), "%s", p.path) >= sizeof(l->path)) {
            st = slm_err_set(err, SLM_E_TOO_LARGE, "ledger path too long");
        }
    } else {
        st = default_path(l->path, sizeof(l->path), err);
    }
    if (st == SLM_OK && p.must_exist && !slm_file_exists(l->path)) {
        st =
            slm_err_set(err, SLM_E_NOT_FOUND, "%s: no ledger there (nothing routed yet?)", l->path);
    }
    if (st == SLM_OK && !p.must_exist) {
        st = slm_mkdir_parent(l->path, err);
        if (st != SLM_OK) {
            slm_err_prefix(err, "cannot create the ledger's folder");
        }
    }
    if (st == SLM_OK) {
        st = check_header(l->path, err);
    }
    if (st != SLM_OK) {
        free(l);
        return st;
    }
    pthread_mutex_init(&l->mu, NULL);
    int rc = sqlite3_open_v2(
        l->path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = slm__ledger_db_err(l, rc, "cannot open", err);
        goto fail;
    }
    sqlite3_extended_result_codes(l->db, 1);
    sqlite3_busy_timeout(l->db, p.busy_timeout_ms > 0 ? p.busy_timeout_ms : 5000);
    st = migrate(l, err);
    if (st == SLM_OK) {
        st = configure(l, &p, err);
    }
    if (st != SLM_OK) {
        goto fail;
    }
    *out = l;
    return SLM_OK;
fail:
    slm_ledger_close(l);
    return st;
}

void slm_ledger_close(struct slm_ledger *l) {
    if (!l) {
        return;
    }
    sqlite3_finalize(l->insert);
    sqlite3_finalize(l->set_shadow);
    sqlite3_close(l->db); /* the last connection checkpoints and removes the WAL */
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static bool num_ok(double v) {
    return isfinite(v) && v >= 0;
}

static int check_row(const struct slm_ledger_row *r, struct slm_err *err) {
    static const char *const wheres[] = {"local", "escalated", "local_fallback", "error"};
    if (!r->route || !r->route[0]) {
        return slm_err_set(err, SLM_E_INVALID, "ledger row without a route");
    }
    bool known = false;
    for (size_t i = 0; r->where && i < SLM_ARRAY_LEN(wheres); i++) {
        known = known || strcmp(r->where, wheres[i]) == 0;
    }
    if (!known) {
        return slm_err_set(err, SLM_E_INVALID,
                           "ledger row: where is '%s', not local|escalated|local_fallback|error",
                           r->where ? r->where : "(null)");
    }
    if (r->time_ms < 0 || r->tokens_in < 0 || r->tokens_out < 0 || !num_ok(r->latency_ms) ||
        !num_ok(r->cost) || !num_ok(r->cloud_cost) || !num_ok(r->shadow_cost)) {
        return slm_err_set(err, SLM_E_INVALID,
                           "ledger row: time, tokens, latency and costs must be finite and >= 0");
    }
    if (r->shadow < -1 || r->shadow > 1) {
        return slm_err_set(err, SLM_E_INVALID, "ledger row: shadow is %d, not -1, 0 or 1",
                           r->shadow);
    }
    return SLM_OK;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s) {
    if (!s) {
        return sqlite3_bind_null(st, i);
    }
    size_t n = strlen(s);
    if (n > LEDGER_MAX_FIELD) {
        n = slm_utf8_complete_len(s, LEDGER_MAX_FIELD);
    }
    return sqlite3_bind_text(st, i, s, (int)n, SQLITE_STATIC);
}

static int bind_row(sqlite3_stmt *st, const struct slm_ledger_row *r) {
    int rc = sqlite3_bind_int64(st, 1, r->time_ms ? r->time_ms : slm_time_unix_ms());
    rc = rc ? rc : bind_text(st, 2, r->request_id);
    rc = rc ? rc : bind_text(st, 3, r->route);
    rc = rc ? rc : bind_text(st, 4, r->where);
    rc = rc ? rc : bind_text(st, 5, r->target ? r->target : "");
    rc = rc ? rc : bind_text(st, 6, r->adapter);
    rc = rc ? rc : sqlite3_bind_int64(st, 7, r->tokens_in);
    rc = rc ? rc : sqlite3_bind_int64(st, 8, r->tokens_out);
    rc = rc ? rc : sqlite3_bind_double(st, 9, r->latency_ms);
    rc = rc ? rc : bind_text(st, 10, r->reason);
    rc = rc ? rc : sqlite3_bind_double(st, 11, r->cost);
    rc = rc ? rc : sqlite3_bind_double(st, 12, r->cloud_cost);
    rc = rc ? rc : sqlite3_bind_int(st, 13, r->shadow);
    rc = rc ? rc : sqlite3_bind_double(st, 14, r->shadow_cost);
    return rc;
}

int slm_ledger_add_id(struct slm_ledger *l, const struct slm_ledger_row *row, int64_t *id,
                      struct slm_err *err) {
    int st = check_row(row, err);
    if (st != SLM_OK) {
        return st;
    }
    pthread_mutex_lock(&l->mu);
    int rc = bind_row(l->insert, row);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(l->insert);
    }
    if (rc == SQLITE_DONE) {
        if (id) {
            *id = sqlite3_last_insert_rowid(l->db);
        }
    } else {
        st = slm__ledger_db_err(l, rc, "cannot add a row", err);
    }
    sqlite3_reset(l->insert);
    sqlite3_clear_bindings(l->insert);
    pthread_mutex_unlock(&l->mu);
    return st;
}

int slm_ledger_add(struct slm_ledger *l, const struct slm_ledger_row *row, struct slm_err *err) {
    return slm_ledger_add_id(l, row, NULL, err);
}

int slm_ledger_set_shadow(struct slm_ledger *l, int64_t id, int shadow, double shadow_cost,
                          struct slm_err *err) {
    if (shadow < -1 || shadow > 1 || !num_ok(shadow_cost)) {
        return slm_err_set(
            err, SLM_E_INVALID,
            "ledger shadow: %d is not -1, 0 or 1, or the cost is not finite and >= 0", shadow);
    }
    pthread_mutex_lock(&l->mu);
    int rc = sqlite3_bind_int(l->set_shadow, 1, shadow);
    rc = rc ? rc : sqlite3_bind_double(l->set_shadow, 2, shadow_cost);
    rc = rc ? rc : sqlite3_bind_int64(l->set_shadow, 3, id);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(l->set_shadow);
    }
    int st = SLM_OK;
    if (rc != SQLITE_DONE) {
        st = slm__ledger_db_err(l, rc, "cannot record a shadow result", err);
    } else if (sqlite3_changes(l->db) != 1) {
        st = slm_err_set(err, SLM_E_NOT_FOUND, "%s: no ledger row %lld for the shadow result",
                         l->path, (long long)id);
    }
    sqlite3_reset(l->set_shadow);
    sqlite3_clear_bindings(l->set_shadow);
    pthread_mutex_unlock(&l->mu);
    return st;
}

int slm_ledger_count(struct slm_ledger *l, int64_t *n, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&l->mu);
    int rc = sqlite3_prepare_v2(l->db, "SELECT count(*) FROM requests", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    int status = SLM_OK;
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
    } else {
        status = slm__ledger_db_err(l, rc, "counting rows", err);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->mu);
    return status;
}
