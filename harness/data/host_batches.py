"""Host batches for a backend without a data pipeline of its own: it only moves them to its device.

:class:`HostStream` yields ``(float32 NCHW images, int64 labels)`` NumPy batches of ``settings.batch_size``, the
same pixels in the same order as the shipped backends' own pipelines: synthetic data are
:func:`harness.data.synthetic.synthetic_arrays`; folder data follow :class:`harness.data.orders.TrainOrder`
(shuffled per epoch, this rank's shard), each train image augmented from :func:`harness.data.orders.augment_rng` of
where it falls in the run, so the worker count changes nothing; eval batches come from
:func:`harness.data.splits.eval_samples`, the last one padded with :data:`harness.data.splits.PAD_LABEL`. With
``settings.workers > 0`` whole batches are decoded ahead in that many worker processes (spawned, so a framework's
threads or device state never reach them; as with any spawned process, a script of its own that iterates a stream
does so under ``if __name__ == "__main__":``). They exit with :meth:`HostStream.close`, when the stream is dropped,
at exit, or when their parent is killed.

:func:`device_stream` wraps one so each batch is the backend's: ``device_stream(HostStream(...), lambda a:
hook.harness_to_device(arrays=a, device=dev))``. No deep-learning framework is imported here.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.images import MEAN, STD, Preprocess, preprocess_for
from harness.data.orders import TrainOrder, augment_rng
from harness.data.splits import eval_samples, load_or_next, note_unreadable, scan_split
from harness.data.synthetic import synthetic_arrays, synthetic_batches
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.config import Settings

__all__ = ["HostStream", "DeviceStream", "device_stream"]

Batch = tuple[np.ndarray, np.ndarray]
#: One batch to decode: ``(paths, labels, augmentation keys)``; a key is ``(seed, epoch, rank, position)`` or None.
Task = tuple[list[str], list[int], list[tuple[int, int, int, int] | None]]


def _decode(pre: Preprocess, task: Task) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One batch, decoded and preprocessed (in a worker process or in-process), and the files in it that could
    not be decoded (each replaced by the next readable sample of the batch:
    :func:`harness.data.splits.load_or_next`)."""
    paths, labels, keys = task
    batch = list(zip(paths, labels))
    done = [load_or_next(pre, batch, j, None if k is None else augment_rng(*k), scored=not pre.train)
            for j, k in enumerate(keys)]
    images = np.stack([x for x, _, _ in done])
    return (np.ascontiguousarray(images, dtype=np.float32), np.asarray([y for _, y, _ in done], dtype=np.int64),
            [bad for _, _, bad in done if bad])


