"""`vllm-fit serve`: the admission webhook (kopf, standalone, admission only)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from pathlib import Path
from typing import Sequence

from ..errors import VllmFitError
from . import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_FITS

DESCRIPTION = """Run the admission webhook: kopf in standalone mode whose only job is admission, HTTPS for the
API server's AdmissionReview requests, and plain HTTP for /healthz, /readyz and /metrics.

In a cluster (the Helm chart) it uses the pod's service account and the TLS Secret mounted at
--tls-cert-file/--tls-key-file. Elsewhere, --dev makes its own certificate and registers
`vllm-fit-dev` webhook configurations in the cluster KUBECONFIG names, pointing at
https://VLLM_FIT_DEV_HOST:PORT, and removes them on exit. VLLM_FIT_DEV_HOST is this host as the API
server sees it: 127.0.0.1 (the default) for a control plane on this host; for kind, the gateway of
the `kind` docker network (docker network inspect kind), e.g. 172.18.0.1; host.docker.internal
with Docker Desktop; host.minikube.internal with minikube.

Configuration: --config YAML (mode, default_gpu, default_vllm_version, vllm_images,
concurrency_threshold, gpus_per_node, deadline_seconds, unknown_model_policy,
unknown_gpu_policy, exempt_namespaces, model_bundle_dirs), each overridden by VLLM_FIT_<KEY>.
"""

EPILOG = """Exit status: 0 stopped by SIGINT/SIGTERM, 2 bad configuration, TLS files or credentials,
3 the Kubernetes API server could not be reached (after --api-wait seconds) or the server failed."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-fit serve", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="webhook configuration YAML; VLLM_FIT_* variables override it (default: none, "
                             "built-in defaults)")
    parser.add_argument("--addr", default="0.0.0.0", help="listen address of both ports (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9443, metavar="PORT", help="HTTPS port for admission reviews (default: 9443)")
    parser.add_argument("--health-port", type=int, default=8080, metavar="PORT",
                        help="HTTP port for /healthz, /readyz and /metrics (default: 8080)")
    parser.add_argument("--tls-cert-file", type=Path, default=Path("/etc/vllm-fit/tls/tls.crt"), metavar="FILE",
                        help="serving certificate, reloaded when it changes; ignored with --dev "
                             "(default: /etc/vllm-fit/tls/tls.crt)")
    parser.add_argument("--tls-key-file", type=Path, default=Path("/etc/vllm-fit/tls/tls.key"), metavar="FILE",
                        help="its private key; ignored with --dev (default: /etc/vllm-fit/tls/tls.key)")
    parser.add_argument("--cert-reload-seconds", type=float, default=10.0, metavar="SECONDS",
                        help="how often to check the certificate files for a rotation (default: 10)")
    parser.add_argument("--api-wait", type=float, default=20.0, metavar="SECONDS",
                        help="how long to wait at start for the Kubernetes API server before giving up "
                             "(default: 20)")
    parser.add_argument("--dev", action="store_true",
                        help="make a self-signed certificate for VLLM_FIT_DEV_HOST (default 127.0.0.1) and register "
                             "vllm-fit-dev webhook configurations in the KUBECONFIG cluster for as long as this "
                             "runs (default: off)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="level of vllm-fit's JSON log lines; kopf's own stay at warnings (default: INFO)")
    return parser


def main(argv: Sequence[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help is 0, bad usage 2
        return EXIT_FITS if exc.code == 0 else EXIT_BAD_INPUT
    # Imported here, first: `serve` needs the webhook extras, the other commands do not. A missing
    # one surfaces as ModuleNotFoundError, which the entry point turns into the install line.
    import aiohttp

    from ..admission.config import load_config
    from ..admission.kube import ClusterUnreachable, cluster_client, wait_for_api
    from ..admission.operator import configure_logging, run_webhook

    try:
        config = load_config(args.config)
        if not args.dev:
            for path in (args.tls_cert_file, args.tls_key_file):
                if not path.exists():
                    raise VllmFitError(f"{path} does not exist (mount the TLS Secret, give --tls-cert-file and "
                                       f"--tls-key-file, or use --dev)")
        if args.api_wait < 0:
            raise VllmFitError(f"--api-wait takes seconds, 0 or more, not {args.api_wait:g}")
        client = cluster_client()
        asyncio.run(wait_for_api(client, args.api_wait))
    except VllmFitError as exc:
        sys.stderr.write(f"vllm-fit serve: {exc}\n")
        return EXIT_BAD_INPUT
    except ClusterUnreachable as exc:
        sys.stderr.write(f"vllm-fit serve: {exc}\n")
        return EXIT_FAILED

    configure_logging(args.log_level)
    try:
        if args.dev:
            from ..admission.dev import run_dev

            return asyncio.run(run_dev(config, addr=args.addr, port=args.port, health_port=args.health_port,
                                       client=client))
        asyncio.run(run_webhook(config, certfile=args.tls_cert_file, keyfile=args.tls_key_file, addr=args.addr,
                                port=args.port, health_port=args.health_port,
                                cert_reload_seconds=args.cert_reload_seconds))
    except VllmFitError as exc:
        sys.stderr.write(f"vllm-fit serve: {exc}\n")
        return EXIT_BAD_INPUT
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        sys.stderr.write(f"vllm-fit serve: lost the Kubernetes API server at {client.server}: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}\n")
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            sys.stderr.write(f"vllm-fit serve: cannot listen on {args.addr} port {args.port} or {args.health_port}: "
                             f"the address is in use (choose --port / --health-port)\n")
            return EXIT_FAILED
        sys.stderr.write(f"vllm-fit serve: {' '.join(str(exc).split())}\n")
        return EXIT_FAILED
    return EXIT_FITS
