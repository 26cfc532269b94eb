/*
 * base/sys.c - slm/sys.h. Linux-only calls (accept4, pipe2, getrandom) are used where the
 * system has them and are otherwise replaced by their POSIX equivalents, so the tree builds
 * with nothing but _POSIX_C_SOURCE=200809L (scripts/check-posix.sh keeps it so).
 */
#if defined(__linux__)
#define _GNU_SOURCE /* accept4, pipe2 */
#endif

#include "slm/sys.h"

#include <stdbool.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "slm/base.h"

#if defined(__linux__)
#include <sys/random.h>
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <stdlib.h> /* arc4random_buf */
#define HAVE_ARC4RANDOM 1
#endif

#if !defined(__linux__)
/* Marks `fd` close-on-exec, closing it when that fails. */
static int cloexec(int fd) {
    if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
#endif

int slm_socket_cloexec(int domain, int type, int protocol) {
#ifdef SOCK_CLOEXEC
    return socket(domain, type | SOCK_CLOEXEC, protocol);
#else
    return cloexec(socket(domain, type, protocol));
#endif
}

int slm_accept_cloexec(int fd, struct sockaddr *addr, socklen_t *len) {
#if defined(__linux__)
    return accept4(fd, addr, len, SOCK_CLOEXEC);
#else
    return cloexec(accept(fd, addr, len));
#endif
}

int slm_pipe_cloexec(int fds[2]) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC);
#else
    if (pipe(fds) != 0) {
        return -1;
    }
    if (cloexec(fds[0]) < 0) {
        close(fds[1]);
        return -1;
    }
    if (cloexec(fds[1]) < 0) {
        close(fds[0]);
        return -1;
    }
    return 0;
#endif
}

int slm_random_bytes(void *buf, size_t n) {
#if defined(__linux__)
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
#elif defined(HAVE_ARC4RANDOM)
    arc4random_buf(buf, n);
    return 0;
#else
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            close(fd);
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    close(fd);
    return 0;
#endif
}

/* ---------------------------------------------------------------- threads */

int slm_physical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) {
        return 1;
    }
    return (int)(n > 4 ? n / 2 : n);
}

int slm_threads_for(int physical, double busy) {
    int taken = busy > 0 ? (int)floor(busy + 0.5) : 0;
    int n = physical - taken;
    return n > 1 ? n : 1;
}

#if defined(__linux__)
/* The first line of /proc/stat: busy and total jiffies of all CPUs. */
static int read_stat(unsigned long long *busy, unsigned long long *total) {
    FILE *f = fopen("/proc/stat", "r");
    char line[512];
    bool ok = f && fgets(line, sizeof(line), f) && strncmp(line, "cpu ", 4) == 0;
    if (f) {
        fclose(f);
    }
    if (!ok) {
        return -1;
    }
    unsigned long long v[10] = {0};
    const char *p = line + 4;
    for (int i = 0; i < 10; i++) {
        while (*p == ' ') {
            p++;
        }
        uint64_t x = 0;
        size_t n = 0;
        while (p[n] >= '0' && p[n] <= '9') {
            n++;
        }
        if (n == 0 || slm_parse_u64(slm_str_n(p, n), &x) != SLM_OK) {
            break;
        }
        v[i] = x;
        p += n;
    }
    /* user nice system idle iowait irq softirq steal (guest is inside user) */
    *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    *busy = *total - v[3] - v[4];
    return 0;
}
#endif

double slm_cpus_busy(int ms) {
#if defined(__linux__)
    unsigned long long b0, t0, b1, t1;
    if (read_stat(&b0, &t0) != 0) {
        return 0;
    }
    slm_sleep_ms(ms > 0 ? ms : 1);
    if (read_stat(&b1, &t1) != 0 || t1 <= t0) {
        return 0;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return (double)(b1 - b0) / (double)(t1 - t0) * (double)(n > 0 ? n : 1);
#else
    (void)ms;
    return 0;
#endif
}

int slm_default_threads(void) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static double at = -1e9;
    static int threads;
    pthread_mutex_lock(&mu);
    double now = slm_time_mono();
    if (now - at > 5.0) { /* contexts made together share one measurement */
        threads = slm_threads_for(slm_physical_cores(), slm_cpus_busy(40));
        at = slm_time_mono();
    }
    int n = threads;
    pthread_mutex_unlock(&mu);
    return n;
}

