/*
 * cli/hugepages.c - large buffers on transparent huge pages.
 *
 * llama.cpp's compute buffer (~100 MB for a 135M model at a 512-token
 * batch) and KV cache come from malloc, in 4 KiB pages unless the kernel is
 * told otherwise: under THP's default "madvise" mode only memory marked
 * MADV_HUGEPAGE gets 2 MiB pages. glibc (2.35+) marks its large allocations
 * so when the tunable glibc.malloc.hugetlb=1 is set, and it reads tunables
 * once, at start-up, from the environment. So a command that runs a model
 * re-executes itself with the tunable added, before it does anything else
 * (slm tune: once it knows the model is big enough to gain by it).
 * Measured on the SmolLM2-135M-shaped Q8_0 benchmark model, 2 threads: a
 * 512-token prompt runs about 5% faster (fewer page faults on first touch,
 * fewer TLB misses after).
 *
 * Skipped when the kernel has no THP or uses it for everything already, when
 * the C library is not glibc 2.35+, when the tunable is already set (so this
 * runs once), and when SLM_HUGEPAGES=0. If the exec fails the command runs
 * as it is.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__) && defined(__GLIBC__)
#include <gnu/libc-version.h>

#define TUNABLE "glibc.malloc.hugetlb"

/* True when THP is in "madvise" mode: [madvise] is the selected word. */
static bool thp_madvise(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) {
        return false;
    }
    char line[128] = "";
    bool ok = fgets(line, sizeof(line), f) && strstr(line, "[madvise]");
    fclose(f);
    return ok;
}

static bool glibc_has_hugetlb_tunable(void) {
    const char *v = gnu_get_libc_version();
    char *end;
    long major = strtol(v, &end, 10);
    if (end == v || *end != '.') {
        return false;
    }
    long minor = strtol(end + 1, NULL, 10);
    return major > 2 || (major == 2 && minor >= 35);
}

void slm_cli_use_hugepages(char **argv) {
    const char *off = getenv("SLM_HUGEPAGES");
    const char *cur = getenv("GLIBC_TUNABLES");
    if ((off && strcmp(off, "0") == 0) || (cur && strstr(cur, TUNABLE)) ||
        !glibc_has_hugetlb_tunable() || !thp_madvise()) {
        return;
    }
    char val[1024];
    int n = cur && cur[0] ? snprintf(val, sizeof(val), "%s:" TUNABLE "=1", cur)
                          : snprintf(val, sizeof(val), TUNABLE "=1");
    if (n < 0 || (size_t)n >= sizeof(val) || setenv("GLIBC_TUNABLES", val, 1) != 0) {
        return;
    }
    execv("/proc/self/exe", argv);
    /* Still here: run without. Put the environment back as it was. */
    if (cur) {
        setenv("GLIBC_TUNABLES", cur, 1);
    } else {
        unsetenv("GLIBC_TUNABLES");
    }
}
#else
void slm_cli_use_hugepages(char **argv) {
    (void)argv;
}
#endif
