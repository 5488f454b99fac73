"""A script that does no torch work at all."""

print(sum(range(10)))
