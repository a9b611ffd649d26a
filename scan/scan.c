/* scan/scan.c: what the libraries of weftctl scan share (scan.h). */
#include "scan/scan.h"

const char *scan_severity_name(enum scan_severity s)
{
    switch (s) {
    case SCAN_SEV_INFO:
        return "info";
    case SCAN_SEV_WARN:
        return "warn";
    case SCAN_SEV_PAGE:
        return "page";
    case SCAN_SEV_CRITICAL:
        return "critical";
    }
    return "unknown";
}
