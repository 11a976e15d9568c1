#!/usr/bin/env python3
"""Time from starting the release binary to its first /healthz 200, 7 starts.

    cargo build --release --bin outlook-inbox
    python3 benches/ready.py demo          # no registration: demo mode
    python3 benches/ready.py real          # a registration against bench_standin on 127.0.0.1:18081
    python3 benches/ready.py demo fresh    # a new, empty DATA_DIR every start (migrations included)

Polls with raw sockets (no client start-up in the measurement).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "demo"
# A store that exists already (as on every start but the first); "fresh" makes a new one each time.
shared_data = tempfile.mkdtemp()
fresh = "fresh" in sys.argv[2:]
results = []
for i in range(7):
    port = 18200 + i
    env = {"PATH": os.environ["PATH"], "BIND": f"127.0.0.1:{port}",
           "PUBLIC_URL": f"http://127.0.0.1:{port}",
           "DATA_DIR": tempfile.mkdtemp() if fresh else shared_data}
    if mode == "real":
        env.update({"CLIENT_ID": "bench-client", "CLIENT_SECRET": "bench-secret-test-only",
                    "AUTHORITY": "http://127.0.0.1:18081/common",
                    "MAIL_API_URL": "http://127.0.0.1:18081/v1.0"})
    t0 = time.perf_counter()
    p = subprocess.Popen(["./target/release/outlook-inbox"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(100)
            s.close()
            if data.startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            time.sleep(0.001)
    results.append((time.perf_counter() - t0) * 1000)
    p.terminate()
    p.wait()
print(mode, "ready (ms):", " ".join(f"{r:.1f}" for r in results),
      "median", f"{statistics.median(results):.1f}")
