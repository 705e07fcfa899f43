"""A small Hugging Face Hub for the tests: the part of the HTTP API huggingface_hub uses for
`model_info`, resolving files (`hf_hub_url`) and reading safetensors headers with ranged GETs.

Fixture models carry REAL safetensors headers, built from their config.json with the tensor
names, shapes and dtypes the transformers checkpoints use. The weights themselves are virtual
(zeros past the header); nothing here ever sends more than a header.

Fault modes (per model, `hub.faults[model_id] = mode`, or for all with `hub.fault_all`):
slow, hang, 500, 401, 404, gated, truncated, garbage, garbage_config.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

PROFILES = Path(__file__).resolve().parents[1] / "profiles" / "models"


def bundled_config(folder: str) -> dict:
    return json.loads((PROFILES / folder / "config.json").read_text())


# -- safetensors headers built from a config ---------------------------------------------------
def decoder_tensors(config: dict, dtype: str = "BF16") -> list[tuple[str, list[int], str]]:
    """(name, shape, dtype) of a Llama/Qwen3/Qwen3-MoE/Mistral checkpoint, in file order."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or h // heads
    vocab, inter = config["vocab_size"], config["intermediate_size"]
    qk_norm = config.get("model_type", "").startswith("qwen3")
    experts = config.get("num_experts") or 0
    out = [("model.embed_tokens.weight", [vocab, h], dtype)]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", [h], dtype), (f"{p}.post_attention_layernorm.weight", [h], dtype),
                (f"{p}.self_attn.q_proj.weight", [heads * head_dim, h], dtype),
                (f"{p}.self_attn.k_proj.weight", [kv * head_dim, h], dtype),
                (f"{p}.self_attn.v_proj.weight", [kv * head_dim, h], dtype),
                (f"{p}.self_attn.o_proj.weight", [h, heads * head_dim], dtype)]
        if qk_norm:
            out += [(f"{p}.self_attn.q_norm.weight", [head_dim], dtype), (f"{p}.self_attn.k_norm.weight", [head_dim], dtype)]
        if experts:
            moe = config["moe_intermediate_size"]
            out.append((f"{p}.mlp.gate.weight", [experts, h], dtype))
            for e in range(experts):
                out += [(f"{p}.mlp.experts.{e}.gate_proj.weight", [moe, h], dtype),
                        (f"{p}.mlp.experts.{e}.up_proj.weight", [moe, h], dtype),
                        (f"{p}.mlp.experts.{e}.down_proj.weight", [h, moe], dtype)]
        else:
            out += [(f"{p}.mlp.gate_proj.weight", [inter, h], dtype), (f"{p}.mlp.up_proj.weight", [inter, h], dtype),
                    (f"{p}.mlp.down_proj.weight", [h, inter], dtype)]
    out.append(("model.norm.weight", [h], dtype))
    out.append(("lm_head.weight", [vocab, h], dtype))  # stored even when tied (as Qwen3-0.6B does)
    return out


DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}


