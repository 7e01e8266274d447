/* The pull API against the echo server: poll(2) on the event fd, then lc_client_poll. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define COUNT 200

static void ignore_message(void *user_data, const uint8_t *data, size_t len, bool is_text) {
    (void)user_data;
    (void)data;
    (void)len;
    (void)is_text;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    lc_client *client = harness_client(argv[1]);
    int fd = -1;
    CHECK_STATUS(lc_client_event_fd(client, &fd), LC_STATUS_OK);
    CHECK(fd >= 0);

    struct pollfd pfd = {.fd = fd, .events = POLLIN, .revents = 0};
    CHECK(poll(&pfd, 1, 0) == 0); /* nothing yet */

    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_ALREADY_STARTED);
    /* The first half one by one, the second half in one batch: one ordered stream. */
    static char texts[COUNT][32];
    lc_buffer batch[COUNT / 2];
    for (int i = 0; i < COUNT; i++) {
        int n = snprintf(texts[i], sizeof texts[i], "echo %d", i);
        if (i < COUNT / 2) {
            CHECK_STATUS(lc_client_send(client, (const uint8_t *)texts[i], (size_t)n), LC_STATUS_OK);
        } else {
            batch[i - COUNT / 2].data = (const uint8_t *)texts[i];
            batch[i - COUNT / 2].len = (size_t)n;
        }
    }
    size_t queued = 0;
    CHECK_STATUS(lc_client_send_batch(client, batch, COUNT / 2, &queued), LC_STATUS_OK);
    CHECK(queued == COUNT / 2);

    int connected = 0, received = 0, in_order = 1;
    for (int rounds = 0; received < COUNT && rounds < 1000; rounds++) {
        if (poll(&pfd, 1, 10000) != 1) break; /* the fd wakes us; no busy loop */
        lc_event event;
        while (lc_client_poll(client, 0, &event) == LC_STATUS_OK) {
            if (event.kind == LC_EVENT_CONNECTED) connected++;
            if (event.kind == LC_EVENT_MESSAGE) {
                char expected[32];
                int n = snprintf(expected, sizeof expected, "echo %d", received);
                if ((size_t)n != event.len || memcmp(expected, event.data, event.len) != 0) in_order = 0;
                received++;
            }
        }
        /* Readable again only if an event really arrived since the drain
         * (a lost wake-up would stall the poll above instead). */
        if (poll(&pfd, 1, 0) == 1) {
            CHECK(lc_client_poll(client, 0, &event) == LC_STATUS_OK);
            if (event.kind == LC_EVENT_MESSAGE) received++;
        }
    }
    CHECK(connected == 1);
    CHECK(received == COUNT);
    CHECK(in_order);

    /* Many messages per call with lc_client_poll_messages, through small buffers. */
    const char *words[] = {"alpha", "beta", "gamma", "delta", "a message far too long for eight bytes"};
    for (int i = 0; i < 5; i++) CHECK_STATUS(lc_client_send(client, (const uint8_t *)words[i], strlen(words[i])), LC_STATUS_OK);
    uint8_t inbox[12];
    size_t lengths[2], got = 0;
    bool is_text[2];
    int taken = 0;
    char joined[64] = "";
    while (taken < 4) {
        size_t count = 0;
        is_text[0] = is_text[1] = true;
        lc_status status = lc_client_poll_messages(client, 10000, inbox, sizeof inbox, lengths, is_text, 2, &count);
        CHECK(status == LC_STATUS_OK);
        if (status != LC_STATUS_OK) break;
        CHECK(count <= 2);
        for (size_t i = 0, offset = 0; i < count; offset += lengths[i], i++) {
            CHECK(!is_text[i]); /* TCP messages are never text */
            strncat(joined, (const char *)inbox + offset, lengths[i]);
            strcat(joined, ",");
            taken++;
        }
        got += count;
    }
    CHECK(strcmp(joined, "alpha,beta,gamma,delta,") == 0);
    /* The next message alone does not fit: a clear error, and it stays queued. */
    size_t count = 0;
    CHECK_STATUS(lc_client_poll_messages(client, 10000, inbox, sizeof inbox, lengths, NULL, 2, &count),
                 LC_STATUS_INVALID_ARGUMENT);
    CHECK(count == 0 && strstr(lc_last_error_message(), "too small") != NULL);
    uint8_t big[64];
    CHECK_STATUS(lc_client_poll_messages(client, 0, big, sizeof big, lengths, NULL, 2, &count), LC_STATUS_OK);
    CHECK(count == 1 && lengths[0] == strlen(words[4]));

    /* Everything echoed; the server acknowledges within its coalescing delay (10 ms). */
    lc_stats stats;
    for (int i = 0; i < 1000; i++) {
        CHECK_STATUS(lc_client_stats(client, &stats), LC_STATUS_OK);
        if (stats.queued_messages == 0) break;
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(stats.messages_out == COUNT + 5 && stats.messages_in == COUNT + 5 && stats.queued_messages == 0);
    CHECK(stats.unacked_messages == 0 && stats.acked_number == COUNT + 5);
    lc_state state;
    CHECK_STATUS(lc_client_state(client, &state), LC_STATUS_OK);
    CHECK(state == LC_STATE_CONNECTED);

    uint64_t unsent = 1;
    CHECK_STATUS(lc_client_close(client, 5000, &unsent), LC_STATUS_OK);
    CHECK(unsent == 0);
    int saw_closed = 0;
    lc_event event;
    while (lc_client_poll(client, 1000, &event) == LC_STATUS_OK) {
        if (event.kind == LC_EVENT_DISCONNECTED) CHECK(event.reason == LC_DISCONNECT_CLOSED_BY_USER);
        if (event.kind == LC_EVENT_CLOSED) saw_closed = 1;
    }
    CHECK(saw_closed);
    lc_client_free(client);

    /* A client that does its I/O in lc_client_poll: the same echo, in order,
     * on this thread; it takes no callbacks. */
    lc_config *config = NULL;
    CHECK_STATUS(lc_config_new(argv[1], &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_io_in_poll(NULL, true), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_io_in_poll(config, true), LC_STATUS_OK);
    lc_client *polled = NULL;
    CHECK_STATUS(lc_client_new(config, &polled), LC_STATUS_OK);
    lc_config_free(config);
    CHECK_STATUS(lc_client_set_message_callback(polled, ignore_message, NULL), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_client_connect(polled), LC_STATUS_OK);
    for (int i = 0; i < 50; i++) {
        int n = snprintf(texts[i], sizeof texts[i], "echo %d", i);
        CHECK_STATUS(lc_client_send(polled, (const uint8_t *)texts[i], (size_t)n), LC_STATUS_OK);
    }
    int echoed = 0, echoed_in_order = 1;
    for (int rounds = 0; echoed < 50 && rounds < 1000; rounds++) {
        if (lc_client_poll(polled, 10000, &event) != LC_STATUS_OK) break;
        if (event.kind != LC_EVENT_MESSAGE) continue;
        char expected[32];
        int n = snprintf(expected, sizeof expected, "echo %d", echoed);
        if ((size_t)n != event.len || memcmp(expected, event.data, event.len) != 0) echoed_in_order = 0;
        echoed++;
    }
    CHECK(echoed == 50 && echoed_in_order);
    CHECK_STATUS(lc_client_close(polled, 5000, &unsent), LC_STATUS_OK);
    CHECK(unsent == 0);
    lc_client_free(polled);
    return harness_finish("echo_poll");
}
