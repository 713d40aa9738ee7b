/*
 * Membership changes: one server at a time (Raft thesis 4.1), with
 * learners that catch up before they vote (thesis 4.2.1).
 *
 * A configuration is carried whole in an ENTRY_CONF entry and takes effect
 * on each replica as soon as the entry is appended, committed or not. When
 * a conflicting suffix holding such an entry is truncated, the replica
 * falls back to the latest configuration still in its log.
 *
 * Safety rules the leader enforces before proposing a change:
 *   1. No other change is uncommitted: configurations of adjacent changes
 *      then differ by one server, so any two quorums overlap.
 *   2. The leader has committed an entry of its current term. Without
 *      this, a change proposed right after a leader change can overlap an
 *      uncommitted change of an earlier leader. Two configurations that
 *      differ by two servers then coexist, and a committed entry can be
 *      overwritten (Diego Ongaro, raft-dev mailing list, "bug in
 *      single-server membership changes", July 2015). Committing the new
 *      leader's no-op first rules that out.
 * A leader that removes itself keeps leading without counting itself until
 * the change commits, then steps down (thesis 4.2.2). A removed server
 * still campaigns, without counting its own vote, since before the removal
 * commits the others may need it as leader (rkv_raft__may_campaign).
 */
#include "raft/raft_internal.h"

#include <errno.h>
#include <string.h>

#define RKV_LOG_SUBSYS "raft"
#include "common/common.h"

RkvRaft__Conf *rkv_raft__conf_to_pb(const struct rkv_raft_conf *conf)
{
    RkvRaft__Conf *pb;

    pb = rkv_malloc(sizeof(*pb));
    if (pb == NULL) {
        return NULL;
    }
    rkv_raft__conf__init(pb);
    if (conf->n_servers == 0) {
        return pb;
    }
    pb->servers = rkv_calloc(conf->n_servers, sizeof(*pb->servers));
    if (pb->servers == NULL) {
        rkv_free(pb);
        return NULL;
    }
    for (unsigned i = 0; i < conf->n_servers; i++) {
        RkvRaft__Server *server = rkv_malloc(sizeof(*server));

        if (server == NULL) {
            rkv_raft__conf_pb_free(pb);
            return NULL;
        }
        rkv_raft__server__init(server);
        server->id = conf->servers[i].id;
        server->role = conf->servers[i].learner
                           ? RKV_RAFT__ROLE__ROLE_LEARNER
                           : RKV_RAFT__ROLE__ROLE_VOTER;
        pb->servers[pb->n_servers++] = server;
    }
    return pb;
}

void rkv_raft__conf_pb_free(RkvRaft__Conf *pb)
{
    if (pb == NULL) {
        return;
    }
    for (size_t i = 0; i < pb->n_servers; i++) {
        rkv_free(pb->servers[i]);
    }
    rkv_free(pb->servers);
    rkv_free(pb);
}

/* Inserts server keeping ids sorted; the caller checked for room. */
static void conf_insert(struct rkv_raft_conf *conf,
                        const struct rkv_raft_server *server)
{
    unsigned i = conf->n_servers;

    assert(conf->n_servers < RKV_RAFT_MAX_SERVERS);

    while (i > 0 && conf->servers[i - 1].id > server->id) {
        conf->servers[i] = conf->servers[i - 1];
        i--;
    }
    conf->servers[i] = *server;
    conf->n_servers++;
}

static void conf_remove(struct rkv_raft_conf *conf, uint64_t id)
{
    unsigned n_kept = 0;

    for (unsigned i = 0; i < conf->n_servers; i++) {
        if (conf->servers[i].id != id) {
            conf->servers[n_kept++] = conf->servers[i];
        }
    }
    conf->n_servers = n_kept;
}

int rkv_raft__conf_from_pb(const RkvRaft__Conf *pb,
                           struct rkv_raft_conf *conf)
{
    memset(conf, 0, sizeof(*conf));
    if (pb->n_servers > RKV_RAFT_MAX_SERVERS) {
        return RKV_EMALFORMED;
    }
    for (size_t i = 0; i < pb->n_servers; i++) {
        struct rkv_raft_server server;

        server.id = pb->servers[i]->id;
        server.learner = pb->servers[i]->role == RKV_RAFT__ROLE__ROLE_LEARNER;
        if (server.id == 0 || rkv_raft__conf_find(conf, server.id) != NULL) {
            return RKV_EMALFORMED;
        }
        conf_insert(conf, &server);
    }
    return 0;
}

uint8_t *rkv_raft_conf_encode(const struct rkv_raft_conf *conf, size_t *len)
{
    RkvRaft__Conf *pb;
    uint8_t *buf;

    pb = rkv_raft__conf_to_pb(conf);
    if (pb == NULL) {
        return NULL;
    }
    *len = rkv_raft__conf__get_packed_size(pb);
    /* One spare byte so that an empty configuration still allocates. */
    buf = rkv_malloc(*len + 1);
    if (buf != NULL) {
        rkv_raft__conf__pack(pb, buf);
    }
    rkv_raft__conf_pb_free(pb);
    return buf;
}

