#!/usr/bin/env python3
"""The Neuron reference upstream: Stable Diffusion 2.1 compiled with torch-neuronx, served in the
OpenAI images shape, for `edge-inference proxy` to front on Inferentia2.

It follows the seeds' flow (AWS's torch-neuronx SD 2.1 sample): a diffusers checkout of SD 2.1
for the tokenizer, scheduler and configs, plus four artefacts traced for Neuron by the compile job
(`torch_neuronx.trace`) next to it:

  text_encoder.pt          the CLIP text encoder
  unet.pt                  the UNet, run DataParallel over two NeuronCores (batch 2: CFG)
  vae_decoder.pt           the VAE decoder
  vae_post_quant_conv.pt   the VAE's post-quant convolution

The compiled graphs have fixed shapes, so every request is generated at --size (what the model was
traced for); a request naming another size is refused. One generation runs at a time (the UNet
uses both NeuronCores); the proxy in front queues the rest and reports the queue to the agent.

  POST /v1/images/generations   {"prompt", "negative_prompt", "n", "size", "steps",
                                 "guidance_scale", "seed", "response_format": "b64_json"}
                                -> {"created", "data": [{"b64_json", "seed"}]}
  GET  /healthz                 200 once the model is loaded, 503 while it loads

Errors use the OpenAI shape, {"error": {"message", "type", "param"}}, naming the field.

The HTTP side is Python's standard library; torch, torch_neuronx and diffusers are imported only
by load_pipeline(), so the request handling is importable (and tested) without Inferentia.
"""

import argparse
import base64
import io
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTEFACTS = ("text_encoder.pt", "unet.pt", "vae_decoder.pt", "vae_post_quant_conv.pt")
ALLOWED_FIELDS = {"prompt", "negative_prompt", "n", "size", "steps", "guidance_scale", "seed",
                  "response_format", "model", "user"}


class Invalid(Exception):
    """A request field is wrong: 400 naming it."""

    def __init__(self, param, message):
        super().__init__(f"{param}: {message}")
        self.param = param


def load_pipeline(model_dir, neuron_cores=2):  # pragma: no cover - needs Inferentia2
    """Loads SD 2.1 with its Neuron-compiled parts, as the seeds do. Needs torch-neuronx (the
    Neuron DLC image) and NeuronCores; cannot run anywhere else."""
    missing = [a for a in ARTEFACTS if not os.path.isfile(os.path.join(model_dir, a))]
    if missing:
        raise SystemExit(f"--model-dir {model_dir}: missing compiled artefacts {missing} "
                         "(the Volcano compile job writes them next to the diffusers checkout)")
    import torch
    import torch.nn as nn
    import torch_neuronx
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    class NeuronUNet(nn.Module):
        """The traced UNet behind the interface the pipeline calls."""

        def __init__(self, unet, traced):
            super().__init__()
            self.traced = traced
            self.config = unet.config
            self.in_channels = unet.config.in_channels
            self.device = unet.device
            self.dtype = torch.float32

        def forward(self, sample, timestep, encoder_hidden_states, **_):
            t = timestep.float().expand((sample.shape[0],))
            return UNet2DConditionOutput(sample=self.traced(sample, t, encoder_hidden_states)[0])

    class NeuronTextEncoder(nn.Module):
        """The traced text encoder, answering as CLIPTextModel does."""

        def __init__(self, text_encoder, traced):
            super().__init__()
            self.traced = traced
            self.config = text_encoder.config
            self.dtype = torch.float32
            self.device = text_encoder.device

        def forward(self, input_ids, attention_mask=None, **_):
            return [self.traced(input_ids)["last_hidden_state"]]

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, torch_dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    path = lambda name: os.path.join(model_dir, name)  # noqa: E731
    unet = torch_neuronx.DataParallel(torch.jit.load(path("unet.pt")), list(range(neuron_cores)),
                                      set_dynamic_batching=False)
    pipe.unet = NeuronUNet(pipe.unet, unet)
    pipe.text_encoder = NeuronTextEncoder(pipe.text_encoder, torch.jit.load(path("text_encoder.pt")))
    pipe.vae.decoder = torch.jit.load(path("vae_decoder.pt"))
    pipe.vae.post_quant_conv = torch.jit.load(path("vae_post_quant_conv.pt"))

    def seeded(seed):
        return torch.Generator().manual_seed(seed)

    return pipe, seeded


