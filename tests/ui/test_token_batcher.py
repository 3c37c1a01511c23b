"""`TokenBatcher`: answer tokens reach the browser in order, batched, and never held back long."""

from __future__ import annotations

import asyncio

from chainlit_app.streaming import TokenBatcher


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    async def __call__(self, text: str) -> None:
        await asyncio.sleep(0)  # an emit yields to the loop, as a socket write does
        self.sent.append((asyncio.get_running_loop().time(), text))


async def test_first_token_goes_at_once_and_the_rest_in_batches() -> None:
    sink = Sink()
    batcher = TokenBatcher(sink, interval=0.05)
    for i in range(40):  # 40 tokens, one per 5 ms: 200 ms of answer
        await batcher.add(f"t{i} ")
        await asyncio.sleep(0.005)
    await batcher.flush()
    text = "".join(t for _, t in sink.sent)
    assert text == "".join(f"t{i} " for i in range(40)), "every token, once, in order"
    assert sink.sent[0][1] == "t0 ", "the first token is not held back"
    assert 3 <= len(sink.sent) <= 8, f"batched into a few emits, got {len(sink.sent)}"


async def test_a_pause_in_the_model_does_not_hold_text_back() -> None:
    sink = Sink()
    batcher = TokenBatcher(sink, interval=0.05)
    await batcher.add("Hello")
    await batcher.add(" world")  # within the interval: waits for the timer
    assert [t for _, t in sink.sent] == ["Hello"]
    await asyncio.sleep(0.12)  # the model pauses; no more tokens arrive
    assert [t for _, t in sink.sent] == ["Hello", " world"], "the timer flushed the waiting token"


async def test_flush_before_other_events_keeps_order_and_cancel_drops_the_rest() -> None:
    sink = Sink()
    batcher = TokenBatcher(sink, interval=10.0)
    await batcher.add("a")
    await batcher.add("b")
    await batcher.flush()
    assert [t for _, t in sink.sent] == ["a", "b"]
    await batcher.add("c")
    batcher.cancel()
    await asyncio.sleep(0.01)
    await batcher.flush()
    assert [t for _, t in sink.sent] == ["a", "b"], "a stopped turn sends nothing more"
