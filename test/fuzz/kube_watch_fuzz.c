/* Fuzzes what weft-ca reads from the Kubernetes API (ca/kube_watch.h): the input, as a watch
 * stream, is split into lines (in two pieces, at a place the input picks); each line is parsed
 * as an event and its object converted into a policy file, which must be JSON naming the same
 * object under k8s/<plural>/, and which the loader then reads. The whole input is also parsed
 * as a LIST page. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ca/kube_watch.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_object(const json_t *obj)
{
    struct ca_kube_file f;
    char err[256];
    if (ca_kube_object_file(&f, obj, "authorizationpolicies", err, sizeof(err)) != WEFT_OK) {
        return;
    }
    if (strncmp(f.name, "k8s/authorizationpolicies/", 26) != 0 || strstr(f.name, "..") != NULL ||
        strlen(f.data) != f.len) {
        abort(); /* a file name that leaves its folder, or bytes that are not one string */
    }
    json_error_t jerr;
    json_t *back = json_loadb(f.data, f.len, 0, &jerr);
    if (back == NULL || !json_equal(json_object_get(json_object_get(back, "metadata"), "name"),
                                    json_object_get(json_object_get(obj, "metadata"), "name"))) {
        abort(); /* what we write is JSON, about the same object */
    }
    json_decref(back);
    struct policy_set set;
    policy_set_init(&set);
    if (policy_set_load_buffer(&set, f.name, (const uint8_t *)f.data, f.len) != WEFT_OK) {
        /* invalid policy: the loader said why */
    }
    policy_set_cleanup(&set);
    ca_kube_file_cleanup(&f);
}

static int on_line(void *arg, const char *line, size_t len)
{
    (void)arg;
    struct ca_kube_event ev;
    char err[256];
    if (ca_kube_event_parse(&ev, line, len, err, sizeof(err)) != WEFT_OK) {
        return WEFT_OK; /* the client reconnects; here the next line is tried */
    }
    if (ev.object != NULL) {
        check_object(ev.object);
    }
    ca_kube_event_cleanup(&ev);
    return WEFT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ca_kube_lines lines;
    ca_kube_lines_init(&lines, 1u << 16);
    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    if (ca_kube_lines_feed(&lines, (const char *)data, cut, on_line, NULL) == WEFT_OK &&
        ca_kube_lines_feed(&lines, (const char *)data + cut, size - cut, on_line, NULL) ==
            WEFT_OK &&
        ca_kube_lines_feed(&lines, "\n", 1, on_line, NULL) != WEFT_OK) {
        /* the last line, over the limit */
    }
    ca_kube_lines_cleanup(&lines);

    struct ca_kube_list list;
    char err[256];
    if (ca_kube_list_parse(&list, (const char *)data, size, err, sizeof(err)) == WEFT_OK) {
        size_t i;
        json_t *item;
        json_array_foreach(list.items, i, item) { check_object(item); }
        ca_kube_list_cleanup(&list);
    }
    return 0;
}
