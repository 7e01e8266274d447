/* Minimal test harness for the C tests: CHECK records failures and goes on. */
#ifndef LONGCONN_TEST_HARNESS_H
#define LONGCONN_TEST_HARNESS_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "longconn.h"

static int harness_failures = 0;

#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    lc_last_error_message());                                                       \
            harness_failures++;                                                                     \
        }                                                                                           \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                                    \
    do {                                                                                                \
        lc_status got_ = (expr);                                                                        \
        if (got_ != (expected)) {                                                                       \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, \
                    #expr, lc_status_name(got_), lc_status_name(expected), lc_last_error_message());    \
            harness_failures++;                                                                         \
        }                                                                                               \
    } while (0)

static inline int harness_finish(const char *name) {
    if (harness_failures == 0) {
        printf("%s: ok\n", name);
        return 0;
    }
    printf("%s: %d checks failed\n", name, harness_failures);
    return 1;
}

/* A client for `url` with the default settings (the config is freed again). */
static inline lc_client *harness_client(const char *url) {
    lc_config *config = NULL;
    lc_client *client = NULL;
    CHECK_STATUS(lc_config_new(url, &config), LC_STATUS_OK);
    CHECK_STATUS(lc_client_new(config, &client), LC_STATUS_OK);
    lc_config_free(config);
    return client;
}

/* A deadline-bounded wait on a condition that callbacks signal. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
} waiter;

static inline void waiter_init(waiter *w) {
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
}

static inline void waiter_destroy(waiter *w) {
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
}

static inline struct timespec deadline_in(int ms) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Waits (lock held by caller) until *flag >= target or the deadline passes. */
static inline int wait_until_at_least(waiter *w, const volatile int *flag, int target, int ms) {
    struct timespec until = deadline_in(ms);
    while (*flag < target) {
        if (pthread_cond_timedwait(&w->changed, &w->lock, &until) != 0) return *flag >= target;
    }
    return 1;
}

#endif
