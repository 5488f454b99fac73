"""A plain inference script: a small helper module and a larger model, under no_grad, then an
exit status of its own (3). No pinchpoint in it."""

import sys

import torch

torch.manual_seed(0)
torch.set_num_threads(1)
helper = torch.nn.Linear(8, 8)
model = torch.nn.Sequential(torch.nn.Linear(128, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
model.eval()
inputs = torch.randn(128, 128)
with torch.inference_mode():
    for _ in range(40):
        helper(torch.randn(4, 8))
        predictions = model(inputs).argmax(dim=1)
sys.exit(3)
