/*
 * chat: an interactive longconn chat client.
 *
 *   chat URL        for example: chat tcp://127.0.0.1:7070
 *                                chat 'tcp://127.0.0.1:7072?framing=line'
 *
 * Lines typed on stdin are sent; messages received are printed; connection
 * changes are shown in brackets. Ctrl-D, Ctrl-C or /quit closes cleanly,
 * flushing what is still queued. Start `longconn-server --mode chat` and two of these
 * in two terminals; kill and restart the server and they carry on.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "longconn.h"

static volatile sig_atomic_t interrupted = 0;

/* Ctrl-C ends the input loop (fgets returns with EINTR): main() then closes
 * the client, flushing what is queued, instead of dying with it unsent. */
static void on_interrupt(int signal_number) {
    (void)signal_number;
    interrupted = 1;
}

static void on_event(void *user_data, const lc_event *event) {
    (void)user_data;
    switch (event->kind) {
    case LC_EVENT_MESSAGE:
        printf("%.*s\n", (int)event->len, (const char *)event->data);
        break;
    case LC_EVENT_CONNECTED:
        printf("[connected to %s: %s%s]\n", event->text,
               event->acknowledged ? "acknowledged delivery" : "best effort",
               event->acknowledged ? (event->resumed ? ", session resumed" : ", new session") : "");
        if (event->acknowledged && !event->recovered) printf("[some messages from the server were lost]\n");
        break;
    case LC_EVENT_DISCONNECTED:
        if (event->reason != LC_DISCONNECT_CLOSED_BY_USER) printf("[disconnected: %s]\n", event->text);
        break;
    case LC_EVENT_RECONNECT_SCHEDULED:
        printf("[reconnecting in %llu ms, attempt %u]\n", (unsigned long long)event->delay_ms, event->attempt);
        break;
    case LC_EVENT_ERROR:
        printf("[error: %s]\n", event->text);
        break;
    case LC_EVENT_CLOSED: /* main() reports the close it asked for */
        break;
    }
    fflush(stdout);
}

static int fail(const char *what, lc_status status) {
    fprintf(stderr, "chat: %s: %s (%s)\n", what, lc_last_error_message(), lc_status_name(status));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s URL   (for example tcp://127.0.0.1:7070)\n", argv[0]);
        return 2;
    }
    lc_config *config = NULL;
    lc_status status = lc_config_new(argv[1], &config);
    if (status != LC_STATUS_OK) return fail("bad URL", status);
    lc_config_set_heartbeat(config, 2000, 6000);
    lc_config_set_reconnect(config, 500, 8000, 2.0, 0.2, 0);
    static const char ping[] = "ping", pong[] = "pong";
    if (strstr(argv[1], "framing=") != NULL) {
        /* Plain framings have no control frames: the bundled server answers "ping" with "pong". */
        lc_config_set_plain_heartbeat(config, (const uint8_t *)ping, 4, (const uint8_t *)pong, 4);
    }

    lc_client *client = NULL;
    status = lc_client_new(config, &client);
    lc_config_free(config);
    if (status != LC_STATUS_OK) return fail("cannot create client", status);
    lc_client_set_event_callback(client, on_event, NULL);
    status = lc_client_connect(client);
    if (status != LC_STATUS_OK) {
        lc_client_free(client);
        return fail("cannot connect", status);
    }

    struct sigaction interrupt;
    memset(&interrupt, 0, sizeof interrupt);
    interrupt.sa_handler = on_interrupt; /* no SA_RESTART: the read is interrupted */
    sigemptyset(&interrupt.sa_mask);
    sigaction(SIGINT, &interrupt, NULL);
    sigaction(SIGTERM, &interrupt, NULL);

    char line[4096];
    while (!interrupted && fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "/quit") == 0) break;
        if (line[0] == '\0') continue;
        status = lc_client_send(client, (const uint8_t *)line, strlen(line));
        if (status != LC_STATUS_OK) fail("message not sent", status);
    }

    if (interrupted) printf("[interrupted]\n");
    uint64_t unsent = 0;
    if (lc_client_close(client, 3000, &unsent) == LC_STATUS_TIMEOUT) {
        fprintf(stderr, "chat: %llu messages could not be delivered\n", (unsigned long long)unsent);
    }
    /* The closed event may still be on its way to on_event; after free it never comes. */
    lc_client_free(client);
    printf("[closed]\n");
    return 0;
}
