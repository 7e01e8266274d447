/* longconn.hpp: a header-only C++17 wrapper over longconn.h.
 *
 * Owning, move-only handles (longconn::config, longconn::client) that free
 * what they own; callbacks from any callable, kept alive by the client that
 * runs them; failures as exceptions (longconn::error, with the status and
 * the library's message), because constructors cannot return a status and
 * C++17 has no std::expected. The one failure a program meets in normal
 * running, a full outbox, also has a non-throwing form: client::try_send.
 *
 * Threads: as in longconn.h. A client may be used from several threads at
 * once; callbacks run on the library's callback thread. An exception thrown
 * by a callback never reaches the library: it is caught, counted
 * (client::callback_errors) and its message kept (client::last_callback_error).
 */
#ifndef LONGCONN_HPP
#define LONGCONN_HPP

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>
#include <utility>

#include "longconn.h"

namespace longconn {

/* A failed call: the status, and the library's description of it. */
class error : public std::runtime_error {
public:
    error(lc_status status, const std::string &what) : std::runtime_error(what), status_(status) {}
    lc_status status() const noexcept { return status_; }

private:
    lc_status status_;
};

namespace detail {
/* Throws for anything but LC_STATUS_OK, with the thread's last error message. */
inline void check(lc_status status) {
    if (status == LC_STATUS_OK) return;
    const char *message = lc_last_error_message();
    throw error(status, std::string(lc_status_name(status)) + ": " + (message ? message : ""));
}

inline uint32_t ms(std::chrono::milliseconds d) {
    return d.count() <= 0 ? 0u : static_cast<uint32_t>(std::min<long long>(d.count(), UINT32_MAX));
}
}  // namespace detail

/* A received message; valid only during the callback that receives it. */
struct message {
    std::string_view data;
    bool is_text;
    /* An event stream's message (http:// and https:// servers): its event
     * type and last event id; empty for every other message. */
    std::string_view event_type{};
    std::string_view event_id{};
};

/* An event, copied out of the library's lc_event. */
struct event {
    lc_event_kind kind;
    lc_state state;
    lc_disconnect_reason reason;
    lc_error_kind error;
    uint32_t attempt;
    uint64_t delay_ms;
    uint64_t unsent;
    uint64_t seq;
    bool acknowledged;
    bool resumed;
    bool recovered;
    uint64_t epoch;
    uint32_t server_index;
    bool is_text;
    std::string event_type; /* an event stream's message: its type and last id */
    std::string event_id;
    std::string text;
    std::string data; /* the message's bytes, for LC_EVENT_MESSAGE */

