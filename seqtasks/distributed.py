"""Training on several workers (tf.distribute.MultiWorkerMirroredStrategy, described by TF_CONFIG).

Every worker runs the same command and builds the same seeded stream of global batches of
--batch-size rows; tf.data's DATA sharding (set explicitly, after Keras splits each global batch
into one slice per replica) gives worker i slice i of every batch, so a step of N workers is the
step one process would take on the whole batch. What must agree across workers never comes from a
worker's own clock:

    the clock        `Workers.agreed(x)`: the chief's value, broadcast (a SUM of x on the chief and
                     0 elsewhere), so the schedule, --max-time and checkpoint moments are the chief's;
    validation       Keras reduces the metrics over workers: every worker sees the same numbers, so
                     early stopping and the best model agree;
    files            only the chief (worker 0, or the "chief" task) writes the run folder; the others
                     write the same files to a temporary folder (saving reads synchronised variables,
                     a collective every worker must join) that is removed at the end;
    the tokenizer    built on every worker from the same data and settings, then checked by hash
                     (`Workers.check_same`): workers that disagree stop before training.

A worker that dies is noticed by TensorFlow's health check of its peers (every
HEALTH_CHECK_SECONDS), which aborts the collectives of the others: each stops with one line.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from seqtasks.errors import UserError

HEALTH_CHECK_SECONDS = 5  # TensorFlow's default is 30: a dead peer would hold the others that long
TF_CONFIG_FIX = ('set TF_CONFIG on each worker, e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                 '"task": {"type": "worker", "index": 0}} (index 1 on the second)')


def cluster_config() -> dict[str, Any] | None:
    """TF_CONFIG parsed, or None when it is not set. A malformed one is a UserError."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise ValueError(f"task {task['type']}:{task['index']} is not in the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"TF_CONFIG is not a cluster description ({error})", "TF_CONFIG", TF_CONFIG_FIX) from error
    return config


def local_cluster(workers: int) -> list[str]:
    """`127.0.0.1:PORT` addresses of free local ports, one per worker: the `cluster.worker` list of a
    TF_CONFIG for trying several workers on one machine (the ports are free when chosen; a worker binds
    its own a moment later)."""
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def make_multiworker_strategy():
    """MultiWorkerMirroredStrategy for TF_CONFIG's cluster. It must exist before anything starts
    TensorFlow's eager context (a tensor, a tf.data pipeline): then it is one UserError."""
    import tensorflow as tf

    cluster_config()  # a malformed TF_CONFIG fails here, as one line
    try:
        from tensorflow.python.distribute import collective_all_reduce_strategy as collective

        collective.CollectiveAllReduceExtended._check_health_interval = HEALTH_CHECK_SECONDS
    except (ImportError, AttributeError):  # another TensorFlow: its own interval applies
        pass
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise UserError("--strategy multiworker must be chosen before TensorFlow starts", "TF_CONFIG",
                        "pass it on the command line or in the settings of `seqtasks train`, or in Python "
                        "create the strategy with seqtasks.training.make_strategy before any other TensorFlow "
                        "call") from error
    work_around_keras_multiworker()
    return strategy


def is_multiworker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def work_around_keras_multiworker() -> None:
    """Keras 3's TensorFlow trainer fails under MultiWorkerMirroredStrategy, twice:
    keras-team/keras issue 20585 (`_maybe_symbolic_build` hands a PerReplica batch to the symbolic
    build) and tensorflow/tensorflow issue 72388 (`reduce_per_replica` means scalar metrics over
    workers with axis=0, "Invalid reduction dimension 0 for input with 0 dimensions"). The first is
    worked around per model (`build_on_local_batch`); here, the second: scalars under this strategy
    are meant with axis=None, everything else goes to Keras unchanged. Remove both when Keras fixes
    them (the test in tests/test_multiworker.py shows when)."""
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "seqtasks_workaround", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        import tensorflow as tf
        from keras import tree

        if not (is_multiworker(strategy) and reduction in ("auto", "mean")):
            return original(values, strategy, reduction)

        def reduce(value):
            if isinstance(value, (tf.Tensor, tf.distribute.DistributedValues)) and value.shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return tree.map_structure(reduce, values)

    reduce_per_replica.seqtasks_workaround = True
    trainer.reduce_per_replica = reduce_per_replica


