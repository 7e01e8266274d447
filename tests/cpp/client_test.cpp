// The C++ wrapper (include/longconn.hpp) against the real echo server:
// errors as exceptions, move-only handles, callbacks from lambdas that
// survive a move and may throw, poll mode, close.
//
//   client_test tcp://127.0.0.1:PORT
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "longconn.hpp"

using namespace std::chrono_literals;

static int failures = 0;
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

// Messages a callback collected, with a wait for a count.
struct inbox {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::string> messages;

    void add(const longconn::message &m) {
        std::lock_guard<std::mutex> lock(mutex);
        messages.emplace_back(m.data);
        changed.notify_all();
    }
    bool wait_for(size_t count) {
        std::unique_lock<std::mutex> lock(mutex);
        return changed.wait_for(lock, 10s, [&] { return messages.size() >= count; });
    }
};

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: client_test URL\n");
        return 2;
    }
    const std::string url = argv[1];

    // Bad input: a clear exception with its status.
    try {
        longconn::config bad("gopher://nowhere");
        CHECK(false);
    } catch (const longconn::error &e) {
        CHECK(e.status() == LC_STATUS_INVALID_URL);
        CHECK(std::string(e.what()).find("LC_STATUS_INVALID_URL") != std::string::npos);
    }
    try {
        longconn::config cfg(url);
        cfg.heartbeat(2s, 1s);  // the timeout must exceed the interval
        CHECK(false);
    } catch (const longconn::error &e) {
        CHECK(e.status() == LC_STATUS_INVALID_ARGUMENT);
    }

    try {
        longconn::config cfg(url);
        cfg.server("ws://127.0.0.1:1/");  // a WebSocket server cannot carry a tcp:// session
        CHECK(false);
    } catch (const longconn::error &e) {
        CHECK(e.status() == LC_STATUS_INVALID_ARGUMENT);
        CHECK(std::string(e.what()).find("cannot share a session") != std::string::npos);
    }

    // Callbacks from lambdas; the handle moves and they keep running.
    inbox got;
    longconn::config cfg(url);
    cfg.reconnect(50ms, 400ms).heartbeat(1s, 3s).outbox_limits(64, 1 << 20);
    longconn::config moved_cfg = std::move(cfg);
    longconn::client first(moved_cfg);
    first.on_message([&](const longconn::message &m) { got.add(m); });
    first.connect();
    for (int i = 0; i < 4; i++) first.send_wait("message " + std::to_string(i), 10s);
    CHECK(got.wait_for(4));
    longconn::client client = std::move(first);
    uint64_t seq = client.send_seq("after the move");
    CHECK(seq == 5);
    CHECK(got.wait_for(5));
    {
        std::lock_guard<std::mutex> lock(got.mutex);
        CHECK(got.messages.size() == 5 && got.messages[0] == "message 0" && got.messages[4] == "after the move");
    }
    // A full outbox: try_send says so, send throws, nothing is lost.
    bool refused = false;
    for (int i = 0; i < 100000 && !refused; i++) refused = !client.try_send("burst");
    CHECK(refused);
    if (refused) {
        bool threw = false;
        try {
            client.send("one too many");
        } catch (const longconn::error &e) {
            threw = true;
            CHECK(e.status() == LC_STATUS_QUEUE_FULL);
        }
        CHECK(threw);
    }
    // A callback that throws is caught at the boundary, and the client goes on.
    client.on_message([&](const longconn::message &m) {
        got.add(m);
        if (m.data == "throw") throw std::runtime_error("thrown by the handler");
    });
    client.send_wait("throw", 10s);
    client.send_wait("still here", 10s);
    std::unique_lock<std::mutex> lock(got.mutex);
    bool both = got.changed.wait_for(lock, 10s, [&] {
        return !got.messages.empty() && got.messages.back() == "still here";
    });
    lock.unlock();
    CHECK(both);
    CHECK(client.callback_errors() == 1);
    CHECK(client.last_callback_error() == "thrown by the handler");
    CHECK(client.state() == LC_STATE_CONNECTED);
    CHECK(client.close(5s) == 0);
    CHECK(client.stats().queued_messages == 0);

    // Poll mode: events as values.
    longconn::client polled{longconn::config(url)};
    polled.connect();
    bool connected = false;
    for (int i = 0; i < 100 && !connected; i++) {
        auto e = polled.poll(100ms);
        connected = e && e->kind == LC_EVENT_CONNECTED && e->acknowledged;
    }
    CHECK(connected);
    polled.send_text("polled");
    std::optional<longconn::event> echo;
    for (int i = 0; i < 100 && !(echo && echo->kind == LC_EVENT_MESSAGE); i++) echo = polled.poll(100ms);
    CHECK(echo && echo->data == "polled");
    CHECK(polled.close(5s) == 0);

    // The connect callback: the first attempt fails by an exception, which
    // becomes the error event's text; the second sets a token and goes on.
    longconn::config hooked_cfg(url);
    hooked_cfg.reconnect(10ms, 100ms);
    longconn::client hooked(hooked_cfg);
    std::vector<longconn::client::connect_info> attempts;
    hooked.on_connect([&](const longconn::client::connect_info &info, longconn::client::connect_request &request) {
        attempts.push_back(info);
        request.set_header("Authorization", "Bearer t");
        request.set_subprotocols({"chat.v1"});
        if (attempts.size() == 1) throw std::runtime_error("token service down");
        request.set_token("secret");
        bool refused_name = false;
        try {
            request.set_header("bad name", "x");
        } catch (const longconn::error &e) {
            refused_name = e.status() == LC_STATUS_INVALID_ARGUMENT;
        }
        CHECK(refused_name);
    });
    hooked.connect();
    std::string error_text;
    bool hooked_connected = false;
    for (int i = 0; i < 100 && !hooked_connected; i++) {
        auto e = hooked.poll(100ms);
        if (e && e->kind == LC_EVENT_ERROR) error_text = e->text;
        hooked_connected = e && e->kind == LC_EVENT_CONNECTED;
    }
    CHECK(hooked_connected);
    CHECK(error_text.find("token service down") != std::string::npos);
    CHECK(attempts.size() == 2 && attempts[0].attempt == 1 && attempts[1].attempt == 2 && attempts[1].url == url);
    CHECK(hooked.callback_errors() == 1);
    CHECK(hooked.close(5s) == 0);
    CHECK(!longconn::version().empty());

    // Callbacks on the I/O thread: a burst echoes back whole and in order,
    // and a handler that throws is counted without losing the rest.
    {
        longconn::config cfg(url);
        cfg.callbacks_on_io_thread(true);
        longconn::client io(cfg);
        inbox got;
        io.on_message([&](const longconn::message &m) {
            if (m.data == "throw") throw std::runtime_error("thrown on the I/O thread");
            got.add(m);
        });
        io.connect();
        io.send("throw");
        for (int i = 0; i < 1000; i++) io.send(std::to_string(i));
        CHECK(got.wait_for(1000));
        std::lock_guard<std::mutex> lock(got.mutex);
        bool in_order = got.messages.size() == 1000;
        for (size_t i = 0; in_order && i < got.messages.size(); i++) in_order = got.messages[i] == std::to_string(i);
        CHECK(in_order);
        CHECK(io.callback_errors() == 1);
    }

    if (failures) {
        std::fprintf(stderr, "client_test: %d checks failed\n", failures);
        return 1;
    }
    std::printf("client_test: ok\n");
    return 0;
}
