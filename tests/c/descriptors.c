/* Descriptors per client: a connected client holds its socket and nothing
 * else until lc_client_event_fd() is asked for, so ten thousand clients need
 * ten thousand descriptors, not thirty thousand. */
#include <dirent.h>
#include <stdio.h>

#include "harness.h"

#define CLIENTS 20

static int open_fds(void) {
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) return -1;
    int n = 0;
    while (readdir(dir) != NULL) n++;
    closedir(dir);
    return n;
}

/* Connects a new client and waits (polling its events) until it is up. */
static lc_client *connected_client(const char *url) {
    lc_client *client = harness_client(url);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);
    lc_event event;
    for (;;) {
        lc_status status = lc_client_poll(client, 10000, &event);
        CHECK(status == LC_STATUS_OK);
        if (status != LC_STATUS_OK || event.kind == LC_EVENT_CONNECTED) break;
    }
    return client;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* The first client starts the shared runtime, which holds descriptors of its own. */
    lc_client *first = connected_client(argv[1]);
    int before = open_fds();
    CHECK(before > 0);
    lc_client *clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) clients[i] = connected_client(argv[1]);
    int after = open_fds();
    CHECK(after - before == CLIENTS); /* one socket each */
    if (after - before != CLIENTS) fprintf(stderr, "%d clients opened %d descriptors\n", CLIENTS, after - before);

    /* Asking for the event descriptor makes it, once. */
    int fd = -1, again = -1;
    CHECK_STATUS(lc_client_event_fd(clients[0], &fd), LC_STATUS_OK);
    CHECK_STATUS(lc_client_event_fd(clients[0], &again), LC_STATUS_OK);
    CHECK(fd >= 0 && fd == again);
    CHECK(open_fds() - after == 2); /* a socket pair */

    for (int i = 0; i < CLIENTS; i++) lc_client_free(clients[i]);
    lc_client_free(first);
    return harness_finish("descriptors");
}
