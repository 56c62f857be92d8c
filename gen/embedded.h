/* Files compiled into the library by cmake/embed.cmake (lua/ and templates/). */
#ifndef SP_EMBEDDED_H
#define SP_EMBEDDED_H
#include <stddef.h>

typedef struct sp_embedded_file {
    const char *path;  /* relative to the source root, e.g. "templates/dense_gemv.cu.lua" */
    const char *data;  /* NUL-terminated */
    size_t size;
} sp_embedded_file;

extern const sp_embedded_file sp_embedded_files[]; /* ends with a NULL path */

/* The embedded file at path, or NULL. */
const sp_embedded_file *sp_embedded_find(const char *path);
#endif
