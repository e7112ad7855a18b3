"""Peer (a): the sequential script a user would write against the Add leads API.

Read the file, cut it into chunks of 2000, POST each chunk with a synchronous
`httpx.Client`, one after another. No de-duplication, no validation, no retries.

    INBOX_BASE_URL=... INBOX_API_TOKEN=... python peer_sequential.py CAMPAIGN FILE
"""

from __future__ import annotations

import json
import os
import sys

import httpx

CHUNK = 2000


def main() -> int:
    campaign, path = sys.argv[1], sys.argv[2]
    base_url = os.environ["INBOX_BASE_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['INBOX_API_TOKEN']}"}
    with open(path, encoding="utf-8") as lines:
        handles = [line.strip().lstrip("@") for line in lines if line.strip()]
    totals = {"requests": 0, "added": 0, "skipped": 0, "failed": 0}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        for start in range(0, len(handles), CHUNK):
            body = {"platform": "twitter", "usernames": handles[start : start + CHUNK]}
            response = client.post(f"/campaigns/v2/{campaign}/leads", json=body)
            response.raise_for_status()
            counts = response.json()
            totals["requests"] += 1
            for key in ("added", "skipped", "failed"):
                totals[key] += counts[key]
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
