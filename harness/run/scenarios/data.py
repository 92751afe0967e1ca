"""``scenario: data``: the input pipeline alone, the ceiling a training run's throughput cannot pass.

For each worker count (``data_workers``, else the case's ``workers``) it times batches of the train split
through the backend's own pipeline (``harness_data``: a PyTorch DataLoader, a MindSpore dataset) and through
the core's host loader (:class:`harness.data.host_batches.HostStream`), each with the case's preprocessing, by the
timing rules of training (the first batch alone, ``warmup`` batches untimed, ``steps`` timed ones, at least
:data:`MIN_WARMUP` and :data:`MIN_TIMED`). It also times,
in this process, decoding and augmenting single images, so a slow pipeline can be told apart from slow images.
No model is built. A backend runs it when it implements ``harness_to_device`` (its own ``harness_data``, or the
core's, which moves the core's host batches with it).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from harness.backends.hookspecs import SCENARIO_HOOKS
from harness.config import Settings
from harness.errors import HarnessError
from harness.measure.energy import energy_record
from harness.measure.steps import summarize, throughput
from harness.run.scenarios.base import Context, Scenario

__all__ = ["Data", "per_image_costs"]

#: Images timed one by one for the per-image decode and augmentation costs.
PER_IMAGE_SAMPLE = 64
#: Batches at least passed over untimed, and timed: a pipeline prefetches ahead (MindSpore keeps a queue of
#: batches, a DataLoader 2 per worker) while the first batch is set up, so a short window would time batches
#: already waiting in the queue instead of the pipeline's steady rate.
MIN_WARMUP, MIN_TIMED = 32, 200


def per_image_costs(settings: Settings) -> dict[str, Any]:
    """Milliseconds per image (median over the first :data:`PER_IMAGE_SAMPLE` readable train images, one thread):
    decoding the file to RGB, then the case's augmentation and normalisation."""
    from PIL import Image

    from harness.data.images import preprocess_for, to_rgb
    from harness.data.orders import augment_rng
    from harness.data.splits import scan_split

    _, samples, bad = scan_split(settings, "train")
    skip = set(bad)
    paths = [p for i, (p, _) in enumerate(samples) if i not in skip][:PER_IMAGE_SAMPLE]
    pre = preprocess_for(settings, train=True)
    decode, augment = [], []
    for k, path in enumerate(paths):
        t0 = time.perf_counter()
        with Image.open(path) as im:
            img = to_rgb(im)
            img.load()
        t1 = time.perf_counter()
        pre(img, augment_rng(settings.seed, 0, 0, k))
        augment.append(time.perf_counter() - t1)
        decode.append(t1 - t0)
    return {"images": len(paths), "decode_ms": 1e3 * float(np.median(decode)),
            "augment_ms": 1e3 * float(np.median(augment)),
            "one_worker_images_per_s": 1.0 / float(np.median(np.add(decode, augment)))}


class Data(Scenario):
    name = "data"
    help = "the input pipeline alone: backend's and core's loaders, images/s per worker count, decode/augment ms"
    hooks = SCENARIO_HOOKS["data"]
    #: Any backend with these hooks runs it; it need not list it among its scenarios.
    declared = False

    def check(self, settings: Settings) -> None:
        if settings.data == "synthetic":
            raise HarnessError("scenario data times reading a dataset folder: data must be folder or tiny, not "
                               "synthetic")

    def builds_model(self, info: dict[str, Any]) -> bool:
        return False

    def run(self, ctx: Context) -> None:
        from harness.data.host_batches import HostStream
        from harness.data.orders import forever
        from harness.models.specs import get_model

        s = ctx.settings
        spec = get_model(ctx.case.model)
        ctx.phase = "data"
        out: dict[str, Any] = {"per_image": per_image_costs(s), "pipelines": []}
        for workers in list(s.data_workers) or [s.workers]:
            case = dataclasses.replace(ctx.case, settings=dataclasses.replace(s, workers=workers))
            makers = (("backend", lambda c=case: ctx.hook.harness_data(case=c, split="train", device=ctx.device)),
                      ("core", lambda c=case: HostStream(c.settings, "train", spec.repeats, spec.mean, spec.std)))
            for pipeline, make in makers:
                stream = make()
                batches = forever(stream)
                loop = ctx.loop(energy=True)
                try:
                    warmup = max(s.warmup, MIN_WARMUP)
                    assert s.steps is not None, "scenario data times `steps` batches"
                    # the lambda is called within this iteration only
                    timed = loop.run(lambda i: next(batches), 0,  # noqa: B023
                                     warmup + max(s.steps, MIN_TIMED), timed_from=warmup,
                                     phase=f"data: {pipeline} loader, {workers} worker(s)")
                finally:
                    close = getattr(stream, "close", None)
                    if callable(close):
                        close()
                out["pipelines"].append({
                    "pipeline": pipeline, "workers": workers, "images_per_s": throughput(s.batch_size, timed.samples),
                    "ms_per_batch": summarize(timed.samples), "first_batch_s": timed.first_s,
                    "timed_batches": len(timed.samples),
                    "energy": energy_record(loop.energy_window, s.batch_size * len(timed.samples))})
                ctx.samples[f"data_{pipeline}_w{workers}_batch_s"] = timed.samples
                ctx.save()
        ctx.metrics["input_pipeline"] = out
