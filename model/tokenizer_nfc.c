/* The NFC normalizer (Qwen2 / Qwen2.5 tokenizer.json: "normalizer": {"type": "NFC"}).
 *
 * Unicode normalization needs the Unicode character database (canonical
 * decompositions, combining classes, composition exclusions), so it comes
 * from utf8proc (Debian's libutf8proc-dev) rather than tables of our own.
 * Kept in its own file so the dependency has one user. */
#include <stdint.h>
#include <stdlib.h>

#include <utf8proc.h>

#include "sp_error.h"
#include "tokenizer_internal.h"

sprig_status sp_tk_nfc(const char *s, size_t n, sp_tk_buf *out) {
    out->len = 0;
    if (n == 0) return sp_tk_buf_append(out, "", 0);
    /* utf8proc counts in a signed size and works on 4-byte code points */
    if (n > (size_t)PTRDIFF_MAX / 8)
        return sp_fail(SPRIG_E_INVALID, "NFC normalization: text of %zu bytes is too long", n);
    utf8proc_uint8_t *dst = NULL;
    /* An explicit length (no UTF8PROC_NULLTERM): NUL bytes are text here.
     * STABLE: no characters unassigned in utf8proc's Unicode version are
     * composed, as the standard requires for stable results. */
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                        UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (len < 0) {
        /* Callers pass valid UTF-8 (encode replaces invalid bytes first), so
         * this is out of memory or a utf8proc that disagrees about validity. */
        if (len == UTF8PROC_ERROR_NOMEM) return sp_fail(SPRIG_E_NOMEM, "out of memory in NFC normalization");
        return sp_fail(SPRIG_E_INVALID, "NFC normalization failed: %s", utf8proc_errmsg(len));
    }
    sprig_status st = sp_tk_buf_append(out, dst, (size_t)len);
    free(dst);
    return st;
}
