/* Stress: many connect/send/close/free cycles against the echo server, then
 * 8 threads sending on one client while another thread closes it; the client
 * is freed only after close has returned and every sender has stopped.
 *
 *   stress URL        LONGCONN_STRESS_CYCLES sets the cycle count (default 1000)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SENDERS 8

typedef struct {
    lc_client *client;
    int sent;       /* messages this sender queued */
    int closed;     /* it saw LC_STATUS_CLOSED */
    int unexpected; /* a status other than OK, QUEUE_FULL or CLOSED */
} sender;

static void *send_until_closed(void *arg) {
    sender *s = arg;
    char text[32];
    /* Until the close reaches it (a full queue makes attempts fast, so a
     * count of them could run out first), within a minute. */
    time_t give_up = time(NULL) + 60;
    for (long i = 0; (i & 1023) != 0 || time(NULL) < give_up; i++) {
        int n = snprintf(text, sizeof text, "stress %ld", i);
        lc_status status = lc_client_send(s->client, (const uint8_t *)text, (size_t)n);
        if (status == LC_STATUS_OK) {
            s->sent++;
        } else if (status == LC_STATUS_CLOSED) {
            s->closed = 1;
            return NULL;
        } else if (status != LC_STATUS_QUEUE_FULL) {
            s->unexpected++;
            return NULL;
        }
    }
    return NULL;
}

/* One client's life: connect, send, close with a flush, free. */
static void one_cycle(const char *url, int i) {
    lc_client *client = harness_client(url);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
    char text[32];
    int n = snprintf(text, sizeof text, "cycle %d", i);
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)text, (size_t)n), LC_STATUS_OK);
    uint64_t unsent = 99;
    CHECK_STATUS(lc_client_close(client, 5000, &unsent), LC_STATUS_OK);
    CHECK(unsent == 0);
    lc_client_free(client);
}

/* Senders on many threads while one more thread closes the client. */
static void close_under_senders(const char *url) {
    lc_client *client = harness_client(url);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
    sender senders[SENDERS];
    pthread_t threads[SENDERS];
    memset(senders, 0, sizeof senders);
    for (int i = 0; i < SENDERS; i++) {
        senders[i].client = client;
        CHECK(pthread_create(&threads[i], NULL, send_until_closed, &senders[i]) == 0);
    }
    /* Let the senders get going: wait until they have queued something. */
    lc_stats stats;
    for (int tries = 0; tries < 10000; tries++) {
        CHECK_STATUS(lc_client_stats(client, &stats), LC_STATUS_OK);
        if (stats.messages_out > 1000) break;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    uint64_t unsent = 0;
    lc_status closed = lc_client_close(client, 2000, &unsent);
    CHECK(closed == LC_STATUS_OK || closed == LC_STATUS_TIMEOUT);
    uint64_t queued = 0;
    for (int i = 0; i < SENDERS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(senders[i].closed);
        CHECK(senders[i].unexpected == 0);
        queued += (uint64_t)senders[i].sent;
    }
    /* Every message queued is accounted for: numbered (after close the
     * acknowledged number covers everything, the rest being discarded),
     * and either written or reported unsent by close, never neither; close
     * says OK exactly when nothing was left. */
    CHECK_STATUS(lc_client_stats(client, &stats), LC_STATUS_OK);
    CHECK(stats.acked_number == queued);
    CHECK(unsent <= queued && stats.messages_out + unsent >= queued);
    CHECK((closed == LC_STATUS_OK) == (unsent == 0));
    if (stats.acked_number != queued || stats.messages_out + unsent < queued) {
        fprintf(stderr, "stress: %llu queued, %llu numbered, %llu written, %llu unsent\n", (unsigned long long)queued,
                (unsigned long long)stats.acked_number, (unsigned long long)stats.messages_out,
                (unsigned long long)unsent);
    }
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"late", 4), LC_STATUS_CLOSED);
    lc_client_free(client);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    const char *env = getenv("LONGCONN_STRESS_CYCLES");
    int cycles = env != NULL ? atoi(env) : 1000;
    for (int i = 0; i < cycles && harness_failures == 0; i++) one_cycle(argv[1], i);
    for (int round = 0; round < 3 && harness_failures == 0; round++) close_under_senders(argv[1]);
    return harness_finish("stress");
}
