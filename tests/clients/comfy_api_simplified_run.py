"""Runs one workflow through a ComfyUI server with comfy-api-simplified, a
third-party client from PyPI, unchanged: it posts the prompt, waits on /ws,
reads /history and fetches the image through /view.

usage: comfy_api_simplified_run.py BASE_URL OUT_DIR PREFIX
prints one JSON line: {"images": {name: size}, "first_bytes": "..."}

Over HTTPS the client trusts what Python trusts (REQUESTS_CA_BUNDLE for its
HTTP, SSL_CERT_FILE for its websocket); with PIN_SHA256 set, this script first
checks that the server's certificate has that SHA-256 fingerprint (AB:CD:...)
and stops if not. COMFY_USER and COMFY_PASSWORD are the client's own basic
authentication.
"""
import hashlib
import json
import os
import ssl
import sys
from pathlib import Path
from urllib.parse import urlsplit

from comfy_api_simplified import ComfyApiWrapper

base, out, prefix = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
workflow = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 1234},
          "_meta": {"title": "Empty Image"}},
    "2": {"class_type": "SaveImage",
          "inputs": {"images": ["1", 0], "filename_prefix": prefix},
          "_meta": {"title": "Save Image"}},
}
pin = os.environ.get("PIN_SHA256")
if pin:
    where = urlsplit(base)
    pem = ssl.get_server_certificate((where.hostname, where.port))
    seen = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    seen = ":".join(seen[i:i + 2] for i in range(0, len(seen), 2))
    if seen != pin.upper():
        sys.exit(f"the server's certificate is {seen}, not the pinned {pin}")
api = ComfyApiWrapper(base, user=os.environ.get("COMFY_USER", ""),
                      password=os.environ.get("COMFY_PASSWORD", ""))
images = api.queue_and_wait_images(workflow, "Save Image")
out.mkdir(parents=True, exist_ok=True)
for name, data in images.items():
    (out / name).write_bytes(data)
first = next(iter(images.values()), b"")
print(json.dumps({"images": {k: len(v) for k, v in images.items()},
                  "first_bytes": first[1:4].decode("latin-1")}))
