# SPDX-License-Identifier: ISC
"""A real HTTP endpoint for callback tests: Python's http.server on
127.0.0.1 (a port the kernel picks), served from a thread, recording every
request and answering from a script.

    with Receiver() as r:
        r.script = [500, "drop", 200]   # one action per request, then 200
        ... r.url ...
        r.requests[0].json()

Actions: an int (that status, empty body), (status, headers, body),
"drop" (read the request, close without answering), ("hang", seconds)
(read the request, answer 200 only after that long), or a callable
taking the Request and returning one of those.
"""

import http.server
import json
import socket
import threading
import time


class Request:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers      # dict, lower-case names
        self.body = body            # bytes, exactly as received
        self.status = None          # what the receiver answered (None: dropped)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def events(self):
        """The events of the body: a list whatever the shape."""
        data = self.json()
        return data if isinstance(data, list) else [data]


class Receiver:
    def __init__(self, host="127.0.0.1", server_class=None, wrap_socket=None):
        self.requests = []
        self.script = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as libcurl would like

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                req = Request("POST", self.path,
                              {k.lower(): v for k, v in self.headers.items()},
                              body)
                with receiver.lock:
                    action = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append(req)
                    receiver.arrived.notify_all()
                if callable(action):
                    action = action(req)
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, tuple) and action[0] == "hang":
                    time.sleep(action[1])
                    action = 200
                status, headers, text = (action if isinstance(action, tuple)
                                         else (action, {}, b""))
                req.status = status
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_PUT = do_POST

        server_class = server_class or http.server.ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        if wrap_socket:
            self.server.socket = wrap_socket(self.server.socket)
        self.port = self.server.server_address[1]
        scheme = "https" if wrap_socket else "http"
        self.url = f"{scheme}://{host}:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def wait_for(self, n, timeout=10.0):
        """Waits (bounded) until n requests have arrived."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {n} requests arrived")
                self.arrived.wait(left)

    def events(self, acknowledged_only=False):
        """Every event received, in arrival order."""
        out = []
        for r in self.requests:
            if acknowledged_only and not (r.status and 200 <= r.status < 300):
                continue
            out.extend(r.events())
        return out
