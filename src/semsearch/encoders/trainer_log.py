"""Training progress as lines, not printed dicts.

With ``disable_tqdm=True`` (set so that a CLI's output is not a progress bar per step),
transformers' Trainer adds its ``PrinterCallback``, which prints every log record as a raw
dict on stdout (``{'loss': '0.1558', 'grad_norm': ...}``) between semsearch's own lines.
:func:`report_progress` swaps it for one line per log record through ``say`` (a step's
counter and its loss or dev metric), or through this module's logger."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: log keys worth a line (the rest: grad norms, learning rate, runtime figures)
SHOWN = ("loss", "eval_loss", "train_loss")


def progress_line(label: str, step: int, total: int, logs: dict[str, Any]) -> str:
    shown = {k: v for k, v in logs.items() if k in SHOWN or (k.startswith("eval_") and "ndcg" in k)}
    figures = ", ".join(f"{k} {_figure(v)}" for k, v in shown.items())
    return f"[{label}] step {step}/{total}" + (f": {figures}" if figures else "")


def _figure(value: Any) -> str:
    try:  # transformers logs floats, or (newer versions) their rounded strings
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


def report_progress(trainer: Any, label: str, say: Callable[[str], None] | None = None) -> None:
    """Replace ``trainer``'s ``PrinterCallback`` with lines through ``say`` (else this module's logger)."""
    from transformers import PrinterCallback, TrainerCallback

    emit = say or logger.info

    class _Lines(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if logs:
                emit(progress_line(label, state.global_step, state.max_steps, logs))

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_Lines())