def _watch_parent(parent: int) -> None:
    """In a worker: exit when the process that started it is gone (killed outright), so none is left behind."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="harness-hostdata-watch").start()


def _shutdown(pools: list[ProcessPoolExecutor]) -> None:
    while pools:
        pools.pop().shutdown(wait=True, cancel_futures=True)


class HostStream:
    """``split`` (``"train"`` or ``"eval"``) of ``settings.data`` as NumPy batches; see the module's doc.

    ``len()`` is the number of batches in an epoch; iterating again starts the next epoch; :meth:`start_at`
    resumes in the middle of one. ``repeats`` > 1 yields each train image that many times in a row (repeated
    augmentation); ``mean``/``std`` are the model's normalisation; ``rank``/``world`` pick this rank's shard of the
    train order. ``batches`` overrides the epoch length of synthetic data (default
    :func:`harness.data.synthetic.synthetic_batches`). Call :meth:`close` (or drop the stream) to stop its workers.

    The settings are taken as the suite loader checked them: the batch size against ``repeats``
    (:func:`harness.models.specs.check_batch`) and the folder's classes against ``num_classes``
    (:func:`harness.data.folders.check_class_count`) are not checked again here.
    """

    def __init__(self, settings: Settings, split: str, repeats: int = 1, mean: Sequence[float] = MEAN,
                 std: Sequence[float] = STD, rank: int = 0, world: int = 1, batches: int | None = None) -> None:
        if split not in ("train", "eval"):
            raise HarnessError(f"split '{split}': expected 'train' or 'eval'")
        s = settings
        self.settings, self.train = s, split == "train"
        self.repeats = repeats if self.train else 1
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0
        #: The one synthetic batch (yielded every step), or None for folder data.
        self.synthetic: Batch | None = None
        self._pools: list[ProcessPoolExecutor] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._pools)
        if s.data == "synthetic":
            self.synthetic = synthetic_arrays(s, split, self.repeats)
            self._n = batches if batches is not None else synthetic_batches(s, split)
            return
        self.pre = preprocess_for(s, self.train, mean, std)
        _, samples, bad = scan_split(s, "train" if self.train else "val")
        if self.train:
            self.samples = samples
            self.order = TrainOrder(len(samples), bad, self.repeats, s.seed, rank, world)
            self._n = len(self.order) // s.batch_size  # the last partial batch is dropped
        else:
            self.samples = eval_samples(s)  # padded to whole batches
            self._n = len(self.samples) // s.batch_size

    def __len__(self) -> int:
        return self._n

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume: the next iteration is epoch ``epoch`` from its batch ``batch`` on."""
        self.epoch, self.start = epoch, batch

    def tasks(self, epoch: int, start: int = 0) -> Iterator[Task]:
        """The batches of ``epoch`` (folder data) from its batch ``start`` on, as files to decode."""
        b, seed, rank = self.settings.batch_size, self.settings.seed, self.rank
        if self.train:
            order = self.order.order(epoch).tolist()
        for k in range(start, self._n):
            positions = range(k * b, (k + 1) * b)
            if self.train:
                chunk = [self.samples[order[pos]] for pos in positions]
                keys: list[tuple[int, int, int, int] | None] = [(seed, epoch, rank, pos) for pos in positions]
            else:
                chunk, keys = [self.samples[pos] for pos in positions], [None] * b
            yield [p for p, _ in chunk], [y for _, y in chunk], keys

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = self.epoch, self.start
        self.epoch, self.start = epoch + 1, 0
        if self.synthetic is not None:
            return (self.synthetic for _ in range(start, self._n))
        tasks = self.tasks(epoch, start)
        decoded = (_decode(self.pre, t) for t in tasks) if self.settings.workers <= 0 else self._prefetch(tasks)
        return self._noted(decoded)

    def _noted(self, decoded: Iterator[tuple[np.ndarray, np.ndarray, list[str]]]) -> Iterator[Batch]:
        split = "train" if self.train else "val"
        for images, labels, bad in decoded:
            if bad:
                note_unreadable(self.settings, split, bad)
            yield images, labels

    def _pool(self) -> ProcessPoolExecutor:
        if not self._pools:
            self._pools.append(ProcessPoolExecutor(self.settings.workers, multiprocessing.get_context("spawn"),
                                                   initializer=_watch_parent, initargs=(os.getpid(),)))
        return self._pools[0]

    def _prefetch(self, tasks: Iterator[Task]) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """Decode ``tasks`` in the workers, a few batches ahead, yielding them in order."""
        pool, todo = self._pool(), tasks
        ahead: deque[Future[tuple[np.ndarray, np.ndarray, list[str]]]] = deque()
        try:
            for task in todo:
                ahead.append(pool.submit(_decode, self.pre, task))
                if len(ahead) >= 2 * self.settings.workers:
                    break
            while ahead:
                batch = ahead.popleft().result()
                following = next(todo, None)
                if following is not None:
                    ahead.append(pool.submit(_decode, self.pre, following))
                yield batch
        finally:  # an epoch left early (or an error): batches not started yet are not decoded
            for f in ahead:
                f.cancel()

    def close(self) -> None:
        """Stop the worker processes (a later epoch starts new ones)."""
        _shutdown(self._pools)

    def __enter__(self) -> HostStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceStream:
    """A :class:`HostStream` whose batches ``to_device`` has made the backend's; synthetic data are moved once."""

    def __init__(self, host: HostStream, to_device: Callable[[Batch], Any]) -> None:
        self.host, self.to_device = host, to_device
        self._synthetic: Any = None

    def __len__(self) -> int:
        return len(self.host)

    def start_at(self, epoch: int, batch: int) -> None:
        self.host.start_at(epoch, batch)

    def __iter__(self) -> Iterator[Any]:
        if self.host.synthetic is not None:
            if self._synthetic is None:
                self._synthetic = self.to_device(self.host.synthetic)
            batch = self._synthetic
            return (batch for _ in self.host)
        return (self.to_device(arrays) for arrays in self.host)

    def close(self) -> None:
        self.host.close()


def device_stream(host: HostStream, to_device: Callable[[Batch], Any]) -> DeviceStream:
    """``host`` with each batch passed through ``to_device`` (e.g. ``lambda a: hook.harness_to_device(arrays=a,
    device=dev)``), forwarding ``len`` and ``start_at``."""
    return DeviceStream(host, to_device)
