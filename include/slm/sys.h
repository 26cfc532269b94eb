/*
 * slm/sys.h - the few system calls slm needs whose best form is not in POSIX, behind one
 * portable door each: the Linux (and BSD) call where the system has it, a POSIX fallback
 * elsewhere (macOS). Descriptors are born close-on-exec where the system can do it atomically,
 * and marked right after creation otherwise.
 */
#ifndef SLM_SYS_H
#define SLM_SYS_H

#include <stddef.h>
#include <sys/socket.h>

/* MSG_NOSIGNAL where the system has it; elsewhere 0 (the programs that write to sockets ignore
 * SIGPIPE: slm serve does). */
#ifdef MSG_NOSIGNAL
#define SLM_MSG_NOSIGNAL MSG_NOSIGNAL
#else
#define SLM_MSG_NOSIGNAL 0
#endif

/* socket(2), close-on-exec. -1 with errno on failure. */
int slm_socket_cloexec(int domain, int type, int protocol);
/* accept(2), the new descriptor close-on-exec. -1 with errno on failure. */
int slm_accept_cloexec(int fd, struct sockaddr *addr, socklen_t *len);
/* pipe(2), both ends close-on-exec. 0, or -1 with errno. */
int slm_pipe_cloexec(int fds[2]);
/* `n` bytes from the system's random source (getrandom, arc4random_buf, /dev/urandom). 0, or -1
 * when none could be read (the caller decides whether that matters). */
int slm_random_bytes(void *buf, size_t n);

/* ---------------------------------------------------------------- threads */

/* The cores llama.cpp would use: online CPUs, halved above 4 (hyper-threading assumed). */
int slm_physical_cores(void);
/* CPUs other processes keep busy right now, measured over about `ms` milliseconds while the
 * caller waits (Linux: /proc/stat; elsewhere 0: unknown). */
double slm_cpus_busy(int ms);
/* The compute threads to use when the user did not say: slm_threads_for(physical cores, CPUs
 * busy now), measured once every few seconds at most. On a machine another job keeps busy,
 * spinning compute threads that share cores with it make both many times slower
 * (bench/run_contention.sh); fewer threads avoid that. */
int slm_default_threads(void);
/* Pure: `physical` less the CPUs `busy` (a CPU half busy or more counts), at least 1. */
int slm_threads_for(int physical, double busy);

#endif /* SLM_SYS_H */
