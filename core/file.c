/* Whole-file reads and atomic writes (see sp_file.h). */
#define _GNU_SOURCE /* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sp_error.h"
#include "sp_file.h"

/* Reads exactly n bytes (retrying short reads); 0 on success. */
static int read_all(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

sprig_status sp_file_read(const char *path, size_t max_bytes, char **out, size_t *len, int *missing) {
    *out = NULL;
    if (len) *len = 0;
    if (missing) *missing = 0;
    /* O_NONBLOCK: opening a FIFO for reading must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (missing) *missing = errno == ENOENT;
        return sp_fail(SPRIG_E_IO, "cannot open '%s': %s", path, strerror(errno));
    }
    struct stat sb;
    sprig_status st = SPRIG_OK;
    if (fstat(fd, &sb) != 0) st = sp_fail(SPRIG_E_IO, "cannot stat '%s': %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = sp_fail(SPRIG_E_IO, "'%s' is not a regular file", path);
    else if ((unsigned long long)sb.st_size > max_bytes)
        st = sp_fail(SPRIG_E_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
    char *buf = NULL;
    const size_t n = st == SPRIG_OK ? (size_t)sb.st_size : 0;
    if (st == SPRIG_OK && !(buf = malloc(n + 1))) st = sp_fail(SPRIG_E_NOMEM, "out of memory reading '%s'", path);
    if (st == SPRIG_OK && read_all(fd, buf, n) != 0) st = sp_fail(SPRIG_E_IO, "cannot read '%s'", path);
    close(fd);
    if (st != SPRIG_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return SPRIG_OK;
}

static sprig_status write_all(int fd, const char *data, size_t len, const char *path) {
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return sp_fail(SPRIG_E_IO, "cannot write %s: %s", path, strerror(errno));
        data += w;
        len -= (size_t)w;
    }
    return SPRIG_OK;
}

sprig_status sp_file_write_atomic(const char *path, const void *data, size_t len) {
    const size_t cap = strlen(path) + 16;
    char *tmp = malloc(cap), *dir = strdup(path);
    if (!tmp || !dir) {
        free(tmp), free(dir);
        return sp_fail(SPRIG_E_NOMEM, "out of memory writing %s", path);
    }
    /* A fresh unpredictable name, created exclusively: never a file or link that was already there. */
    snprintf(tmp, cap, "%s.tmpXXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    sprig_status st = SPRIG_OK;
    if (fd < 0) st = sp_fail(SPRIG_E_IO, "cannot create a temporary file beside %s: %s", path, strerror(errno));
    if (st == SPRIG_OK) {
        st = write_all(fd, data, len, tmp);
        if (st == SPRIG_OK && fchmod(fd, 0644) != 0)
            st = sp_fail(SPRIG_E_IO, "cannot chmod %s: %s", tmp, strerror(errno));
        if (st == SPRIG_OK && fsync(fd) != 0) st = sp_fail(SPRIG_E_IO, "cannot fsync %s: %s", tmp, strerror(errno));
        if (close(fd) != 0 && st == SPRIG_OK) st = sp_fail(SPRIG_E_IO, "cannot close %s: %s", tmp, strerror(errno));
        if (st == SPRIG_OK && rename(tmp, path) != 0)
            st = sp_fail(SPRIG_E_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st != SPRIG_OK) unlink(tmp);
    }
    if (st == SPRIG_OK) { /* best effort: makes the rename itself durable */
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        int dfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(tmp), free(dir);
    return st;
}

static int mkdir_one(const char *path) {
    if (mkdir(path, 0755) == 0) return 0;
    struct stat sb;
    if (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
    return -1;
}

int sp_mkdir_p(const char *path) {
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i < len; ++i) {
        if (buf[i] != '/') continue;
        buf[i] = '\0';
        int rc = mkdir_one(buf);
        buf[i] = '/';
        if (rc != 0) return -1;
    }
    return mkdir_one(buf);
}
