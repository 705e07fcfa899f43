"""The floor for this stack: an aiohttp TLS webhook that answers every review `allowed: true`.

    python bench/noop_webhook.py PORT CERT KEY
"""

import json
import ssl
import sys

from aiohttp import web


async def review(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                              "response": {"uid": body["request"]["uid"], "allowed": True}})


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.add_routes([web.post("/{id:.*}", review)])
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


if __name__ == "__main__":
    main()
