/* A program built against an installed longconn, as a user would build it:
 * the header it was compiled with and the library it runs with agree. */
#include <stdio.h>
#include <string.h>

#include <longconn.h>

int main(void) {
    if (lc_version_number() != LONGCONN_VERSION_NUM || strcmp(lc_version(), LONGCONN_VERSION) != 0) {
        fprintf(stderr, "header %s, library %s\n", LONGCONN_VERSION, lc_version());
        return 1;
    }
    lc_config *config = NULL;
    lc_client *client = NULL;
    if (lc_config_new("tcp://127.0.0.1:9", &config) != LC_STATUS_OK) return 1;
    if (lc_client_new(config, &client) != LC_STATUS_OK) return 1;
    lc_config_free(config);
    if (lc_client_send(client, (const uint8_t *)"queued", 6) != LC_STATUS_OK) return 1;
    uint64_t unsent = 0;
    lc_client_close(client, 0, &unsent);
    lc_client_free(client);
    printf("longconn %s: ok (%llu unsent)\n", lc_version(), (unsigned long long)unsent);
    return unsent == 1 ? 0 : 1;
}
