"""Trains until it is stopped (at most 100,000 steps); after step 30 it writes ``sys.argv[1]``
so a test knows when to signal it, and its ``finally`` says that it ran."""

import pathlib
import sys
import time

import torch

torch.set_num_threads(1)
model = torch.nn.Linear(32, 32)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
try:
    for step in range(100_000):
        loss = model(torch.randn(16, 32)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        time.sleep(0.001)
        if step == 30:
            pathlib.Path(sys.argv[1]).write_text("ready")
finally:
    print("the script's finally ran", flush=True)
