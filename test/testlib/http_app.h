/* test/testlib/http_app.h: a small HTTP/1.1 app on loopback, one thread per connection, for
 * tests of what makes requests to an app (the proxy's probe port). Each request is answered
 * and the connection closed:
 *   GET /bad       503 "sick\n"
 *   GET /slow      200 "fine\n" after 3 s
 *   GET /redirect  302 to http://127.0.0.1:1/elsewhere
 *   GET /big       200 with 10000 bytes
 *   GET /hdr       200 if the head holds "X-A: b", else 400
 *   anything else  200 "fine\n"
 * The last request head seen (by this app, or given to http_app_note_head) is kept. */
#ifndef WEFT_TEST_TESTLIB_HTTP_APP_H
#define WEFT_TEST_TESTLIB_HTTP_APP_H

#include <stddef.h>

/* http_app_start starts the app on a loopback port of its own; returns the port, or -1. The
 * app runs until the process exits. */
int http_app_start(void);

/* http_app_note_head records |head| as the last one seen (for another app of the test, such as
 * an HTTPS one, that shares the record). */
void http_app_note_head(const char *head);

/* http_app_last_head copies the last head seen into |out| (NUL-terminated, cut to |len|). */
void http_app_last_head(char *out, size_t len);

#endif
