/*
 * file.c - whole-file reads with a cap, atomic writes (temp + fsync + rename),
 * directory helpers.
 */
#include "slm/base.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int slm_file_read(const char *path, size_t max, struct slm_buf *out, struct slm_err *err) {
    slm_buf_clear(out);
    out->max = max ? max : SLM_BUF_DEFAULT_MAX;
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return slm_err_set(err, errno == ENOENT ? SLM_E_NOT_FOUND : SLM_E_IO, "%s: %s", path,
                           strerror(errno));
    }
    int rc = SLM_OK;
    for (;;) {
        rc = slm_buf_reserve(out, 65536);
        if (rc == SLM_E_TOO_LARGE) {
            /* Room may remain below the cap: read what fits, then probe for more. */
            size_t room = out->max - out->len;
            rc = room ? slm_buf_reserve(out, room) : SLM_OK;
            if (rc != SLM_OK) {
                break;
            }
            ssize_t n = room ? read(fd, out->ptr + out->len, room) : 0;
            if (n > 0) {
                out->len += (size_t)n;
                out->ptr[out->len] = '\0';
                continue;
            }
            char probe;
            if (read(fd, &probe, 1) == 1) {
                rc = slm_err_set(err, SLM_E_TOO_LARGE, "%s: larger than %zu bytes", path, out->max);
            }
            break;
        }
        if (rc != SLM_OK) {
            slm_err_set(err, rc, "%s: %s", path, slm_strerror(rc));
            break;
        }
        ssize_t n = read(fd, out->ptr + out->len, 65536);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        out->len += (size_t)n;
        out->ptr[out->len] = '\0';
    }
    if (!is_stdin) {
        close(fd);
    }
    if (rc == SLM_OK && !out->ptr) {
        rc = slm_buf_reserve(out, 0);
        if (rc == SLM_OK) {
            out->ptr[0] = '\0';
        }
    }
    return rc;
}

int slm_write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int slm_fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(dir)) {
        return SLM_E_TOO_LARGE;
    }
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return SLM_E_IO;
    }
    int rc = fsync(fd) == 0 ? SLM_OK : SLM_E_IO;
    close(fd);
    return rc;
}

int slm_file_write_atomic(const char *path, const void *data, size_t n, struct slm_err *err) {
    char tmp[PATH_MAX];
    int len = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof(tmp)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return slm_err_set(err, SLM_E_IO, "%s: %s", tmp, strerror(errno));
    }
    if (slm_write_all(fd, data, n) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return slm_err_set(err, SLM_E_IO, "%s: %s", path, strerror(e));
    }
    slm_fsync_dir_of(path);
    return SLM_OK;
}

int slm_mkdir_parent(const char *path, struct slm_err *err) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) {
        return SLM_OK;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    return slm_dir_exists(dir) ? SLM_OK : slm_mkdir_p(dir, err);
}

int slm_mkdir_p(const char *path, struct slm_err *err) {
    char p[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(p)) {
        return slm_err_set(err, SLM_E_INVALID, "bad directory path '%s'", path);
    }
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char saved = p[i];
            p[i] = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                return slm_err_set(err, SLM_E_IO, "%s: %s", p, strerror(errno));
            }
            p[i] = saved;
        }
    }
    if (!slm_dir_exists(path)) {
        return slm_err_set(err, SLM_E_IO, "%s: not a directory", path);
    }
    return SLM_OK;
}

bool slm_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool slm_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int64_t slm_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        return -1;
    }
    return (int64_t)st.st_size;
}

size_t slm_path_join(char *out, size_t cap, const char *a, const char *b) {
    size_t la = strlen(a);
    bool slash = la > 0 && a[la - 1] != '/';
    int n = snprintf(out, cap, "%s%s%s", a, slash ? "/" : "", b);
    return n < 0 ? 0 : (size_t)n;
}

int slm_home_dir(const char *home, char *out, size_t cap, struct slm_err *err) {
    const char *env = getenv("SLM_HOME");
    int n;
    if (home && home[0]) {
        n = snprintf(out, cap, "%s", home);
    } else if (env && env[0]) {
        n = snprintf(out, cap, "%s", env);
    } else {
        const char *h = getenv("HOME");
        if (!h || !h[0]) {
            return slm_err_set(err, SLM_E_INVALID, "neither SLM_HOME nor HOME is set");
        }
        n = snprintf(out, cap, "%s/.slm", h);
    }
    if (n < 0 || (size_t)n >= cap) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "SLM_HOME path too long");
    }
    while (n > 1 && out[n - 1] == '/') {
        out[--n] = '\0';
    }
    return SLM_OK;
}
