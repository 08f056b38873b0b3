/* The NBD backend of struct io_file: a member on a Network Block Device
 * server, named by its URI (nbd://host[:port]/export, nbds://... with
 * TLS, nbd+unix:///export?socket=PATH), reached through libnbd.
 *
 * Every request has a deadline (the member timeout): a server that does
 * not answer in time, or a connection that drops, fails the request, and
 * the connection is closed; the file then answers every request with an
 * error until io_reconnect makes a new connection (re-add). */
#ifndef MDFUSE_IO_NBD_H
#define MDFUSE_IO_NBD_H

#include <stdbool.h>
#include <stddef.h>

struct io_file;

#define IO_NBD_DEFAULT_TIMEOUT 30

/* The length of NAME's NBD URI scheme with its "//" ("nbd://",
 * "nbds+unix://", ...), or 0 when NAME is not an NBD URI. */
size_t io_nbd_scheme_len (const char *name);

/* The length of the NBD URI at the start of LIST, a member list in which
 * members are separated by ':' (SPEC §7): the URI's own ':' (a port, an
 * IPv6 address, a user's password) are part of it; after its host and
 * port, the first ':' ends it.  0 when LIST does not start with one. */
size_t io_nbd_uri_len (const char *list);

/* The URI as messages and status show it: a password in its user part
 * is left out.  Writes at most LEN bytes to BUF. */
void io_nbd_display_name (const char *uri, char *buf, size_t len);

/* Seconds a request may take before the connection is given up (the
 * daemon's -o member_timeout); IO_NBD_DEFAULT_TIMEOUT by default. */
void io_nbd_set_timeout (unsigned seconds);

/* Connects to URI (within the timeout).  IO_OPEN_READONLY accepts a
 * read-only export; IO_OPEN_LOCK, _CREATE and _EXCL have no meaning for
 * an export and are ignored.  Returns NULL with errno set; a message
 * naming the URI has been logged. */
struct io_file *io_nbd_open (const char *uri, int flags);

#endif
