"""An rclpy executor spinning on a background thread, stopped without racing its shutdown.

With rclpy 7.1 (Jazzy), `Executor.shutdown()` called from another thread neither waits for a
running `spin()` to return nor keeps the guard condition that `spin()` builds its wait set from:
the spin thread can die on the destroyed guard (AttributeError) at every stop. So the thread here
spins in short slices and checks a flag; `stop()` sets the flag, joins the thread, and only then
shuts the executor down. Destroy the nodes after `stop()`: an entity destroyed while an executor
spins can end the spin thread too (ros2/rclpy#1284), after which no callback of that executor runs.
"""
from __future__ import annotations

import threading


class SpinThread:
    """`with SpinThread(executor): ...` or `spin = SpinThread(executor).start(); ...; spin.stop()`."""

    def __init__(self, executor, name: str = "spin", slice_s: float = 0.05):
        self.executor = executor
        self.slice_s = slice_s
        self.error: BaseException | None = None   # what ended the thread early, if anything did
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "SpinThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.executor.context.ok():
                self.executor.spin_once(timeout_sec=self.slice_s)
        except BaseException as e:   # kept for whoever waits on this executor's callbacks
            self.error = e
            raise

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.executor.shutdown()

    def __enter__(self) -> "SpinThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
