"""The observer's core: a startup log judged against the plan for the same launch (logs.observe),
the calibration store (logs.calibration), and the chart granting exactly the observer's calls.
The adapter itself (kopf's watch, pods/log, Events, the ConfigMap) runs in e2e/test_observe_in_cluster.py
against the real API server."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_chart import needs_helm, render
from vllm_fit.admission.config import WebhookConfig, load_config
from vllm_fit.admission.observer import CALIBRATION_RBAC, REQUIRED_RBAC, TokenBucket, _container_phase
from vllm_fit.cli.logs import plan_for_log
from vllm_fit.errors import VllmFitError
from vllm_fit.logs import read_startup_log
from vllm_fit.logs.calibration import CalibrationStore
from vllm_fit.logs.observe import observe
from vllm_fit.logs.profile import measured_profile_entry

CORPUS = Path(__file__).parent / "fixtures" / "vllm_logs"
STARTED = CORPUS / "v1-0.19-h100-llmd-meta-llama-llama-3-1-8b--tp1-8192.log"


@pytest.fixture(scope="module")
def started():
    log = read_startup_log(STARTED.read_text())
    plan = plan_for_log(log, model=None, gpu_text="H100-80GB", version=None, extra_flags=(), profiles_dir=None)
    return log, plan


def test_a_started_launch_is_confirmed_or_drifts_by_the_kv_error(started):
    log, plan = started
    confirmed = observe(log, plan, admitted=True, source="pod ns/p container vllm", drift_threshold_pct=50)
    assert confirmed.reason == "PredictionConfirmed" and confirmed.event_type == "Normal"
    assert confirmed.annotations["vllm-fit.io/measured-kv-cache-gib"] == "58.11"
    assert confirmed.annotations["vllm-fit.io/measured-weights-gib"] == "14.99"
    err = confirmed.kv_error_pct
    expected = round(100 * (plan.per_gpu.kv_cache_gib - 58.11) / 58.11, 2)
    assert err == pytest.approx(expected, abs=0.01)
    assert confirmed.annotations["vllm-fit.io/prediction-error"] == f"{err:+.1f}%"
    assert "measured 58.11 GiB" in confirmed.message
    # a threshold below the error turns the same observation into drift, a Warning
    tight = observe(log, plan, admitted=True, source="s", drift_threshold_pct=max(abs(err) / 2, 0.001))
    if abs(err) > 0:
        assert tight.reason == "PredictionDrift" and tight.event_type == "Warning"


def test_a_memory_failure_of_an_admitted_fitting_launch_is_flagged(started):
    _, plan = started
    failed = read_startup_log(
        "INFO 04-22 00:03:35 [utils.py:299] version 0.19.0\n"
        "ERROR 04-22 00:04:03 [core.py:1108] ValueError: Free memory on device cuda:0 (60.12/79.19 GiB) on startup "
        "is less than desired GPU memory utilization (0.95, 75.23 GiB). Decrease GPU memory utilization or reduce "
        "GPU memory used by other processes.\n")
    assert failed.failure is not None and failed.failure.code == "insufficient_free_memory"
    flagged = observe(failed, plan, admitted=True, source="pod ns/p container vllm")
    assert flagged.reason == "AdmittedLaunchFailed" and flagged.event_type == "Warning"
    assert "insufficient_free_memory" in flagged.message
    # not admitted as fitting (a warn-mode rejection let through): the failure was predicted
    assert observe(failed, plan, admitted=False, source="s").reason == "PredictionConfirmed"


def test_a_launch_that_cannot_be_planned_is_reported_not_compared(started):
    log, _ = started
    result = observe(log, None, admitted=True, source="s", unplanned_why="the launch's model is not known")
    assert result.reason == "NotCompared" and "model is not known" in result.message
    assert result.annotations["vllm-fit.io/measured-kv-cache-gib"] == "58.11"


def test_calibration_store_replaces_bounds_and_drops_a_workloads_stale_entry(started):
    log, plan = started
    entry = measured_profile_entry(log, plan, source="measured in this cluster: pod a/p container vllm")
    other_plan = plan_for_log(log, model=None, gpu_text="H100-80GB", version=None,
                              extra_flags=("--max-num-seqs", "64"), profiles_dir=None)
    other = measured_profile_entry(log, other_plan, source="measured in this cluster: pod a/q container vllm")
    assert entry.key != other.key

    store = CalibrationStore().record(entry, "a/Deployment/llama")
    assert store.entries == (entry,)
    # the same key measured again replaces the entry
    again = store.record(entry.model_copy(update={"activation_gib": 2.0}), "a/Deployment/llama")
    assert len(again.entries) == 1 and again.entries[0].activation_gib == 2.0
    # the workload changed its launch (another key): its old entry is dropped
    changed = again.record(other, "a/Deployment/llama")
    assert changed.entries == (other,)
    # ...unless another workload still measured that key
    shared = store.record(entry, "b/Deployment/copy").record(other, "a/Deployment/llama")
    assert set(e.key for e in shared.entries) == {entry.key, other.key}
    # bounded: the oldest go first
    bounded = store.record(other, "c/Deployment/x", max_entries=1)
    assert bounded.entries == (other,) and "a/Deployment/llama" not in bounded.workloads
    # the ConfigMap form round-trips, and its entries file is a profiles file
    assert CalibrationStore.from_configmap_data(shared.to_configmap_data()) == shared


def test_calibration_configmap_garbage_is_a_clear_error():
    with pytest.raises(VllmFitError, match="calibration"):
        CalibrationStore.from_configmap_data({"calibration.yaml": "measured: [1, 2"})
    with pytest.raises(VllmFitError, match="workloads.yaml"):
        CalibrationStore.from_configmap_data({"workloads.yaml": "- a\n- b\n"})


def test_what_a_container_status_asks_the_observer_to_read():
    running = {"ready": True, "restartCount": 0, "state": {"running": {}}}
    assert _container_phase(running) == ("ready", False)
    assert _container_phase({**running, "ready": False}) is None  # still starting: nothing to read yet
    restarted = {"ready": False, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1}}}
    assert _container_phase(restarted) == ("restarted", True)  # the failed instance's log
    assert _container_phase({"restartCount": 0, "state": {"terminated": {"exitCode": 1}}}) == ("terminated", False)


def test_log_reads_are_rate_limited():
    bucket = TokenBucket(per_minute=1, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_observer_and_calibration_settings_are_validated(tmp_path):
    assert WebhookConfig().observer_enabled is False and WebhookConfig().calibration_enabled is False
    path = tmp_path / "c.yaml"
    path.write_text("observer_enabled: true\nobserver_log_reads_per_minute: 0\n")
    with pytest.raises(VllmFitError, match="observer_log_reads_per_minute"):
        load_config(path, env={})


def _rules(objs, kind: str) -> set[tuple[str, str, str]]:
    out = set()
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"].endswith(("-observer", "-calibration")):
            for rule in obj["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            out.add((group, resource, verb))
    return out


@needs_helm
def test_chart_grants_the_observer_exactly_the_calls_it_makes():
    off = render()
    assert not _rules(off, "ClusterRole") and not _rules(off, "Role")
    on = render(sets=("observer.enabled=true",))
    assert _rules(on, "ClusterRole") == REQUIRED_RBAC
    assert not _rules(on, "Role")
    calibrating = render(sets=("observer.enabled=true", "observer.calibration.enabled=true"))
    assert _rules(calibrating, "ClusterRole") == REQUIRED_RBAC
    assert _rules(calibrating, "Role") == CALIBRATION_RBAC
    role = next(o for o in calibrating if o["kind"] == "Role" and o["metadata"]["name"].endswith("-calibration"))
    assert role["metadata"]["namespace"] == next(o for o in calibrating if o["kind"] == "ConfigMap")["metadata"]["namespace"]
    config = next(o for o in calibrating if o["kind"] == "ConfigMap")["data"]["config.yaml"]
    assert "observer_enabled: true" in config and "calibration_enabled: true" in config
