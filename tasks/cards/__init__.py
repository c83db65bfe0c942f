"""Each task's card (tasks/base.py TaskCard): its settings dataclass and what help shows of it. No
module here imports TensorFlow."""
