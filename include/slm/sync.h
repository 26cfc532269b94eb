/*
 * slm/sync.h - condition variables with timed waits on the monotonic clock, one portable
 * place: Linux and the BSDs set the clock of a condition variable
 * (pthread_condattr_setclock, POSIX), macOS has no such call and waits on a relative
 * timeout instead (pthread_cond_timedwait_relative_np). Either way a wait is not stretched or
 * cut short by a change of the wall clock.
 */
#ifndef SLM_SYNC_H
#define SLM_SYNC_H

#include <pthread.h>

/* Initializes `c` for slm_cond_wait_for() / slm_cond_wait_until(). 0 or the pthread error. */
int slm_cond_init_mono(pthread_cond_t *c);
/* Waits on `c` (with `m` held) at most `seconds` (<= 0: does not block). 0 when signalled (or
 * spuriously woken: callers re-check their condition), ETIMEDOUT when the time ran out. */
int slm_cond_wait_for(pthread_cond_t *c, pthread_mutex_t *m, double seconds);
/* Waits on `c` (with `m` held) until `deadline`, in slm_time_mono() seconds. As above. */
int slm_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, double deadline);

#endif /* SLM_SYNC_H */
