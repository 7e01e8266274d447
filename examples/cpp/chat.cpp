// chat: the interactive chat client, in C++ over include/longconn.hpp.
//
//   chat URL        for example: chat tcp://127.0.0.1:7070
//
// Lines typed on stdin are sent; messages received are printed; connection
// changes are shown in brackets. Ctrl-D, Ctrl-C or /quit closes cleanly,
// flushing what is still queued.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>

#include "longconn.hpp"

using namespace std::chrono_literals;

namespace {

volatile sig_atomic_t interrupted = 0;

// Ctrl-C ends the input loop (the read returns with EINTR); main() then
// closes the client, flushing what is queued.
extern "C" void on_interrupt(int) { interrupted = 1; }

std::mutex output;

void say(const std::string &line) {
    std::lock_guard<std::mutex> lock(output);
    std::cout << line << std::endl;
}

void show(const longconn::event &e) {
    switch (e.kind) {
    case LC_EVENT_MESSAGE:
        say(e.data);
        break;
    case LC_EVENT_CONNECTED:
        say("[connected to " + e.text + ": " +
            (e.acknowledged ? std::string("acknowledged delivery") + (e.resumed ? ", session resumed" : ", new session")
                            : std::string("best effort")) +
            "]");
        if (e.acknowledged && !e.recovered) say("[some messages from the server were lost]");
        break;
    case LC_EVENT_DISCONNECTED:
        if (e.reason != LC_DISCONNECT_CLOSED_BY_USER) say("[disconnected: " + e.text + "]");
        break;
    case LC_EVENT_RECONNECT_SCHEDULED:
        say("[reconnecting in " + std::to_string(e.delay_ms) + " ms, attempt " + std::to_string(e.attempt) + "]");
        break;
    case LC_EVENT_ERROR:
        say("[error: " + e.text + "]");
        break;
    default:
        break;
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " URL   (for example tcp://127.0.0.1:7070)\n";
        return 2;
    }
    try {
        longconn::config config(argv[1]);
        config.heartbeat(2s, 6s).reconnect(500ms, 8s);
        longconn::client client(config);
        client.on_event(show);
        client.connect();

        struct sigaction interrupt;
        std::memset(&interrupt, 0, sizeof interrupt);
        interrupt.sa_handler = on_interrupt;  // no SA_RESTART: the read is interrupted
        sigemptyset(&interrupt.sa_mask);
        sigaction(SIGINT, &interrupt, nullptr);
        sigaction(SIGTERM, &interrupt, nullptr);

        char buffer[4096];
        while (!interrupted && std::fgets(buffer, sizeof buffer, stdin) != nullptr) {
            std::string line(buffer, std::strcspn(buffer, "\r\n"));
            if (line == "/quit") break;
            if (line.empty()) continue;
            try {
                client.send(line);
            } catch (const longconn::error &e) {
                std::cerr << "chat: message not sent: " << e.what() << "\n";
            }
        }
        if (interrupted) say("[interrupted]");
        if (uint64_t unsent = client.close(3s)) std::cerr << "chat: " << unsent << " messages could not be delivered\n";
        client.on_event(nullptr);  // the closed event may still be on its way; no more output after this
        say("[closed]");
        return 0;
    } catch (const longconn::error &e) {
        std::cerr << "chat: " << e.what() << "\n";
        return 1;
    }
}
