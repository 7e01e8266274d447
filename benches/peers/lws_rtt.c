/*
 * The libwebsockets peer of benches/peers.rs: one binary WebSocket
 * message of 64 bytes in flight at a time against ws://127.0.0.1:PORT/,
 * the way the library's own examples write (lws_callback_on_writable, then
 * lws_write in the writeable callback).
 *
 *   lws_rtt PORT ROUND_TRIPS WARMUP
 *
 * Prints one line: "p50_ns p99_ns context_switches_per_round_trip", where
 * the switches are the whole process's (getrusage) during the timed round
 * trips. Exits non-zero if the connection fails or the run takes over 60 s.
 */
#include <libwebsockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PAYLOAD 64

static uint64_t *samples;
static long round_trips, warmup, done_count;
static uint64_t sent_at;
static int finished, failed;
static struct rusage usage_start;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    (void)user;
    (void)in;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        unsigned char buf[LWS_PRE + PAYLOAD];
        memset(buf + LWS_PRE, 'x', PAYLOAD);
        if (done_count == warmup) getrusage(RUSAGE_SELF, &usage_start);
        sent_at = now_ns();
        if (lws_write(wsi, buf + LWS_PRE, PAYLOAD, LWS_WRITE_BINARY) < PAYLOAD) {
            failed = 1;
            return -1;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!lws_is_final_fragment(wsi)) break;
        if (done_count >= warmup) samples[done_count - warmup] = now_ns() - sent_at;
        done_count++;
        if (done_count == warmup + round_trips) {
            finished = 1;
            return -1;
        }
        (void)len;
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!finished) failed = 1;
        break;
    default:
        break;
    }
    return 0;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT ROUND_TRIPS WARMUP\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    round_trips = atol(argv[2]);
    warmup = atol(argv[3]);
    samples = calloc((size_t)round_trips, sizeof *samples);
    if (!samples || round_trips <= 0) return 2;
    lws_set_log_level(LLL_ERR, NULL);

    static const struct lws_protocols protocols[] = {
        {"bench", callback, 0, 4096, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    struct lws_context *context = lws_create_context(&info);
    if (!context) return 1;

    struct lws_client_connect_info cc;
    memset(&cc, 0, sizeof cc);
    cc.context = context;
    cc.address = "127.0.0.1";
    cc.port = port;
    cc.path = "/";
    cc.host = cc.address;
    cc.origin = cc.address;
    cc.protocol = NULL; /* no subprotocol: plain binary messages, like any WebSocket server's */
    if (!lws_client_connect_via_info(&cc)) return 1;

    uint64_t deadline = now_ns() + 60ull * 1000000000u;
    while (!finished && !failed && now_ns() < deadline) {
        if (lws_service(context, 100) < 0) break;
    }
    struct rusage usage_end;
    getrusage(RUSAGE_SELF, &usage_end);
    lws_context_destroy(context);
    if (!finished) {
        fprintf(stderr, "lws_rtt: %ld of %ld round trips\n", done_count, warmup + round_trips);
        return 1;
    }
    long switches = (usage_end.ru_nvcsw - usage_start.ru_nvcsw) + (usage_end.ru_nivcsw - usage_start.ru_nivcsw);
    qsort(samples, (size_t)round_trips, sizeof *samples, by_value);
    printf("%llu %llu %.3f\n", (unsigned long long)samples[round_trips / 2],
           (unsigned long long)samples[(round_trips * 99) / 100], (double)switches / (double)round_trips);
    return 0;
}
