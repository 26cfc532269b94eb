/*
 * tests/tools/liquid_bench.c - slm's side of bench/run_liquid.sh: parses a
 * Liquid template once, renders it N times with the same variables, writes
 * the last output to a file and prints the rate.
 *
 *   liquid_bench TEMPLATE DATA.json N OUT
 *
 * Output on stdout: "renders_per_second=R seconds=S cpu_renders_per_second=C
 * cpu_seconds=T bytes=B parse_us=P" (wall clock and process CPU time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "slm/json.h"
#include "slm/liquid.h"

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: liquid_bench TEMPLATE DATA.json N OUT\n");
        return 2;
    }
    int64_t n;
    if (slm_parse_i64(slm_str_c(argv[3]), &n) != SLM_OK || n < 1) {
        fprintf(stderr, "liquid_bench: N must be a positive integer\n");
        return 2;
    }
    struct slm_err err;
    slm_err_clear(&err);
    json_t *vars = NULL;
    if (slm_json_load_file(argv[2], 0, &vars, &err) != SLM_OK) {
        fprintf(stderr, "liquid_bench: %s\n", err.msg);
        return 1;
    }
    struct slm_liquid_params p = slm_liquid_params_default();
    struct slm_liquid_template *t = NULL;
    double t0 = slm_time_mono();
    int rc = slm_liquid_parse_file(argv[1], &p, &t, &err);
    double parse_s = slm_time_mono() - t0;
    if (rc != SLM_OK) {
        fprintf(stderr, "liquid_bench: %s\n", err.msg);
        json_decref(vars);
        return 1;
    }
    struct slm_buf out;
    slm_buf_init(&out, 0);
    rc = slm_liquid_render(t, vars, &out, &err); /* warm-up */
    double c0 = cpu_seconds();
    t0 = slm_time_mono();
    for (int64_t i = 0; i < n && rc == SLM_OK; i++) {
        slm_buf_clear(&out);
        rc = slm_liquid_render(t, vars, &out, &err);
    }
    double dt = slm_time_mono() - t0;
    double dc = cpu_seconds() - c0;
    if (rc != SLM_OK) {
        fprintf(stderr, "liquid_bench: %s\n", err.msg);
    } else {
        FILE *f = fopen(argv[4], "wb");
        if (!f || fwrite(out.ptr, 1, out.len, f) != out.len || fclose(f) != 0) {
            fprintf(stderr, "liquid_bench: cannot write %s\n", argv[4]);
            rc = SLM_E_IO;
        } else {
            printf("renders_per_second=%.1f seconds=%.3f cpu_renders_per_second=%.1f "
                   "cpu_seconds=%.3f bytes=%zu parse_us=%.1f\n",
                   (double)n / dt, dt, (double)n / dc, dc, out.len, parse_s * 1e6);
        }
    }
    slm_buf_free(&out);
    slm_liquid_free(t);
    json_decref(vars);
    return rc == SLM_OK ? 0 : 1;
}
