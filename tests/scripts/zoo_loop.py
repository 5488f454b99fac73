"""The ``slow-collate`` zoo workload, trained by a plain loop of the user's: its model, loader,
loss and optimizer, with no Recorder. ``pinchpoint run`` on it should find what ``pinchpoint
diagnose zoo:slow-collate`` finds."""

from pinchpoint import zoo

workload = zoo.get("slow-collate")
model, optimizer = workload.model, workload.optimizer
model.train()
for _ in range(2):
    for batch in workload.data:
        loss = workload.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