    static event from(const lc_event &e) {
        return event{e.kind,
                     e.state,
                     e.reason,
                     e.error,
                     e.attempt,
                     e.delay_ms,
                     e.unsent,
                     e.seq,
                     e.acknowledged,
                     e.resumed,
                     e.recovered,
                     e.epoch,
                     e.server_index,
                     e.is_text,
                     e.event_type ? std::string(e.event_type) : std::string(),
                     e.event_id ? std::string(e.event_id) : std::string(),
                     e.text ? std::string(e.text) : std::string(),
                     e.data ? std::string(reinterpret_cast<const char *>(e.data), e.len) : std::string()};
    }
};

/* What a client is created from. Move-only; the setters return *this. */
class config {
public:
    explicit config(const std::string &url) { detail::check(lc_config_new(url.c_str(), &raw_)); }
    ~config() { lc_config_free(raw_); }
    config(config &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    config &operator=(config &&other) noexcept {
        if (this != &other) {
            lc_config_free(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
        }
        return *this;
    }
    config(const config &) = delete;
    config &operator=(const config &) = delete;

    config &heartbeat(std::chrono::milliseconds interval, std::chrono::milliseconds timeout) {
        detail::check(lc_config_set_heartbeat(raw_, detail::ms(interval), detail::ms(timeout)));
        return *this;
    }
    config &reconnect(std::chrono::milliseconds initial, std::chrono::milliseconds max, double multiplier = 2.0,
                      double jitter = 0.2, uint32_t max_attempts = 0) {
        detail::check(
            lc_config_set_reconnect(raw_, detail::ms(initial), detail::ms(max), multiplier, jitter, max_attempts));
        return *this;
    }
    config &auto_reconnect(bool enabled) {
        detail::check(lc_config_set_auto_reconnect(raw_, enabled));
        return *this;
    }
    config &outbox_limits(size_t messages, size_t bytes) {
        detail::check(lc_config_set_outbox_limits(raw_, messages, bytes));
        return *this;
    }
    config &inbox_limits(size_t messages, size_t bytes) {
        detail::check(lc_config_set_inbox_limits(raw_, messages, bytes));
        return *this;
    }
    config &max_frame_size(size_t bytes) {
        detail::check(lc_config_set_max_frame_size(raw_, bytes));
        return *this;
    }
    config &connect_timeout(std::chrono::milliseconds timeout) {
        detail::check(lc_config_set_connect_timeout(raw_, detail::ms(timeout)));
        return *this;
    }
    config &client_name(const std::string &name) {
        detail::check(lc_config_set_client_name(raw_, name.c_str()));
        return *this;
    }
    // Another server to move to when the ones before it cannot be reached
    // (lc_config_add_server: the same session, the same framing family).
    config &server(const std::string &url) {
        detail::check(lc_config_add_server(raw_, url.c_str()));
        return *this;
    }
    // Every connection through this proxy (http://, https://, socks5://,
    // socks5h://; see lc_config_set_proxy); "" for none, whatever the
    // environment says. Without it, the environment is read as curl reads it.
    config &proxy(const std::string &url) {
        detail::check(lc_config_set_proxy(raw_, url.c_str()));
        return *this;
    }
    // http:// and https:// servers: where messages are POSTed (lc_config_set_http_send_url).
    config &http_send_url(const std::string &url) {
        detail::check(lc_config_set_http_send_url(raw_, url.c_str()));
        return *this;
    }
    // ws:// and wss://: offer permessage-deflate (on by default).
    config &websocket_compression(bool enabled) {
        detail::check(lc_config_set_websocket_compression(raw_, enabled));
        return *this;
    }
    // The protocol 2 session and every unacknowledged message kept in this
    // file, for the next program on the same path (lc_config_set_outbox_path).
    config &outbox_path(const std::string &path) {
        detail::check(lc_config_set_outbox_path(raw_, path.c_str()));
        return *this;
    }
    // When sent messages reach that file's disk (lc_config_set_outbox_sync):
    // LC_OUTBOX_SYNC_EVERY_SEND, LC_OUTBOX_SYNC_WITHIN (window), LC_OUTBOX_SYNC_NEVER.
    config &outbox_sync(lc_outbox_sync mode, std::chrono::milliseconds window = std::chrono::milliseconds(0)) {
        detail::check(lc_config_set_outbox_sync(raw_, static_cast<uint32_t>(mode), static_cast<uint32_t>(window.count())));
        return *this;
    }
    config &random_start(bool random) {
        detail::check(lc_config_set_server_order(raw_, random));
        return *this;
    }
    config &header(const std::string &name, const std::string &value) {
        detail::check(lc_config_add_header(raw_, name.c_str(), value.c_str()));
        return *this;
    }
    config &subprotocol(const std::string &name) {
        detail::check(lc_config_add_subprotocol(raw_, name.c_str()));
        return *this;
    }
    config &tls_ca_file(const std::string &path) {
        detail::check(lc_config_set_tls_ca_file(raw_, path.c_str()));
        return *this;
    }
    config &protocol_version(uint32_t version) {
        detail::check(lc_config_set_protocol_version(raw_, version));
        return *this;
    }
    /* Callbacks on the I/O thread (see lc_config_set_callbacks_on_io_thread()
     * for the rules: they must return quickly and never block). */
    config &callbacks_on_io_thread(bool enabled) {
        detail::check(lc_config_set_callbacks_on_io_thread(raw_, enabled));
        return *this;
    }

    const lc_config *get() const noexcept { return raw_; }

private:
    lc_config *raw_ = nullptr;
};

/* One long connection. Move-only; destroying it frees the client at once
 * (call close() first to flush). Callbacks registered on it live as long as
 * it does, and none runs after its destructor returns. */
class client {
public:
    using message_handler = std::function<void(const message &)>;
    using event_handler = std::function<void(const event &)>;
    /* Changes one connection attempt (lc_connect_request_*); throws
     * longconn::error for what the request refuses. */
    class connect_request {
    public:
        explicit connect_request(lc_connect_request *raw) : raw_(raw) {}
        void set_header(const std::string &name, const std::string &value) {
            detail::check(lc_connect_request_set_header(raw_, name.c_str(), value.c_str()));
        }
        void set_subprotocols(const std::vector<std::string> &protocols) {
            std::vector<const char *> names;
            for (const auto &p : protocols) names.push_back(p.c_str());
            detail::check(lc_connect_request_set_subprotocols(raw_, names.data(), names.size()));
        }
        void set_token(std::string_view token) {
            detail::check(lc_connect_request_set_token(raw_, reinterpret_cast<const uint8_t *>(token.data()),
                                                       token.size()));
        }

    private:
        lc_connect_request *raw_;
    };
    /* What a connection attempt is about to do (lc_connect_info, copied). */
    struct connect_info {
        uint32_t server_index;
        uint32_t attempt;
        std::string url;
    };
    /* Before each attempt (lc_client_set_connect_callback); throw to fail it. */
    using connect_handler = std::function<void(const connect_info &, connect_request &)>;

    explicit client(const config &cfg) : callbacks_(std::make_unique<callbacks>()) {
        detail::check(lc_client_new(cfg.get(), &raw_));
    }
    ~client() { lc_client_free(raw_); }
    /* A moved-from client may only be destroyed or assigned to. */
    client(client &&other) noexcept
        : raw_(std::exchange(other.raw_, nullptr)), callbacks_(std::move(other.callbacks_)) {}
    client &operator=(client &&other) noexcept {
        if (this != &other) {
            lc_client_free(raw_);
            raw_ = std::exchange(other.raw_, nullptr);
            callbacks_ = std::move(other.callbacks_);
        }
        return *this;
    }
    client(const client &) = delete;
    client &operator=(const client &) = delete;

    void connect() { detail::check(lc_client_connect(raw_)); }

    /* Queues a copy of `data`; throws longconn::error (LC_STATUS_QUEUE_FULL
     * when the outbox is full, and the other statuses of lc_client_send). */
    void send(std::string_view data) { detail::check(lc_client_send(raw_, bytes(data), data.size())); }
    /* Like send(), returning the message's number (lc_client_send_seq). */
    uint64_t send_seq(std::string_view data) {
        uint64_t seq = 0;
        detail::check(lc_client_send_seq(raw_, bytes(data), data.size(), &seq));
        return seq;
    }
    /* Like send(), but a full outbox returns false instead of throwing. */
    bool try_send(std::string_view data) {
        lc_status status = lc_client_send(raw_, bytes(data), data.size());
        if (status == LC_STATUS_QUEUE_FULL) return false;
        detail::check(status);
        return true;
    }
    void send_text(std::string_view text) { detail::check(lc_client_send_text(raw_, text.data(), text.size())); }
    /* Waits up to `timeout` for outbox room (lc_client_send_wait). */
    void send_wait(std::string_view data, std::chrono::milliseconds timeout, bool text = false) {
        int32_t ms = static_cast<int32_t>(std::min<long long>(timeout.count(), INT32_MAX));
        detail::check(lc_client_send_wait(raw_, bytes(data), data.size(), text, ms));
    }

    /* Flushes within `timeout` and stops; returns the messages that could not
     * be delivered (0: everything was written, or acknowledged). */
    uint64_t close(std::chrono::milliseconds timeout) {
        uint64_t unsent = 0;
        lc_status status = lc_client_close(raw_, detail::ms(timeout), &unsent);
        if (status != LC_STATUS_TIMEOUT && status != LC_STATUS_IN_PROGRESS) detail::check(status);
        return unsent;
    }

    lc_state state() const {
        lc_state s{};
        detail::check(lc_client_state(raw_, &s));
        return s;
    }
    lc_stats stats() const {
        lc_stats s{};
        detail::check(lc_client_stats(raw_, &s));
        return s;
    }

    /* Runs `handler` for every message on the callback thread; an empty
     * function removes it. `message::data` is valid only during the call.
     * Messages come from the library a read's worth per call
     * (lc_client_set_messages_callback()), so the handler is looked up once
     * per batch, not per message. */
    void on_message(message_handler handler) {
        {
            std::lock_guard<std::mutex> lock(callbacks_->mutex);
            callbacks_->on_message = std::move(handler);
        }
        detail::check(lc_client_set_messages_callback(raw_, callbacks_->on_message ? &messages_trampoline : nullptr,
                                                      callbacks_.get()));
    }
    /* Runs `handler` for every event (messages too, without on_message). */
    void on_event(event_handler handler) {
        {
            std::lock_guard<std::mutex> lock(callbacks_->mutex);
            callbacks_->on_event = std::move(handler);
        }
        detail::check(
            lc_client_set_event_callback(raw_, callbacks_->on_event ? &event_trampoline : nullptr, callbacks_.get()));
    }

    /* Runs `handler` before each connection attempt, on a library thread
     * that may wait up to the connect timeout; an exception fails the
     * attempt (its what() is the error event's text) and it is retried with
     * backoff. An empty function removes it. */
    void on_connect(connect_handler handler) {
        {
            std::lock_guard<std::mutex> lock(callbacks_->mutex);
            callbacks_->on_connect = std::move(handler);
        }
        detail::check(lc_client_set_connect_callback(raw_, callbacks_->on_connect ? &connect_trampoline : nullptr,
                                                     callbacks_.get()));
    }

    /* Poll mode (no callbacks): the next event within `timeout`, if any. */
    std::optional<event> poll(std::chrono::milliseconds timeout) {
        lc_event e{};
        int32_t ms = static_cast<int32_t>(std::min<long long>(timeout.count(), INT32_MAX));
        lc_status status = lc_client_poll(raw_, ms, &e);
        if (status == LC_STATUS_TIMEOUT || status == LC_STATUS_CLOSED) return std::nullopt;
        detail::check(status);
        return event::from(e);
    }

    /* Exceptions thrown by this client's callbacks, caught at the boundary. */
    uint64_t callback_errors() const noexcept { return callbacks_->errors.load(); }
    std::string last_callback_error() const {
        std::lock_guard<std::mutex> lock(callbacks_->mutex);
        return callbacks_->last_error;
    }

    const lc_client *get() const noexcept { return raw_; }

private:
    /* On the heap, so its address (the callbacks' user_data) survives moves. */
    struct callbacks {
        mutable std::mutex mutex;
        message_handler on_message;
        event_handler on_event;
        connect_handler on_connect;
        std::atomic<uint64_t> errors{0};
        std::string last_error;

        void failed(const char *what) {
            errors.fetch_add(1);
            std::lock_guard<std::mutex> lock(mutex);
            last_error = what;
        }
    };

    static const uint8_t *bytes(std::string_view data) { return reinterpret_cast<const uint8_t *>(data.data()); }

    static void messages_trampoline(void *user_data, const lc_message *messages, size_t count) {
        auto *self = static_cast<callbacks *>(user_data);
        message_handler handler;
        try {
            std::lock_guard<std::mutex> lock(self->mutex);
            handler = self->on_message;
        } catch (...) {
            self->failed("could not copy the message handler");
            return;
        }
        if (!handler) return;
        for (size_t i = 0; i < count; i++) {
            const lc_message &m = messages[i];
            try {
                handler(message{std::string_view(reinterpret_cast<const char *>(m.data), m.len), m.is_text,
                                m.event_type ? std::string_view(m.event_type) : std::string_view(),
                                m.event_id ? std::string_view(m.event_id) : std::string_view()});
            } catch (const std::exception &e) {
                self->failed(e.what());
            } catch (...) {
                self->failed("a non-standard exception");
            }
        }
    }

    static void event_trampoline(void *user_data, const lc_event *e) {
        auto *self = static_cast<callbacks *>(user_data);
        try {
            event_handler handler;
            {
                std::lock_guard<std::mutex> lock(self->mutex);
                handler = self->on_event;
            }
            if (handler) handler(event::from(*e));
        } catch (const std::exception &ex) {
            self->failed(ex.what());
        } catch (...) {
            self->failed("a non-standard exception");
        }
    }

    static bool connect_trampoline(void *user_data, const lc_connect_info *info, lc_connect_request *request) {
        auto *self = static_cast<callbacks *>(user_data);
        try {
            connect_handler handler;
            {
                std::lock_guard<std::mutex> lock(self->mutex);
                handler = self->on_connect;
            }
            if (!handler) return true;
            connect_request wrapped(request);
            handler(connect_info{info->server_index, info->attempt, info->url}, wrapped);
            return true;
        } catch (const std::exception &ex) {
            self->failed(ex.what());
            lc_connect_request_set_error(request, ex.what());
        } catch (...) {
            self->failed("a non-standard exception");
            lc_connect_request_set_error(request, "a non-standard exception");
        }
        return false;
    }

    lc_client *raw_ = nullptr;
    std::unique_ptr<callbacks> callbacks_;
};

/* The library's version (lc_version()). */
inline std::string version() { return lc_version(); }

}  // namespace longconn

#endif  // LONGCONN_HPP
