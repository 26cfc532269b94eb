/*
 * store/tmp.c - the store's tmp/ folder: a lock per download, and sweeping
 * what crashed writers left behind.
 *
 * Locks are flock(2) on tmp/<key>.lock, where the key is the file's expected
 * sha256 (or the sha256 of its source when none is published), so two pulls
 * of the same file, from two processes or two threads of `slm serve`, never
 * write one partial file at once. flock, not fcntl: fcntl locks belong to the
 * process, so two threads would share one; a flock belongs to the open file,
 * so every open is its own holder. Either kind is released by the kernel when
 * its holder dies, so a `kill -9` leaves at most a lock file nobody holds.
 *
 * A holder removes the lock file before it releases it. A waiter that opened
 * the file before the removal then locks a file that is no longer in tmp/,
 * so after every flock it checks that the path still names the file it
 * locked (device and inode), and opens it again when not.
 *
 * Sweeping: a file is removed when it is older than its age (the time since
 * its last write: SLM_TMP_PARTIAL_MAX_AGE_S for partial downloads, which can
 * be resumed, SLM_TMP_MAX_AGE_S for anything else) and no live process holds
 * its lock (a partial download's lock file; any other file's own flock, which
 * imports hold while they write). Where the file system has no flock nothing
 * is removed.
 *
 * Thread safety: as the store handle; the locks themselves work across
 * threads and processes.
 */
#include "slm/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static bool no_flock(int e) {
    return e == ENOLCK || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS;
}

int slm__store_trylock(struct slm_store *store, const char *key, struct slm__lock *l,
                       struct slm_err *err) {
    l->fd = -1;
    char fname[80];
    snprintf(fname, sizeof(fname), "%.64s.lock", key);
    if (slm_store_tmp_path(store, fname, l->path, sizeof(l->path)) >= sizeof(l->path)) {
        return slm_err_set(err, SLM_E_TOO_LARGE, "store path too long");
    }
    /* A few rounds: each lost one means a holder removed the file meanwhile. */
    for (int round = 0; round < 16; round++) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            return slm_err_set(err, SLM_E_IO, "%s: %s", l->path, strerror(errno));
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK || e == EINTR) {
                return SLM_OK; /* held elsewhere */
            }
            return slm_err_set(err, no_flock(e) ? SLM_E_UNSUPPORTED : SLM_E_IO, "%s: flock: %s",
                               l->path, strerror(e));
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(l->path, &named) == 0 && same_file(&held, &named)) {
            l->fd = fd;
            return SLM_OK;
        }
        close(fd);
    }
    return SLM_OK; /* the file keeps changing hands: as good as held */
}

void slm__store_unlock(struct slm__lock *l) {
    if (l->fd < 0) {
        return;
    }
    unlink(l->path);
    close(l->fd);
    l->fd = -1;
}

/* "<64 hex>.<ext>": the key of a partial download or a lock file. */
static bool keyed(const char *name, const char *ext, char key[65]) {
    size_t n = strlen(name), e = strlen(ext);
    if (n != 64 + e || strcmp(name + 64, ext) != 0) {
        return false;
    }
    memcpy(key, name, 64);
    key[64] = '\0';
    return slm_is_sha256_hex(slm_str_n(key, 64));
}

/* Removes `name` when no one holds a flock on it; true when removed. */
static bool remove_unlocked(int dir, const char *name, const struct stat *st) {
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return false;
    }
    struct stat now;
    bool removed = false;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &now) == 0 && same_file(&now, st) &&
        now.st_mtime == st->st_mtime) {
        removed = unlinkat(dir, name, 0) == 0;
    }
    close(fd);
    return removed;
}

/* Removes one stale entry of tmp/; true when something was removed. */
static bool sweep_one(struct slm_store *store, int dir, const char *name, time_t now) {
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        return false;
    }
    char key[65];
    bool partial = keyed(name, ".partial", key);
    bool lock = !partial && keyed(name, ".lock", key);
    double age = difftime(now, st.st_mtime);
    if (age < (partial ? SLM_TMP_PARTIAL_MAX_AGE_S : SLM_TMP_MAX_AGE_S)) {
        return false;
    }
    if (!partial && !lock) {
        return remove_unlocked(dir, name, &st);
    }
    /* Under the download's own lock: no pull can be writing or resuming it. */
    struct slm__lock l;
    if (slm__store_trylock(store, key, &l, NULL) != SLM_OK || l.fd < 0) {
        return false;
    }
    bool removed = lock; /* unlocking removes the lock file */
    if (partial) {
        removed = unlinkat(dir, name, 0) == 0;
    }
    slm__store_unlock(&l);
    return removed;
}

size_t slm__store_sweep_tmp(struct slm_store *store, uint64_t *bytes) {
    if (store->swept) {
        return 0;
    }
    store->swept = true;
    char path[PATH_MAX];
    slm_store_tmp_path(store, "", path, sizeof(path));
    DIR *d = opendir(path);
    if (!d) {
        return 0;
    }
    time_t now = time(NULL);
    size_t removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        struct stat st;
        bool have = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (have && sweep_one(store, dirfd(d), e->d_name, now)) {
            SLM_LOG(SLM_LOG_DEBUG, "store: removed stale tmp/%s", e->d_name);
            removed++;
            if (bytes) {
                *bytes += (uint64_t)st.st_size;
            }
        }
    }
    closedir(d);
    return removed;
}
