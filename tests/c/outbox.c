/* The durable outbox from C: messages sent while no server answers stay in
 * the file after the client is freed, a second client on the same file is
 * refused, and a client created on it later restores them (numbered where
 * the file stopped) and delivers them to the echo server in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static lc_client *outbox_client(const char *url, const char *path, uint32_t mode, uint32_t window_ms) {
    lc_config *config = NULL;
    lc_client *client = NULL;
    CHECK_STATUS(lc_config_new(url, &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_outbox_path(config, path), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_outbox_sync(config, mode, window_ms), LC_STATUS_OK);
    lc_status status = lc_client_new(config, &client);
    lc_config_free(config);
    return status == LC_STATUS_OK ? client : NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    char dir[] = "/tmp/longconn-c-outbox-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], lock[160];
    snprintf(path, sizeof path, "%s/outbox", dir);
    snprintf(lock, sizeof lock, "%s.lock", path);

    lc_config *config = NULL;
    CHECK_STATUS(lc_config_new("tcp://127.0.0.1:1", &config), LC_STATUS_OK);
    CHECK_STATUS(lc_config_set_outbox_path(config, ""), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_outbox_path(config, NULL), LC_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(lc_config_set_outbox_sync(config, 7, 0), LC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(lc_config_set_outbox_sync(config, LC_OUTBOX_SYNC_WITHIN, 0), LC_STATUS_INVALID_ARGUMENT);
    lc_config_free(config);

    /* No server on port 1: the messages wait, in memory and in the file. */
    lc_client *first = outbox_client("tcp://127.0.0.1:1", path, LC_OUTBOX_SYNC_EVERY_SEND, 0);
    CHECK(first != NULL);
    const char *texts[] = {"m1", "m2", "m3"};
    for (int i = 0; i < 3; i++) CHECK_STATUS(lc_client_send(first, (const uint8_t *)texts[i], 2), LC_STATUS_OK);
    lc_config_new("tcp://127.0.0.1:1", &config);
    lc_config_set_outbox_path(config, path);
    lc_client *second = NULL;
    CHECK_STATUS(lc_client_new(config, &second), LC_STATUS_STORAGE);
    CHECK(strstr(lc_last_error_message(), "in use by another process") != NULL);
    CHECK(second == NULL);
    lc_config_free(config);
    lc_client_free(first);

    lc_client *client = outbox_client(argv[1], path, LC_OUTBOX_SYNC_WITHIN, 10);
    CHECK(client != NULL);
    if (client != NULL) {
        lc_stats stats;
        CHECK_STATUS(lc_client_stats(client, &stats), LC_STATUS_OK);
        CHECK(stats.restored_number == 3);
        CHECK_STATUS(lc_client_send(client, (const uint8_t *)"m4", 2), LC_STATUS_OK);
        CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
        int received = 0, in_order = 1;
        for (int rounds = 0; received < 4 && rounds < 200; rounds++) {
            lc_event event;
            if (lc_client_poll(client, 100, &event) != LC_STATUS_OK || event.kind != LC_EVENT_MESSAGE) continue;
            char expected[16];
            snprintf(expected, sizeof expected, "m%d", received + 1);
            if (event.len != 2 || memcmp(event.data, expected, 2) != 0) in_order = 0;
            received++;
        }
        CHECK(received == 4);
        CHECK(in_order);
        uint64_t unsent = 1;
        CHECK_STATUS(lc_client_close(client, 5000, &unsent), LC_STATUS_OK);
        CHECK(unsent == 0);
        lc_client_free(client);
    }
    unlink(path);
    unlink(lock);
    rmdir(dir);
    return harness_finish("outbox");
}
