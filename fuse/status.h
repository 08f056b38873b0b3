/* The array's status as the control channel shows it: text (like
 * /proc/mdstat) and JSON (for scripts and mdfusectl), rendered from the
 * snapshot core gives (struct array_status). */
#ifndef MDFUSE_STATUS_H
#define MDFUSE_STATUS_H

#include <stddef.h>

#include "core/array.h"

/* Render ST into BUF (LEN bytes, NUL-terminated, cut if too small).
 * Return the length of the text, or a negative errno. */
int status_render_text (const struct array_status *st, char *buf, size_t len);
int status_render_json (const struct array_status *st, char *buf, size_t len);

#endif
