#!/usr/bin/env python3
"""A third-party-shaped Stable Diffusion server for the proxy's tests and benchmark.

Python 3 standard library only. It knows nothing of edge-diffusion: it answers the shapes
AUTOMATIC1111 and OpenAI-style servers answer, sleeps per generation as a model would, and
counts how many generations run at once, so a test can check what the proxy lets through.

  POST /sdapi/v1/txt2img, /sdapi/v1/img2img   A1111: {"images": [b64], "parameters", "info"}
  POST /v1/images/generations                OpenAI: {"created", "data": [{"b64_json"}] * n}
  GET  /internal/ping                        A1111's health route: {}
  GET  /sdapi/v1/sd-models                   a model list (not a generation)
  GET  /stats                                {"active", "max_active", "served", "received_bytes"}

Flags: --port (required), --sleep SECONDS per generation (default 0), --image-bytes N (size of
each returned "image", default 1024), --chunked (send generation answers chunked, in pieces).
"""

import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"active": 0, "max_active": 0, "served": 0, "received_bytes": 0}


def image(n_bytes, seed):
    """Deterministic bytes with a PNG signature, base64-encoded."""
    head = b"\x89PNG\r\n\x1a\n"
    body = bytes((seed + i) % 251 for i in range(max(0, n_bytes - len(head))))
    return base64.b64encode(head + body).decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers (uvicorn, aiohttp) do
    # TCP_NODELAY, as those servers set too: headers and body go out in separate writes, and
    # with Nagle on the body would wait for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet: the tests read the proxy's logs, not ours
        pass

    def answer(self, status, value, chunked=False):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, len(body) // 4)
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path == "/internal/ping":
            self.answer(200, {})
        elif self.path == "/sdapi/v1/sd-models":
            self.answer(200, [{"title": "sd21-neuron", "model_name": "sd21"}])
        elif self.path == "/stats":
            with LOCK:
                self.answer(200, dict(STATS))
        else:
            self.answer(404, {"detail": "Not Found"})

    def do_POST(self):
        raw = self.read_body()
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.answer(422, {"detail": "body is not JSON"})
        if self.path not in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/v1/images/generations"):
            return self.answer(404, {"detail": "Not Found"})
        with LOCK:
            STATS["active"] += 1
            STATS["max_active"] = max(STATS["max_active"], STATS["active"])
            STATS["received_bytes"] += len(raw)
        try:
            time.sleep(ARGS.sleep)
            seed = int(req.get("seed", 0))
            if self.path == "/v1/images/generations":
                n = int(req.get("n", 1))
                data = [{"b64_json": image(ARGS.image_bytes, seed + i)} for i in range(n)]
                value = {"created": int(time.time()), "data": data}
            else:
                info = {"seed": seed, "prompt": req.get("prompt", ""), "received_bytes": len(raw)}
                value = {"images": [image(ARGS.image_bytes, seed)], "parameters": req, "info": json.dumps(info)}
        finally:
            # Counted before the answer goes out: a client that has its answer sees it in /stats.
            with LOCK:
                STATS["active"] -= 1
                STATS["served"] += 1
        self.answer(200, value, chunked=ARGS.chunked)


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--image-bytes", type=int, default=1024)
    p.add_argument("--chunked", action="store_true")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{ARGS.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
