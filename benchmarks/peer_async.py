"""The peer: the minimal concurrent sender a user would write against the Add leads API.

Read the file's lines, cut them into chunks of 2000, POST each chunk with one
`httpx.AsyncClient`, at most CONCURRENCY at a time. No validation,
de-duplication, retries, journal or display: the floor `inboxleads add` is
measured against.

    INBOX_BASE_URL=... INBOX_API_TOKEN=... python peer_async.py CAMPAIGN FILE [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx

CHUNK = 2000


async def send(campaign: str, handles: list[str], concurrency: int) -> dict[str, int]:
    base_url = os.environ["INBOX_BASE_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['INBOX_API_TOKEN']}"}
    totals = {"requests": 0, "added": 0, "skipped": 0, "failed": 0}
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60.0, limits=limits
    ) as client:

        async def post(chunk: list[str]) -> None:
            async with slots:
                body = {"platform": "twitter", "usernames": chunk}
                response = await client.post(f"/campaigns/v2/{campaign}/leads", json=body)
            response.raise_for_status()
            counts = response.json()
            totals["requests"] += 1
            for key in ("added", "skipped", "failed"):
                totals[key] += counts[key]

        chunks = [handles[i : i + CHUNK] for i in range(0, len(handles), CHUNK)]
        await asyncio.gather(*(post(chunk) for chunk in chunks))
    return totals


def main() -> int:
    campaign, path = sys.argv[1], sys.argv[2]
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    with open(path, encoding="utf-8") as lines:
        handles = [line.strip().lstrip("@") for line in lines if line.strip()]
    print(json.dumps(asyncio.run(send(campaign, handles, concurrency))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
