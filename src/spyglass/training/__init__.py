"""Training: the one loop every trainer of spyglass runs on, and the trainers built on it.

:func:`train` takes a model, a dataset, a loss ``(model, batch) -> scalar`` and an
optimizer, and brings seeded batches (same seed, same batches, same weights), a progress
bar, a validation hook whose results are kept, and checkpoints written atomically from
which a crashed run resumes bit for bit (on CPU). :class:`HeadFineTuning`, the default
retraining of MeGe and ReCo, is the first trainer on it; harmonization and 1-Lipschitz
training plug their losses into the same loop.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> from spyglass.training import train
>>> model = torch.nn.Linear(2, 1)
>>> data = TensorDataset(torch.randn(8, 2), torch.randn(8))
>>> def loss(model, batch):
...     x, y = batch
...     return (model(x).squeeze(1) - y).square().mean()
>>> train(model, data, loss, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=4,
...       progress=False).steps
2

Computing never writes files here, except the checkpoint the caller names.
"""

from spyglass.training.batches import epoch_order
from spyglass.training.checkpoint import load_checkpoint, save_checkpoint
from spyglass.training.head import HeadFineTuning
from spyglass.training.loop import Loss, TrainingHistory, Validate, Validation, train

__all__ = [
    "HeadFineTuning",
    "Loss",
    "TrainingHistory",
    "Validate",
    "Validation",
    "epoch_order",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
