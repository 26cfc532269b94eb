/*
 * liquid/date.c - the date filter's input parsing and strftime.
 *
 * Inputs (as Shopify Liquid's Utils.to_date): integers and digit-only strings
 * are unix seconds; "now" and "today" are the current time (or params.now);
 * other strings are parsed the way Ruby's Time.parse reads the common forms:
 * ISO 8601 ("2016-03-14", "2016-03-14T10:20:30Z", "... +02:00"), month names
 * ("March 14, 2016", "14 Mar 2016", "Mon, 14 Mar 2016 10:20:30 +0000"),
 * slashes ("03/14/2016" month first, "2016/03/14"), with an optional time
 * ("10:20", "10:20:30.5", "3pm"). A string with no date in it is not a date
 * and the filter returns its input. Times without a zone are local (TZ).
 *
 * strftime follows Ruby: flags - _ 0 ^ #, a width, and the conversions
 * listed in docs/templates.md.
 */
#include "liquid/date.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const month_names[] = {"january",   "february", "march",    "april",
                                          "may",       "june",     "july",     "august",
                                          "september", "october",  "november", "december"};
static const char *const day_names[] = {"sunday",   "monday", "tuesday", "wednesday",
                                        "thursday", "friday", "saturday"};

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

struct dparse {
    int year, mon, day; /* -1 when absent */
    int hour, min, sec;
    bool has_time;
    bool has_zone;
    int zone; /* seconds east of UTC */
    bool utc;
    bool any;
};

/* Reads up to `max` digits; returns the count. */
static int digits(const char *p, const char *e, int max, int *out) {
    int n = 0, v = 0;
    while (p + n < e && n < max && is_digit(p[n])) {
        v = v * 10 + (p[n] - '0');
        n++;
    }
    *out = v;
    return n;
}

static int month_word(const char *p, size_t n) {
    if (n < 3) {
        return -1;
    }
    for (int m = 0; m < 12; m++) {
        size_t ml = strlen(month_names[m]);
        if (n > ml) {
            continue;
        }
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            ok = lower(p[i]) == month_names[m][i];
        }
        if (ok && (n == 3 || n == ml || (m == 8 && n == 4))) {
            return m + 1;
        }
    }
    return -1;
}

static bool day_word(const char *p, size_t n) {
    if (n < 3) {
        return false;
    }
    for (int d = 0; d < 7; d++) {
        size_t dl = strlen(day_names[d]);
        if (n > dl) {
            continue;
        }
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            ok = lower(p[i]) == day_names[d][i];
        }
        if (ok && (n == 3 || n == dl)) {
            return true;
        }
    }
    return false;
}

/* hh:mm[:ss[.frac]] [am|pm] at p; returns the end or NULL. */
static const char *parse_time(const char *p, const char *e, struct dparse *d) {
    int h, m = 0, s = 0;
    int k = digits(p, e, 2, &h);
    if (!k) {
        return NULL;
    }
    const char *q = p + k;
    bool colon = q < e && *q == ':';
    if (colon) {
        int k2 = digits(q + 1, e, 2, &m);
        if (k2 != 2) {
            return NULL;
        }
        q += 1 + k2;
        if (q < e && *q == ':') {
            int k3 = digits(q + 1, e, 2, &s);
            if (k3 != 2) {
                return NULL;
            }
            q += 1 + k3;
            if (q < e && (*q == '.' || *q == ',') && q + 1 < e && is_digit(q[1])) {
                q++;
                while (q < e && is_digit(*q)) {
                    q++;
                }
            }
        }
    }
    const char *r = q;
    while (r < e && *r == ' ') {
        r++;
    }
    bool ampm = false;
    if (r + 1 < e && (lower(*r) == 'a' || lower(*r) == 'p') && lower(r[1]) == 'm' &&
        (r + 2 >= e || !is_alpha(r[2]))) {
        if (h < 1 || h > 12) {
            return NULL;
        }
        h = h % 12 + (lower(*r) == 'p' ? 12 : 0);
        q = r + 2;
        ampm = true;
    }
    if (!colon && !ampm) {
        return NULL;
    }
    if (h > 24 || m > 59 || s > 60) {
        return NULL;
    }
    d->hour = h;
    d->min = m;
    d->sec = s;
    d->has_time = true;
    return q;
}

