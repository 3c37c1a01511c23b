"""The peer to compare with: a minimal Chainlit app that streams the fixture's tokens, one emit per token.

This is the Chainlit cookbook pattern (an OpenAI client, `Message.stream_token` per delta, then
`send`), run from the repo root so that it shares Ensemble's `.chainlit/config.toml`:
`BENCH_FIXTURE_URL=http://127.0.0.1:8199/v1 .venv/bin/python -m chainlit run \\
    benchmarks/minimal_chainlit_app.py --headless`
"""

from __future__ import annotations

import os

import chainlit as cl
from chainlit.server import app as http_app
from openai import AsyncOpenAI


@cl.on_app_startup
async def startup() -> None:
    http_app.state.fixture = AsyncOpenAI(base_url=os.environ["BENCH_FIXTURE_URL"], api_key="none", max_retries=0)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    client: AsyncOpenAI = http_app.state.fixture
    answer = cl.Message(content="")
    stream = await client.chat.completions.create(
        model="fixture", messages=[{"role": "user", "content": message.content}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and (delta := chunk.choices[0].delta.content):
            await answer.stream_token(delta)
    await answer.send()
