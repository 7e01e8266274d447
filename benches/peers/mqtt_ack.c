/*
 * The mosquitto peer of benches/durable.rs: a QoS 1 publisher on Eclipse
 * Paho's asynchronous C client (Debian's libpaho-mqtt-dev), the way its
 * examples write: MQTTAsync_sendMessage with an onSuccess callback, which
 * Paho calls once the broker's PUBACK arrives.
 *
 *   mqtt_ack PORT latency N      one message in flight, N timed after 100
 *   mqtt_ack PORT window W N     N messages, at most W unacknowledged
 *
 * latency prints "p50_ns p99_ns context_switches_per_message";
 * window prints "messages_per_second context_switches_per_message".
 * The switches are the whole process's (getrusage), Paho's threads included.
 * Exits non-zero when the broker refuses, a publish fails or a wait passes 60 s.
 */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PAYLOAD 64
#define WARMUP 100
#define PATIENCE_S 60

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static long acked, connected, failed;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long switches(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_nvcsw + usage.ru_nivcsw;
}

static void bump(long *counter) {
    pthread_mutex_lock(&lock);
    (*counter)++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void on_connect(void *context, MQTTAsync_successData *response) {
    (void)context;
    (void)response;
    bump(&connected);
}

static void on_connect_failure(void *context, MQTTAsync_failureData *response) {
    (void)context;
    fprintf(stderr, "mqtt_ack: connect failed: %d\n", response ? response->code : 0);
    bump(&failed);
}

static void on_acked(void *context, MQTTAsync_successData *response) {
    (void)context;
    (void)response;
    bump(&acked);
}

static void on_publish_failure(void *context, MQTTAsync_failureData *response) {
    (void)context;
    fprintf(stderr, "mqtt_ack: publish failed: %d\n", response ? response->code : 0);
    bump(&failed);
}

static int message_arrived(void *context, char *topic, int topic_len, MQTTAsync_message *message) {
    (void)context;
    (void)topic_len;
    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);
    return 1;
}

/* Waits until *counter >= target; exits on a failure or after PATIENCE_S. */
static void wait_for(long *counter, long target) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PATIENCE_S;
    pthread_mutex_lock(&lock);
    while (*counter < target && !failed) {
        if (pthread_cond_timedwait(&changed, &lock, &deadline) != 0) {
            fprintf(stderr, "mqtt_ack: timed out at %ld of %ld\n", *counter, target);
            exit(1);
        }
    }
    pthread_mutex_unlock(&lock);
    if (failed) {
        exit(1);
    }
}

static long acked_now(void) {
    pthread_mutex_lock(&lock);
    long now = acked;
    pthread_mutex_unlock(&lock);
    return now;
}

static void publish(MQTTAsync client) {
    static char payload[PAYLOAD];
    MQTTAsync_responseOptions options = MQTTAsync_responseOptions_initializer;
    options.onSuccess = on_acked;
    options.onFailure = on_publish_failure;
    MQTTAsync_message message = MQTTAsync_message_initializer;
    memset(payload, 'x', sizeof payload);
    message.payload = payload;
    message.payloadlen = PAYLOAD;
    message.qos = 1;
    int rc;
    /* Paho refuses a send past its in-flight limit; wait for a PUBACK then. */
    while ((rc = MQTTAsync_sendMessage(client, "bench", &message, &options)) == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
        wait_for(&acked, acked_now() + 1);
    }
    if (rc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "mqtt_ack: send failed: %d\n", rc);
        exit(1);
    }
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: mqtt_ack PORT latency N | mqtt_ack PORT window W N\n");
        return 2;
    }
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", argv[1]);
    MQTTAsync client;
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
    create.maxBufferedMessages = 65535;
    /* MQTT_PERSIST_DIR: Paho's file persistence there (every QoS 1 message
     * written to a file until its PUBACK), else none. */
    char *persist = getenv("MQTT_PERSIST_DIR");
    int persistence = persist ? MQTTCLIENT_PERSISTENCE_DEFAULT : MQTTCLIENT_PERSISTENCE_NONE;
    if (MQTTAsync_createWithOptions(&client, uri, "longconn-bench", persistence, persist, &create) !=
        MQTTASYNC_SUCCESS) {
        fprintf(stderr, "mqtt_ack: create failed\n");
        return 1;
    }
    MQTTAsync_setCallbacks(client, NULL, NULL, message_arrived, NULL);
    MQTTAsync_connectOptions connect = MQTTAsync_connectOptions_initializer;
    connect.cleansession = 1;
    connect.maxInflight = 65535;
    connect.onSuccess = on_connect;
    connect.onFailure = on_connect_failure;
    if (MQTTAsync_connect(client, &connect) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "mqtt_ack: connect refused\n");
        return 1;
    }
    wait_for(&connected, 1);

    if (strcmp(argv[2], "latency") == 0 && argc == 4) {
        long n = atol(argv[3]);
        uint64_t *samples = calloc((size_t)n, sizeof *samples);
        if (n < 1 || !samples) {
            return 2;
        }
        long start_switches = 0;
        for (long i = 0; i < n + WARMUP; i++) {
            if (i == WARMUP) {
                start_switches = switches();
            }
            uint64_t start = now_ns();
            publish(client);
            wait_for(&acked, i + 1);
            if (i >= WARMUP) {
                samples[i - WARMUP] = now_ns() - start;
            }
        }
        double per = (double)(switches() - start_switches) / (double)n;
        qsort(samples, (size_t)n, sizeof *samples, compare);
        printf("%llu %llu %.2f\n", (unsigned long long)samples[(n - 1) / 2],
               (unsigned long long)samples[(long)((double)(n - 1) * 0.99)], per);
        free(samples);
    } else if (strcmp(argv[2], "window") == 0 && argc == 5) {
        long window = atol(argv[3]), n = atol(argv[4]);
        if (window < 1 || n < 1) {
            return 2;
        }
        publish(client);
        wait_for(&acked, 1);
        long start_switches = switches();
        uint64_t start = now_ns();
        for (long i = 2; i <= n + 1; i++) {
            if (i - acked_now() > window) {
                wait_for(&acked, i - window);
            }
            publish(client);
        }
        wait_for(&acked, n + 1);
        double seconds = (double)(now_ns() - start) / 1e9;
        printf("%.0f %.2f\n", (double)n / seconds, (double)(switches() - start_switches) / (double)n);
    } else {
        fprintf(stderr, "mqtt_ack: unknown mode %s\n", argv[2]);
        return 2;
    }
    MQTTAsync_disconnectOptions disconnect = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(client, &disconnect);
    MQTTAsync_destroy(&client);
    return 0;
}
