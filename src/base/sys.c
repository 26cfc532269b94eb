/*
 * base/sys.c - slm/sys.h. Linux-only calls (accept4, pipe2, getrandom) are used where the
 * system has them and are otherwise replaced by their POSIX equivalents, so the tree builds
 * with nothing but _POSIX_C_SOURCE=200809L (scripts/check-posix.sh keeps it so).
 */
#if defined(__linux__)
#define _GNU_SOURCE /* accept4, pipe2 */
#endif

#include "slm/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

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