class Model:
    """The loaded pipeline, one generation at a time."""

    def __init__(self, args):
        self.args = args
        self.pipe = None
        self.seeded = None
        self.error = None
        self.lock = threading.Lock()

    def load(self, loader):
        try:
            started = time.monotonic()
            self.pipe, self.seeded = loader(self.args.model_dir)
            log("model loaded", seconds=round(time.monotonic() - started, 1), dir=self.args.model_dir)
        except BaseException as e:  # a load failure ends the process: the pod restarts
            self.error = e
            log("model load failed", error=repr(e))
            os._exit(1)

    @property
    def ready(self):
        return self.pipe is not None

    def parse(self, body):
        """Checks an OpenAI images request; returns the generation's parameters."""
        try:
            req = json.loads(body or b"{}")
        except ValueError as e:
            raise Invalid("body", f"not JSON ({e})")
        if not isinstance(req, dict):
            raise Invalid("body", "expected a JSON object")
        for key in req:
            if key not in ALLOWED_FIELDS:
                raise Invalid(key, f"unknown field; allowed: {', '.join(sorted(ALLOWED_FIELDS))}")
        a = self.args
        prompt = req.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise Invalid("prompt", "a non-empty string is required")
        negative = req.get("negative_prompt", "")
        if not isinstance(negative, str):
            raise Invalid("negative_prompt", "expected a string")
        n = integer(req, "n", 1, 1, a.max_images)
        steps = integer(req, "steps", a.steps, 1, a.max_steps)
        seed = integer(req, "seed", None, 0, 2**63 - 1)
        guidance = req.get("guidance_scale", a.guidance)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance <= 30:
            raise Invalid("guidance_scale", "expected a number in 0..=30")
        size = req.get("size", a.size)
        if size != a.size:
            raise Invalid("size", f"this model is compiled for {a.size} only")
        if req.get("response_format", "b64_json") != "b64_json":
            raise Invalid("response_format", "only b64_json is served")
        if seed is None:
            seed = random.SystemRandom().randrange(2**63)
        w, h = (int(x) for x in a.size.split("x"))
        return {"prompt": prompt, "negative_prompt": negative, "n": n, "steps": steps,
                "guidance": float(guidance), "seed": seed, "width": w, "height": h}

    def generate(self, p):
        """The images of one request, in order (image i uses seed + i), as PNG bytes."""
        out = []
        with self.lock:
            for i in range(p["n"]):
                result = self.pipe(prompt=p["prompt"], negative_prompt=p["negative_prompt"] or None,
                                   num_inference_steps=p["steps"], guidance_scale=p["guidance"],
                                   height=p["height"], width=p["width"],
                                   generator=self.seeded(p["seed"] + i))
                buf = io.BytesIO()
                result.images[0].save(buf, format="PNG")
                out.append((p["seed"] + i, buf.getvalue()))
        return out


def integer(req, key, default, low, high):
    value = req.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(key, f"expected an integer in {low}..={high}")
    return value


def log(msg, **fields):
    print(json.dumps({"time": time.time(), "msg": msg, **fields}), flush=True)


def handler(model):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, value):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, kind, message, param=None):
            self.answer(status, {"error": {"message": message, "type": kind, "param": param}})

        def do_GET(self):
            if self.path == "/healthz":
                if model.ready:
                    self.answer(200, {"status": "ready"})
                else:
                    self.answer(503, {"status": "loading"})
            else:
                self.error(404, "not_found", f"no route GET {self.path}")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/images/generations":
                return self.error(404, "not_found", f"no route POST {self.path}")
            if not model.ready:
                return self.error(503, "unavailable", "the model is still loading")
            try:
                params = model.parse(body)
            except Invalid as e:
                return self.error(400, "invalid_request_error", str(e), e.param)
            try:
                images = model.generate(params)
            except Exception as e:  # a failed generation is a 500, the server goes on
                log("generation failed", error=repr(e))
                return self.error(500, "server_error", f"generation failed: {e}")
            data = [{"b64_json": base64.b64encode(png).decode(), "seed": seed} for seed, png in images]
            self.answer(200, {"created": int(time.time()), "data": data})

    return Handler


def arguments(argv=None):
    p = argparse.ArgumentParser(description="Stable Diffusion 2.1 on Inferentia2 (torch-neuronx), "
                                "OpenAI images API, behind edge-inference proxy.")
    p.add_argument("--host", default="127.0.0.1", help="listen address (loopback: the proxy is in front)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model-dir", required=True,
                   help="SD 2.1 diffusers checkout with the Neuron-compiled artefacts beside it")
    p.add_argument("--size", default="512x512", help="the size the artefacts were compiled for, WxH")
    p.add_argument("--steps", type=int, default=25, help="denoising steps when a request names none")
    p.add_argument("--max-steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--max-images", type=int, default=4)
    p.add_argument("--neuron-cores", type=int, default=2, help="NeuronCores the UNet runs DataParallel over")
    args = p.parse_args(argv)
    try:
        w, h = (int(x) for x in args.size.split("x"))
        assert w > 0 and h > 0 and w % 8 == 0 and h % 8 == 0
    except (ValueError, AssertionError):
        p.error(f"--size {args.size!r}: expected WIDTHxHEIGHT, multiples of 8")
    if not 1 <= args.steps <= args.max_steps:
        p.error(f"--steps {args.steps}: must be within 1..=--max-steps ({args.max_steps})")
    return args


def serve(args, loader):
    """Serves at once (/healthz answers 503) and loads the model in the background."""
    model = Model(args)
    server = ThreadingHTTPServer((args.host, args.port), handler(model))
    server.daemon_threads = True
    threading.Thread(target=model.load, args=(loader,), daemon=True).start()
    log("listening", host=args.host, port=server.server_address[1])
    return server, model


def main():
    args = arguments()
    server, _ = serve(args, lambda d: load_pipeline(d, args.neuron_cores))
    server.serve_forever()


if __name__ == "__main__":
    main()
