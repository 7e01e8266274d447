/* Instructions per lc_client_send, for `valgrind --tool=callgrind`:
 * 200,000 sends of 64 bytes to a client that never connects, so only the
 * caller's side of a send is counted (checks, the outbox copy, the wake-up
 * test). Instruction counts repeat exactly for the same binary and input,
 * so two builds compare to the instruction.
 *
 *   make bench-instructions          (also runs `send_instructions wait`: the
 *                                     same with lc_client_send_wait, room available)
 */
#include <stdio.h>
#include <string.h>

#include "longconn.h"

#define SENDS 200000

int main(int argc, char **argv) {
    int use_wait = argc > 1 && strcmp(argv[1], "wait") == 0;
    lc_config *config;
    lc_client *client;
    uint8_t message[64];
    memset(message, 'x', sizeof message);
    if (lc_config_new("tcp://127.0.0.1:9", &config) != LC_STATUS_OK) return 1;
    if (lc_config_set_outbox_limits(config, SENDS, (size_t)SENDS * sizeof message) != LC_STATUS_OK) return 1;
    if (lc_client_new(config, &client) != LC_STATUS_OK) return 1;
    lc_config_free(config);
    for (int i = 0; i < SENDS; i++) {
        lc_status status = use_wait ? lc_client_send_wait(client, message, sizeof message, false, 1000)
                                    : lc_client_send(client, message, sizeof message);
        if (status != LC_STATUS_OK) {
            fprintf(stderr, "send %d failed: %s\n", i, lc_last_error_message());
            return 1;
        }
    }
    lc_client_free(client);
    return 0;
}
