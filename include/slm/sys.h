/*
 * slm/sys.h - the few system calls slm needs whose best form is not in POSIX, behind one
 * portable door each: the Linux (and BSD) call where the system has it, a POSIX fallback
 * elsewhere (macOS). Descriptors are born close-on-exec where the system can do it atomically,
 * and marked right after creation otherwise.
 */
#ifndef SLM_SYS_H
#define SLM_SYS_H

#include <stddef.h>
#include <stdint.h>
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

/* ---------------------------------------------------------------- memory */

/* Memory this process may still use, for "will it fit?" (slm/memory.h). */
struct slm_mem_avail {
    uint64_t available; /* bytes that can be used now without swapping or hitting a limit */
    uint64_t total;     /* bytes of RAM, or the cgroup's limit when that is lower */
    char source[48];    /* where `available` came from: "MemAvailable", "cgroup v2 memory.max",
                           "cgroup v1 limit", "physical memory", "SLM_MEMORY_AVAILABLE" */
};

/*
 * Fills `out` with the memory available now. Linux: /proc/meminfo's MemAvailable, lowered to
 * the room left under the process's cgroup limit (v2 memory.max - memory.current, v1
 * memory.limit_in_bytes - memory.usage_in_bytes) when there is one. Elsewhere the physical
 * memory (sysconf), which overstates what is free. The environment variable
 * SLM_MEMORY_AVAILABLE=BYTES replaces the answer (tests; a user who knows better); a value
 * that is not a whole number of bytes is ignored. Always succeeds (0); out->available is 0
 * only when nothing could be read.
 */
int slm_mem_available(struct slm_mem_avail *out);

#endif /* SLM_SYS_H */