static const char *parse_zone(const char *p, const char *e, struct dparse *d) {
    while (p < e && *p == ' ') {
        p++;
    }
    if (p < e && (*p == 'Z' || *p == 'z') && (p + 1 >= e || !is_alpha(p[1]))) {
        d->has_zone = d->utc = true;
        d->zone = 0;
        return p + 1;
    }
    if (e - p >= 3 && (memcmp(p, "UTC", 3) == 0 || memcmp(p, "GMT", 3) == 0)) {
        d->has_zone = d->utc = true;
        d->zone = 0;
        p += 3;
    }
    if (p < e && (*p == '+' || *p == '-')) {
        int sign = *p == '-' ? -1 : 1;
        int hh, mm = 0;
        int k = digits(p + 1, e, 2, &hh);
        if (k != 2) {
            return p;
        }
        const char *q = p + 3;
        if (q < e && *q == ':') {
            q++;
        }
        int k2 = digits(q, e, 2, &mm);
        if (k2 == 2) {
            q += 2;
        }
        d->has_zone = true;
        d->utc = false;
        d->zone = sign * (hh * 3600 + mm * 60);
        return q;
    }
    return p;
}

static int fix_year(int y, int ndigits) {
    if (ndigits <= 2) {
        return y >= 69 ? 1900 + y : 2000 + y;
    }
    return y;
}

static bool parse_str(const char *s, size_t n, struct dparse *d) {
    const char *p = s, *e = s + n;
    d->year = d->mon = d->day = -1;
    while (p < e) {
        if (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') {
            p++;
            continue;
        }
        if (is_alpha(*p)) {
            const char *w = p;
            while (p < e && is_alpha(*p)) {
                p++;
            }
            size_t wl = (size_t)(p - w);
            if (p < e && *p == '.') {
                p++;
            }
            int m = month_word(w, wl);
            if (m > 0 && d->mon < 0) {
                d->mon = m;
                d->any = true;
                continue;
            }
            if (day_word(w, wl)) {
                continue;
            }
            if ((wl == 1 && (*w == 'T' || *w == 't'))) {
                continue;
            }
            if ((wl == 3 && (memcmp(w, "UTC", 3) == 0 || memcmp(w, "GMT", 3) == 0)) ||
                (wl == 1 && (*w == 'Z' || *w == 'z'))) {
                p = parse_zone(w, e, d);
                continue;
            }
            return false;
        }
        if (is_digit(*p)) {
            int a;
            int k = digits(p, e, 9, &a);
            const char *q = p + k;
            if (q < e && (*q == '-' || *q == '/' || *q == '.') && k >= 1 && k <= 4) {
                /* a-b-c, a/b/c, a.b.c: year first (y/m/d) unless the last part
                 * has more than two digits, then d/m/y (as Ruby's Date._parse) */
                char sep = *q;
                int b, c;
                int k2 = digits(q + 1, e, 2, &b);
                if (k2 && q + 1 + k2 < e && q[1 + k2] == sep) {
                    int k3 = digits(q + 2 + k2, e, 4, &c);
                    if (k3 && (k3 > 2 ? k <= 2 : true)) {
                        if (k3 > 2) {
                            d->day = a;
                            d->mon = b;
                            d->year = c;
                        } else {
                            d->year = fix_year(a, k);
                            d->mon = b;
                            d->day = c;
                        }
                        d->any = true;
                        p = q + 2 + k2 + k3;
                        if (p < e && (*p == 'T' || *p == 't') && p + 1 < e && is_digit(p[1])) {
                            p++;
                        }
                        continue;
                    }
                }
                return false;
            }
            if (q < e && (*q == ':' || ((*q == 'a' || *q == 'p' || *q == ' ') && k <= 2))) {
                const char *t = parse_time(p, e, d);
                if (t) {
                    d->any = true;
                    p = parse_zone(t, e, d);
                    continue;
                }
            }
            if (k <= 2 && d->day < 0 && (q >= e || !is_digit(*q))) {
                d->day = a;
                p = q;
                if (p + 1 < e && is_alpha(*p) && is_alpha(p[1]) &&
                    (memcmp(p, "st", 2) == 0 || memcmp(p, "nd", 2) == 0 ||
                     memcmp(p, "rd", 2) == 0 || memcmp(p, "th", 2) == 0)) {
                    p += 2;
                }
                continue;
            }
            if ((k == 4 || (k <= 2 && d->day >= 0)) && d->year < 0) {
                d->year = fix_year(a, k);
                p = q;
                continue;
            }
            return false;
        }
        if (*p == '+' || *p == '-') {
            const char *z = parse_zone(p, e, d);
            if (z == p) {
                return false;
            }
            p = z;
            continue;
        }
        return false;
    }
    if (!d->any || (d->mon < 0 && d->day >= 0 && !d->has_time)) {
        return false;
    }
    if (d->mon > 12 || d->mon == 0 || d->day == 0 || d->day > 31) {
        return false;
    }
    return true;
}

