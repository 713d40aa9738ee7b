/*
 * Error codes shared by every rangekv module and by clients.
 *
 * Every fallible call returns 0 on success and a negative value on failure:
 *   - system failures pass through as negated errno (-ENOMEM, -EIO; libuv's
 *     UV_E* constants already follow this convention);
 *   - rangekv's own failures are the RKV_E* constants below, at -1000 and
 *     lower, so they never collide with an errno.
 * rkv_strerror() names both kinds.
 *
 * New codes are appended at the end with the next free value; a code's value
 * never changes, because it travels on the wire in error replies.
 */
#ifndef RANGEKV_ERROR_H
#define RANGEKV_ERROR_H

enum {
    RKV_EMALFORMED = -1000,     /* a frame, message or record failed to decode */
    RKV_ENOTLEADER = -1001,     /* this replica is not the range's leader */
    RKV_EKEYMISMATCH = -1002,   /* the key is outside the addressed range */
    RKV_ERANGENOTFOUND = -1003, /* no replica of that range on this node */
    RKV_ETOOLARGE = -1004,      /* a key, value, batch or frame over its limit */
    RKV_EUNAVAILABLE = -1005,   /* no quorum or no leader right now; retry */
    RKV_ECONDFAILED = -1006,    /* compare-and-swap found another value */
    RKV_ENOTFOUND = -1007,      /* the key does not exist */
    RKV_ECORRUPT = -1008,       /* stored data fails its own checks */
    RKV_ESTALE = -1009,         /* a stale term, generation or descriptor */
    RKV_EBUSY = -1010,          /* a queue or in-flight limit is full; retry */
    RKV_ESHUTDOWN = -1011,      /* the object is closing */
    RKV_EUNKNOWN = -1012,       /* a write's outcome cannot be known */
    RKV_ECLUSTERID = -1013,     /* a peer belongs to another cluster */
    RKV_ETIMEOUT = -1014,       /* a deadline passed */
    RKV_EMAPFULL = -1015,       /* the LMDB map could not grow further */
    RKV_ECONFIG = -1016,        /* an invalid setting or command line */
    RKV_ECONFCHANGE = -1017,    /* a membership change is already pending */
    RKV_EDROPPED = -1018,       /* a proposal was dropped (leader changed) */
    RKV_ECOMPACTED = -1019,     /* the log entry was compacted away */
    RKV_EPROTO = -1020,         /* a peer broke the protocol or its version */
    RKV_EAUTH = -1021,          /* the cluster secret did not match */
    RKV_ESPLITTING = -1022,     /* the range is being split; retry */
    RKV_ENOSPACE = -1023,       /* the disk is full; writes are stopped */
    RKV_ESQL = -1024,           /* an SQL statement failed; see its message */
};

/* Returns a static, human-readable message for any rangekv or errno code. */
const char *rkv_strerror(int rv);

/* Returns the symbolic name ("RKV_ENOTLEADER", "ENOENT") of a code. */
const char *rkv_errname(int rv);

#endif /* RANGEKV_ERROR_H */
