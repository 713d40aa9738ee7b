/* Names and messages for rangekv's error codes and for negated errno. */
#include "common/common.h"

#include <string.h>

struct error_entry {
    int code;
    const char *name;
    const char *message;
};

static const struct error_entry rkv_errors[] = {
    {RKV_EMALFORMED, "RKV_EMALFORMED", "malformed message or record"},
    {RKV_ENOTLEADER, "RKV_ENOTLEADER", "not the leader of the range"},
    {RKV_EKEYMISMATCH, "RKV_EKEYMISMATCH", "key is outside the range"},
    {RKV_ERANGENOTFOUND, "RKV_ERANGENOTFOUND", "range not found on this node"},
    {RKV_ETOOLARGE, "RKV_ETOOLARGE", "size over the limit"},
    {RKV_EUNAVAILABLE, "RKV_EUNAVAILABLE", "range unavailable (no quorum or no leader)"},
    {RKV_ECONDFAILED, "RKV_ECONDFAILED", "compare-and-swap condition failed"},
    {RKV_ENOTFOUND, "RKV_ENOTFOUND", "key not found"},
    {RKV_ECORRUPT, "RKV_ECORRUPT", "stored data is corrupt"},
    {RKV_ESTALE, "RKV_ESTALE", "stale term, generation or descriptor"},
    {RKV_EBUSY, "RKV_EBUSY", "limit reached, retry later"},
    {RKV_ESHUTDOWN, "RKV_ESHUTDOWN", "shutting down"},
    {RKV_EUNKNOWN, "RKV_EUNKNOWN", "outcome unknown (connection lost after sending)"},
    {RKV_ECLUSTERID, "RKV_ECLUSTERID", "peer belongs to another cluster"},
    {RKV_ETIMEOUT, "RKV_ETIMEOUT", "timed out"},
    {RKV_EMAPFULL, "RKV_EMAPFULL", "LMDB map is full and could not grow"},
    {RKV_ECONFIG, "RKV_ECONFIG", "invalid configuration"},
    {RKV_ECONFCHANGE, "RKV_ECONFCHANGE", "a membership change is already pending"},
    {RKV_EDROPPED, "RKV_EDROPPED", "proposal dropped"},
    {RKV_ECOMPACTED, "RKV_ECOMPACTED", "log entry compacted"},
    {RKV_EPROTO, "RKV_EPROTO", "protocol violation"},
    {RKV_EAUTH, "RKV_EAUTH", "authentication failed"},
    {RKV_ESPLITTING, "RKV_ESPLITTING", "range is splitting, retry"},
    {RKV_ENOSPACE, "RKV_ENOSPACE", "disk full, writes stopped"},
    {RKV_ESQL, "RKV_ESQL", "SQL statement failed"},
};

static const struct error_entry *find_error(int rv)
{
    for (size_t i = 0; i < RKV_ARRAY_SIZE(rkv_errors); i++) {
        if (rkv_errors[i].code == rv) {
            return &rkv_errors[i];
        }
    }
    return NULL;
}

const char *rkv_strerror(int rv)
{
    const struct error_entry *entry;

    if (rv == 0) {
        return "success";
    }
    entry = find_error(rv);
    if (entry != NULL) {
        return entry->message;
    }
    if (rv < 0 && rv > -4096) {
        return strerror(-rv);
    }
    return "unknown error";
}

const char *rkv_errname(int rv)
{
    const struct error_entry *entry;

    if (rv == 0) {
        return "OK";
    }
    entry = find_error(rv);
    if (entry != NULL) {
        return entry->name;
    }
    if (rv < 0 && rv > -4096) {
        const char *name = strerrorname_np(-rv);
        return name != NULL ? name : "EUNKNOWN";
    }
    return "EUNKNOWN";
}
