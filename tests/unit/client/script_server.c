/*
 * The scripted node of script_server.h: one thread polling a listener and
 * its accepted connections, decoding frames and calling the handler.
 */
#include "tests/unit/client/script_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/lib/test.h"

#define SERVER_CONNS_MAX 64
#define SERVER_FRAME_MAX (16u * 1024 * 1024)

struct server_conn {
    int fd;      /* -1 when the slot is free */
    uint8_t *in; /* bytes read and not yet parsed */
    size_t in_len;
    size_t in_cap;
};

struct script_server {
    script_handler_fn handler;
    void *data;
    int listen_fd;
    int wake_pipe[2]; /* a byte here stops the thread */
    pthread_t thread;
    pthread_mutex_t mutex; /* guards fds, writes and stats */
    struct server_conn conns[SERVER_CONNS_MAX];
    struct script_server_stats stats;
    char addr[64];
};

static void server_close_conn(struct server_conn *conn)
{
    if (conn->fd >= 0) {
        close(conn->fd);
    }
    conn->fd = -1;
    free(conn->in);
    conn->in = NULL;
    conn->in_len = 0;
    conn->in_cap = 0;
}

static struct server_conn *server_find(struct script_server *server, int fd)
{
    for (int i = 0; i < SERVER_CONNS_MAX; i++) {
        if (server->conns[i].fd == fd) {
            return &server->conns[i];
        }
    }
    return NULL;
}

