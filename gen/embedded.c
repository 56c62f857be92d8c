#include <string.h>

#include "embedded.h"

const sp_embedded_file *sp_embedded_find(const char *path) {
    for (const sp_embedded_file *f = sp_embedded_files; f->path; ++f)
        if (strcmp(f->path, path) == 0) return f;
    return NULL;
}