def build_on_local_batch(model, strategy) -> None:
    """keras-team/keras issue 20585: under MultiWorkerMirroredStrategy, Keras'
    `_maybe_symbolic_build` builds the model from a batch it leaves as a PerReplica value (one
    local replica), which the symbolic build cannot read. The build needs only the batch's
    structure and shapes: give it this worker's own slice. Only this model is changed; remove when
    Keras fixes the issue."""
    import types

    from keras import tree

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)


def shard_by_data(dataset):
    """The dataset with DATA sharding set explicitly: after Keras splits each global batch into
    one slice per replica, worker i keeps slice i (no guessing between FILE and DATA)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@dataclass
class Workers:
    """This process's place in the cluster, and the few values the workers must agree on."""

    strategy: Any
    index: int    # this worker's rank: 0 is the chief
    count: int
    summed: Any = None  # the traced all-reduce of one float64

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def agreed(self, value: float) -> float:
        """The chief's `value` on every worker (a collective: every worker must call it together)."""
        return self.sum(value if self.is_chief else 0.0)

    def check_same(self, digest: str, what: str, fix: str) -> None:
        """Every worker stops with a UserError unless all hold the same `digest` (a hex string)."""
        # 24-bit pieces: each is exact in float64, which the collective sums
        pieces = [int(digest[i:i + 6], 16) for i in range(0, 24, 6)]
        differs = any(self.agreed(float(piece)) != piece for piece in pieces)
        if self.sum(1.0 if differs else 0.0):
            raise UserError(f"the workers built different {what}", "TF_CONFIG", fix)

    def sum(self, value: float) -> float:
        """The sum of every worker's `value` (a collective, traced once: eagerly it is slow)."""
        import tensorflow as tf

        if self.summed is None:
            strategy = self.strategy
            self.summed = tf.function(lambda x: strategy.reduce("SUM", strategy.run(tf.identity, args=(x,)), axis=None))
        return float(self.summed(tf.constant(value, tf.float64)))

    def barrier(self) -> None:
        self.sum(0.0)


def workers_of(strategy) -> Workers | None:
    """Workers for a multi-worker strategy, None for any other."""
    if strategy is None or not is_multiworker(strategy):
        return None
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    spec = resolver.cluster_spec().as_dict()
    # the chief, when there is one, is rank 0; workers follow it
    rank = task_id if task_type != "worker" or "chief" not in spec else task_id + 1
    count = sum(len(tasks) for job, tasks in spec.items() if job in ("chief", "worker")) or 1
    return Workers(strategy, rank, count)


def folder_digest(folder: Path) -> str:
    """sha256 over the names and bytes of every file under `folder`, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def worker_folder(name: str) -> Iterator[Path]:
    """A temporary folder for a non-chief worker's copy of the run, removed however training ends."""
    parent = Path(tempfile.mkdtemp(prefix="seqtasks-worker-"))
    try:
        yield parent / name
    finally:
        shutil.rmtree(parent, ignore_errors=True)


RESUME_ALL = "once every worker is up again, continue with the same TF_CONFIG and"


def describe_worker_failure(error: BaseException) -> str:
    """One line for an error that ended multi-worker training: a peer that went away, or the error."""
    import tensorflow as tf

    from seqtasks.errors import describe_exception

    if isinstance(error, (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
                          tf.errors.AbortedError)):
        return "another worker stopped or cannot be reached"
    return describe_exception(error)


def sharded_plan(model, plan):
    """`plan` with its datasets sharded by data across the workers (shard_by_data), and `model`
    worked around for keras-team/keras issue 20585 (build_on_local_batch)."""
    import dataclasses

    import tensorflow as tf

    build_on_local_batch(model, model.distribute_strategy)
    valid = plan.valid_data
    if isinstance(valid, tf.data.Dataset):
        valid = shard_by_data(valid)
    train_batches = plan.train_batches
    return dataclasses.replace(plan, valid_data=valid,
                               train_batches=lambda epoch, skip: shard_by_data(train_batches(epoch, skip)))
