"""The real webhook (kopf's server, real TLS) answering AdmissionReviews recorded from kube-apiserver v1.36."""

from __future__ import annotations

import base64
import copy
import json
import re
import urllib.error

import jsonpatch
import pytest

from webhook_harness import DiscoveryApi, Webhook, all_recorded, recorded

CONFIG = {"mode": "enforce", "default_gpu": "H100-80GB", "deadline_seconds": 2.0,
          "exempt_namespaces": ["kube-system", "vllm-fit"]}


@pytest.fixture(scope="module")
def api():
    api = DiscoveryApi(stateful=True).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory, api):
    workdir = tmp_path_factory.mktemp("webhook")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"), CONFIG).start()
    yield hook
    hook.stop()


def review(webhook, body, path=None):
    path = path or ("/" + ("mutate" if "mutate" in body.get("_path", "") else "validate"))
    status, data = webhook.post(path, body)
    assert status == 200, data
    assert data["kind"] == "AdmissionReview"
    assert data["response"]["uid"] == body["request"]["uid"]
    return data["response"]


def patch_of(response):
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def annotations_from(ops):
    return {op["path"].split("/")[-1].replace("~1", "/"): op.get("value") for op in ops}


def test_every_recorded_review_gets_a_well_formed_answer(webhook):
    for path in all_recorded():
        body = json.loads(path.read_text())
        hook_path = "/mutate" if path.stem.endswith("mutate") else "/validate"
        status, data = webhook.post(hook_path, body)
        assert status == 200, (path.name, data)
        assert data["response"]["uid"] == body["request"]["uid"], path.name
        assert isinstance(data["response"]["allowed"], bool)
        for warning in data["response"].get("warnings", []):
            assert len(warning) <= 120, (path.name, warning)


def test_llama70b_fp8_tp1_is_denied_with_the_numbers_and_the_fix(webhook):
    response = review(webhook, recorded("02"), "/validate")
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert "\n" not in message
    assert "llm/llama70b-fp8-tp1" in message
    assert "67.72 GiB weights" in message and "-1.44 GiB" in message
    assert "TP=2 gives 31.99 GiB (13.10x concurrency at 16,000 tokens)" in message


def test_dry_run_is_answered_the_same(webhook):
    body = recorded("02")
    body["request"]["dryRun"] = True
    dry = review(webhook, body, "/validate")
    real = review(webhook, recorded("02"), "/validate")
    assert dry["allowed"] is False and dry["status"] == real["status"]
    # The recorded dry run (Qwen3-8B, not bundled): admitted with the reason it was not checked.
    recorded_dry = review(webhook, recorded("14"), "/validate")
    assert recorded_dry["allowed"] is True
    assert any("Qwen/Qwen3-8B" in w for w in recorded_dry["warnings"])


def test_mutation_annotates_the_workload_metadata_only(webhook):
    response = review(webhook, recorded("01"), "/mutate")
    ops = patch_of(response)
    assert ops and all(op["path"].startswith("/metadata/annotations/") for op in ops)
    annotations = annotations_from(ops)
    assert annotations["vllm-fit.io/verdict"] == "reject"
    assert annotations["vllm-fit.io/kv-cache-gib"] == "-1.44"
    assert annotations["vllm-fit.io/weights-gib"] == "67.72"
    assert annotations["vllm-fit.io/gpu"] == "H100-80GB"
    assert annotations["vllm-fit.io/profile"] == "v0.11-v0.16 (vLLM 0.11.0)"


def test_update_to_tp2_is_admitted_and_annotated(webhook):
    validate = review(webhook, recorded("08"), "/validate")
    assert validate["allowed"] is True and "warnings" not in validate
    annotations = annotations_from(patch_of(review(webhook, recorded("07"), "/mutate")))
    assert annotations["vllm-fit.io/verdict"] == "fits"
    assert float(annotations["vllm-fit.io/kv-cache-gib"]) == pytest.approx(31.99, abs=0.05)
    assert annotations["vllm-fit.io/max-concurrency"] == "13.10"
    assert int(annotations["vllm-fit.io/kv-cache-tokens"]) == 209_536


