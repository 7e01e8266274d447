/* After fork(), the child gets LC_STATUS_FORKED instead of a hang. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    lc_config *config = NULL;
    lc_client *client = NULL;
    CHECK_STATUS(lc_config_new(argv[1], &config), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &client), LC_STATUS_OK);
    CHECK_STATUS(lc_client_connect(client), LC_STATUS_OK);

    /* The child reports through a pipe and ends with SIGKILL: the runtime's
     * threads do not exist in a fork child, so an exit-time leak check (under
     * valgrind) would misreport memory only those threads referenced. */
    int report[2];
    CHECK(pipe(report) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        lc_client *other = NULL;
        int bad = 0;
        bad += lc_client_send(client, (const uint8_t *)"x", 1) != LC_STATUS_FORKED;
        bad += lc_client_new(config, &other) != LC_STATUS_FORKED;
        bad += lc_client_connect(client) != LC_STATUS_FORKED;
        lc_client_free(client); /* leaked in the child, not a hang */
        char result = (char)('0' + bad);
        if (write(report[1], &result, 1) != 1) _exit(3);
        kill(getpid(), SIGKILL);
    }
    char result = 'x';
    CHECK(read(report[0], &result, 1) == 1);
    CHECK(result == '0'); /* every call in the child returned LC_STATUS_FORKED */
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    close(report[0]);
    close(report[1]);

    /* The parent is unaffected. */
    CHECK_STATUS(lc_client_send(client, (const uint8_t *)"parent", 6), LC_STATUS_OK);
    CHECK_STATUS(lc_client_close(client, 5000, NULL), LC_STATUS_OK);
    lc_client_free(client);
    lc_config_free(config);
    return harness_finish("fork_child");
}
