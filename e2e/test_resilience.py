"""The webhook down and back (failurePolicy), and its certificate rotated while `kubectl apply` runs."""

from __future__ import annotations

import threading
import time
from typing import Optional

import pytest

from e2e_support import (Kubectl, Namespaces, Result, is_denial, manifest, placed, poll, served_fingerprint,
                         vllm_annotations, webhook_call_failed)

TP1 = "a-deploy-create.yaml"
TP2 = "b-deploy-update-tp2.yaml"

pytestmark = pytest.mark.usefixtures("local_webhook")


def test_failure_policy_ignore_admits_while_the_server_is_down_and_judges_again_when_back(
        local_webhook, kubectl: Kubectl, namespaces: Namespaces):
    server = local_webhook.server
    tp1 = placed(manifest(TP1), namespaces.enforce, "down-ignore-tp1")
    server.stop()
    try:
        # The chart's default, failurePolicy Ignore: an outage of vllm-fit never blocks deployments.
        result = kubectl.apply(tp1)
        assert result.ok, str(result)
        created = kubectl.get("deployment", "down-ignore-tp1", namespaces.enforce)
        assert created is not None and not vllm_annotations(created)  # nobody judged it
    finally:
        server.start()
    again = placed(manifest(TP1), namespaces.enforce, "back-ignore-tp1")
    poll("the restarted server denying TP=1 again", lambda: None if is_denial(kubectl.apply(again, "--dry-run=server"))
         else "not denied yet")


def test_failure_policy_fail_refuses_while_the_server_is_down_and_recovers(
        local_webhook, kubectl: Kubectl, namespaces: Namespaces):
    server = local_webhook.server
    tp2 = placed(manifest(TP2), namespaces.enforce, "down-fail-tp2")
    with local_webhook.reconfigured(values={"webhook": {"failurePolicy": "Fail"}}):
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            assert {h["failurePolicy"] for h in kubectl.get(kind, local_webhook.fullname)["webhooks"]} == {"Fail"}
        server.stop()
        try:
            def refused() -> Optional[str]:
                result = kubectl.apply(tp2)
                return None if webhook_call_failed(result) else f"{result.returncode} {result.stderr.strip()}"

            # Even a launch that fits cannot be created unjudged.
            poll("failurePolicy Fail refusing while the server is down", refused)
            assert kubectl.get("deployment", "down-fail-tp2", namespaces.enforce) is None
            # ... but kube-system and the webhook's own namespace are never sent to it: a dead
            # webhook cannot lock the cluster (or its own redeployment) out.
            for namespace in ("kube-system", local_webhook.namespace):
                result = kubectl.apply(placed(manifest(TP2), namespace, "down-fail-exempt"), "--dry-run=server")
                assert result.ok, str(result)
        finally:
            server.start()

        def recovered() -> Optional[str]:
            result = kubectl.apply(tp2)
            return None if result.ok else f"{result.returncode} {result.stderr.strip()}"

        poll("the restarted server admitting TP=2", recovered)
        created = kubectl.get("deployment", "down-fail-tp2", namespaces.enforce)
        assert vllm_annotations(created)["vllm-fit.io/verdict"] == "fits"
        assert is_denial(kubectl.apply(placed(manifest(TP1), namespaces.enforce, "back-fail-tp1")))


class ApplyLoop:
    """`kubectl apply --dry-run=server` of TP=1 (must be denied by vllm-fit) and TP=2 (must be admitted
    and annotated), over and over on a thread, recording every answer that was not right."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.tp1 = placed(manifest(TP1), namespace, "rotation-tp1")
        self.tp2 = placed(manifest(TP2), namespace, "rotation-tp2")
        self.done = threading.Event()
        self.count = 0
        self.wrong: list[Result] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            denied = self.kubectl.apply(self.tp1, "--dry-run=server")
            if not is_denial(denied):
                self.wrong.append(denied)
            admitted = self.kubectl.apply(self.tp2, "--dry-run=server", "-o", "json")
            if not (admitted.ok and vllm_annotations(admitted.json())):
                self.wrong.append(admitted)
            self.count += 2

    def __enter__(self) -> "ApplyLoop":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=60)

    def wait_for(self, more: int) -> None:
        target = self.count + more
        poll(f"{more} more applies during the rotation", lambda: None if self.count >= target else f"{self.count}",
             timeout=60, every=0.1)


def test_certificate_rotation_while_kubectl_apply_runs(local_webhook, kubectl: Kubectl, namespaces: Namespaces):
    """A renewed leaf (same CA), then a new CA (cert-manager's order: publish both CAs in caBundle,
    switch the serving certificate, drop the old CA), each picked up by the running server without a
    restart, while applies keep getting vllm-fit's answers. Under failurePolicy Fail, so that a TLS
    failure would show as a refused apply rather than a silent admission."""
    hook = local_webhook
    server, tls = hook.server, hook.tls
    host, port = "127.0.0.1", server.port
    with hook.reconfigured(values={"webhook": {"failurePolicy": "Fail"}}), ApplyLoop(kubectl, namespaces.enforce) as loop:
        started = server.process.pid
        loop.wait_for(4)
        # 1. Renewal: a new key and certificate from the same CA.
        renewed = tls.rotate()
        poll("the server presenting the renewed certificate",
             lambda: None if served_fingerprint(host, port) == renewed else "still the old one", timeout=30)
        loop.wait_for(4)
        # 2. A new CA: first trusted next to the old one ...
        old_ca = tls.ca_pem
        new_ca = tls.new_ca()
        from vllm_fit.admission.certs import pem

        both = old_ca + pem(new_ca[1]).decode()
        hook.apply_chart({"webhook": {"failurePolicy": "Fail"}, "tls": {"caBundle": both}})
        # (the API server reloads webhook configurations from a watch; give it a moment)
        time.sleep(2)
        loop.wait_for(4)
        # ... then the server switches to a certificate from the new CA ...
        switched = tls.rotate(ca=new_ca)
        poll("the server presenting the certificate from the new CA",
             lambda: None if served_fingerprint(host, port) == switched else "still the old one", timeout=30)
        loop.wait_for(4)
        # ... and the old CA is dropped.
        hook.apply_chart({"webhook": {"failurePolicy": "Fail"}})  # base values: tls.caBundle = the new CA
        time.sleep(2)
        loop.wait_for(6)
    assert server.process.pid == started, "the server restarted instead of reloading"
    assert not loop.wrong, f"{len(loop.wrong)} of {loop.count} applies went wrong; first:\n{loop.wrong[0]}"
    assert loop.count >= 22
    assert server.log_text().count('"certificate-reloaded"') >= 2
