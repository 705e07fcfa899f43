"""`vllm-fit verify --metrics URL` against a local HTTP server serving recorded /metrics payloads."""

from __future__ import annotations

import http.server
import io
import json
import threading
from pathlib import Path

import pytest

from vllm_fit.cli import verify
from vllm_fit.logs.metrics import parse_vllm_metrics

PAYLOAD = (Path(__file__).parent / "fixtures" / "metrics" / "vllm-0.11-mistral-small-3.2-h100.prom").read_text()
SEED_LAUNCH = ["--gpu-memory-utilization", "0.95", "--max-model-len", "16000", "--vllm-version", "0.11.0"]


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str]] = {}

    def do_GET(self):  # noqa: N802
        status, body = self.routes.get(self.path, (404, "not found"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.routes
    httpd.shutdown()
    httpd.server_close()


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return verify.main(argv, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_seed_example_118_of_1444_blocks_is_8_17_percent(server):
    base, routes = server
    routes["/metrics"] = (200, PAYLOAD)
    code, out, err = run(["--metrics", base, "--prompt-tokens", "15049", *SEED_LAUNCH])
    assert code == 0, err
    assert "ceil(15,049 / 128) = 118 blocks of 1,444 = 8.17%" in out
    assert "server reports 8.18%" in out
    assert "server 1,444 x 128 tokens" in out


def test_json_compares_blocks_with_the_plan(server):
    base, routes = server
    routes["/metrics"] = (200, PAYLOAD)
    code, out, _ = run(["--metrics", base + "/metrics", "--prompt-tokens", "15,049", "-o", "json", *SEED_LAUNCH])
    doc = json.loads(out)
    assert doc["model"] == "mistralai/Mistral-Small-3.2-24B-Instruct-2506"  # from the model_name label
    assert doc["measured"]["gpu_blocks"] == 1444 and doc["measured"]["block_size"] == 128
    assert doc["request"]["blocks"] == 118 and doc["request"]["expected_usage_pct"] == 8.17
    assert doc["predicted"]["block_size"] == 128  # the server's block size is planned with
    err = doc["error_pct"]["gpu_blocks"]
    assert err == pytest.approx(100 * (doc["predicted"]["gpu_blocks"] - 1444) / 1444, abs=0.01)
    assert (code == 0) == (abs(err) <= 5)


def test_older_servers_usage_metric_and_v0_labels(server):
    base, routes = server
    old = ('vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9",'
           'num_gpu_blocks="27858",num_cpu_blocks="2048"} 1.0\n'
           'vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25\n')
    routes["/old/metrics"] = (200, old)
    code, out, err = run(["--metrics", base + "/old/metrics", "--vllm-version", "0.6.6", "-o", "json"])
    doc = json.loads(out)
    assert doc["measured"]["usage_metric"] == "vllm:gpu_cache_usage_perc"
    assert doc["measured"]["kv_cache_usage_pct"] == 25.0 and doc["measured"]["gpu_blocks"] == 27858


def test_both_usage_names_prefer_the_current_one():
    metrics = parse_vllm_metrics('vllm:kv_cache_usage_perc{engine="0"} 0.5\nvllm:gpu_cache_usage_perc{engine="0"} 0.1\n'
                                 'vllm:cache_config_info{engine="0",num_gpu_blocks="10",block_size="16"} 1\n'
                                 'vllm:cache_config_info{engine="1",num_gpu_blocks="12",block_size="16"} 1\n')
    assert metrics.first.kv_cache_usage == 0.5 and [e.num_gpu_blocks for e in metrics.engines] == [10, 12]


@pytest.mark.parametrize("path, body, status, message", [
    ("/empty", "# nothing\n", 200, "no vllm:cache_config_info"),
    ("/gone", "", 503, "HTTP 503"),
])
def test_unusable_servers(server, path, body, status, message):
    base, routes = server
    routes[path] = (status, body)
    code, _, err = run(["--metrics", base + path, *SEED_LAUNCH, "mistralai/Mistral-Small-3.2-24B-Instruct-2506"])
    assert code == 2 and message in err


@pytest.mark.parametrize("argv, message", [
    (["--metrics", "ftp://x"], "not an http(s) URL"),
    (["--prompt-tokens", "10"], "--metrics URL is required"),
    (["--metrics", "http://127.0.0.1:9/metrics", "--timeout", "1"], "cannot reach the server"),
    (["--metrics", "http://x", "--prompt-tokens", "-3"], "must be positive"),
    (["--metrics", "http://x", "--timeout", "forever"], "not a number of seconds"),
])
def test_bad_input(argv, message):
    code, _, err = run(argv)
    assert code == 2 and message in err
