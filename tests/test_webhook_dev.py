"""`vllm-fit serve --dev`: registers its webhook configurations for as long as it runs, no longer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from webhook_harness import DiscoveryApi, free_port

BASE = "/apis/admissionregistration.k8s.io/v1"


def fetch(api, plural, name):
    try:
        with urllib.request.urlopen(f"{api.url}{BASE}/{plural}/{name}", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def test_dev_mode_registers_then_removes_its_configurations(tmp_path):
    api = DiscoveryApi(stateful=True).start()
    try:
        port, health = free_port(), free_port()
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig")), "VLLM_FIT_MODE": "warn"}
        process = subprocess.Popen([sys.executable, "-m", "vllm_fit", "serve", "--dev", "--addr", "127.0.0.1",
                                    "--port", str(port), "--health-port", str(health)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 40
            validating = mutating = None
            while time.monotonic() < deadline and not (validating and mutating):
                assert process.poll() is None, process.stdout.read().decode()
                validating = fetch(api, "validatingwebhookconfigurations", "vllm-fit-dev")
                mutating = fetch(api, "mutatingwebhookconfigurations", "vllm-fit-dev")
                time.sleep(0.3)
            assert validating and mutating, "the dev configurations were not registered"
            paths = sorted(w["clientConfig"]["url"].rsplit("/", 1)[1] for w in validating["webhooks"])
            assert paths == ["validate", "validate-audit", "validate-enforce", "validate-warn"]
            hook = mutating["webhooks"][0]
            assert hook["clientConfig"]["url"] == f"https://127.0.0.1:{port}/mutate"
            assert hook["clientConfig"]["caBundle"]
            assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
            assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]} in \
                hook["namespaceSelector"]["matchExpressions"]
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output
        assert fetch(api, "validatingwebhookconfigurations", "vllm-fit-dev") is None
        assert fetch(api, "mutatingwebhookconfigurations", "vllm-fit-dev") is None
        assert '"event": "dev-unregistered"' in output
    finally:
        api.stop()