int rkv_raft_conf_decode(const uint8_t *data, size_t len,
                         struct rkv_raft_conf *conf)
{
    RkvRaft__Conf *pb;
    int rv;

    pb = rkv_raft__conf__unpack(NULL, len, data);
    if (pb == NULL) {
        return RKV_EMALFORMED;
    }
    rv = rkv_raft__conf_from_pb(pb, conf);
    rkv_raft__conf__free_unpacked(pb, NULL);
    return rv;
}

int rkv_raft__conf_apply(struct rkv_raft *r, const struct rkv_raft_conf *conf,
                         uint64_t index)
{
    r->conf = *conf;
    r->conf_index = index;
    RKV_LOG(RKV_INFO,
            "configuration changed range=%llu id=%llu index=%llu "
            "servers=%u voters=%u",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id, (unsigned long long)index,
            conf->n_servers, rkv_raft__n_voters(conf));
    if (r->role == RKV_RAFT_LEADER) {
        return rkv_raft__progress_reset(r);
    }
    return 0;
}

int rkv_raft__conf_reload(struct rkv_raft *r)
{
    rkv_raft__conf_at(r, rkv_raft__last_index(r), &r->conf, &r->conf_index);
    if (r->role == RKV_RAFT_LEADER) {
        return rkv_raft__progress_reset(r);
    }
    return 0;
}

void rkv_raft__conf_check_removed(struct rkv_raft *r)
{
    if (r->role != RKV_RAFT_LEADER || r->conf_index > r->commit ||
        rkv_raft__is_voter(&r->conf, r->config.id)) {
        return;
    }
    RKV_LOG(RKV_INFO,
            "removed from configuration, stepping down range=%llu id=%llu",
            (unsigned long long)r->config.group_id,
            (unsigned long long)r->config.id);
    rkv_raft__become_follower(r, r->term, 0);
}

/* Builds the configuration that change produces; -EINVAL when it does not
 * apply to the current one. */
static int conf_change_build(const struct rkv_raft *r,
                             enum rkv_raft_conf_change change, uint64_t id,
                             struct rkv_raft_conf *conf)
{
    struct rkv_raft_server *server;
    struct rkv_raft_server added = {.id = id, .learner = true};

    *conf = r->conf;
    server = (struct rkv_raft_server *)rkv_raft__conf_find(conf, id);
    switch (change) {
    case RKV_RAFT_ADD_LEARNER:
        if (server != NULL || conf->n_servers == RKV_RAFT_MAX_SERVERS) {
            return -EINVAL;
        }
        conf_insert(conf, &added);
        return 0;
    case RKV_RAFT_PROMOTE:
        if (server == NULL || !server->learner) {
            return -EINVAL;
        }
        server->learner = false;
        return 0;
    case RKV_RAFT_REMOVE:
        if (server == NULL ||
            (!server->learner && rkv_raft__n_voters(conf) == 1)) {
            return -EINVAL;
        }
        conf_remove(conf, id);
        return 0;
    default:
        return -EINVAL;
    }
}

int rkv_raft_propose_conf_change(struct rkv_raft *r,
                                 enum rkv_raft_conf_change change,
                                 uint64_t server_id, uint64_t *index,
                                 uint64_t *term)
{
    struct rkv_raft_conf conf;
    uint8_t *data;
    size_t len;
    int rv;

    if (r->role != RKV_RAFT_LEADER) {
        return RKV_ENOTLEADER;
    }
    if (r->transfer_to != 0) {
        return RKV_EBUSY;
    }
    if (r->conf_index > r->commit ||
        rkv_raft__term(r, r->commit) != r->term) {
        return RKV_ECONFCHANGE;
    }
    if (server_id == 0) {
        return -EINVAL;
    }
    rv = conf_change_build(r, change, server_id, &conf);
    if (rv != 0) {
        return rv;
    }
    data = rkv_raft_conf_encode(&conf, &len);
    if (data == NULL) {
        return -ENOMEM;
    }
    rv = rkv_raft__log_append(r, r->term, RKV_RAFT__ENTRY_TYPE__ENTRY_CONF,
                              data, len);
    rkv_free(data);
    if (rv != 0) {
        return rv;
    }
    *index = rkv_raft__last_index(r);
    *term = r->term;
    rv = rkv_raft__conf_apply(r, &conf, *index);
    if (rv != 0) {
        return rv;
    }

    /* As in rkv_raft_propose(), the change succeeded once appended. */
    rv = rkv_raft__broadcast_append(r);
    if (rv != 0) {
        RKV_LOG(RKV_WARN,
                "queueing appends failed range=%llu index=%llu: %s",
                (unsigned long long)r->config.group_id,
                (unsigned long long)*index, rkv_strerror(rv));
    }
    return 0;
}
