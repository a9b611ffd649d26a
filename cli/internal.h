/* cli/internal.h: what weftctl's command files share. */
#ifndef WEFT_CLI_INTERNAL_H
#define WEFT_CLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes, the same for every command (see `weftctl --help`). */
enum {
    EXIT_VALID = 0,   /* success; for checks: everything checked is valid */
    EXIT_INVALID = 1, /* a check found something invalid, or an operation failed */
    EXIT_USAGE = 2,   /* bad flags, or an input file that cannot be read */
};

#define CLI_MAX_INPUT (1 << 20) /* bytes of any one input file */

int cmd_bundle(int argc, char **argv);
int cmd_ca(int argc, char **argv);
int cmd_id(int argc, char **argv);
int cmd_inject(int argc, char **argv);
int cmd_iptables(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_svid(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_entry(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_wait_ready(int argc, char **argv);
int cmd_scan(int argc, char **argv);

/* cli_ca_status runs `weftctl ca status`, or `ca rotate-root` when |rotate|, against weft-ca's
 * admin socket. */
int cli_ca_status(int argc, char **argv, bool rotate);

/* cli_read reads |path| for the flag |what|; on failure it prints why and returns EXIT_USAGE. */
int cli_read(uint8_t **out, size_t *out_len, const char *what, const char *path);

/* cli_key_type reads --key-type (ec-p256 or ed25519) into |*out| (an enum spiffe_key_type); on
 * anything else it says so and returns EXIT_USAGE. */
int cli_key_type(int *out, const char *arg);

/* cli_now is the current time, or WEFT_NOW from the environment (RFC 3339) when set, so that
 * scripts and tests can pin the clock. */
int64_t cli_now(void);

#endif
