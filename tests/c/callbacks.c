/*
 * Callbacks: they run on the library's callback thread, may send, close and
 * free from inside, and none runs once lc_client_free has returned.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>

#include "harness.h"

typedef struct {
    waiter w;
    lc_client *client;
    pthread_t main_thread;
    const char *thread_prefix; /* where callbacks must run */
    volatile int connected, messages, closed, wrong_thread, after_free, freed, close_status;
} chain;

/* Echo ping-pong: each received message triggers the next send, from the callback. */
static void on_event(void *user_data, const lc_event *event) {
    chain *c = user_data;
    char name[32] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    pthread_mutex_lock(&c->w.lock);
    if (pthread_equal(pthread_self(), c->main_thread) || strncmp(name, c->thread_prefix, strlen(c->thread_prefix)) != 0)
        c->wrong_thread++;
    if (c->freed) c->after_free++;
    switch (event->kind) {
    case LC_EVENT_CONNECTED:
        c->connected++;
        lc_client_send(c->client, (const uint8_t *)"0", 1);
        break;
    case LC_EVENT_MESSAGE:
        c->messages++;
        if (c->messages < 50) {
            char next[16];
            int n = snprintf(next, sizeof next, "%d", c->messages);
            lc_client_send(c->client, (const uint8_t *)next, (size_t)n);
        } else if (c->messages == 50) {
            c->close_status = (int)lc_client_close(c->client, 1000, NULL);
        }
        break;
    case LC_EVENT_CLOSED:
        c->closed++;
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&c->w.changed);
    pthread_mutex_unlock(&c->w.lock);
}

/* Frees its own client from inside its first message callback. */
static void free_on_message(void *user_data, const uint8_t *data, size_t len, bool is_text) {
    (void)data;
    (void)len;
    (void)is_text;
    chain *c = user_data;
    pthread_mutex_lock(&c->w.lock);
    if (c->freed) c->after_free++;
    lc_client_free(c->client);
    c->freed = 1;
    pthread_cond_broadcast(&c->w.changed);
    pthread_mutex_unlock(&c->w.lock);
}

/* Inside a callback, lc_client_send_wait must not wait: it tries once. */
typedef struct {
    waiter w;
    lc_client *full; /* never connected, outbox full */
    volatile int done, status;
    double waited_ms;
} no_wait;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void send_wait_on_connect(void *user_data, const lc_event *event) {
    no_wait *n = user_data;
    if (event->kind != LC_EVENT_CONNECTED) return;
    double start = now_ms();
    lc_status status = lc_client_send_wait(n->full, (const uint8_t *)"x", 1, false, 5000);
    pthread_mutex_lock(&n->w.lock);
    n->status = (int)status;
    n->waited_ms = now_ms() - start;
    n->done = 1;
    pthread_cond_broadcast(&n->w.changed);
    pthread_mutex_unlock(&n->w.lock);
}

/* The batch callback: every message once, in order, in calls of one or more. */
typedef struct {
    waiter w;
    volatile int messages, calls, out_of_order, single;
} batches;

static void on_messages(void *user_data, const lc_message *messages, size_t count) {
    batches *b = user_data;
    pthread_mutex_lock(&b->w.lock);
    b->calls++;
    for (size_t i = 0; i < count; i++) {
        char expected[16];
        int n = snprintf(expected, sizeof expected, "m%d", b->messages);
        if (messages[i].len != (size_t)n || memcmp(messages[i].data, expected, (size_t)n) != 0) b->out_of_order++;
        b->messages++;
    }
    pthread_cond_broadcast(&b->w.changed);
    pthread_mutex_unlock(&b->w.lock);
}

