"""`vllm-fit serve`: the admission webhook (kopf, standalone, admission only)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Sequence

from ..errors import VllmFitError
from . import EXIT_BAD_INPUT, EXIT_FITS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-fit serve", description=__doc__)
    parser.add_argument("--config", type=Path, help="webhook configuration YAML (VLLM_FIT_* variables override it)")
    parser.add_argument("--addr", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9443, help="HTTPS port for admission reviews (default 9443)")
    parser.add_argument("--health-port", type=int, default=8080, help="HTTP port for /healthz /readyz /metrics")
    parser.add_argument("--tls-cert-file", type=Path, default=Path("/etc/vllm-fit/tls/tls.crt"))
    parser.add_argument("--tls-key-file", type=Path, default=Path("/etc/vllm-fit/tls/tls.key"))
    parser.add_argument("--cert-reload-seconds", type=float, default=10.0,
                        help="how often to check the certificate files for a rotation (default 10)")
    parser.add_argument("--dev", action="store_true",
                        help="make a self-signed certificate for 127.0.0.1 and register vllm-fit-dev webhook "
                             "configurations in the KUBECONFIG cluster for as long as this runs")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    from ..admission.config import load_config
    from ..admission.operator import configure_logging, run_webhook

    try:
        config = load_config(args.config)
    except VllmFitError as exc:
        sys.stderr.write(f"vllm-fit serve: {exc}\n")
        return EXIT_BAD_INPUT
    configure_logging(args.log_level)
    if args.dev:
        from ..admission.dev import run_dev

        return asyncio.run(run_dev(config, addr=args.addr, port=args.port, health_port=args.health_port))
    for path in (args.tls_cert_file, args.tls_key_file):
        if not path.exists():
            sys.stderr.write(f"vllm-fit serve: {path} does not exist (mount the TLS Secret, or use --dev)\n")
            return EXIT_BAD_INPUT
    asyncio.run(run_webhook(config, certfile=args.tls_cert_file, keyfile=args.tls_key_file, addr=args.addr,
                            port=args.port, health_port=args.health_port, cert_reload_seconds=args.cert_reload_seconds))
    return EXIT_FITS