def test_mutation_is_idempotent(webhook):
    body = recorded("07")
    ops = patch_of(review(webhook, body, "/mutate"))
    again = copy.deepcopy(body)
    again["request"]["object"] = jsonpatch.apply_patch(body["request"]["object"], ops)
    assert patch_of(review(webhook, again, "/mutate")) == []


def owner_of(child):
    """The controller a recorded child names, as the API server would hold it: that uid, and the
    child's pod spec as its template."""
    ref = next(o for o in child["metadata"]["ownerReferences"] if o.get("controller"))
    template = child["spec"]["template"] if "template" in child["spec"] else {"spec": child["spec"]}
    return {"apiVersion": ref["apiVersion"], "kind": ref["kind"],
            "metadata": {"name": ref["name"], "namespace": child["metadata"]["namespace"], "uid": ref["uid"]},
            "spec": {"selector": {}, "template": template}}


@pytest.mark.parametrize("prefix", ["03", "04", "05", "06", "11", "12", "19", "20", "23", "24", "41", "44"])
def test_controller_owned_objects_are_not_judged_again(webhook, api, prefix):
    # (tests/test_webhook_bypass.py: owners that do not exist, or are not what the child says.)
    body = recorded(prefix)
    path = "/mutate" if "mutate" in next(iter([p.name for p in all_recorded() if p.name.startswith(prefix)])) else "/validate"
    # 03/04: the ReplicaSet the Deployment controller makes for the rejected TP=1 Deployment; judging
    # it again would stall the rollout of a Deployment admitted earlier (or on a lookup timeout).
    try:
        api.create(owner_of(body["request"]["object"]))
    except urllib.error.HTTPError as exc:
        assert exc.code == 409  # a sibling test created it
    response = review(webhook, body, path)
    assert response["allowed"] is True
    assert "warnings" not in response and "patch" not in response


@pytest.mark.parametrize("prefix,path", [("31", "/mutate"), ("32", "/validate"), ("34", "/validate"),
                                         ("36", "/validate"), ("37", "/mutate"), ("38", "/validate")])
def test_non_vllm_objects_and_scale_are_untouched(webhook, prefix, path):
    response = review(webhook, recorded(prefix), path)
    assert response == {"uid": recorded(prefix)["request"]["uid"], "allowed": True}


def test_bare_seed_pod_at_32000_is_denied_with_the_estimated_length(webhook):
    response = review(webhook, recorded("16"), "/validate")
    assert response["allowed"] is False
    assert "estimated maximum model length is 18,176" in response["status"]["message"]


def test_own_gpu_annotation_does_not_pin_the_gpu_type(webhook):
    """The mutating webhook writes vllm-fit.io/gpu; a later change of the node selector must win."""
    body = recorded("07")
    annotated = jsonpatch.apply_patch(body["request"]["object"], patch_of(review(webhook, body, "/mutate")))
    assert annotated["metadata"]["annotations"]["vllm-fit.io/gpu"] == "H100-80GB"
    assert annotated["metadata"]["annotations"]["vllm-fit.io/gpu-source"] != "annotation"
    moved = copy.deepcopy(annotated)
    selector = moved["spec"]["template"]["spec"].setdefault("nodeSelector", {})
    selector.clear()
    selector["nvidia.com/gpu.product"] = "NVIDIA-L4"
    update = copy.deepcopy(body)
    update["request"]["object"], update["request"]["oldObject"] = moved, annotated
    response = review(webhook, update, "/validate")
    assert response["allowed"] is False  # 2 x L4 cannot hold Llama-3.3-70B-FP8
    assert "on L4" in response["status"]["message"]


def test_annotation_only_update_of_a_fitting_deployment_is_admitted(webhook):
    assert review(webhook, recorded("50"), "/validate")["allowed"] is True


