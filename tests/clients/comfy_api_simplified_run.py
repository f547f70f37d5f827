"""Runs one workflow through a ComfyUI server with comfy-api-simplified, a
third-party client from PyPI, unchanged: it posts the prompt, waits on /ws,
reads /history and fetches the image through /view.

usage: comfy_api_simplified_run.py BASE_URL OUT_DIR PREFIX
prints one JSON line: {"images": {name: size}, "first_bytes": "..."}
"""
import json
import sys
from pathlib import Path

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
api = ComfyApiWrapper(base)
images = api.queue_and_wait_images(workflow, "Save Image")
out.mkdir(parents=True, exist_ok=True)
for name, data in images.items():
    (out / name).write_bytes(data)
first = next(iter(images.values()), b"")
print(json.dumps({"images": {k: len(v) for k, v in images.items()},
                  "first_bytes": first[1:4].decode("latin-1")}))
