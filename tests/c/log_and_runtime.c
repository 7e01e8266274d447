/*
 * Runtime settings and the log callback; and the library's silence: this
 * program prints nothing on success, so run.sh can check that the library
 * itself wrote nothing to stdout or stderr while failing to connect.
 */
#include <string.h>

#include "harness.h"

typedef struct {
    waiter w;
    volatile int warnings, names_endpoint;
} log_sink;

static void on_log(void *user_data, uint32_t level, const char *message) {
    log_sink *sink = user_data;
    pthread_mutex_lock(&sink->w.lock);
    if (level <= 2) sink->warnings++;
    if (strstr(message, "tcp://127.0.0.1:1") != NULL) sink->names_endpoint = 1;
    pthread_cond_broadcast(&sink->w.changed);
    pthread_mutex_unlock(&sink->w.lock);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    CHECK_STATUS(lc_runtime_configure(0, 1), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_runtime_configure(2, 65), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_runtime_configure(1, 2), LC_STATUS_OK); /* before the first connect */

    log_sink sink;
    memset(&sink, 0, sizeof sink);
    waiter_init(&sink.w);
    CHECK_STATUS(lc_set_log_callback(on_log, &sink, 4), LC_STATUS_OK);

    /* Port 1 on loopback refuses connections: each attempt fails and is logged. */
    lc_config *config = NULL;
    lc_client *client = NULL;
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:1", &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_reconnect(config, 10, 20, 2.0, 0.0, 2), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &client), LC_STATUS_OK);
    lc_config_free(config);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
    CHECK_STATUS(lc_runtime_configure(2, 1), LC_STATUS_ALREADY_STARTED);

    /* One failed attempt, then two retries, then it gives up: a closed event. */
    lc_event event;
    int errors = 0, gave_up = 0, closed = 0;
    while (!closed && lc_client_poll(client, 10000, &event) == LC_STATUS_OK) {
        if (event.kind == LC_EVENT_ERROR) errors++;
        if (event.kind == LC_EVENT_ERROR && event.error == LC_ERROR_GAVE_UP) gave_up = 1;
        if (event.kind == LC_EVENT_CLOSED) closed = 1;
    }
    CHECK(closed && gave_up);
    CHECK(errors == 4); /* three connection failures and the give-up */

    pthread_mutex_lock(&sink.w.lock);
    CHECK(wait_until_at_least(&sink.w, &sink.warnings, 3, 5000));
    CHECK(sink.names_endpoint); /* the log says which server failed */
    pthread_mutex_unlock(&sink.w.lock);

    CHECK_STATUS(lc_set_log_callback(NULL, NULL, 1), LC_STATUS_OK);
    lc_client_free(client);
    waiter_destroy(&sink.w);
    return harness_failures == 0 ? 0 : 1; /* silent on success */
}