def test_warn_mode_admits_and_returns_short_warnings(webhook):
    response = review(webhook, recorded("02"), "/validate-warn")
    assert response["allowed"] is True
    warnings = response["warnings"]
    assert any("no KV cache memory at TP=1" in w and "TP=2" in w for w in warnings)
    assert all(len(w) <= 120 and w.startswith("vllm-fit") for w in warnings)


def test_audit_mode_admits_silently(webhook):
    response = review(webhook, recorded("02"), "/validate-audit")
    assert response["allowed"] is True and "warnings" not in response


def test_enforce_path_overrides_a_warn_default(webhook):
    assert review(webhook, recorded("02"), "/validate-enforce")["allowed"] is False


def test_opt_out_annotation_skips_the_object_in_warn_mode_only(webhook):
    body = recorded("02")
    body["request"]["object"]["metadata"].setdefault("annotations", {})["vllm-fit.io/skip"] = "true"
    response = review(webhook, body, "/validate-warn")
    assert response["allowed"] is True and "warnings" not in response
    log = webhook.log_path.read_text()
    assert re.search(r'"skipped": "opted out with vllm-fit.io/skip \(warn mode\)"', log)
    assert review(webhook, body, "/validate")["allowed"] is False  # enforce: an admin must allow it


def test_unknown_model_is_admitted_with_a_warning(webhook):
    body = recorded("02")
    text = json.dumps(body).replace("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "acme/never-published-7b")
    response = review(webhook, json.loads(text), "/validate")
    assert response["allowed"] is True
    assert any("acme/never-published-7b" in w and "not planned" in w for w in response["warnings"])


def test_exempt_namespace_is_never_blocked(webhook):
    body = recorded("02")
    body["request"]["namespace"] = body["request"]["object"]["metadata"]["namespace"] = "kube-system"
    assert review(webhook, body, "/validate")["allowed"] is True


@pytest.mark.parametrize("raw,needle", [
    (b"not json", "not JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[]", "not a JSON object"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "request is missing"),
    (json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                 "request": {"uid": "x", "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                             "userInfo": {}, "operation": "CREATE", "object": "a string"}}).encode(),
     "request.object is not an object"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 5}}', "uid"),
])
def test_malformed_bodies_get_a_clear_400(webhook, raw, needle):
    status, data = webhook.post("/validate", raw)
    assert status == 400
    assert needle in json.dumps(data)
    # and the server is still answering
    assert review(webhook, recorded("32"), "/validate")["allowed"] is True


def test_health_and_metrics(webhook):
    assert webhook.health("/healthz")[0] == 200
    assert webhook.health("/readyz")[0] == 200
    status, text = webhook.health("/metrics")
    assert status == 200
    assert 'vllm_fit_admission_reviews_total{' in text
    assert re.search(r'vllm_fit_admission_reviews_total\{[^}]*decision="deny"[^}]*\} [1-9]', text)
    assert "vllm_fit_admission_review_duration_seconds_bucket" in text
    assert re.search(r'vllm_fit_model_lookups_total\{outcome="found"\} [1-9]', text)
    assert re.search(r'vllm_fit_model_lookups_total\{outcome="not-found"\} [1-9]', text)
    assert "vllm_fit_model_lookup_duration_seconds_count" in text


def test_the_raw_text_gate_honours_custom_image_patterns():
    """The server's pre-kopf gate and the reader share one test: an image matching a configured
    pattern with an inner wildcard (and no 'vllm' anywhere) must reach the handlers."""
    from vllm_fit.admission.config import WebhookConfig
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "registry.corp/team/llm-server:1.0",
                                                          "args": ["--model", "Qwen/Qwen3-0.6B"]}]}}}}
    reviewer = Reviewer(WebhookConfig(vllm_images=("registry.corp/*/llm-server",)), BundledResolver(),
                        gpu_catalog(), runtime_profiles())
    assert reviewer.needs_review(obj, json.dumps(obj))
    assert reviewer.needs_review(obj)
    plain = Reviewer(WebhookConfig(), BundledResolver(), gpu_catalog(), runtime_profiles())
    assert not plain.needs_review(obj, json.dumps(obj))
