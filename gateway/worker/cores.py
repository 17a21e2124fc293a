"""CPU threads for torch: the decode thread takes the cores, every other thread one.

torch's CPU ops run on OpenMP (libgomp). Every OS thread that runs a parallel region gets its own
team of worker threads, and keeps it after the region ends. When a process holds more OpenMP
threads than there are cores, libgomp stops spinning at barriers and puts waiting threads to
sleep, so each of the hundreds of parallel regions in a forward pass pays a wake-up. Measured on
the 2-core dev box: one idle second team in the process (the main thread's, left by building the
classifier) made every prefill ~20% slower, +20-30 ms of time to first token. So a serving
process makes one intra-op thread the default before anything runs a torch op, and only the
decode thread (``BatchScheduler``) takes more.
"""

from __future__ import annotations

# torch is imported inside the functions: the classifier uses these too, and importing
# ``gateway.classify`` must stay cheap.

_decode_threads: list[int] = []  # torch's own default, remembered by the first call


def reserve_cores() -> int:
    """Make one intra-op thread the default (this thread and threads started later); return the
    count the decode thread should take: torch's default as it was before the first call."""
    import torch

    if not _decode_threads:
        _decode_threads.append(int(torch.get_num_threads()))
    torch.set_num_threads(1)
    return _decode_threads[0]


def pin_threads(threads: int) -> None:
    """Give the calling thread ``threads`` intra-op threads.

    With OpenMP the count is per OS thread, taken from the process default the first time a
    thread runs an op. ``torch.set_num_threads`` sets this thread's count and the process
    default, so a caller pinning another thread restores the default from its own thread
    afterwards (``pin_threads(current_threads())`` saved before).
    """
    import torch

    torch.get_num_threads()  # this thread's one-time initialisation first, so ours sticks
    torch.set_num_threads(threads)


def current_threads() -> int:
    import torch

    return int(torch.get_num_threads())
