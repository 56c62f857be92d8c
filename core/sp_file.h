/* Internal interface of core/: reading and writing whole files.
 *
 * Every file sprig reads whole (templates, config.json, slicing JSON, the
 * tokenizer, tuning databases, cached cubins) goes through sp_file_read: it
 * opens without blocking, refuses anything but a regular file (a FIFO or a
 * directory under a file's name must not hang or mislead sprig), and reads
 * at most a stated number of bytes. Writes go to a private temporary file
 * in the same folder and are renamed over the target, so a reader never sees
 * half a file and a crash leaves the old one. */
#ifndef SP_FILE_H
#define SP_FILE_H

#include <stddef.h>

#include "sprig.h"

#pragma GCC visibility push(default)

/* Reads path whole into *out (malloc'ed, NUL-terminated; *len bytes without
 * the NUL). Fails with SPRIG_E_IO when it cannot be opened or read (then
 * *missing, if not NULL, says whether it does not exist) or is not a regular
 * file, and SPRIG_E_FORMAT when it is larger than max_bytes. The message
 * names the path. */
sprig_status sp_file_read(const char *path, size_t max_bytes, char **out, size_t *len, int *missing);

/* Writes len bytes to path atomically: a new temporary file beside it
 * (O_EXCL, never following a link), fsync'ed, then renamed over path. */
sprig_status sp_file_write_atomic(const char *path, const void *data, size_t len);

/* mkdir -p with mode 0755; returns 0 on success (or when it exists). */
int sp_mkdir_p(const char *path);

#pragma GCC visibility pop
#endif
