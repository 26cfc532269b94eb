/*
 * eval/contract_cache.c - the contractor's call cache (slm/contract.h): one SQLite table of
 * answered calls keyed by sha256(upstream identity, canonical request). Opened the way the
 * ledger is (router/ledger.c): the header checked before SQLite touches the file, WAL with
 * synchronous NORMAL so that a commit is in the OS when the call returns (kill -9 safe), a busy
 * timeout so two runs can share it. One connection, serialised by a mutex: a put is one short
 * INSERT next to a cloud call of hundreds of milliseconds.
 */
#include "slm/contract.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/internal.h"
#include "slm/json.h"

#define SCHEMA_SQL                                                                                 \
    "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, response TEXT NOT NULL, "             \
    "tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost REAL NOT NULL, "                \
    "created REAL NOT NULL, latency REAL NOT NULL DEFAULT 0)"

struct slm_contract_cache {
    sqlite3 *db;
    sqlite3_stmt *get, *put;
    pthread_mutex_t mu;
    char path[PATH_MAX];
};

static int db_err(struct slm_contract_cache *c, const char *what, struct slm_err *err) {
    return slm_err_set(err, SLM_E_IO, "%s: %s: %s", c->path, what,
                       c->db ? sqlite3_errmsg(c->db) : "cannot open");
}

static int default_path(char *out, size_t cap, struct slm_err *err) {
    char home[PATH_MAX];
    int rc = slm_home_dir(NULL, home, sizeof(home) - 32, err);
    if (rc == SLM_OK && (size_t)snprintf(out, cap, "%s/cache/calls.db", home) >= cap) {
        rc = slm_err_set(err, SLM_E_TOO_LARGE, "cache path too long");
    }
    return rc;
}

/* Refuses a file that is not SQLite before SQLite touches it (an empty one is a new cache). */
static int check_header(const char *path, struct slm_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return SLM_OK;
    }
    static const char magic[16] = "SQLite format 3";
    char head[16];
    size_t got = fread(head, 1, sizeof(head), f);
    fclose(f);
    if (got > 0 && (got < sizeof(head) || memcmp(head, magic, sizeof(head)) != 0)) {
        return slm_err_set(err, SLM_E_CORRUPT,
                           "%s: not a call cache (the file is not a SQLite database); move it "
                           "away or pass another --cache path",
                           path);
    }
    return SLM_OK;
}