static void on_single(void *user_data, const uint8_t *data, size_t len, bool is_text) {
    (void)data;
    (void)len;
    (void)is_text;
    batches *b = user_data;
    pthread_mutex_lock(&b->w.lock);
    b->single++;
    pthread_mutex_unlock(&b->w.lock);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;

    /* 1. Ping-pong from callbacks, then close from a callback. */
    chain a;
    memset(&a, 0, sizeof a);
    waiter_init(&a.w);
    a.main_thread = pthread_self();
    a.client = harness_client(argv[1]);
    a.close_status = -1;
    a.thread_prefix = "longconn-cb";
    CHECK_STATUS(lc_client_set_event_callback(a.client, on_event, &a), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(a.client), LC_STATUS_OK);
    pthread_mutex_lock(&a.w.lock);
    CHECK(wait_until_at_least(&a.w, &a.closed, 1, 10000));
    CHECK(a.connected == 1);
    CHECK(a.messages == 50);
    CHECK(a.close_status == (int)LC_STATUS_IN_PROGRESS);
    CHECK(a.wrong_thread == 0);
    pthread_mutex_unlock(&a.w.lock);
    lc_client_free(a.client);
    waiter_destroy(&a.w);

    /* 2. Free from inside a callback: flood the echo server, free on the first message. */
    chain b;
    memset(&b, 0, sizeof b);
    waiter_init(&b.w);
    b.client = harness_client(argv[1]);
    CHECK_STATUS(lc_client_set_message_callback(b.client, free_on_message, &b), LC_STATUS_OK);
    for (int i = 0; i < 1000; i++) lc_client_send(b.client, (const uint8_t *)"flood", 5);
    CHECK_STATUS(lc_client_connect(b.client), LC_STATUS_OK);
    pthread_mutex_lock(&b.w.lock);
    CHECK(wait_until_at_least(&b.w, &b.freed, 1, 10000));
    pthread_mutex_unlock(&b.w.lock);

    /* 3. Free from this thread while callbacks stream in: none may run afterwards. */
    chain c;
    memset(&c, 0, sizeof c);
    waiter_init(&c.w);
    c.main_thread = pthread_self();
    c.client = harness_client(argv[1]);
    c.thread_prefix = "longconn-cb";
    CHECK_STATUS(lc_client_set_event_callback(c.client, on_event, &c), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(c.client), LC_STATUS_OK);
    pthread_mutex_lock(&c.w.lock);
    CHECK(wait_until_at_least(&c.w, &c.messages, 5, 10000));
    pthread_mutex_unlock(&c.w.lock);
    lc_client_free(c.client); /* waits for a running callback, then no more */
    pthread_mutex_lock(&c.w.lock);
    c.freed = 1;
    /* A late callback would show up here; the wait is a bounded negative check. */
    wait_until_at_least(&c.w, &c.after_free, 1, 300);
    CHECK(c.after_free == 0);
    pthread_mutex_unlock(&c.w.lock);

    /* The library thread serving b survived the free from inside: a new client still gets callbacks. */
    pthread_mutex_lock(&b.w.lock);
    CHECK(b.after_free == 0);
    pthread_mutex_unlock(&b.w.lock);
    waiter_destroy(&b.w);
    waiter_destroy(&c.w);

    /* 4. lc_client_send_wait from a callback returns at once instead of waiting. */
    no_wait n;
    memset(&n, 0, sizeof n);
    waiter_init(&n.w);
    lc_config *config = NULL;
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:9", &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_outbox_limits(config, 1, 1024), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &n.full), LC_STATUS_OK);
    lc_config_free(config);
    CHECK_STATUS(lc_client_send(n.full, (const uint8_t *)"x", 1), LC_STATUS_OK);
    lc_client *d = harness_client(argv[1]);
    CHECK_STATUS(lc_client_set_event_callback(d, send_wait_on_connect, &n), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(d), LC_STATUS_OK);
    pthread_mutex_lock(&n.w.lock);
    CHECK(wait_until_at_least(&n.w, &n.done, 1, 10000));
    CHECK(n.status == (int)LC_STATUS_QUEUE_FULL);
    CHECK(n.waited_ms < 2500); /* far below its 5000 ms timeout */
    pthread_mutex_unlock(&n.w.lock);
    lc_client_free(d);
    lc_client_free(n.full);
    waiter_destroy(&n.w);
    /* 5. Callbacks on the I/O thread: the same ping-pong, sends and a close from inside. */
    chain g;
    memset(&g, 0, sizeof g);
    waiter_init(&g.w);
    g.main_thread = pthread_self();
    g.close_status = -1;
    g.thread_prefix = "longconn-io";
    lc_config *io_config = NULL;
    CHECK_STATUS(lc_config_new(argv[1], &io_config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_callbacks_on_io_thread(io_config, true), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_callbacks_on_io_thread(NULL, true), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_new(io_config, &g.client), LC_STATUS_OK);
    lc_config_free(io_config);
    CHECK_STATUS(lc_client_set_event_callback(g.client, on_event, &g), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(g.client), LC_STATUS_OK);
    pthread_mutex_lock(&g.w.lock);
    CHECK(wait_until_at_least(&g.w, &g.closed, 1, 10000));
    CHECK(g.connected == 1 && g.messages == 50);
    CHECK(g.close_status == (int)LC_STATUS_IN_PROGRESS);
    CHECK(g.wrong_thread == 0);
    pthread_mutex_unlock(&g.w.lock);
    lc_client_free(g.client);
    waiter_destroy(&g.w);

    /* 6. The batch callback takes the messages, ahead of a message callback. */
    batches e;
    memset(&e, 0, sizeof e);
    waiter_init(&e.w);
    lc_client *f = harness_client(argv[1]);
    CHECK_STATUS(lc_client_set_message_callback(f, on_single, &e), LC_STATUS_OK);
    CHECK_STATUS(lc_client_set_messages_callback(f, on_messages, &e), LC_STATUS_OK);
    for (int i = 0; i < 5000; i++) {
        char m[16];
        int len = snprintf(m, sizeof m, "m%d", i);
        CHECK_STATUS(lc_client_send(f, (const uint8_t *)m, (size_t)len), LC_STATUS_OK);
    }
    CHECK_STATUS(lc_client_connect(f), LC_STATUS_OK);
    pthread_mutex_lock(&e.w.lock);
    CHECK(wait_until_at_least(&e.w, &e.messages, 5000, 10000));
    CHECK(e.messages == 5000 && e.out_of_order == 0 && e.single == 0);
    CHECK(e.calls >= 1 && e.calls < 5000); /* several messages per call */
    pthread_mutex_unlock(&e.w.lock);
    lc_client_free(f);
    waiter_destroy(&e.w);
    return harness_finish("callbacks");
}