/* ---------------------------------------------------------------- memory */

#if defined(__linux__)
/* The number that starts `s` (after blanks), times 1024 when it is followed by "kB"; false when
 * `s` holds no number. */
static bool parse_amount(const char *s, uint64_t *out) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        n++;
    }
    uint64_t v;
    if (n == 0 || slm_parse_u64(slm_str_n(s, n), &v) != SLM_OK) {
        return false;
    }
    const char *unit = s + n;
    while (*unit == ' ') {
        unit++;
    }
    if (strncmp(unit, "kB", 2) == 0) {
        v = v > UINT64_MAX / 1024 ? UINT64_MAX : v * 1024;
    }
    *out = v;
    return true;
}

/* The value of `key` in a "Key: value" file (/proc/meminfo), or of the whole file when `key` is
 * NULL (cgroup files hold one number, or "max"). False when absent or not a number. */
static bool read_value(const char *path, const char *key, uint64_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    char line[256];
    bool ok = false;
    size_t klen = key ? strlen(key) : 0;
    while (!ok && fgets(line, sizeof(line), f)) {
        if (!key) {
            ok = parse_amount(line, out);
            break;
        }
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            ok = parse_amount(line + klen + 1, out);
        }
    }
    fclose(f);
    return ok;
}

/* This process's cgroup v2 folder under /sys/fs/cgroup ("0::/PATH" in /proc/self/cgroup). */
static bool cgroup2_dir(char *out, size_t cap) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) {
        return false;
    }
    char line[1024];
    bool ok = false;
    while (!ok && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            int n = snprintf(out, cap, "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
            ok = n > 0 && (size_t)n < cap;
        }
    }
    fclose(f);
    return ok;
}

/* Lowers out->available (and total) to the room left under a cgroup limit, if any. */
static void apply_cgroup(struct slm_mem_avail *out) {
    char dir[1100], path[1200];
    uint64_t limit = 0, used = 0;
    const char *source = NULL;
    if (cgroup2_dir(dir, sizeof(dir))) {
        snprintf(path, sizeof(path), "%s/memory.max", dir);
        if (read_value(path, NULL, &limit)) { /* "max" is not a number: no limit */
            snprintf(path, sizeof(path), "%s/memory.current", dir);
            source = read_value(path, NULL, &used) ? "cgroup v2 memory.max" : NULL;
        }
    } else if (read_value("/sys/fs/cgroup/memory/memory.limit_in_bytes", NULL, &limit) &&
               read_value("/sys/fs/cgroup/memory/memory.usage_in_bytes", NULL, &used)) {
        source = "cgroup v1 limit"; /* "no limit" reads as a huge number, above RAM */
    }
    if (!source || limit >= out->total) {
        return;
    }
    uint64_t room = limit > used ? limit - used : 0;
    out->total = limit;
    if (room < out->available) {
        out->available = room;
        snprintf(out->source, sizeof(out->source), "%s", source);
    }
}
#endif

int slm_mem_available(struct slm_mem_avail *out) {
    memset(out, 0, sizeof(*out));
    long pages = sysconf(_SC_PHYS_PAGES);
    long size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && size > 0) {
        out->total = (uint64_t)pages * (uint64_t)size;
        out->available = out->total;
        snprintf(out->source, sizeof(out->source), "physical memory");
    }
#if defined(__linux__)
    uint64_t v;
    if (read_value("/proc/meminfo", "MemTotal", &v)) {
        out->total = v;
    }
    if (read_value("/proc/meminfo", "MemAvailable", &v)) {
        out->available = v;
        snprintf(out->source, sizeof(out->source), "MemAvailable");
    }
    apply_cgroup(out);
#endif
    const char *env = getenv("SLM_MEMORY_AVAILABLE");
    uint64_t forced;
    if (env && *env && slm_parse_u64(slm_str_c(env), &forced) == SLM_OK) {
        out->available = forced;
        snprintf(out->source, sizeof(out->source), "SLM_MEMORY_AVAILABLE");
    }
    return 0;
}
