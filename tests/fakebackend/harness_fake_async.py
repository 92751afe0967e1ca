"""The NumPy fake backend with an asynchronous device, for the conformance check of ``harness_synchronize``.

A train step only queues its work (20 ms, then the fake's update) on a background thread, as a CUDA stream
does, and returns a future; reading a value (``harness_to_host``, the weights, a prediction, a checkpoint)
waits for the work queued before it. ``harness_synchronize`` waits for the whole queue, unless
``HARNESS_FAKE_ASYNC_SYNC=broken``, when it returns at once (the bug the check catches). Every other hook is
the fake backend's (registered beside it, in the same folder).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import harness_fake
from harness_fake import (  # noqa: F401 - hooks
    harness_build_model,
    harness_data,
    harness_device_memory,
    harness_environment,
    harness_eval_step,
    harness_export,
    harness_probe_device,
    harness_profile,
    harness_setup,
    harness_to_device,
)

from harness import hookimpl

#: The device's queue: one worker thread runs the queued work in order.
QUEUE = ThreadPoolExecutor(1, thread_name_prefix="fake-async-device")
WORK_S = 0.02


def _drain() -> None:
    """Wait for everything queued so far."""
    QUEUE.submit(lambda: None).result()


@hookimpl
def harness_backend_info():
    return {**harness_fake.harness_backend_info(), "name": "fake_async"}


class AsyncStep:
    """The fake's step, queued: ``step(batch)`` returns a future of the loss at once."""

    def __init__(self, inner: harness_fake.TrainStep) -> None:
        self.inner = inner

    def __call__(self, batch):
        def work():
            time.sleep(WORK_S)
            return self.inner(batch)
        return QUEUE.submit(work)

    def save(self, path):
        _drain()
        return self.inner.save(path)

    def load(self, path):
        _drain()
        return self.inner.load(path)


@hookimpl
def harness_train_step(case, model, device, total_steps, steps_per_epoch):
    return AsyncStep(harness_fake.harness_train_step(case=case, model=model, device=device, total_steps=total_steps,
                                                     steps_per_epoch=steps_per_epoch))


@hookimpl
def harness_to_host(value):
    if isinstance(value, Future):
        value = value.result()
    return harness_fake.harness_to_host(value=value)


@hookimpl
def harness_synchronize(device):
    if os.environ.get("HARNESS_FAKE_ASYNC_SYNC") != "broken":
        _drain()
    return True


@hookimpl
def harness_predict(case, model, device, images):
    _drain()
    return harness_fake.harness_predict(case=case, model=model, device=device, images=images)


@hookimpl
def harness_get_weights(case, model):
    _drain()
    return harness_fake.harness_get_weights(case=case, model=model)


@hookimpl
def harness_set_weights(case, model, weights):
    _drain()
    return harness_fake.harness_set_weights(case=case, model=model, weights=weights)
