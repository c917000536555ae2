"""An instrumented replay provider for the benchmarks: `OMOI_LLM_PROVIDER=bench.timed:TimedReplay`
appends `<unix time> <conversation key>` to the file OMOI_BENCH_TRACE when each model request
arrives, then answers as the replay provider does."""

from __future__ import annotations

import os
import time

from omoi.llm.replay import ReplayProvider


class TimedReplay(ReplayProvider):
    def complete(self, *, system, messages, tools, context, max_tokens=None):
        trace = os.environ.get("OMOI_BENCH_TRACE")
        if trace:
            with open(trace, "a") as handle:
                handle.write(f"{time.time():.6f} {context.conversation_key}\n")
        return super().complete(system=system, messages=messages, tools=tools, context=context, max_tokens=max_tokens)
