/* weftctl id check: the SPIFFE ID parser of lib/spiffe, from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/internal.h"
#include "lib/spiffe/id.h"

static const char usage[] =
    "usage: weftctl id check [--] ID...\n"
    "       weftctl id check -        (one ID per line on standard input)\n"
    "\n"
    "Checks each ID against SPIFFE-ID.md §2, strictly: the scheme and trust domain must be\n"
    "lowercase, the trust domain at most 255 bytes, the ID at most 2048 bytes, no percent-\n"
    "encoding, no '.'/'..'/empty segments, no trailing '/', no query or fragment.\n"
    "Prints one line per invalid ID on stderr with the rule that failed; nothing for valid IDs.\n"
    "Exit: 0 every ID valid, 1 any invalid, 2 usage.\n";

static int check_one(const char *s, size_t len)
{
    struct spiffe_id id;
    struct spiffe_why why;
    if (spiffe_id_parse(&id, s, len, &why) == WEFT_OK) {
        return 0;
    }
    /* Print the ID as given, escaping what a terminal would hide. */
    fputs("invalid SPIFFE ID \"", stderr);
    for (size_t i = 0; i < len && i < 256; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            fprintf(stderr, "\\x%02x", c);
        } else {
            fputc(c, stderr);
        }
    }
    fprintf(stderr, "%s\": %s\n", len > 256 ? "..." : "", why.msg);
    return 1;
}

static int check_stdin(void)
{
    char *line = NULL;
    size_t cap = 0, num_ids = 0;
    ssize_t n;
    int bad = 0;
    /* getline keeps NUL bytes, so an ID with one inside is judged whole, and refused (A3/A7). */
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        if (len > 0 && line[len - 1] == '\n') {
            len--;
        }
        if (len > 0 && line[len - 1] == '\r') {
            len--;
        }
        bad |= check_one(line, len);
        num_ids++;
    }
    free(line);
    if (num_ids == 0) {
        fputs("weftctl: id check -: no IDs on standard input\n", stderr);
        return EXIT_USAGE;
    }
    return bad ? EXIT_INVALID : EXIT_VALID;
}

int cmd_id(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "check") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(usage, stdout);
            return EXIT_VALID;
        }
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    int first = 2;
    if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        fputs(usage, stdout);
        return EXIT_VALID;
    }
    if (argc > 2 && strcmp(argv[2], "--") == 0) {
        first = 3;
    }
    if (first >= argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (argc == 3 && strcmp(argv[2], "-") == 0) {
        return check_stdin();
    }
    int bad = 0;
    for (int i = first; i < argc; i++) {
        bad |= check_one(argv[i], strlen(argv[i]));
    }
    return bad ? EXIT_INVALID : EXIT_VALID;
}