static void server_accept(struct script_server *server)
{
    int fd = accept(server->listen_fd, NULL, NULL);
    int one = 1;

    if (fd < 0) {
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_mutex_lock(&server->mutex);
    server->stats.n_accepts++;
    for (int i = 0; i < SERVER_CONNS_MAX; i++) {
        if (server->conns[i].fd < 0) {
            server->conns[i].fd = fd;
            pthread_mutex_unlock(&server->mutex);
            return;
        }
    }
    pthread_mutex_unlock(&server->mutex);
    close(fd);
}

/* Parses complete frames of conn; returns false when it must close. */
static bool server_parse(struct script_server *server, struct server_conn *c)
{
    size_t pos = 0;
    uint64_t n_frames = 0;
    int fd = c->fd;

    while (c->in_len - pos >= 4) {
        uint32_t len = rkv_get_be32(c->in + pos);
        Rkv__Rpc__Request *req;

        if (len > SERVER_FRAME_MAX) {
            return false;
        }
        if (c->in_len - pos - 4 < len) {
            break;
        }
        req = rkv__rpc__request__unpack(NULL, len, c->in + pos + 4);
        pos += 4 + len;
        if (req == NULL) {
            return false;
        }
        n_frames++;
        pthread_mutex_lock(&server->mutex);
        server->stats.n_requests++;
        pthread_mutex_unlock(&server->mutex);
        server->handler(server, fd, req, server->data);
        rkv__rpc__request__free_unpacked(req, NULL);
        if (c->fd != fd) {
            return true; /* the handler dropped the connection */
        }
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    pthread_mutex_lock(&server->mutex);
    if (n_frames > server->stats.max_frames_per_read) {
        server->stats.max_frames_per_read = n_frames;
    }
    pthread_mutex_unlock(&server->mutex);
    return true;
}

static void server_read(struct script_server *server, struct server_conn *c)
{
    ssize_t n;

    if (c->in_cap - c->in_len < 65536) {
        c->in_cap = c->in_cap * 2 + 65536;
        c->in = realloc(c->in, c->in_cap);
    }
    n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n <= 0) {
        pthread_mutex_lock(&server->mutex);
        server_close_conn(c);
        pthread_mutex_unlock(&server->mutex);
        return;
    }
    pthread_mutex_lock(&server->mutex);
    server->stats.n_reads++;
    pthread_mutex_unlock(&server->mutex);
    c->in_len += (size_t)n;
    if (!server_parse(server, c)) {
        pthread_mutex_lock(&server->mutex);
        server_close_conn(c);
        pthread_mutex_unlock(&server->mutex);
    }
}

static void *server_main(void *arg)
{
    struct script_server *server = arg;

    for (;;) {
        struct pollfd fds[SERVER_CONNS_MAX + 2];
        int slots[SERVER_CONNS_MAX + 2];
        nfds_t n = 0;

        fds[n].fd = server->wake_pipe[0];
        fds[n++].events = POLLIN;
        fds[n].fd = server->listen_fd;
        fds[n++].events = POLLIN;
        pthread_mutex_lock(&server->mutex);
        for (int i = 0; i < SERVER_CONNS_MAX; i++) {
            if (server->conns[i].fd >= 0) {
                slots[n] = i;
                fds[n].fd = server->conns[i].fd;
                fds[n++].events = POLLIN;
            }
        }
        pthread_mutex_unlock(&server->mutex);
        if (poll(fds, n, -1) < 0) {
            continue;
        }
        if (fds[0].revents != 0) {
            return NULL;
        }
        if (fds[1].revents & POLLIN) {
            server_accept(server);
        }
        for (nfds_t i = 2; i < n; i++) {
            struct server_conn *c = &server->conns[slots[i]];
            if (fds[i].revents != 0 && c->fd == fds[i].fd) {
                server_read(server, c);
            }
        }
    }
}

struct script_server *script_server_start(script_handler_fn handler, void *data)
{
    struct script_server *server = calloc(1, sizeof(*server));
    struct sockaddr_in sin;
    socklen_t sin_len = sizeof(sin);

    ASSERT_TRUE(server != NULL);
    server->handler = handler;
    server->data = data;
    for (int i = 0; i < SERVER_CONNS_MAX; i++) {
        server->conns[i].fd = -1;
    }
    pthread_mutex_init(&server->mutex, NULL);
    ASSERT_INT_EQ(pipe(server->wake_pipe), 0);

    server->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_INT_GE(server->listen_fd, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;
    ASSERT_INT_EQ(bind(server->listen_fd, (struct sockaddr *)&sin, sizeof(sin)),
                  0);
    ASSERT_INT_EQ(listen(server->listen_fd, 64), 0);
    ASSERT_INT_EQ(
        getsockname(server->listen_fd, (struct sockaddr *)&sin, &sin_len), 0);
    snprintf(server->addr, sizeof(server->addr), "127.0.0.1:%u",
             ntohs(sin.sin_port));
    ASSERT_INT_EQ(pthread_create(&server->thread, NULL, server_main, server),
                  0);
    return server;
}

void script_server_stop(struct script_server *server)
{
    char byte = 1;

    ASSERT_INT_EQ(write(server->wake_pipe[1], &byte, 1), 1);
    pthread_join(server->thread, NULL);
    for (int i = 0; i < SERVER_CONNS_MAX; i++) {
        server_close_conn(&server->conns[i]);
    }
    close(server->listen_fd);
    close(server->wake_pipe[0]);
    close(server->wake_pipe[1]);
    pthread_mutex_destroy(&server->mutex);
    free(server);
}

const char *script_server_addr(const struct script_server *server)
{
    return server->addr;
}

void script_server_write_raw(struct script_server *server, int conn_fd,
                             const void *bytes, size_t len)
{
    const uint8_t *pos = bytes;

    pthread_mutex_lock(&server->mutex);
    if (server_find(server, conn_fd) == NULL) {
        pthread_mutex_unlock(&server->mutex);
        return; /* already dropped */
    }
    while (len > 0) {
        ssize_t n = send(conn_fd, pos, len, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        pos += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&server->mutex);
}

void script_server_reply(struct script_server *server, int conn_fd,
                         const Rkv__Rpc__Response *resp)
{
    size_t len = rkv__rpc__response__get_packed_size(resp);
    uint8_t *frame = malloc(4 + len);

    ASSERT_TRUE(frame != NULL);
    rkv_put_be32(frame, (uint32_t)len);
    rkv__rpc__response__pack(resp, frame + 4);
    script_server_write_raw(server, conn_fd, frame, 4 + len);
    free(frame);
}

void script_server_drop(struct script_server *server, int conn_fd)
{
    struct server_conn *conn;

    pthread_mutex_lock(&server->mutex);
    conn = server_find(server, conn_fd);
    if (conn != NULL) {
        server_close_conn(conn);
    }
    pthread_mutex_unlock(&server->mutex);
}

struct script_server_stats script_server_stats(struct script_server *server)
{
    struct script_server_stats stats;

    pthread_mutex_lock(&server->mutex);
    stats = server->stats;
    pthread_mutex_unlock(&server->mutex);
    return stats;
}
