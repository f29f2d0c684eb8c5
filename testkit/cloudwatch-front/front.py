#!/usr/bin/env python3
"""A CloudWatch-compatible test server: moto's CloudWatch behind a Smithy RPC v2 CBOR front.

aws-sdk-cloudwatch (Rust, >= 1.100) and current botocore speak only Smithy RPC v2 CBOR to
CloudWatch (POST /service/GraniteServiceVersion20100801/operation/<Operation>, application/cbor,
gzip above 10 KiB). moto implements CloudWatch's storage and statistics but parses only the query
and JSON protocols. This front decodes each CBOR call, hands it to moto's own server application
(moto[server], in this process) as the equivalent JSON-protocol call, and encodes moto's answer
back to CBOR. Shapes (timestamps, doubles, blobs) come from botocore's CloudWatch model, so every
operation translates, not only the ones the tests use.

Test controls, under /_front/ (JSON):
  POST /_front/fault  {"mode": "off" | "500" | "throttle" | "drop"}  make CloudWatch calls fail
  GET  /_front/stats  what arrived: calls, datums and samples per PutMetricData, body sizes

Usage: front.py [--port N]   prints "listening on 127.0.0.1:PORT" once it accepts connections.
"""

import argparse
import base64
import datetime
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import cbor2
from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.test import Client

PREFIX = "/service/GraniteServiceVersion20100801/operation/"
TARGET = "GraniteServiceVersion20100801"
UTC = datetime.timezone.utc

MODEL = botocore.session.get_session().get_service_model("cloudwatch")
MOTO = Client(create_backend_app("cloudwatch"))
# moto's backends are not made for concurrent calls.
MOTO_LOCK = threading.Lock()


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.fault = "off"
        self.stats = {
            "calls": {},  # operation -> calls answered by moto
            "refused": 0,  # calls answered with an injected fault
            "put_calls": 0,
            "put_datums": [],  # datums per accepted PutMetricData
            "put_samples": 0,  # sum of Counts (or 1 per value) accepted
            "put_body_bytes": [],  # uncompressed CBOR body per accepted PutMetricData
            "put_wire_bytes": [],  # as sent (gzip or not)
            "put_gzip_calls": 0,
            "max_values_per_datum": 0,
            "max_dimensions": 0,
        }


STATE = State()


def to_json(value, shape):
    """CBOR-decoded value -> JSON-protocol value of the same shape."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {k: to_json(v, shape.members.get(k)) for k, v in value.items()}
    if kind == "list":
        return [to_json(v, shape.member) for v in value]
    if kind == "map":
        return {k: to_json(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        return value.timestamp() if isinstance(value, datetime.datetime) else float(value)
    if kind == "blob":
        return base64.b64encode(value).decode()
    return value


def to_cbor(value, shape):
    """JSON-protocol value -> value cbor2 encodes as the RPC v2 CBOR shape wants."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {k: to_cbor(v, shape.members.get(k)) for k, v in value.items() if v is not None}
    if kind == "list":
        return [to_cbor(v, shape.member) for v in value]
    if kind == "map":
        return {k: to_cbor(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return datetime.datetime.fromtimestamp(float(value), tz=UTC)
    if kind in ("double", "float"):
        return float(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind == "boolean":
        return bool(value)
    if kind == "blob":
        return base64.b64decode(value)
    return value


def record_put(request, wire_bytes, body_bytes, gzipped):
    data = request.get("MetricData") or []
    samples = 0
    with STATE.lock:
        s = STATE.stats
        for d in data:
            values = d.get("Values") or []
            counts = d.get("Counts") or [1] * len(values)
            samples += int(sum(counts)) if values else 1
            s["max_values_per_datum"] = max(s["max_values_per_datum"], len(values))
            s["max_dimensions"] = max(s["max_dimensions"], len(d.get("Dimensions") or []))
        s["put_calls"] += 1
        s["put_datums"].append(len(data))
        s["put_samples"] += samples
        s["put_body_bytes"].append(body_bytes)
        s["put_wire_bytes"].append(wire_bytes)
        s["put_gzip_calls"] += 1 if gzipped else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read stdout for the port only
        pass

    def do_GET(self):
        if self.path == "/_front/stats":
            with STATE.lock:
                body = json.dumps(STATE.stats).encode()
            return self.reply(200, body, "application/json")
        self.reply(404, b"not found\n", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_front/fault":
            mode = json.loads(body or b"{}").get("mode", "off")
            if mode not in ("off", "500", "throttle", "drop"):
                return self.reply(400, b"mode: off | 500 | throttle | drop\n", "text/plain")
            with STATE.lock:
                STATE.fault = mode
            return self.reply(204, b"", "text/plain")
        if not self.path.startswith(PREFIX):
            return self.reply(404, f"not a CloudWatch RPC v2 CBOR path: {self.path}\n".encode(), "text/plain")
        operation = self.path[len(PREFIX):]
        with STATE.lock:
            fault = STATE.fault
        if fault != "off":
            with STATE.lock:
                STATE.stats["refused"] += 1
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "500":
                return self.error(500, "InternalServiceError", "InternalServiceFault;Receiver", "injected failure")
            return self.error(400, "ThrottlingException", "Throttling;Sender", "Rate exceeded")
        gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
        raw = gzip.decompress(body) if gzipped else body
        try:
            op = MODEL.operation_model(operation)
        except Exception:
            return self.error(400, "UnknownOperationException", None, f"unknown operation {operation}")
        request = cbor2.loads(raw) if raw else {}
        payload = json.dumps(to_json(request, op.input_shape))
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"{TARGET}.{operation}",
            # As the SDKs send it: errors come with their query-protocol codes.
            "x-amzn-query-mode": "true",
            # moto takes the region from the credential scope.
            "Authorization": self.headers.get("Authorization", ""),
        }
        with MOTO_LOCK:
            resp = MOTO.post("/", data=payload, headers=headers)
        text = resp.get_data()
        if resp.status_code >= 300:
            err = json.loads(text or b"{}")
            code = str(err.get("__type", "InternalServiceError")).split("#")[-1]
            message = err.get("message") or err.get("Message") or ""
            return self.error(resp.status_code, code, resp.headers.get("x-amzn-query-error"), message)
        with STATE.lock:
            STATE.stats["calls"][operation] = STATE.stats["calls"].get(operation, 0) + 1
        if operation == "PutMetricData":
            record_put(request, len(body), len(raw), gzipped)
        out = to_cbor(json.loads(text or b"{}"), op.output_shape) if op.output_shape else {}
        self.reply(200, cbor2.dumps(out or {}, datetime_as_timestamp=True, timezone=UTC), "application/cbor")

    def error(self, status, code, query_error, message):
        extra = {"x-amzn-query-error": query_error} if query_error else {}
        body = cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message})
        self.reply(status, body, "application/cbor", extra)

    def reply(self, status, body, content_type, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if content_type == "application/cbor":
            self.send_header("smithy-protocol", "rpc-v2-cbor")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free one)")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
