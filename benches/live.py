#!/usr/bin/env python3
"""Live-Inbox figures, driven by benches/run.sh against release builds.

  live.py latency APP STANDIN COOKIES N   notification in -> row at an open stream
  live.py streams APP COOKIES_FILE PID N  memory and CPU of N open streams

`latency` opens one /mail/events stream with the cookie header COOKIES, then N
times: the stand-in is told a message arrived (POST /arrive), the clock starts,
a valid notification batch goes to POST /notifications, and the clock stops when
the stream delivers the row. Prints p50/p99/max in milliseconds.

`streams` opens N streams (the cookie headers in COOKIES_FILE, one a line, used
in turn: a browser may hold five), waits for them to settle, and prints the app's
resident memory before and after and the CPU it used in 10 s with them open.
Fails when a stream is refused.
"""

import http.client
import resource
import socket
import sys
import threading
import time

SUBSCRIPTION = "bench-subscription"
CLIENT_STATE = "bench-client-state-test-only"
BATCH = (
    '{"value":[{"subscriptionId":"%s","clientState":"%s","changeType":"created",'
    '"resource":"Users/00000000-0000-0000-66f3-3332eca7ea81/Messages/AAMkADnew",'
    '"subscriptionExpirationDateTime":"2099-01-01T00:00:00Z",'
    '"tenantId":"9188040d-6c67-4c5b-b112-36a304b66dad"}]}' % (SUBSCRIPTION, CLIENT_STATE)
)


def hostport(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def open_stream(app, cookies):
    """A socket with /mail/events open on it, past the response head."""
    s = socket.create_connection(hostport(app))
    s.sendall(
        (
            "GET /mail/events HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
            "Cookie: %s\r\n\r\n" % (app, cookies)
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("the stream closed before its head: %r" % head[:200])
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise SystemExit("the stream was refused: %s" % status.decode(errors="replace"))
    return s, head.split(b"\r\n\r\n", 1)[1]


def post(addr, path, body, content_type="application/json"):
    c = http.client.HTTPConnection(*hostport(addr), timeout=10)
    c.request("POST", path, body=body, headers={"Content-Type": content_type})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latency(app, standin, cookies, n):
    s, rest = open_stream(app, cookies)
    rows = []
    arrived = threading.Condition()

    def read():
        buf = rest
        while True:
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if b"event: rows" in event:
                    with arrived:
                        rows.append(time.perf_counter())
                        arrived.notify_all()
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.0)  # the stream's first catch-up
    with arrived:
        rows.clear()
    times = []
    for i in range(n):
        if post(standin, "/arrive", b"") != 202:
            raise SystemExit("the stand-in refused /arrive")
        start = time.perf_counter()
        status = post(app, "/notifications", BATCH.encode())
        if status != 202:
            raise SystemExit("POST /notifications answered %d" % status)
        with arrived:
            if not arrived.wait_for(lambda: len(rows) > i, timeout=5):
                raise SystemExit("no row arrived within 5 s for notification %d" % i)
            times.append((rows[i] - start) * 1000)
        time.sleep(0.02)
    print(
        "notification to row, %d notifications: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
        % (n, percentile(times, 50), percentile(times, 99), max(times))
    )


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for %d" % pid)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def streams(app, cookies_file, pid, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
    with open(cookies_file) as f:
        headers = [line.strip() for line in f if line.strip()]
    if len(headers) * 5 < n:
        raise SystemExit("%d sign-ins hold at most %d streams" % (len(headers), len(headers) * 5))
    time.sleep(1.0)
    before = rss_kib(pid)
    held = [open_stream(app, headers[i // 5])[0] for i in range(n)]
    time.sleep(3.0)  # each stream's first catch-up call
    after = rss_kib(pid)
    ticks = cpu_ticks(pid)
    time.sleep(10.0)
    used = cpu_ticks(pid) - ticks
    hz = 100
    print(
        "%d open streams: RSS %.1f MiB before, %.1f MiB after (+%.1f MiB); CPU in 10 s with them open: %.2f s (%.1f%% of one core)"
        % (n, before / 1024, after / 1024, (after - before) / 1024, used / hz, used / hz * 10)
    )
    for s in held:
        s.close()


if __name__ == "__main__":
    if sys.argv[1] == "latency":
        latency(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "streams":
        streams(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
