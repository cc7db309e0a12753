"""A server (the product or the bare relay) with an asyncio task counter: every task
created is counted, and the count is written to $SYARAH_BENCH_TASKS on SIGUSR1.

Run: python bench/instrumented.py product ARGS... | python bench/instrumented.py relay PORT
"""

import asyncio
import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import collections

created = 0
by_name = collections.Counter()


def counting(new_event_loop):
    """``new_event_loop`` with every loop it makes counting the tasks created on it."""
    def make():
        return count_tasks(new_event_loop())
    return make


def count_tasks(loop):

    def factory(loop, coro, **kwargs):
        global created
        created += 1
        by_name[getattr(coro, "__qualname__", type(coro).__name__)] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)

    def dump(*_):
        with open(os.environ["SYARAH_BENCH_TASKS"], "w") as f:
            f.write(str(created) + "\n")
            for name, n in by_name.most_common(15):
                f.write(f"{n} {name}\n")

    signal.signal(signal.SIGUSR1, dump)

    def memory(*_):
        # With PYTHONTRACEMALLOC set: where the live memory was allocated.
        import gc
        import tracemalloc
        gc.collect()
        stats = tracemalloc.take_snapshot().statistics("lineno")
        with open(os.environ["SYARAH_BENCH_TASKS"] + ".mem", "w") as f:
            for st in stats[:40]:
                f.write(f"{st.size / 1024:9.0f} KiB {st.count:7d} {st.traceback}\n")

    signal.signal(signal.SIGUSR2, memory)
    return loop


asyncio.new_event_loop = asyncio.events.new_event_loop = counting(asyncio.new_event_loop)
try:
    import uvloop
except ImportError:
    pass
else:
    # The product picks uvloop's factory where it is installed; uvloop's Loop takes a
    # task factory as asyncio's does.
    uvloop.new_event_loop = counting(uvloop.new_event_loop)

kind = sys.argv.pop(1)
if kind == "product":
    from syarah.server import main
    sys.exit(main(sys.argv[1:]))
else:
    sys.argv[0] = os.path.join(ROOT, "bench", "relay_py.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
