/* Misuse of the C API: every bad argument gets a clear status, nothing crashes. */
#include <stdint.h>
#include <string.h>

#include "harness.h"

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    lc_config *config = NULL;
    lc_client *client = NULL;

    /* NULL everywhere. */
    CHECK_STATUS(lc_config_new(NULL, &config), LC_STATUS_NULL_ARGUMENT);
    CHECK(strstr(lc_last_error_message(), "url is NULL") != NULL);
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:1", NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_new(NULL, &client), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_connect(NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_send(NULL, (const uint8_t *)"x", 1), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_close(NULL, 0, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_poll(NULL, 0, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_set_event_callback(NULL, NULL, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_heartbeat(NULL, 1000, 3000), LC_STATUS_NULL_ARGUMENT);
    lc_config_free(NULL);
    lc_client_free(NULL);
    CHECK(config == NULL && client == NULL); /* outputs untouched on failure */

    /* Bad URLs and strings. */
    CHECK_STATUS(lc_config_new("gopher://example.invalid/", &config), LC_STATUS_INVALID_URL);
    CHECK(strstr(lc_last_error_message(), "unsupported scheme") != NULL);
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:99999", &config), LC_STATUS_INVALID_URL);
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:1?framing=morse", &config), LC_STATUS_INVALID_URL);
    CHECK_STATUS(lc_config_new("tcp://\xff\xfe:1", &config), LC_STATUS_INVALID_UTF8);
    /* Each bad URL is refused with a message that says what is wrong. */
    static const char *const bad_urls[][2] = {
        {"ws://127.0.0.1:7080/a b", "contains a space"},
        {"ws://ho st:80/", "contains a space"},
        {"ws://user:pw@127.0.0.1:7080/", "carries no user or password"},
        {"tcp://127.0.0.1:1?colour=red", "unknown query parameter"},
        {"ws://127.0.0.1:7080/#top", "fragment"},
        {"wss://[::1%]:443/", "invalid zone"},
    };
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        CHECK_STATUS(lc_config_new(bad_urls[i][0], &config), LC_STATUS_INVALID_URL);
        CHECK(strstr(lc_last_error_message(), bad_urls[i][1]) != NULL);
    }
    CHECK(config == NULL);

    /* Bad settings. */
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:9?framing=line", &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_heartbeat(config, 5000, 1000), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_reconnect(config, 0, 1000, 2.0, 0.2, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_reconnect(config, 100, 1000, 0.5, 0.2, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_reconnect(config, 100, 1000, 2.0, 7.0, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_max_frame_size(config, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_outbox_limits(config, 0, 10), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_inbox_limits(config, 0, 10), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_inbox_limits(config, 10, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_inbox_limits(NULL, 10, 10), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_inbox_limits(config, 1024, 1 << 20), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_plain_heartbeat(config, NULL, 4, (const uint8_t *)"pong", 4), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_plain_heartbeat(config, (const uint8_t *)"a\nb", 3, (const uint8_t *)"pong", 4),
                 LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_client_name(config, "\xc3\x28"), LC_STATUS_INVALID_UTF8);
    CHECK_STATUS(lc_set_log_callback(NULL, NULL, 9), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_add_header(config, "Bad Name", "x"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_add_header(config, "X-Token", "two\r\nlines"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_add_header(config, NULL, "x"), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_add_header(config, "Authorization", "Bearer t0ken"), LC_STATUS_OK);
    /* The config's framing is line: a list's servers must carry the same session. */
    CHECK_STATUS(lc_config_add_server(config, "ws://127.0.0.1:9/"), LC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(lc_last_error_message(), "cannot share a session") != NULL);
    CHECK_STATUS(lc_config_add_server(config, "tcp://127.0.0.1:9"), LC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(lc_last_error_message(), "same framing") != NULL);
    CHECK_STATUS(lc_config_add_server(config, "tcp://127.0.0.1:99999?framing=line"), LC_STATUS_INVALID_URL);
    CHECK_STATUS(lc_config_add_server(config, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_add_server(NULL, "tcp://127.0.0.1:9?framing=line"), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_add_server(config, "tls://localhost:10?framing=line"), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_proxy(config, "socks4://127.0.0.1:1080"), LC_STATUS_INVALID_URL);
    CHECK(strstr(lc_last_error_message(), "unsupported proxy scheme") != NULL);
    CHECK_STATUS(lc_config_set_proxy(config, "http://user:secret@127.0.0.1:3128/path"), LC_STATUS_INVALID_URL);
    CHECK(strstr(lc_last_error_message(), "secret") == NULL);
    CHECK_STATUS(lc_config_set_proxy(config, "socks5h://user:pw@127.0.0.1:1080"), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_proxy(config, "http://user:pw@127.0.0.1:3128"), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_proxy(config, ""), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_proxy(config, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_websocket_compression(NULL, true), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_websocket_compression(config, false), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_http_send_url(config, "http://127.0.0.1:1/messages"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_add_subprotocol(config, "chat v1"), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_add_subprotocol(config, "chat.v1"), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_tls_ca_file(config, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_tls_server_name(config, "\xc3\x28"), LC_STATUS_INVALID_UTF8);
    CHECK_STATUS(lc_config_set_tls_dangerous_skip_verification(NULL, true), LC_STATUS_NULL_ARGUMENT);
    {
        /* A CA file that cannot be read makes lc_client_new fail, naming the file. */
        lc_config *tls = NULL;
        lc_client *never = NULL;
        CHECK_STATUS(lc_config_new("tls://127.0.0.1:1", &tls), LC_STATUS_OK);
        CHECK_STATUS(lc_config_set_tls_ca_file(tls, "/nonexistent/ca.pem"), LC_STATUS_OK);
        CHECK_STATUS(lc_client_new(tls, &never), LC_STATUS_INVALID_ARGUMENT);
        CHECK(never == NULL && strstr(lc_last_error_message(), "/nonexistent/ca.pem") != NULL);
        lc_config_free(tls);
    }

    /* Limits and sends on a client that is never connected. */
    CHECK_STATUS(lc_config_set_outbox_limits(config, 2, 1024), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_max_frame_size(config, 64), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &client), LC_STATUS_OK);
    lc_config_free(config); /* the client keeps its own copy */
    CHECK_STATUS(lc_client_send(client, NULL, 5), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"two\nlines", 9), LC_STATUS_INVALID_ARGUMENT);
    uint8_t big[65] = {0};
    CHECK_STATUS(lc_client_send(client, big, sizeof big), LC_STATUS_MESSAGE_TOO_LARGE);
    CHECK_STATUS(lc_client_send(client, NULL, 0), LC_STATUS_OK); /* empty message */
    CHECK_STATUS(lc_client_send_text(client, "\xff\xfe", 2), LC_STATUS_INVALID_UTF8);
    CHECK_STATUS(lc_client_send_text(client, NULL, 1), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"one", 3), LC_STATUS_OK);
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"three", 5), LC_STATUS_QUEUE_FULL);
    CHECK(strstr(lc_last_error_message(), "outbox full") != NULL);
    /* Waiting for room that never comes (never connected): QUEUE_FULL after the wait. */
    CHECK_STATUS(lc_client_send_wait(client, (const uint8_t *)"three", 5, false, 20), LC_STATUS_QUEUE_FULL);
    CHECK_STATUS(lc_client_send_wait(client, (const uint8_t *)"\xff", 1, true, 20), LC_STATUS_INVALID_UTF8);
    CHECK_STATUS(lc_client_send_wait(client, NULL, 5, false, 20), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_send_wait(NULL, (const uint8_t *)"x", 1, false, 20), LC_STATUS_NULL_ARGUMENT);

    /* Batches: checked whole before anything is queued; a full outbox stops part-way. */
    size_t queued = 99;
    CHECK_STATUS(lc_client_send_batch(client, NULL, 2, &queued), LC_STATUS_NULL_ARGUMENT);
    CHECK(queued == 0);
    lc_buffer bad[2] = {{(const uint8_t *)"ok", 2}, {NULL, 3}};
    CHECK_STATUS(lc_client_send_batch(client, bad, 2, &queued), LC_STATUS_NULL_ARGUMENT);
    CHECK(queued == 0 && strstr(lc_last_error_message(), "message 1") != NULL);
    CHECK_STATUS(lc_client_send_batch(client, NULL, 0, &queued), LC_STATUS_OK);
    CHECK(queued == 0);
    /* A count no buffer can hold is refused before anything is read. */
    CHECK_STATUS(lc_client_send_batch(client, bad, SIZE_MAX / 2, &queued), LC_STATUS_INVALID_ARGUMENT);
    CHECK(queued == 0 && strstr(lc_last_error_message(), "impossible") != NULL);

    lc_stats stats;
    CHECK_STATUS(lc_client_stats(client, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_stats(client, &stats), LC_STATUS_OK);
    CHECK(stats.queued_messages == 2 && stats.queued_bytes == 3);
    lc_state state;
    CHECK_STATUS(lc_client_state(client, &state), LC_STATUS_OK);
    CHECK(state == LC_STATE_IDLE);

    lc_event event;
    CHECK_STATUS(lc_client_poll(client, 0, &event), LC_STATUS_TIMEOUT);
    uint8_t inbox[16];
    size_t lengths[4], count = 99;
    CHECK_STATUS(lc_client_poll_messages(client, 0, inbox, sizeof inbox, lengths, NULL, 4, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_poll_messages(client, 0, NULL, 16, lengths, NULL, 4, &count), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_client_poll_messages(client, 0, inbox, sizeof inbox, lengths, NULL, 4, &count), LC_STATUS_TIMEOUT);
    CHECK(count == 0);
    /* No room for a message, or more room than memory can have: refused. */
    CHECK_STATUS(lc_client_poll_messages(client, 0, inbox, sizeof inbox, lengths, NULL, 0, &count), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_client_poll_messages(client, 0, inbox, sizeof inbox, lengths, NULL, SIZE_MAX / 4, &count),
                 LC_STATUS_INVALID_ARGUMENT);
    CHECK(count == 0);
    uint64_t unsent = 99;
    CHECK_STATUS(lc_client_close(client, 10, &unsent), LC_STATUS_TIMEOUT);
    CHECK(unsent == 2);
    CHECK_STATUS(lc_client_poll(client, 1000, &event), LC_STATUS_OK);
    CHECK(event.kind == LC_EVENT_CLOSED && event.unsent == 2 && event.text != NULL);
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"late", 4), LC_STATUS_CLOSED);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_CLOSED);
    CHECK_STATUS(lc_client_close(client, 10, NULL), LC_STATUS_TIMEOUT); /* closing twice is harmless */
    lc_client_free(client);

    /* Names and version. */
    CHECK(strcmp(lc_status_name(LC_STATUS_QUEUE_FULL), "LC_STATUS_QUEUE_FULL") == 0);
    CHECK(strcmp(lc_status_name(12345), "LC_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(lc_version(), LONGCONN_VERSION) == 0);
    return harness_finish("api_misuse");
}