static int configure(struct slm_contract_cache *c, struct slm_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    bool wal = mode && strcmp((const char *)mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        return db_err(c, "switching to WAL", err);
    }
    /* NORMAL in WAL mode: a commit is in the OS when the call returns (kill -9 safe). */
    if (sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        return db_err(c, "setting synchronous", err);
    }
    if (sqlite3_exec(c->db, SCHEMA_SQL, NULL, NULL, NULL) != SQLITE_OK) {
        if (sqlite3_errcode(c->db) == SQLITE_NOTADB) {
            return slm_err_set(err, SLM_E_CORRUPT, "%s: not a call cache", c->path);
        }
        return db_err(c, "creating the table", err);
    }
    /* A cache from before the latency column keeps its answers: add the column (an error
     * here is "duplicate column", the normal case). */
    (void)sqlite3_exec(c->db, "ALTER TABLE calls ADD COLUMN latency REAL NOT NULL DEFAULT 0", NULL,
                       NULL, NULL);
    if (sqlite3_prepare_v2(c->db,
                           "SELECT response, tokens_in, tokens_out, cost, latency FROM calls "
                           "WHERE key = ?",
                           -1, &c->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db,
                           "INSERT OR REPLACE INTO calls (key, response, tokens_in, tokens_out, "
                           "cost, created, latency) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &c->put, NULL) != SQLITE_OK) {
        return slm_err_set(err, SLM_E_CORRUPT, "%s: not a call cache (%s)", c->path,
                           sqlite3_errmsg(c->db));
    }
    return SLM_OK;
}

int slm_contract_cache_open(const char *path, struct slm_contract_cache **out,
                            struct slm_err *err) {
    *out = NULL;
    struct slm_contract_cache *c = calloc(1, sizeof(*c));
    if (!c) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    int rc = SLM_OK;
    if (path && path[0]) {
        if ((size_t)snprintf(c->path, sizeof(c->path), "%s", path) >= sizeof(c->path)) {
            rc = slm_err_set(err, SLM_E_TOO_LARGE, "cache path too long");
        }
    } else {
        rc = default_path(c->path, sizeof(c->path), err);
    }
    if (rc == SLM_OK) {
        rc = slm_mkdir_parent(c->path, err);
    }
    if (rc == SLM_OK) {
        rc = check_header(c->path, err);
    }
    if (rc != SLM_OK) {
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->mu, NULL);
    if (sqlite3_open_v2(c->path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = db_err(c, "cannot open", err);
    } else {
        sqlite3_busy_timeout(c->db, 5000);
        rc = configure(c, err);
    }
    if (rc != SLM_OK) {
        slm_contract_cache_close(c);
        return rc;
    }
    *out = c;
    return SLM_OK;
}

void slm_contract_cache_close(struct slm_contract_cache *c) {
    if (!c) {
        return;
    }
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->put);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int slm_contract_cache_key(const struct slm_contract_upstream *u, const json_t *request,
                           char key[65]) {
    json_t *copy = json_deep_copy(request);
    if (!copy) {
        return SLM_E_NOMEM;
    }
    /* The client decides streaming; the answer is the same. */
    json_object_del(copy, "stream");
    json_object_del(copy, "stream_options");
    json_object_del(copy, "model");
    char *canon = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(copy);
    if (!canon) {
        return SLM_E_NOMEM;
    }
    const char *id = slm__contract_identity(u);
    struct slm_sha256 h;
    slm_sha256_init(&h);
    slm_sha256_update(&h, id, strlen(id) + 1); /* the NUL separates identity from body */
    slm_sha256_update(&h, canon, strlen(canon));
    free(canon);
    uint8_t digest[32];
    slm_sha256_final(&h, digest);
    slm_hex_encode(digest, sizeof(digest), key);
    return SLM_OK;
}

int slm_contract_cache_get(struct slm_contract_cache *c, const char *key, json_t **response,
                           struct slm_contract_usage *usage, struct slm_err *err) {
    *response = NULL;
    pthread_mutex_lock(&c->mu);
    sqlite3_reset(c->get);
    sqlite3_bind_text(c->get, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(c->get);
    int st = SLM_E_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(c->get, 0);
        int len = sqlite3_column_bytes(c->get, 0);
        json_t *v = NULL;
        /* A row that does not parse (a cache edited by hand) is a miss: the call is made again. */
        if (text && slm_json_parse(text, (size_t)len, "cached reply", &v, NULL) == SLM_OK &&
            json_is_object(v)) {
            *response = v;
            st = SLM_OK;
            if (usage) {
                usage->tokens_in = sqlite3_column_int64(c->get, 1);
                usage->tokens_out = sqlite3_column_int64(c->get, 2);
                usage->cost = sqlite3_column_double(c->get, 3);
                usage->latency_s = sqlite3_column_double(c->get, 4);
            }
        } else {
            json_decref(v);
        }
    } else if (rc != SQLITE_DONE) {
        st = db_err(c, "reading", err);
    }
    sqlite3_reset(c->get);
    pthread_mutex_unlock(&c->mu);
    return st;
}

int slm_contract_cache_put(struct slm_contract_cache *c, const char *key, const json_t *response,
                           const struct slm_contract_usage *usage, struct slm_err *err) {
    char *text = json_dumps(response, JSON_COMPACT);
    if (!text) {
        return slm_err_set(err, SLM_E_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&c->mu);
    sqlite3_reset(c->put);
    sqlite3_bind_text(c->put, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(c->put, 2, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(c->put, 3, usage->tokens_in);
    sqlite3_bind_int64(c->put, 4, usage->tokens_out);
    sqlite3_bind_double(c->put, 5, usage->cost);
    sqlite3_bind_double(c->put, 6, (double)slm_time_unix_ms() / 1000.0);
    sqlite3_bind_double(c->put, 7, usage->latency_s);
    int rc = sqlite3_step(c->put); /* autocommit: durable when it returns */
    int st = rc == SQLITE_DONE ? SLM_OK : db_err(c, "storing a reply", err);
    sqlite3_reset(c->put);
    pthread_mutex_unlock(&c->mu);
    free(text);
    return st;
}

int64_t slm_contract_cache_count(struct slm_contract_cache *c) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    pthread_mutex_lock(&c->mu);
    if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM calls", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->mu);
    return n;
}
