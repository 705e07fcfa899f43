"""Fault and bad-input tests of the running webhook: fuzzed bodies, a burst, certificate rotation,
and two replicas agreeing."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_fit.admission.certs import key_pem, make_ca, make_serving_cert, pem
from webhook_harness import DiscoveryApi, Webhook, all_recorded, recorded

CONFIG = {"mode": "enforce", "default_gpu": "H100-80GB", "deadline_seconds": 2.0}


@pytest.fixture(scope="module")
def api():
    discovery = DiscoveryApi().start()
    yield discovery
    discovery.stop()


@pytest.fixture(scope="module")
def webhook(api, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"), CONFIG, cert_reload_seconds=0.5).start()
    yield hook
    hook.stop()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
vllm_tokens = st.sampled_from(["--tensor-parallel-size", "-tp", "--max-model-len", "16k", "auto", "--no-enforce-eager",
                               "--gpu-memory-util", "0.9", "-q", "fp8", "$(X)", "$$", "--block-size=128", "Qwen/Qwen3-32B",
                               "--kv-cache-dtype", "--config", "x.yaml", "", "-", "--", "--max-num-seqs=abc"])


def _deployment(args, containers_extra=None):
    body = recorded("02")
    container = body["request"]["object"]["spec"]["template"]["spec"]["containers"][0]
    container["args"] = args
    if containers_extra is not None:
        container["env"] = containers_extra
    return body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.one_of(vllm_tokens, st.text(max_size=12)), max_size=30), env=json_values)
def test_fuzzed_argv_and_env_get_a_well_formed_answer(webhook, args, env):
    status, data = webhook.post("/validate", _deployment(args, env))
    assert status in (200, 400), data
    if status == 200:
        assert data["response"]["uid"] == recorded("02")["request"]["uid"]
        assert isinstance(data["response"]["allowed"], bool)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=json_values, path=st.sampled_from(["/validate", "/mutate", "/validate-warn", "/nope"]))
def test_fuzzed_objects_get_an_answer_or_a_clear_4xx(webhook, obj, path):
    body = recorded("02")
    body["request"]["object"] = obj
    status, data = webhook.post(path, body)
    assert status in (200, 400), data
    if status == 200:
        assert isinstance(data["response"]["allowed"], bool)
    else:
        assert "error" in data


def test_large_and_deep_inputs(webhook):
    huge_args = ["--served-model-name", "x"] * 50_000 + ["--tensor-parallel-size", "1"]
    status, data = webhook.post("/validate", _deployment(huge_args))
    assert status == 200 and data["response"]["uid"]
    body = recorded("02")
    body["request"]["object"]["metadata"]["labels"]["deep"] = "DEEP"
    deep = "[" * 5_000 + '"x"' + "]" * 5_000  # deeper than Python's JSON decoder will recurse
    status, data = webhook.post("/validate", json.dumps(body).replace('"DEEP"', deep).encode())
    # A real AdmissionReview past the nesting budget: a denial (an HTTP error would be admitted
    # by failurePolicy: Ignore), with kubectl's (Forbidden).
    assert status == 200 and data["response"]["allowed"] is False
    assert "nested more than 64 levels" in data["response"]["status"]["message"]
    assert data["response"]["status"]["reason"] == "Forbidden"
    big = recorded("02")
    big["request"]["object"]["metadata"]["annotations"] = {"blob": "y" * (3 * 1024 * 1024)}
    status, data = webhook.post("/validate", big, timeout=30)
    assert status == 200 and data["response"]["allowed"] is False  # still the TP=1 denial
    wrong_types = recorded("02")
    wrong_types["request"]["object"]["spec"]["template"]["spec"]["containers"] = {"not": "a list"}
    status, data = webhook.post("/validate", wrong_types)
    assert status == 200 and data["response"]["allowed"] is True
    assert webhook.health("/healthz")[0] == 200


# ------------------------------------------------------------------ load

BURST_BODIES = ("02", "08", "32", "16", "26", "46")


async def _burst(webhook, count: int, concurrency: int) -> list[tuple[int, dict]]:
    context = webhook.ssl_context()
    bodies = [recorded(p) for p in BURST_BODIES]
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one(i: int) -> tuple[int, dict]:
            async with session.post(f"https://127.0.0.1:{webhook.port}/validate", json=bodies[i % len(bodies)]) as r:
                return r.status, await r.json()
        return await asyncio.gather(*(one(i) for i in range(count)))


def test_burst_of_1000_concurrent_reviews(webhook):
    alone = [webhook.post("/validate", recorded(p))[1]["response"]["allowed"] for p in BURST_BODIES]
    assert alone.count(False) >= 2  # the burst mixes denials and admissions
    before = rss_bytes(webhook.process.pid)
    results = asyncio.run(_burst(webhook, 1000, 100))
    after = rss_bytes(webhook.process.pid)
    assert [status for status, _ in results] == [200] * 1000
    # Under load every review gets the answer it gets alone.
    assert [data["response"]["allowed"] for _, data in results] == [alone[i % len(alone)] for i in range(1000)]
    # Bound: the burst may grow the server by at most 64 MiB (TLS sessions, aiohttp buffers);
    # measured here about 10-20 MiB.
    assert after - before < 64 * 1024 * 1024, (before, after)


# ------------------------------------------------------------------ certificates

def test_certificate_rotation_without_dropping_requests(webhook):
    new_ca_key, new_ca = make_ca("rotated-ca")
    new_key, new_cert = make_serving_cert(new_ca_key, new_ca, ["127.0.0.1", "localhost"])
    webhook.trusted_ca_pem = webhook.tls.ca_pem + pem(new_ca)
    context = webhook.ssl_context()
    failures: list[str] = []
    stop = threading.Event()
    body = recorded("32")

    def client_loop() -> None:
        import http.client
        while not stop.is_set():
            conn = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=context, timeout=5)
            try:
                conn.request("POST", "/validate", body=json.dumps(body), headers={"Content-Type": "application/json"})
                if conn.getresponse().status != 200:
                    failures.append("status")
            except Exception as exc:  # any refused or reset connection is a dropped request
                failures.append(repr(exc))
            finally:
                conn.close()

    def served_issuer() -> str:
        with ssl.create_connection(("127.0.0.1", webhook.port)) as sock:
            with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        return cert.issuer.rfc4514_string()

    assert "rotated-ca" not in served_issuer()
    thread = threading.Thread(target=client_loop)
    thread.start()
    try:
        time.sleep(0.5)
        # A Secret volume update swaps both files; write the key first, then the certificate.
        webhook.tls.key_path.write_bytes(key_pem(new_key))
        webhook.tls.cert_path.write_bytes(pem(new_cert))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "rotated-ca" not in served_issuer():
            time.sleep(0.2)
        assert "rotated-ca" in served_issuer()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)
    assert failures == []


# ------------------------------------------------------------------ replicas

def test_two_replicas_give_identical_answers(api, webhook, tmp_path):
    second = Webhook(tmp_path / "second", api.kubeconfig(tmp_path / "kubeconfig"), CONFIG).start()
    try:
        for path in all_recorded():
            body = json.loads(path.read_text())
            hook_path = "/mutate" if path.stem.endswith("mutate") else "/validate"
            first_answer = webhook.post(hook_path, body)
            second_answer = second.post(hook_path, body)
            assert first_answer == second_answer, path.name
            if "patch" in first_answer[1]["response"]:
                json.loads(base64.b64decode(first_answer[1]["response"]["patch"]))
    finally:
        second.stop()


def test_a_resource_the_server_has_not_discovered_is_admitted_with_a_warning(webhook):
    body = recorded("02")
    body["request"]["resource"] = {"group": "example.com", "version": "v1", "resource": "vllmdeployments"}
    status, data = webhook.post("/validate", body)
    assert status == 200
    assert data["response"]["allowed"] is True
    assert "appeared after the webhook started" in data["response"]["warnings"][0]


@pytest.mark.parametrize("obj", [{}, {"kind": "Deployment"}, {"metadata": {}}, {"spec": None}, {"spec": "vllm"}])
def test_empty_and_shapeless_objects(webhook, obj):
    body = recorded("02")
    body["request"]["object"] = obj
    for path in ("/validate", "/mutate"):
        status, data = webhook.post(path, body)
        assert status in (200, 400), (obj, path, data)
        if status == 200:
            assert data["response"]["allowed"] is True
