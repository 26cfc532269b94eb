/*
 * fuzz_ledger_file.c - libFuzzer harness for the ledger file `slm cost` opens: any
 * bytes on disk at the ledger path (a damaged, foreign or hand-edited SQLite file).
 * Opening must refuse with a message or succeed; on success the reports, the series
 * and the chart must work on whatever the tables hold (NULLs, text in number
 * columns, huge values), and a row must still be addable or refused with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm/ledger.h"

static char g_path[64];

static void remove_files(void) {
    char p[96];
    unlink(g_path);
    snprintf(p, sizeof(p), "%s-wal", g_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", g_path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-journal", g_path);
    unlink(p);
}

static void exercise(struct slm_ledger *l) {
    struct slm_err err = {0};
    for (int by = SLM_COST_BY_DAY; by <= SLM_COST_BY_TARGET; by++) {
        struct slm_cost_query q = {.by = (enum slm_cost_group)by};
        struct slm_cost_params p = {.hardware_price = 1000, .power_watts = 30, .kwh_price = 0.3};
        struct slm_cost_report r;
        if (slm_cost_report(l, &q, &p, &r, &err) == SLM_OK) {
            json_t *j = slm_cost_report_json(&r);
            json_decref(j);
            slm_cost_report_free(&r);
        } else if (err.msg[0] == '\0') {
            abort();
        }
    }
    struct slm_cost_query q = {0};
    struct slm_cost_point *pts = NULL;
    size_t n = 0;
    if (slm_cost_series(l, &q, 50, &pts, &n, &err) == SLM_OK) {
        struct slm_buf svg = {0};
        if (slm_cost_svg(pts, n, "fuzz", &svg, &err) != SLM_OK) {
            abort();
        }
        slm_buf_free(&svg);
        free(pts);
    }
    struct slm_ledger_row row = slm_ledger_row_default();
    row.route = "fuzz";
    row.where = "local";
    err.msg[0] = '\0';
    if (slm_ledger_add(l, &row, &err) != SLM_OK && err.msg[0] == '\0') {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_path[0]) {
        snprintf(g_path, sizeof(g_path), "/tmp/slm-fuzz-ledger-%d.db", (int)getpid());
    }
    remove_files();
    FILE *f = fopen(g_path, "wb");
    if (!f) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    struct slm_ledger *l = NULL;
    struct slm_err err = {0};
    if (slm_ledger_open(g_path, &l, &err) == SLM_OK) {
        exercise(l);
        slm_ledger_close(l);
    } else if (err.msg[0] == '\0' || l != NULL) {
        abort(); /* every refusal explains itself and leaves nothing owed */
    }
    remove_files();
    return 0;
}