def safetensors_header(tensors: list[tuple[str, list[int], str]]) -> tuple[bytes, int]:
    """(8-byte length + JSON header padded to 8 bytes, bytes of tensor data after it)."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype in tensors:
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body, offset


@dataclass
class VirtualFile:
    head: bytes  # the bytes actually held; the rest of the file reads as zeros
    size: int
    lfs: bool = True

    def read(self, start: int, end: int) -> bytes:  # inclusive end, like HTTP ranges
        end = min(end, self.size - 1)
        chunk = self.head[start:end + 1]
        return chunk + b"\0" * max(0, end + 1 - start - len(chunk))


@dataclass
class FakeModel:
    model_id: str
    files: dict[str, VirtualFile]
    gated: bool = False

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.model_id.encode()).hexdigest()


def text_file(data: bytes | str) -> VirtualFile:
    raw = data.encode() if isinstance(data, str) else data
    return VirtualFile(raw, len(raw), lfs=False)


def single_file_model(model_id: str, config: dict, dtype: str = "BF16") -> FakeModel:
    head, data = safetensors_header(decoder_tensors(config, dtype))
    return FakeModel(model_id, {"config.json": text_file(json.dumps(config, indent=2)),
                                "model.safetensors": VirtualFile(head, len(head) + data),
                                "README.md": text_file("# fixture\n")})


def sharded_model(model_id: str, config: dict, shards: int, dtype: str = "BF16") -> FakeModel:
    tensors = decoder_tensors(config, dtype)
    per = -(-len(tensors) // shards)
    files = {"config.json": text_file(json.dumps(config, indent=2))}
    weight_map, total = {}, 0
    for n in range(shards):
        name = f"model-{n + 1:05d}-of-{shards:05d}.safetensors"
        part = tensors[n * per:(n + 1) * per]
        head, data = safetensors_header(part)
        files[name] = VirtualFile(head, len(head) + data)
        total += data
        weight_map.update({t[0]: name for t in part})
    files["model.safetensors.index.json"] = text_file(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return FakeModel(model_id, files)


def bin_model(model_id: str, config: dict, bytes_per_param: int = 2) -> FakeModel:
    """A checkpoint published only as pytorch_model-*.bin (sizes matter, contents are never read)."""
    params = sum(_numel(shape) for _, shape, _ in decoder_tensors(config))
    half = params * bytes_per_param // 2
    return FakeModel(model_id, {"config.json": text_file(json.dumps(config)),
                                "pytorch_model-00001-of-00002.bin": VirtualFile(b"", half + 1234),
                                "pytorch_model-00002-of-00002.bin": VirtualFile(b"", params * bytes_per_param - half + 1234),
                                "training_args.bin": VirtualFile(b"", 5000)})


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -- the server ------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    range: Optional[str]
    authorization: Optional[str]


@dataclass
class FakeHub:
    models: dict[str, FakeModel] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    fault_all: Optional[str] = None
    slow_seconds: float = 0.3
    token: str = "hf_fixture_token"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def add(self, model: FakeModel) -> FakeModel:
        self.models[model.model_id.lower()] = model
        return model

    # lifecycle
    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-hub")
        self._thread.start()
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"  # kept after stop(): a stopped hub refuses connections there
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def release(self) -> None:
        """Hanging requests answer now (and later ones do not hang)."""
        self._release.set()

    @property
    def url(self) -> str:
        return self._url

    # request accounting
    def count(self, pattern: str = "", method: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if re.search(pattern, r.path) and (method is None or r.method == method))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()


_API = re.compile(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads left behind

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _send(self, status: int, body: bytes = b"", headers: Optional[dict] = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _error(self, status: int, code: Optional[str] = None, message: str = "", head: bool = False) -> None:
        headers = {"Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message or code or "error"}).encode(), headers, head)

    def _serve(self, head: bool) -> None:
        fake = self.fake
        path = urlsplit(self.path).path
        with fake._lock:
            fake.requests.append(Request(self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
        api, resolve = _API.match(path), _RESOLVE.match(path)
        match = api or resolve
        if not match:
            return self._error(404, message="no such route", head=head)
        model_id = unquote(match.group(1))
        fault = fake.faults.get(model_id.lower()) or fake.fault_all
        if fault == "hang":
            fake._release.wait(30)
        elif fault == "slow":
            time.sleep(fake.slow_seconds)
        if fault == "500":
            return self._error(500, message="Internal Error", head=head)
        if fault == "401":
            return self._error(401, message="Invalid username or password.", head=head)
        model = fake.models.get(model_id.lower())
        if fault == "404" or model is None:
            return self._error(404, "RepoNotFound", "Repository not found", head=head)
        revision = unquote(match.group(2) or "main")
        if revision not in ("main", "v1", model.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head=head)
        authorized = self.headers.get("Authorization") == f"Bearer {fake.token}"
        if api:
            if fault == "garbage":
                return self._send(200, b"<html>upstream proxy error</html>", {"Content-Type": "application/json"}, head)
            return self._send(200, json.dumps(_model_info(model, blobs="blobs=true" in self.path.lower())).encode(),
                              {"Content-Type": "application/json"}, head)
        filename = unquote(resolve.group(3))
        if (model.gated or fault == "gated") and not authorized:
            return self._error(401, "GatedRepo", "Access to model is restricted. You must have access to it and be authenticated to access it.", head=head)
        file = model.files.get(filename)
        if file is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"", head=head)
        headers = {"X-Repo-Commit": model.sha, "ETag": f'"{hashlib.sha1(file.head).hexdigest()}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if file.lfs:
            headers["X-Linked-Size"] = file.size
            headers["X-Linked-ETag"] = f'"{hashlib.sha256(file.head).hexdigest()}"'
        if filename == "config.json" and fault == "garbage_config":
            return self._send(200, b"{not json", headers, head)
        wanted = self.headers.get("Range")
        if head:
            return self._send_head(file.size, headers)
        if wanted:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not m:
                return self._error(416, message="bad range")
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else file.size - 1
            if start >= file.size:
                return self._error(416, message="range not satisfiable")
            body = file.read(start, end)
            if fault == "truncated" and filename.endswith(".safetensors"):
                body = body[: min(len(body), 8 + 200)]  # the connection "drops" inside the header
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{file.size}"
            return self._send(206, body, headers)
        if file.lfs and file.size > 1_000_000:
            return self._error(403, message="the fixture hub never serves whole weight files")
        return self._send(200, file.read(0, file.size - 1), headers)

    def _send_head(self, size: int, headers: dict) -> None:
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(size))
        self.end_headers()


def _model_info(model: FakeModel, blobs: bool) -> dict:
    siblings = []
    for name, file in sorted(model.files.items()):
        entry: dict = {"rfilename": name}
        if blobs:
            entry["size"] = file.size
            entry["blobId"] = hashlib.sha1(name.encode()).hexdigest()
            if file.lfs:
                entry["lfs"] = {"size": file.size, "sha256": hashlib.sha256(name.encode()).hexdigest(), "pointerSize": 134}
        siblings.append(entry)
    return {"_id": model.sha[:24], "id": model.model_id, "modelId": model.model_id, "sha": model.sha, "private": False,
            "gated": "manual" if model.gated else False, "disabled": False, "tags": ["transformers", "safetensors"],
            "library_name": "transformers", "siblings": siblings}


# -- pytest fixtures (imported by the test_hub_* modules) ------------------------------------
import pytest  # noqa: E402

QWEN = "acme/qwen3-mini"  # Qwen3-0.6B geometry, one model.safetensors
LLAMA = "acme/llama-sharded"  # Llama-3.1-8B geometry, 4 shards + index
MOE = "acme/moe-bigheader"  # Qwen3-30B-A3B geometry, 3 shards whose headers pass 100 kB
BIN = "acme/bin-only"  # Mistral-7B geometry, pytorch_model-*.bin only
GATED = "acme/gated-llama"  # Llama-3.1-8B geometry behind a licence gate


@pytest.fixture(scope="session")
def fixture_models() -> list[FakeModel]:
    llama = bundled_config("meta-llama--Llama-3.1-8B-Instruct")
    gated = single_file_model(GATED, llama)
    gated.gated = True
    return [single_file_model(QWEN, bundled_config("Qwen--Qwen3-0.6B")), sharded_model(LLAMA, llama, 4),
            sharded_model(MOE, bundled_config("Qwen--Qwen3-30B-A3B"), 3),
            bin_model(BIN, bundled_config("mistralai--Mistral-7B-Instruct-v0.3")), gated]


@pytest.fixture
def hub(fixture_models):
    fake = FakeHub()
    for model in fixture_models:
        fake.add(model)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch):
    """The environment a deployment sets, pointing at the fixture hub and a fresh cache."""
    for name in ("HF_TOKEN", "HF_TOKEN_PATH", "VLLM_FIT_HF_TOKEN_FILE", "HF_HUB_OFFLINE", "VLLM_FIT_OFFLINE",
                 "VLLM_FIT_HUB", "VLLM_FIT_MODEL_BUNDLE_DIRS", "VLLM_FIT_CACHE_TTL", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("VLLM_FIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VLLM_FIT_HUB_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("NO_COLOR", "1")
    return hub


@pytest.fixture
def make_resolver(hub, tmp_path):
    """HubResolvers against the fixture hub; at teardown every background fetch must have finished."""
    from vllm_fit.hub import HubResolver, HubSettings

    made = []

    def make(**overrides):
        values = dict(endpoint=hub.url, cache_dir=tmp_path / "cache", request_timeout=5.0, timeout=10.0)
        clock = overrides.pop("clock", None)
        values.update(overrides)
        resolver = HubResolver(HubSettings(**values), **({"clock": clock} if clock else {}))
        made.append(resolver)
        return resolver

    yield make
    hub.release()
    for resolver in made:
        assert resolver.wait_idle(10), "a background Hub fetch did not finish"
