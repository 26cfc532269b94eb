/*
 * misc.c - time, strict number parsing, size formatting, UTF-8 boundaries.
 */
#include "slm/base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double slm_time_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t slm_time_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t slm_days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void slm_civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

void slm_sleep_ms(int64_t ms) {
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Copies a view into a NUL-terminated scratch buffer for the strto* family. */
static bool to_cstr(struct slm_str s, char *out, size_t cap) {
    if (s.len == 0 || s.len >= cap || memchr(s.ptr, '\0', s.len)) {
        return false;
    }
    memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    return true;
}

int slm_parse_i64(struct slm_str s, int64_t *out) {
    char tmp[32];
    if (!to_cstr(s, tmp, sizeof(tmp)) || tmp[0] == ' ' || tmp[0] == '\t') {
        return SLM_E_INVALID;
    }
    errno = 0;
    char *end;
    long long v = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0') {
        return SLM_E_INVALID;
    }
    *out = (int64_t)v;
    return SLM_OK;
}

int slm_parse_u64(struct slm_str s, uint64_t *out) {
    char tmp[32];
    if (!to_cstr(s, tmp, sizeof(tmp)) || tmp[0] < '0' || tmp[0] > '9') {
        return SLM_E_INVALID;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (errno != 0 || *end != '\0') {
        return SLM_E_INVALID;
    }
    *out = (uint64_t)v;
    return SLM_OK;
}

int slm_parse_f64(struct slm_str s, double *out) {
    char tmp[64];
    if (!to_cstr(s, tmp, sizeof(tmp)) || tmp[0] == ' ' || tmp[0] == '\t') {
        return SLM_E_INVALID;
    }
    errno = 0;
    char *end;
    double v = strtod(tmp, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) {
        return SLM_E_INVALID;
    }
    *out = v;
    return SLM_OK;
}

size_t slm_format_size(char *out, size_t cap, uint64_t bytes) {
    static const char *units[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1000.0 && u + 1 < SLM_ARRAY_LEN(units)) {
        v /= 1000.0;
        u++;
    }
    int n = u == 0 ? snprintf(out, cap, "%llu B", (unsigned long long)bytes)
                   : snprintf(out, cap, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
    return n < 0 ? 0 : (size_t)n;
}

static size_t utf8_seq_len(unsigned char c) {
    if (c < 0x80) {
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        return 2;
    }
    if ((c & 0xF0) == 0xE0) {
        return 3;
    }
    if ((c & 0xF8) == 0xF0) {
        return 4;
    }
    return 0;
}

size_t slm_utf8_complete_len(const char *p, size_t n) {
    /* Look back at most 3 bytes for the start of a sequence. */
    size_t back = 0;
    while (back < 4 && back < n) {
        unsigned char c = (unsigned char)p[n - 1 - back];
        if ((c & 0xC0) != 0x80) {
            size_t want = utf8_seq_len(c);
            if (want == 0 || want > back + 1) {
                /* An invalid lead byte is passed through; an unfinished sequence is held. */
                return want == 0 ? n : n - 1 - back;
            }
            return n;
        }
        back++;
    }
    return n;
}

bool slm_utf8_valid(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq_len(s[i]);
        if (len == 0 || i + len > n) {
            return false;
        }
        uint32_t cp = len == 1 ? s[i] : (uint32_t)(s[i] & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}
