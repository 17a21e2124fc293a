"""A synthetic OpenAI-compatible engine for relay benchmarks: streams chunks with logprobs as fast as it can.

It speaks just enough of ``stopgate worker``'s API for the remote worker to use it: ``/healthz``,
``/v1/models``, ``/tokenize`` and ``/v1/chat/completions`` (stream with per-token logprobs and
``token_id:N`` tokens, usage at once and at the end; non-stream for probes). The text is varied
prose (words drawn from a fixed list by a per-request seed, sentences of 8-20 words) so that
repetition rules do not fire on it, and tokens are words: one chunk per token.

With ``--token-interval-ms`` each stream is paced like a real engine (one token per interval,
each written at once), so what the gateway adds to the inter-token gap can be measured below
its capacity.

Plain asyncio with hand-made HTTP/1.1 (keep-alive, chunked bodies): a framework would make the
upstream, not the gateway, the bottleneck. Run it in its own process:
``python -m gateway.bench.upstream --port P`` (prints ``ready`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import zlib
from typing import Any

MODEL = "synthetic"
WORDS = tuple(
    [
        "the",
        "a",
        "river",
        "city",
        "light",
        "stone",
        "market",
        "winter",
        "garden",
        "letter",
        "window",
        "music",
        "quiet",
        "road",
        "early",
        "bright",
        "table",
        "story",
        "north",
        "paper",
        "engine",
        "silver",
        "harbor",
        "morning",
        "forest",
        "voice",
        "simple",
        "number",
        "careful",
        "yellow",
        "bridge",
        "planet",
        "summer",
        "ocean",
        "history",
        "distant",
        "friend",
        "measure",
        "ancient",
        "pattern",
        "signal",
        "copper",
        "valley",
        "thunder",
        "orange",
        "village",
        "lantern",
        "minute",
        "crystal",
        "shadow",
        "meadow",
    ]
)


def _chunk(rid: str, delta: str, token_id: int, logprob: float, created: int) -> bytes:
    body = (
        f'{{"id":"{rid}","object":"chat.completion.chunk","created":{created},"model":"{MODEL}",'
        f'"choices":[{{"index":0,"delta":{{"content":{json.dumps(delta)}}},'
        f'"logprobs":{{"content":[{{"token":"token_id:{token_id}","logprob":{logprob},"bytes":null,'
        f'"top_logprobs":[]}}]}},"finish_reason":null}}]}}'
    )
    return b"data: " + body.encode() + b"\n\n"


def _tokens(seed: int, n: int) -> list[tuple[str, int, float]]:
    rng = random.Random(seed)
    out: list[tuple[str, int, float]] = []
    left = rng.randint(8, 20)
    for _ in range(n):
        i = rng.randrange(len(WORDS))
        word = " " + WORDS[i]
        left -= 1
        if left == 0:
            word += "."
            left = rng.randint(8, 20)
        out.append((word, 1000 + i, round(-rng.random() * 0.5, 4)))
    return out


class Upstream:
    def __init__(self, token_interval_s: float = 0.0) -> None:
        self.streams = 0
        self.tokens = 0
        self.token_interval_s = token_interval_s

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                await self.route(method, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/healthz":
            return self.json(writer, {"status": "ok", "ready": True, "queue_depth": 0, "active": self.streams})
        if path == "/v1/models":
            model = {"id": MODEL, "object": "model", "owned_by": "stopgate", "max_model_len": 1 << 20}
            return self.json(writer, {"object": "list", "data": [model]})
        req: dict[str, Any] = json.loads(body or b"{}")
        if path == "/tokenize":
            return self.json(writer, {"count": max(1, len(str(req.get("prompt", "")).split())), "tokens": []})
        if path == "/v1/chat/completions" and method == "POST":
            if req.get("stream"):
                return await self.stream(req, writer)
            return self.whole(req, writer)
        return self.json(writer, {"error": {"message": "not found"}}, 404)

    def json(self, writer: asyncio.StreamWriter, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode()
            + data
        )

    def whole(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        toks = _tokens(7, int(req.get("max_tokens") or 4))
        content = [{"token": f"token_id:{i}", "logprob": lp, "top_logprobs": []} for _, i, lp in toks]
        choice = {"index": 0, "message": {"role": "assistant", "content": "".join(t for t, _, _ in toks)}}
        choice.update(logprobs={"content": content}, finish_reason="length")
        usage = {"prompt_tokens": 10, "completion_tokens": len(toks), "total_tokens": 10 + len(toks)}
        self.json(writer, {"id": "p", "object": "chat.completion", "choices": [choice], "usage": usage})

    async def stream(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        n = int(req.get("max_tokens") or 16)
        prompt = json.dumps(req.get("messages"))
        prompt_tokens = max(1, len(prompt) // 4)
        rid, created = f"chatcmpl-{self.streams}-{time.time_ns()}", int(time.time())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}
        first = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL, "usage": usage}
        first["choices"] = [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        self.streams += 1
        try:
            _write_chunk(writer, b"data: " + json.dumps(first).encode() + b"\n\n")
            for k, (text, tid, lp) in enumerate(_tokens(zlib.crc32(prompt.encode()), n)):
                _write_chunk(writer, _chunk(rid, text, tid, lp, created))
                self.tokens += 1
                if self.token_interval_s:
                    await writer.drain()
                    await asyncio.sleep(self.token_interval_s)
                elif k % 4 == 3:
                    await writer.drain()  # lets the other streams run, and notices a closed connection
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
            end = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL}
            end["choices"] = [{"index": 0, "delta": {}, "finish_reason": "length"}]
            _write_chunk(writer, b"data: " + json.dumps(end).encode() + b"\n\n")
            tail = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL}
            tail.update(choices=[], usage=usage)
            _write_chunk(writer, b"data: " + json.dumps(tail).encode() + b"\n\ndata: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            self.streams -= 1


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


async def _main(host: str, port: int, token_interval_s: float) -> None:
    upstream = Upstream(token_interval_s)
    server = await asyncio.start_server(upstream.handle, host, port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-interval-ms", type=float, default=0.0, help="pace each stream (0: flat out)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.host, args.port, args.token_interval_ms / 1000))


if __name__ == "__main__":
    main()