bool slm__lq_parse_date(const struct lq_val *v, int64_t now, int64_t *t, int *utc_off,
                        bool *has_off) {
    *has_off = false;
    *utc_off = 0;
    int64_t cur = now ? now : (int64_t)time(NULL);
    if (v->k == LQ_INT) {
        *t = v->u.i;
        return true;
    }
    if (v->k != LQ_STR || v->u.s.n == 0 || v->u.s.n > 200) {
        return false;
    }
    const char *s = v->u.s.p;
    size_t n = v->u.s.n;
    if ((n == 3 && slm_str_eq_nocase(slm_str_n(s, n), SLM_STR("now"))) ||
        (n == 5 && slm_str_eq_nocase(slm_str_n(s, n), SLM_STR("today")))) {
        *t = cur;
        return true;
    }
    bool all_digits = true;
    for (size_t i = 0; i < n && all_digits; i++) {
        all_digits = is_digit(s[i]);
    }
    if (all_digits) {
        int64_t x;
        if (slm_parse_i64(slm_str_n(s, n), &x) != SLM_OK) {
            return false;
        }
        *t = x;
        return true;
    }
    struct dparse d;
    memset(&d, 0, sizeof(d));
    if (!parse_str(s, n, &d)) {
        return false;
    }
    struct tm nowtm;
    time_t ct = (time_t)cur;
    localtime_r(&ct, &nowtm);
    int year = d.year >= 0 ? d.year : nowtm.tm_year + 1900;
    int mon = d.mon >= 0 ? d.mon : (d.day >= 0 ? nowtm.tm_mon + 1 : nowtm.tm_mon + 1);
    int day = d.day >= 0 ? d.day : (d.mon >= 0 ? 1 : nowtm.tm_mday);
    if (d.has_zone) {
        int64_t days = slm_days_from_civil(year, mon, day);
        *t = days * 86400 + d.hour * 3600 + d.min * 60 + d.sec - d.zone;
        *has_off = true;
        *utc_off = d.zone;
        return true;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = d.hour;
    tm.tm_min = d.min;
    tm.tm_sec = d.sec;
    tm.tm_isdst = -1;
    time_t r = mktime(&tm);
    if (r == (time_t)-1 && !(year == 1969 && mon == 12 && day == 31)) {
        return false;
    }
    *t = (int64_t)r;
    return true;
}

/* ---------------------------------------------------------------- strftime */

static const char *const mon_abbr[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const mon_full[] = {"January",   "February", "March",    "April",
                                       "May",       "June",     "July",     "August",
                                       "September", "October",  "November", "December"};
static const char *const day_abbr[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_full[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                       "Thursday", "Friday", "Saturday"};

struct tmx {
    struct tm tm;
    int64_t t;
    int off;
    char zone[16];
};

static void put_text(struct lq_sb *sb, const char *s, int width, char pad, bool upper, bool swap) {
    size_t n = strlen(s);
    for (int i = (int)n; pad != '-' && i < width; i++) {
        slm__lq_sb_putc(sb, pad == '0' ? ' ' : (pad ? pad : ' '));
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (upper || swap) {
            if (c >= 'a' && c <= 'z') {
                c = (char)(c - 32);
            } else if (swap && c >= 'A' && c <= 'Z') {
                c = (char)(c + 32);
            }
        }
        slm__lq_sb_putc(sb, c);
    }
}

static void put_num(struct lq_sb *sb, int64_t v, int width, char pad, char defpad) {
    char buf[32];
    char p = pad ? pad : defpad;
    if (pad == '-') {
        width = 0;
    }
    bool neg = v < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int n = 0;
    do {
        buf[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int len = n + (neg ? 1 : 0);
    if (p == '0' && neg) {
        slm__lq_sb_putc(sb, '-');
    }
    for (int i = len; i < width; i++) {
        slm__lq_sb_putc(sb, p == '0' ? '0' : ' ');
    }
    if (p != '0' && neg) {
        slm__lq_sb_putc(sb, '-');
    }
    while (n) {
        slm__lq_sb_putc(sb, buf[--n]);
    }
}

static int iso_week(const struct tm *tm, int *iso_year) {
    int wday = (tm->tm_wday + 6) % 7; /* Monday = 0 */
    int yday = tm->tm_yday;
    int week = (yday - wday + 10) / 7;
    int year = tm->tm_year + 1900;
    if (week < 1) {
        year--;
        int py = year;
        int pdays = (py % 4 == 0 && (py % 100 != 0 || py % 400 == 0)) ? 366 : 365;
        week = (yday + pdays - wday + 10) / 7;
    } else {
        int days = (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 366 : 365;
        if (yday - wday + 3 >= days) {
            week = 1;
            year++;
        }
    }
    *iso_year = year;
    return week;
}

static void fmt(struct lq_sb *sb, const char *f, size_t n, const struct tmx *x, int depth);

static void conv(struct lq_sb *sb, char c, char pad, int width, bool upper, bool swap, int colons,
                 const struct tmx *x, int depth) {
    const struct tm *tm = &x->tm;
    int iy;
    switch (c) {
    case 'Y': put_num(sb, tm->tm_year + 1900, width, pad, '0'); return;
    case 'C': put_num(sb, (tm->tm_year + 1900) / 100, width ? width : 2, pad, '0'); return;
    case 'y': put_num(sb, (tm->tm_year + 1900) % 100, width ? width : 2, pad, '0'); return;
    case 'm': put_num(sb, tm->tm_mon + 1, width ? width : 2, pad, '0'); return;
    case 'B': put_text(sb, mon_full[tm->tm_mon], width, pad, upper, swap); return;
    case 'b':
    case 'h': put_text(sb, mon_abbr[tm->tm_mon], width, pad, upper, swap); return;
    case 'd': put_num(sb, tm->tm_mday, width ? width : 2, pad, '0'); return;
    case 'e': put_num(sb, tm->tm_mday, width ? width : 2, pad, ' '); return;
    case 'j': put_num(sb, tm->tm_yday + 1, width ? width : 3, pad, '0'); return;
    case 'H': put_num(sb, tm->tm_hour, width ? width : 2, pad, '0'); return;
    case 'k': put_num(sb, tm->tm_hour, width ? width : 2, pad, ' '); return;
    case 'I':
        put_num(sb, tm->tm_hour % 12 ? tm->tm_hour % 12 : 12, width ? width : 2, pad, '0');
        return;
    case 'l':
        put_num(sb, tm->tm_hour % 12 ? tm->tm_hour % 12 : 12, width ? width : 2, pad, ' ');
        return;
    case 'P': put_text(sb, tm->tm_hour < 12 ? "am" : "pm", width, pad, false, false); return;
    case 'p':
        put_text(sb, tm->tm_hour < 12 ? (swap ? "am" : "AM") : (swap ? "pm" : "PM"), width, pad,
                 false, false);
        return;
    case 'M': put_num(sb, tm->tm_min, width ? width : 2, pad, '0'); return;
    case 'S': put_num(sb, tm->tm_sec, width ? width : 2, pad, '0'); return;
    case 'L': put_num(sb, 0, width ? width : 3, '0', '0'); return;
    case 'N': put_num(sb, 0, width ? width : 9, '0', '0'); return;
    case 'A': put_text(sb, day_full[tm->tm_wday], width, pad, upper, swap); return;
    case 'a': put_text(sb, day_abbr[tm->tm_wday], width, pad, upper, swap); return;
    case 'u': put_num(sb, tm->tm_wday ? tm->tm_wday : 7, width, pad, '0'); return;
    case 'w': put_num(sb, tm->tm_wday, width, pad, '0'); return;
    case 'U': put_num(sb, (tm->tm_yday + 7 - tm->tm_wday) / 7, width ? width : 2, pad, '0'); return;
    case 'W':
        put_num(sb, (tm->tm_yday + 7 - (tm->tm_wday + 6) % 7) / 7, width ? width : 2, pad, '0');
        return;
    case 'V': put_num(sb, iso_week(tm, &iy), width ? width : 2, pad, '0'); return;
    case 'G':
        iso_week(tm, &iy);
        put_num(sb, iy, width, pad, '0');
        return;
    case 'g':
        iso_week(tm, &iy);
        put_num(sb, iy % 100, width ? width : 2, pad, '0');
        return;
    case 's': put_num(sb, x->t, width, pad, '0'); return;
    case 'n': slm__lq_sb_putc(sb, '\n'); return;
    case 't': slm__lq_sb_putc(sb, '\t'); return;
    case '%': slm__lq_sb_putc(sb, '%'); return;
    case 'Z': put_text(sb, x->zone, width, pad, upper, swap); return;
    case 'z': {
        int off = x->off;
        char sign = off < 0 ? '-' : '+';
        off = off < 0 ? -off : off;
        char buf[24];
        if (colons == 1) {
            snprintf(buf, sizeof(buf), "%c%02d:%02d", sign, off / 3600, off / 60 % 60);
        } else if (colons >= 2) {
            snprintf(buf, sizeof(buf), "%c%02d:%02d:%02d", sign, off / 3600, off / 60 % 60,
                     off % 60);
        } else {
            snprintf(buf, sizeof(buf), "%c%02d%02d", sign, off / 3600, off / 60 % 60);
        }
        put_text(sb, buf, width, pad, false, false);
        return;
    }
    default: break;
    }
    if (depth > 2) {
        return;
    }
    const char *sub = NULL;
    switch (c) {
    case 'c': sub = "%a %b %e %H:%M:%S %Y"; break;
    case 'D':
    case 'x': sub = "%m/%d/%y"; break;
    case 'F': sub = "%Y-%m-%d"; break;
    case 'T':
    case 'X': sub = "%H:%M:%S"; break;
    case 'R': sub = "%H:%M"; break;
    case 'r': sub = "%I:%M:%S %p"; break;
    case 'v': sub = "%e-%^b-%Y"; break;
    case '+': sub = "%a %b %e %H:%M:%S %Z %Y"; break;
    default: break;
    }
    if (sub) {
        fmt(sb, sub, strlen(sub), x, depth + 1);
        return;
    }
    slm__lq_sb_putc(sb, '%');
    slm__lq_sb_putc(sb, c);
}

static void fmt(struct lq_sb *sb, const char *f, size_t n, const struct tmx *x, int depth) {
    for (size_t i = 0; i < n; i++) {
        if (f[i] != '%' || i + 1 >= n) {
            slm__lq_sb_putc(sb, f[i]);
            continue;
        }
        size_t j = i + 1;
        char pad = 0;
        bool upper = false, swap = false;
        while (j < n && (f[j] == '-' || f[j] == '_' || f[j] == '0' || f[j] == '^' || f[j] == '#')) {
            if (f[j] == '^') {
                upper = true;
            } else if (f[j] == '#') {
                swap = true;
            } else {
                pad = f[j] == '_' ? ' ' : f[j];
            }
            j++;
        }
        int width = 0;
        while (j < n && is_digit(f[j]) && width < 100) {
            width = width * 10 + (f[j] - '0');
            j++;
        }
        int colons = 0;
        while (j < n && f[j] == ':') {
            colons++;
            j++;
        }
        if (j >= n) {
            slm__lq_sb_put(sb, f + i, n - i);
            return;
        }
        conv(sb, f[j], pad, width, upper, swap, colons, x, depth);
        i = j;
    }
}

void slm__lq_strftime(struct lq_sb *sb, const char *f, size_t n, int64_t t, int utc_off,
                      bool has_off) {
    struct tmx x;
    memset(&x, 0, sizeof(x));
    x.t = t;
    time_t tt;
    if (has_off) {
        tt = (time_t)(t + utc_off);
        gmtime_r(&tt, &x.tm);
        x.off = utc_off;
        if (utc_off == 0) {
            memcpy(x.zone, "UTC", 4);
        }
    } else {
        tt = (time_t)t;
        localtime_r(&tt, &x.tm);
        /* The offset is local time read as UTC minus the instant (tm_gmtoff is not POSIX). */
        int64_t as_utc =
            slm_days_from_civil(x.tm.tm_year + 1900, x.tm.tm_mon + 1, x.tm.tm_mday) * 86400 +
            x.tm.tm_hour * 3600 + x.tm.tm_min * 60 + x.tm.tm_sec;
        x.off = (int)(as_utc - (int64_t)tt);
        if (strftime(x.zone, sizeof(x.zone), "%Z", &x.tm) == 0) {
            x.zone[0] = '\0';
        }
    }
    fmt(sb, f, n, &x, 0);
}
