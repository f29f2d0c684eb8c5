#!/usr/bin/env python3
"""Tests of the Neuron reference server's request handling (serve.py), Python stdlib only.

*** STUB: torch-neuronx cannot run here (no Inferentia2, no Neuron SDK). ***
The Neuron part, load_pipeline() (torch, torch_neuronx, diffusers and the compiled artefacts), is
replaced by StubPipeline below, which returns fixed PNGs and records what it was asked. What runs
for real: the HTTP server, request validation, the OpenAI answer shape, seeds, one generation at
a time, /healthz while loading, and the artefact check at the start of load_pipeline(). What does
not: the compiled graphs and image quality; those need an inf2 node.

Run: python3 deploy/neuron/test_serve.py (cargo test runs it: tests/tests/neuron.rs).
"""

import base64
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"stub image"


class StubImage:
    """STUB for a PIL image: save() writes fixed PNG-signed bytes."""

    def __init__(self, seed):
        self.seed = seed

    def save(self, buf, format):
        assert format == "PNG"
        buf.write(PNG + str(self.seed).encode())


class StubPipeline:
    """STUB for the torch-neuronx StableDiffusionPipeline: records calls, counts overlap."""

    def __init__(self, delay=0.0):
        self.calls = []
        self.active = 0
        self.max_active = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, **kw):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
            self.calls.append(kw)
        return type("Out", (), {"images": [StubImage(kw["generator"])]})()


class ServerTest(unittest.TestCase):
    def start(self, loader, *flags):
        args = serve.arguments(["--port=0", "--model-dir=/models/sd21", *flags])
        server, model = serve.serve(args, loader)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server.server_address[1], model

    def request(self, port, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        payload = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, json.loads(data)

    def stub(self, delay=0.0):
        pipe = StubPipeline(delay)
        # STUB: the seeded generator is the seed itself, so the test sees which one each image got.
        return pipe, (lambda _dir: (pipe, lambda seed: seed))

    def wait_ready(self, port):
        deadline = time.monotonic() + 10
        while self.request(port, "GET", "/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "never ready")
            time.sleep(0.01)

    def test_importing_the_server_needs_no_torch(self):
        self.assertNotIn("torch", sys.modules)
        self.assertNotIn("torch_neuronx", sys.modules)

    def test_healthz_is_503_while_loading_then_200(self):
        release = threading.Event()
        pipe = StubPipeline()

        def slow_loader(_dir):
            release.wait(10)
            return pipe, (lambda seed: seed)

        port, _ = self.start(slow_loader)
        self.assertEqual(self.request(port, "GET", "/healthz"), (503, {"status": "loading"}))
        status, body = self.request(port, "POST", "/v1/images/generations", {"prompt": "x"})
        self.assertEqual((status, body["error"]["type"]), (503, "unavailable"))
        release.set()
        self.wait_ready(port)

    def test_answers_the_openai_shape_with_one_seed_per_image(self):
        pipe, loader = self.stub()
        port, _ = self.start(loader, "--steps=20")
        self.wait_ready(port)
        status, body = self.request(port, "POST", "/v1/images/generations",
                                    {"prompt": "a lighthouse", "n": 2, "seed": 7, "guidance_scale": 5,
                                     "size": "512x512", "response_format": "b64_json"})
        self.assertEqual(status, 200, body)
        self.assertGreater(body["created"], 1_600_000_000)
        self.assertEqual([d["seed"] for d in body["data"]], [7, 8])
        for d in body["data"]:
            self.assertTrue(base64.b64decode(d["b64_json"]).startswith(b"\x89PNG"))
        self.assertEqual([c["generator"] for c in pipe.calls], [7, 8])
        first = pipe.calls[0]
        self.assertEqual((first["num_inference_steps"], first["guidance_scale"]), (20, 5.0))
        self.assertEqual((first["width"], first["height"], first["prompt"]), (512, 512, "a lighthouse"))

    def test_every_invalid_field_is_a_400_naming_it(self):
        _, loader = self.stub()
        port, _ = self.start(loader)
        self.wait_ready(port)
        cases = [
            ({}, "prompt"),
            ({"prompt": "  "}, "prompt"),
            ({"prompt": "x", "size": "768x768"}, "size"),
            ({"prompt": "x", "n": 9}, "n"),
            ({"prompt": "x", "steps": 0}, "steps"),
            ({"prompt": "x", "steps": True}, "steps"),
            ({"prompt": "x", "guidance_scale": 31}, "guidance_scale"),
            ({"prompt": "x", "seed": -1}, "seed"),
            ({"prompt": "x", "response_format": "url"}, "response_format"),
            ({"prompt": "x", "style": "vivid"}, "style"),
            (["x"], "body"),
            (b"{not json", "body"),
        ]
        for body, param in cases:
            status, answer = self.request(port, "POST", "/v1/images/generations", body)
            self.assertEqual(status, 400, (body, answer))
            self.assertEqual(answer["error"]["param"], param, (body, answer))
            self.assertTrue(answer["error"]["message"].startswith(param), answer)
        self.assertEqual(self.request(port, "POST", "/sdapi/v1/txt2img", {"prompt": "x"})[0], 404)

    def test_one_generation_at_a_time(self):
        pipe, loader = self.stub(delay=0.05)
        port, _ = self.start(loader)
        self.wait_ready(port)
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            self.request(port, "POST", "/v1/images/generations", {"prompt": "x"})[0])) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200, 200, 200])
        self.assertEqual(pipe.max_active, 1, "the NeuronCores run one generation at a time")

    def test_missing_artefacts_stop_the_load_naming_them(self):
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "unet.pt"), "wb").close()
            with self.assertRaises(SystemExit) as e:
                serve.load_pipeline(d)
            for name in ("text_encoder.pt", "vae_decoder.pt", "vae_post_quant_conv.pt"):
                self.assertIn(name, str(e.exception))
            self.assertNotIn("'unet.pt'", str(e.exception))
        self.assertNotIn("torch", sys.modules, "the check runs before any Neuron import")

    def test_bad_flags_name_the_flag(self):
        import contextlib
        import io

        for argv, needle in ((["--model-dir=/m", "--size=512"], "--size '512'"),
                             (["--model-dir=/m", "--steps=99"], "--steps 99"),
                             (["--size=512x512"], "--model-dir")):
            err = io.StringIO()
            with self.assertRaises(SystemExit), contextlib.redirect_stderr(err):
                serve.arguments(argv)
            self.assertIn(needle, err.getvalue())


if __name__ == "__main__":
    unittest.main(verbosity=2)
