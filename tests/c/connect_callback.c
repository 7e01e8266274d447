/*
 * The connect callback: called before every attempt with the server's URL,
 * place and attempt number; the request functions check their arguments;
 * returning false fails the attempt with the message given (an error
 * event, then a retry with backoff); lc_client_close() inside it does not
 * wait; lc_client_free() waits out a running callback.
 */
#include <string.h>

#include "harness.h"

typedef struct {
    waiter w;
    const char *url;
    lc_client *client;
    volatile int calls, connected, errors, saw_our_message, bad_info, close_status;
    int close_on_call; /* close from inside this call (0: never) */
} state;

static bool before_connect(void *user_data, const lc_connect_info *info, lc_connect_request *request) {
    state *s = user_data;
    pthread_mutex_lock(&s->w.lock);
    int call = ++s->calls;
    if (info->server_index != 0 || info->attempt != (uint32_t)call || strcmp(info->url, s->url) != 0) s->bad_info++;
    pthread_mutex_unlock(&s->w.lock);
    CHECK_STATUS(lc_connect_request_set_header(request, "Authorization", "Bearer t"), LC_STATUS_OK);
    CHECK_STATUS(lc_connect_request_set_header(request, "Bad Name", "x"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_header(request, "X", "a\r\nb"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_header(request, NULL, "x"), LC_STATUS_NULL_ARGUMENT);
    const char *protocols[] = {"chat.v1", "chat.v2"};
    CHECK_STATUS(lc_connect_request_set_subprotocols(request, protocols, 2), LC_STATUS_OK);
    CHECK_STATUS(lc_connect_request_set_subprotocols(request, NULL, 1), LC_STATUS_NULL_ARGUMENT);
    const char *bad[] = {"a b"};
    CHECK_STATUS(lc_connect_request_set_subprotocols(request, bad, 1), LC_STATUS_INVALID_ARGUMENT);
    static uint8_t big[2049];
    CHECK_STATUS(lc_connect_request_set_token(request, big, sizeof big), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_token(request, (const uint8_t *)"secret", 6), LC_STATUS_OK);
    CHECK_STATUS(lc_connect_request_set_token(request, NULL, 0), LC_STATUS_OK);
    if (call == s->close_on_call) s->close_status = (int)lc_client_close(s->client, 1000, NULL);
    if (call == 1) {
        CHECK_STATUS(lc_connect_request_set_error(request, "token service down"), LC_STATUS_OK);
        return false;
    }
    return true;
}

static void on_event(void *user_data, const lc_event *event) {
    state *s = user_data;
    pthread_mutex_lock(&s->w.lock);
    if (event->kind == LC_EVENT_CONNECTED) s->connected++;
    if (event->kind == LC_EVENT_ERROR) {
        s->errors++;
        if (event->error == LC_ERROR_CONNECT_FAILED && strstr(event->text, "token service down")) s->saw_our_message++;
    }
    pthread_cond_broadcast(&s->w.changed);
    pthread_mutex_unlock(&s->w.lock);
}

static lc_client *client_for(const char *url) {
    lc_config *config = NULL;
    lc_client *client = NULL;
    CHECK_STATUS(lc_config_new(url, &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_reconnect(config, 10, 100, 2.0, 0.0, 0), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &client), LC_STATUS_OK);
    lc_config_free(config);
    return client;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* Arguments are checked outside a callback too. */
    CHECK_STATUS(lc_client_set_connect_callback(NULL, before_connect, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_header(NULL, "a", "b"), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_token(NULL, NULL, 0), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_connect_request_set_error(NULL, "x"), LC_STATUS_NULL_ARGUMENT);

    state s = {.url = argv[1]};
    waiter_init(&s.w);
    s.client = client_for(argv[1]);
    CHECK_STATUS(lc_client_set_connect_callback(s.client, before_connect, &s), LC_STATUS_OK);
    CHECK_STATUS(lc_client_set_event_callback(s.client, on_event, &s), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(s.client), LC_STATUS_OK);
    pthread_mutex_lock(&s.w.lock);
    CHECK(wait_until_at_least(&s.w, &s.connected, 1, 10000));
    CHECK(s.calls == 2);
    CHECK(s.errors == 1 && s.saw_our_message == 1);
    CHECK(s.bad_info == 0);
    pthread_mutex_unlock(&s.w.lock);
    CHECK_STATUS(lc_client_close(s.client, 1000, NULL), LC_STATUS_OK);
    lc_client_free(s.client);

    /* Closing from inside the callback does not wait; the client then stops. */
    state t = {.url = argv[1], .close_on_call = 1};
    waiter_init(&t.w);
    t.client = client_for(argv[1]);
    CHECK_STATUS(lc_client_set_connect_callback(t.client, before_connect, &t), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(t.client), LC_STATUS_OK);
    lc_event event;
    lc_status status;
    while ((status = lc_client_poll(t.client, 10000, &event)) == LC_STATUS_OK && event.kind != LC_EVENT_CLOSED) {
    }
    CHECK_STATUS(status, LC_STATUS_OK);
    CHECK(event.kind == LC_EVENT_CLOSED);
    CHECK(t.close_status == LC_STATUS_IN_PROGRESS);
    CHECK(t.connected == 0 && t.calls == 1);
    lc_client_free(t.client);

    waiter_destroy(&s.w);
    waiter_destroy(&t.w);
    return harness_finish("connect_callback");
}
