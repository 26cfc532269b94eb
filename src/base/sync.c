/*
 * base/sync.c - slm/sync.h: monotonic timed waits on every system we build on.
 */
#include "slm/sync.h"

#include <errno.h>
#include <math.h>
#include <time.h>

#include "slm/base.h"

static struct timespec span(double seconds) {
    if (!(seconds > 0)) {
        return (struct timespec){0, 0};
    }
    double whole = floor(seconds);
    struct timespec ts = {(time_t)whole, (long)((seconds - whole) * 1e9)};
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#if defined(__APPLE__)

int slm_cond_init_mono(pthread_cond_t *c) {
    return pthread_cond_init(c, NULL);
}

int slm_cond_wait_for(pthread_cond_t *c, pthread_mutex_t *m, double seconds) {
    struct timespec rel = span(seconds);
    return pthread_cond_timedwait_relative_np(c, m, &rel);
}

#else

int slm_cond_init_mono(pthread_cond_t *c) {
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(c, &ca);
    }
    pthread_condattr_destroy(&ca);
    return rc;
}

int slm_cond_wait_for(pthread_cond_t *c, pthread_mutex_t *m, double seconds) {
    struct timespec now, rel = span(seconds);
    clock_gettime(CLOCK_MONOTONIC, &now);
    now.tv_sec += rel.tv_sec;
    now.tv_nsec += rel.tv_nsec;
    if (now.tv_nsec >= 1000000000L) {
        now.tv_sec++;
        now.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(c, m, &now);
}

#endif

int slm_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, double deadline) {
    double left = deadline - slm_time_mono();
    return left > 0 ? slm_cond_wait_for(c, m, left) : ETIMEDOUT;
}
