"""What the load generators measure the same way: the server's CPU time and
resident memory over its process tree (``/proc``), client worker processes
forked per concurrency level, and latency figures.

``bench/pt_tls_load.py``, ``bench/radius_load.py`` and ``bench/ikev2.py``
import it; ../shared/baselines.md explains the method.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import time
from collections.abc import Callable

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- server process figures --------------------------------------------------------------

def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        # fields[0] is field 3 (state); field N is fields[N - 3]
        return f.read().rsplit(")", 1)[1].split()


def server_processes(pid: int) -> list[int]:
    """``pid`` and its live descendants (nac's PT-TLS worker processes),
    found through the parent pid (field 4) of every /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server: utime + stime + cutime + cstime (fields 14-17
    of /proc/PID/stat) of ``pid`` and of each live descendant.  A child's
    time moves into its parent's cutime/cstime only once reaped, so the
    live workers are counted one by one."""
    total = 0
    for p in server_processes(pid):
        try:
            total += sum(int(x) for x in _stat(p)[11:15])
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile: its time is in its parent's cutime once reaped
    return total / CLK_TCK


def server_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its live descendants."""
    total = 0
    for p in server_processes(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs so far, from the ``cpu`` line of
    /proc/stat: busy is everything but idle and I/O wait, steal included
    (time the hypervisor gave someone else); None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - fields[3] - fields[4], total


def busy_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """How busy the machine's CPUs were between two :func:`machine_cpu_ticks`, in percent."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


# -- the target ----------------------------------------------------------------------------

def parse_server(text: str) -> tuple[str, int]:
    """--server HOST:PORT or [IPV6]:PORT; an empty HOST is 127.0.0.1."""
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_settings(sections: dict, items: list[str]) -> dict:
    """Add --set SECTION.KEY=VALUE items to the local nac's ``sections``."""
    for item in items:
        section_key, _, value = item.partition("=")
        section, _, key = section_key.rpartition(".")
        sections.setdefault(section, {})[key] = value
    return sections


# -- the client workers ----------------------------------------------------------------------

def measure_once(imc) -> None:
    """Replay the collector's first handshake measurement in every later
    assessment: it is the same host within a run, and re-reading
    /proc/net/tcp* full of the load's own TIME_WAIT sockets would make the
    client, not the server, the thing measured."""
    real = imc.handshake_attributes
    memo: list = []

    def handshake_attributes(connection):
        if not memo:
            memo.append(real(connection))
        return list(memo[0])

    imc.handshake_attributes = handshake_attributes


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares differing by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run_worker(worker: Callable, *args) -> None:
    """A worker with the default SIGINT and SIGTERM actions: a handler the
    parent installed would otherwise raise inside the worker's reactor,
    which logs the exception and runs on, and the parent would wait for it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    worker(*args)


def run_workers(worker: Callable, args: dict, concurrency: int, processes: int, duration: float,
                pid: int | None, count: int | None = None) -> tuple[list, float, float | None]:
    """Fork ``processes`` (at most ``concurrency``) processes running
    ``worker(args, in_flight, start_at, stop_at, quota, pipe)``, which keep
    ``concurrency`` operations in flight between them for ``duration``
    seconds or ``count`` operations, and send one reply down ``pipe``.

    Returns the replies, the wall-clock seconds from the common start to
    the last reply, the server's CPU seconds over that time (None without
    ``pid``) and how busy all the machine's CPUs were then, in percent (a
    rate measured near 100 % is what the shared machine allowed, not what
    the server alone could do)."""
    processes = max(1, min(processes, concurrency))
    shares = split(concurrency, processes)
    quotas = split(count, processes) if count is not None else [None] * processes
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 1.0  # let every worker import and build its TLS context first
    stop_at = start_at + duration
    pipes, procs = [], []
    for share, quota in zip(shares, quotas):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_run_worker, args=(worker, args, share, start_at, stop_at, quota, child))
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    try:
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu_before = server_cpu_seconds(pid) if pid else None
        ticks_before = machine_cpu_ticks()
        wall_before = time.monotonic()
        replies = [parent.recv() for parent in pipes]
        wall = time.monotonic() - wall_before
        cpu = server_cpu_seconds(pid) - cpu_before if pid else None
        busy = busy_percent(ticks_before, machine_cpu_ticks())
    except BaseException:
        # Ctrl-C or an error here: stop the workers rather than wait for stop_at
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)
            if p.exitcode is None:
                p.kill()
                p.join()
        raise
    for p in procs:
        p.join()
    return replies, wall, cpu, busy


def add_failures(total: dict[str, int], more: dict[str, int]) -> None:
    """Add a worker's failure counts by reason to ``total``."""
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def level_figures(concurrency: int, latencies: list[float], failures: dict[str, int], wall: float,
                  busy: float | None = None) -> dict:
    """Completed, failed, rate and latency (p50, p99, mean) of one level,
    and how busy the machine was (:func:`run_workers`)."""
    latencies = sorted(latencies)
    done = len(latencies)

    def pct(q):
        return latencies[min(done - 1, int(q * done))] if done else None

    return {
        "concurrency": concurrency,
        "completed": done,
        "failed": sum(failures.values()),
        "failures": failures,
        "seconds": round(wall, 2),
        "rate_per_s": round(done / wall, 1) if wall else None,
        "p50_ms": round(pct(0.50) * 1e3, 1) if done else None,
        "p99_ms": round(pct(0.99) * 1e3, 1) if done else None,
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 1) if done else None,
        "machine_busy_pct": busy,
    }


def run_levels(concurrency: str, measure: Callable[[int], dict], *, quiet: bool,
               details: Callable[[dict], str]) -> list[dict]:
    """``measure(level)`` for each level of ``concurrency`` ("1,16,256"),
    each printed as it comes (unless ``quiet``): counts, rate, p50 and p99,
    then ``details(figures)``, then the failures by reason."""
    results = []
    for level in (int(x) for x in concurrency.split(",") if x):
        r = measure(level)
        results.append(r)
        if not quiet:
            print(f"K={level:<4} {r['completed']:>6} done {r['failed']:>4} failed "
                  f"{r['rate_per_s'] or 0:>8.1f}/s  p50 {r['p50_ms'] or 0:>7.1f} ms  "
                  f"p99 {r['p99_ms'] or 0:>7.1f} ms  {details(r)}"
                  + (f"  [machine {r['machine_busy_pct']:.0f}% busy]" if r.get("machine_busy_pct") is not None
                     else ""), flush=True)
            for reason, n in r["failures"].items():
                print(f"        {n} × {reason}")
    return results


def cpu_text(ms: float | None, per: str) -> str:
    """``server CPU 2.50 ms/<per>`` (n/a without the server's pid)."""
    return f"server CPU {'n/a' if ms is None else f'{ms:.2f} ms'}/{per}"
